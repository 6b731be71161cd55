"""Face identification accuracy on the shared data, under the conditions events create.

Protocols (all identities from ../shared/data/faces, scenes from ../shared/data/scenes):
  loo       every photo of an identity with >= 2 photos is a probe once, the others are registered
  scenes    every identity registered; precision / recall over (photo, person) pairs on the labelled scenes
  open      every other identity (sorted by name) is left out of the gallery entirely: the photos of the
            left-out people must come out with nobody named; registered people's photos must be named
  hard      the open protocol on degraded probes: faces downscaled to ~30 px high after JPEG
            recompression, and darkened (dim venue)
  mid       the same degradation to ~44 px high (the sizes resolution-matched references are used for)

Every face is embedded once; the matching rules are then evaluated for a grid of thresholds and margins,
so the script also prints the curve the default threshold was chosen from.

    python -m benchmarks.face_id_accuracy [--embedder dlib-resnet-v1] [--resolution-match] [--size-curve] [--write]
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import json
import platform
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageEnhance

from benchmarks.common import cuda_skip_reason
from influvision.decode.images import load_image
from influvision.faces.pipeline import FacePipeline
from influvision.match import GalleryIndex, MatchSettings, assign_identities, person_distances

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@dataclass
class PhotoFaces:
    path: str
    person: str | None        # the identity a faces/ photo shows (None for scenes)
    emb: torch.Tensor         # (F, D)
    size_px: torch.Tensor     # (F,)
    sharpness: torch.Tensor   # (F,)
    main: int                 # index of the largest face, -1 when none
    variants: torch.Tensor | None = None  # (L, D) resolution variants of the main face (references)
    score: torch.Tensor | None = None     # (F,) detector scores; None: not checked


def degrade(pixels: np.ndarray, face_px: float, target_px: float = 30.0, dark: float = 0.45) -> np.ndarray:
    """Downscale so the main face is ~target_px high, JPEG-recompress at quality 70, darken."""
    img = Image.fromarray(pixels)
    scale = min(1.0, target_px / max(face_px, 1.0))
    if scale < 1.0:
        img = img.resize((max(1, round(img.width * scale)), max(1, round(img.height * scale))), Image.BILINEAR)
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=70)
    img = Image.open(io.BytesIO(buf.getvalue())).convert("RGB")
    return np.asarray(ImageEnhance.Brightness(img).enhance(dark))


def embed_all(pipe: FacePipeline, items: list[tuple[str, str | None, np.ndarray]],
              references: bool = False) -> list[PhotoFaces]:
    """Embed every face; ``references`` also computes the main face's resolution variants, as the gallery does."""
    out = []
    for path, person, pixels in items:
        f = pipe([pixels], keep_chips=references)
        c = f.columns
        area = (f.boxes[:, 2] - f.boxes[:, 0]) * (f.boxes[:, 3] - f.boxes[:, 1])
        main = int(area.argmax()) if len(f) else -1
        variants = pipe.embed_resolution_variants(c["chip"][main:main + 1])[:, 0].cpu() \
            if references and main >= 0 else None
        out.append(PhotoFaces(path, person, c["embedding"].cpu(), c["size_px"].cpu(), c["sharpness"].cpu(), main,
                              variants, f.scores.cpu()))
    return out


def build_index(refs: list[PhotoFaces], keep: set[str]) -> GalleryIndex:
    rows = [r for r in refs if r.person in keep and r.main >= 0]
    names = sorted({r.person for r in rows})
    pos = {n: i for i, n in enumerate(names)}
    if not rows:
        return GalleryIndex.empty()
    variants = torch.stack([r.variants for r in rows], dim=1) if all(r.variants is not None for r in rows) else None
    return GalleryIndex(names, torch.stack([r.emb[r.main] for r in rows]), torch.tensor([pos[r.person] for r in rows]),
                        variants)


def named_people(photo: PhotoFaces, index: GalleryIndex, s: MatchSettings) -> list[str]:
    if photo.emb.shape[0] == 0 or index.size == 0:
        return []
    eligible = (photo.size_px >= s.min_face_px) & (photo.sharpness >= s.min_sharpness)
    if photo.score is not None:  # as track() does for faces in photos
        eligible &= photo.score >= s.min_score
    dist = person_distances(photo.emb, index, photo.size_px if s.resolution_match else None)
    ident, _ = assign_identities(dist, torch.zeros(len(eligible), dtype=torch.long), eligible, s)
    return [index.names[i] for i in ident.tolist() if i >= 0]


def loo(faces: list[PhotoFaces], s: MatchSettings, probes: dict[str, PhotoFaces] | None = None) -> dict:
    """Clean references; probes from ``probes`` (same paths, e.g. degraded copies) when given."""
    probes = probes or {}
    by_person = defaultdict(list)
    for f in faces:
        by_person[f.person].append(f)
    correct = wrong = unknown = 0
    for person, photos in by_person.items():
        if len(photos) < 2:
            continue
        for photo in photos:
            refs = [f for f in faces if f is not photo]
            index = build_index(refs, {f.person for f in refs})
            probe = probes.get(photo.path, photo)
            names = named_people(PhotoFaces(probe.path, person, probe.emb[probe.main:probe.main + 1],
                                            probe.size_px[probe.main:probe.main + 1],
                                            probe.sharpness[probe.main:probe.main + 1], 0,
                                            score=None if probe.score is None
                                            else probe.score[probe.main:probe.main + 1]),
                                 index, s) \
                if probe.main >= 0 else []
            if names == [person]:
                correct += 1
            elif names:
                wrong += 1
            else:
                unknown += 1
    n = correct + wrong + unknown
    return {"probes": n, "top1": correct / n, "wrong_name": wrong / n, "unknown": unknown / n}


def scenes(faces: list[PhotoFaces], scene_faces: list[PhotoFaces], labels: dict, s: MatchSettings) -> dict:
    index = build_index(faces, {f.person for f in faces})
    tp = fp = fn = 0
    false_names = []
    for sc in scene_faces:
        truth = set(labels[Path(sc.path).name]["known"])
        got = set(named_people(sc, index, s))
        tp += len(got & truth)
        fp += len(got - truth)
        fn += len(truth - got)
        false_names += [f"{Path(sc.path).name}:{n}" for n in sorted(got - truth)]
    return {"precision": tp / max(1, tp + fp), "recall": tp / max(1, tp + fn), "tp": tp, "fp": fp, "fn": fn,
            "false_names": false_names}


def open_set(faces: list[PhotoFaces], s: MatchSettings, probes: dict[str, PhotoFaces] | None = None) -> dict:
    """Clean references; probes from ``probes`` (same paths, e.g. degraded copies) when given."""
    probes = probes or {}
    people = sorted({f.person for f in faces if sum(g.person == f.person for g in faces) >= 2})
    left_out = set(people[1::2])
    registered_probe = {}
    for f in faces:
        if f.person in people and f.person not in left_out:
            registered_probe[f.person] = f  # the last photo of each registered person is its probe
    refs = [f for f in faces if f.person not in left_out and f not in registered_probe.values()]
    index = build_index(refs, {f.person for f in refs})
    stranger_photos = [probes.get(f.path, f) for f in faces if f.person in left_out]
    registered_probe = {p: probes.get(f.path, f) for p, f in registered_probe.items()}
    wrong = sum(bool(named_people(f, index, s)) for f in stranger_photos)
    named_right = sum(named_people(f, index, s) == [f.person] for f in registered_probe.values())
    wrong_reg = sum(bool(set(named_people(f, index, s)) - {f.person}) for f in registered_probe.values())
    return {"stranger_photos": len(stranger_photos), "stranger_photos_named": wrong,
            "false_name_rate": (wrong + wrong_reg) / max(1, len(stranger_photos) + len(registered_probe)),
            "registered_probes": len(registered_probe), "recall": named_right / max(1, len(registered_probe))}


def size_curve(pipe: FacePipeline, items: list[tuple[str, str | None, np.ndarray]], faces: list[PhotoFaces],
               targets: tuple[float, ...] = (36.0, 40.0, 44.0, 48.0, 56.0),
               bins: tuple[tuple[float, float], ...] = ((36.0, 40.0), (40.0, 48.0), (48.0, 64.0))) -> str:
    """Genuine vs impostor distances of small faces, with and without resolution-matched references.

    Every face photo is degraded to each target size (bright and dim), and its main face compared with every
    other photo's reference: the nearest reference of its own person (genuine) and of each other person
    (impostor pairs). Per size bin: the threshold at which 0.1 % / 1 % of impostor pairs would be named and
    the share of genuine faces within it, so the two comparisons are judged at equal false-accept rates.
    """
    from influvision.faces.resolution import RESOLUTION_LEVELS, resolution_level

    ok = [(k, f) for k, f in enumerate(faces) if f.main >= 0]
    refs = torch.stack([f.emb[f.main] for _, f in ok])
    levels = torch.cat([torch.stack([f.variants for _, f in ok], 1), refs[None]])  # (L + 1, R, D)
    names = sorted({f.person for _, f in ok})
    owner = torch.tensor([names.index(f.person) for _, f in ok])
    genuine: dict[bool, list[tuple[float, float]]] = {False: [], True: []}
    impostor: dict[bool, list[tuple[float, np.ndarray]]] = {False: [], True: []}
    for target in targets:
        for dark in (1.0, 0.45):
            degraded = embed_all(pipe, [(items[k][0], f.person, degrade(items[k][2], float(f.size_px[f.main]),
                                                                         target_px=target, dark=dark))
                                        for k, f in ok])
            for row, d in enumerate(degraded):
                if d.main < 0:
                    continue
                size = float(d.size_px[d.main])
                me = names.index(d.person)
                for matched in (False, True):
                    level = int(resolution_level(torch.tensor([size]))[0]) if matched else len(RESOLUTION_LEVELS)
                    dist = torch.cdist(d.emb[d.main][None], levels[level])[0]
                    dist[row] = float("inf")  # not its own photo
                    per = torch.full((len(names),), float("inf")).scatter_reduce(0, owner, dist, "amin")
                    genuine[matched].append((size, float(per[me])))
                    others = per[torch.arange(len(names)) != me].numpy()
                    impostor[matched].append((size, others[np.isfinite(others)]))
    lines = ["| face height | references | faces | impostor pairs | named at 0.50: genuine / impostor pairs | "
             "threshold at 0.1 % impostors: value, genuine | at 1 %: value, genuine |", "|" + "---|" * 7]
    for lo, hi in bins:
        for matched in (False, True):
            g = np.array([d for sz, d in genuine[matched] if lo <= sz < hi])
            imp = np.sort(np.concatenate([v for sz, v in impostor[matched] if lo <= sz < hi]))
            cells = [f"{lo:.0f}-{hi:.0f} px", "resolution-matched" if matched else "full resolution", str(len(g)),
                     str(len(imp)), f"{np.mean(g < 0.5):.2f} / {np.mean(imp < 0.5):.5f}"]
            for far in (1e-3, 1e-2):
                thr = imp[int(far * len(imp))]
                cells.append(f"{thr:.3f}, {np.mean(g < thr):.2f}")
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--embedder", default="dlib-resnet-v1")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--write", action="store_true", help="append the results to benchmarks/RESULTS.md")
    ap.add_argument("--resolution-match", action="store_true",
                    help="compare small faces with resolution-matched references (MatchSettings.resolution_match)")
    ap.add_argument("--size-curve", action="store_true",
                    help="also compare small faces with and without resolution-matched references at equal "
                         "false-accept rates (about a minute more)")
    args = ap.parse_args()
    if reason := cuda_skip_reason(args.device):
        print(f"skipped: {reason}")
        return
    t0 = time.perf_counter()
    pipe = FacePipeline(args.embedder, args.device)
    items = [(str(p.relative_to(SHARED)), p.parent.name, load_image(p).pixels)
             for p in sorted((SHARED / "faces").glob("*/*")) if p.suffix.lower() in (".jpg", ".png", ".jpeg")]
    faces = embed_all(pipe, items, references=True)
    labels = json.loads((SHARED / "scenes" / "labels.json").read_text())["images"]
    scene_faces = embed_all(pipe, [(str(p.relative_to(SHARED)), None, load_image(p).pixels)
                                   for p in sorted((SHARED / "scenes").glob("*.jpg"))])
    # Degraded probes, matched against clean references.
    hard_probes, mid_probes = ({h.path: h for h in embed_all(pipe, [
        (path, person, degrade(px, float(f.size_px[f.main]) if f.main >= 0 else 100.0, target_px=target))
        for (path, person, px), f in zip(items, faces, strict=True)])} for target in (30.0, 44.0))
    t_embed = time.perf_counter() - t0

    default = MatchSettings().resolved(pipe.embedder.threshold)
    rows = []
    for thr in (0.40, 0.42, 0.44, 0.46, 0.48, 0.50, 0.52, 0.55, 0.60):
        for margin in (0.0, 0.02, 0.04, 0.06, 0.08):
            s = dataclasses.replace(default, threshold=thr, margin=margin, resolution_match=args.resolution_match)
            rows.append((thr, margin, loo(faces, s), scenes(faces, scene_faces, labels, s), open_set(faces, s),
                         *[(open_set(faces, s, probes), loo(faces, s, probes)) for probes in (hard_probes, mid_probes)]))
    print(f"embedded {len(items)} face photos, {len(scene_faces)} scenes and {2 * len(items)} degraded copies "
          f"in {t_embed:.1f} s on {pipe.device}")
    header = ("| threshold | margin | LOO top-1 | LOO wrong | scenes P | scenes R | open: stranger photos named | "
              "open recall | hard: stranger photos named | hard recall | hard LOO top-1 / wrong | "
              "mid: stranger photos named | mid recall | mid LOO top-1 / wrong |")
    lines = [header, "|" + "---|" * 14]
    for thr, margin, lo, sc, op, *degraded in rows:
        mark = " **default**" if (thr, margin) == (default.threshold, default.margin) else ""
        cells = [f"{thr:.2f}{mark}", f"{margin:.2f}", f"{lo['top1']:.3f}", f"{lo['wrong_name']:.3f}",
                 f"{sc['precision']:.3f}", f"{sc['recall']:.3f}", f"{op['stranger_photos_named']}/{op['stranger_photos']}",
                 f"{op['recall']:.3f}"]
        for dop, dlo in degraded:
            cells += [f"{dop['stranger_photos_named']}/{dop['stranger_photos']}", f"{dop['recall']:.3f}",
                      f"{dlo['top1']:.3f} / {dlo['wrong_name']:.3f}"]
        lines.append("| " + " | ".join(cells) + " |")
    table = "\n".join(lines)
    print(table)
    chosen = next(r for r in rows if (r[0], r[1]) == (default.threshold, default.margin))
    print("default scenes false names:", chosen[3]["false_names"])
    if args.size_curve:
        curve = size_curve(pipe, items, faces)
        print(curve)
        table += "\n\nSmall faces at equal false-accept rates (`--size-curve`):\n\n" + curve
    if args.write:
        out = Path(__file__).resolve().parent / "RESULTS.md"
        with out.open("a") as fh:
            fh.write(f"\n### Face identification accuracy ({time.strftime('%Y-%m-%d')}, {pipe.device}, "
                     f"{platform.processor() or platform.machine()}, embedder {args.embedder}, "
                     f"resolution-matched references: {args.resolution_match})\n\n"
                     f"Command: `python -m benchmarks.face_id_accuracy --write"
                     f"{' --resolution-match' if args.resolution_match else ''}{' --size-curve' if args.size_curve else ''}`\n\n{table}\n")


if __name__ == "__main__":
    main()

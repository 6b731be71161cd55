"""Face identification accuracy on the shared data, under the conditions events create.

Protocols (all identities from ../shared/data/faces, scenes from ../shared/data/scenes):
  loo       every photo of an identity with >= 2 photos is a probe once, the others are registered
  scenes    every identity registered; precision / recall over (photo, person) pairs on the labelled scenes
  open      every other identity (sorted by name) is left out of the gallery entirely: the photos of the
            left-out people must come out with nobody named; registered people's photos must be named
  hard      the open protocol on degraded probes: faces downscaled to ~30 px high after JPEG
            recompression, and darkened (dim venue)

Every face is embedded once; the matching rules are then evaluated for a grid of thresholds and margins,
so the script also prints the curve the default threshold was chosen from.

    python -m benchmarks.face_id_accuracy [--embedder dlib-resnet-v1] [--write]
"""

from __future__ import annotations

import argparse
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

from influvision.decode.images import load_image
from influvision.faces.pipeline import FacePipeline
from influvision.match import GalleryIndex, MatchSettings, assign_identities, person_distances

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
MATCH_RESOLUTION = False  # --resolution-match: compare small faces with resolution-matched references


@dataclass
class PhotoFaces:
    path: str
    person: str | None        # the identity a faces/ photo shows (None for scenes)
    emb: torch.Tensor         # (F, D)
    size_px: torch.Tensor     # (F,)
    sharpness: torch.Tensor   # (F,)
    main: int                 # index of the largest face, -1 when none
    variants: torch.Tensor | None = None  # (L, D) resolution variants of the main face (references)


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
                              variants))
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
    dist = person_distances(photo.emb, index, photo.size_px if MATCH_RESOLUTION else None)
    ident, _ = assign_identities(dist, torch.zeros(len(eligible), dtype=torch.long), eligible, s)
    return [index.names[i] for i in ident.tolist() if i >= 0]


def loo(faces: list[PhotoFaces], s: MatchSettings) -> dict:
    by_person = defaultdict(list)
    for f in faces:
        by_person[f.person].append(f)
    correct = wrong = unknown = 0
    for person, photos in by_person.items():
        if len(photos) < 2:
            continue
        for probe in photos:
            refs = [f for f in faces if f is not probe]
            index = build_index(refs, {f.person for f in refs})
            names = named_people(PhotoFaces(probe.path, person, probe.emb[probe.main:probe.main + 1],
                                            probe.size_px[probe.main:probe.main + 1],
                                            probe.sharpness[probe.main:probe.main + 1], 0), index, s) \
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--embedder", default="dlib-resnet-v1")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--write", action="store_true", help="append the results to benchmarks/RESULTS.md")
    ap.add_argument("--resolution-match", action="store_true",
                    help="compare small faces with resolution-matched references (MatchSettings.resolution_match)")
    args = ap.parse_args()
    global MATCH_RESOLUTION
    MATCH_RESOLUTION = args.resolution_match
    t0 = time.perf_counter()
    pipe = FacePipeline(args.embedder, args.device)
    items = [(str(p.relative_to(SHARED)), p.parent.name, load_image(p).pixels)
             for p in sorted((SHARED / "faces").glob("*/*")) if p.suffix.lower() in (".jpg", ".png", ".jpeg")]
    faces = embed_all(pipe, items, references=True)
    labels = json.loads((SHARED / "scenes" / "labels.json").read_text())["images"]
    scene_faces = embed_all(pipe, [(str(p.relative_to(SHARED)), None, load_image(p).pixels)
                                   for p in sorted((SHARED / "scenes").glob("*.jpg"))])
    hard_items = [(path, person, degrade(px, float(f.size_px[f.main]) if f.main >= 0 else 100.0))
                  for (path, person, px), f in zip(items, faces, strict=True)]
    hard = embed_all(pipe, hard_items)
    hard_probes = {h.path: h for h in hard}  # degraded probes, matched against clean references
    t_embed = time.perf_counter() - t0

    default = MatchSettings().resolved(pipe.embedder.threshold)
    rows = []
    for thr in (0.40, 0.42, 0.44, 0.46, 0.48, 0.50, 0.52, 0.55, 0.60):
        for margin in (0.0, 0.02, 0.04, 0.06, 0.08):
            s = MatchSettings(threshold=thr, margin=margin, min_face_px=default.min_face_px,
                              min_sharpness=default.min_sharpness)
            rows.append((thr, margin, loo(faces, s), scenes(faces, scene_faces, labels, s), open_set(faces, s),
                         open_set(faces, s, hard_probes)))
    print(f"embedded {len(items)} face photos, {len(scene_faces)} scenes and {len(hard)} degraded copies "
          f"in {t_embed:.1f} s on {pipe.device}")
    header = ("| threshold | margin | LOO top-1 | LOO wrong | scenes P | scenes R | open: stranger photos named | "
              "open recall | hard: stranger photos named | hard recall |")
    lines = [header, "|" + "---|" * 10]
    for thr, margin, lo, sc, op, hd in rows:
        mark = " **default**" if (thr, margin) == (default.threshold, default.margin) else ""
        lines.append(f"| {thr:.2f}{mark} | {margin:.2f} | {lo['top1']:.3f} | {lo['wrong_name']:.3f} | "
                     f"{sc['precision']:.3f} | {sc['recall']:.3f} | {op['stranger_photos_named']}/{op['stranger_photos']} | "
                     f"{op['recall']:.3f} | {hd['stranger_photos_named']}/{hd['stranger_photos']} | {hd['recall']:.3f} |")
    table = "\n".join(lines)
    print(table)
    chosen = next(r for r in rows if (r[0], r[1]) == (default.threshold, default.margin))
    print("default scenes false names:", chosen[3]["false_names"])
    if args.write:
        out = Path(__file__).resolve().parent / "RESULTS.md"
        with out.open("a") as fh:
            fh.write(f"\n### Face identification accuracy ({time.strftime('%Y-%m-%d')}, {pipe.device}, "
                     f"{platform.processor() or platform.machine()}, embedder {args.embedder}, "
                     f"resolution-matched references: {MATCH_RESOLUTION})\n\n"
                     f"Command: `python -m benchmarks.face_id_accuracy --write"
                     f"{' --resolution-match' if MATCH_RESOLUTION else ''}`\n\n{table}\n")


if __name__ == "__main__":
    main()

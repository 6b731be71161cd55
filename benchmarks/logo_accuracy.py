"""Logo detection accuracy on the shared logo photos: precision/recall at IoU 0.5, per method and brand.

Run from the repository root: ``python -m benchmarks.logo_accuracy`` (or ``python benchmarks/logo_accuracy.py``).
Methods: ``sift+silhouette`` (the default detector: the geometric matcher and the outline cue, fused),
``sift`` and ``silhouette`` alone, ``text`` (the OCR text cue alone) and the cues with text added; the text
methods need the optional extra ``ocr`` (rapidocr-onnxruntime) and are skipped without it.

Rules: a detection is a true positive when it overlaps an unmatched labelled box of the same brand with
IoU >= 0.5 (best-scoring detections claim boxes first). Boxes flagged ``difficult`` are neither rewarded
nor penalised: a detection matching one is ignored, and they are not counted in recall. Every other
detection is a false positive, including a second detection of an already matched box. The photo-level
table counts (photo, brand) pairs: a brand is present when it has a non-difficult box in the photo.

``--conditions`` scores the same photos again after degrading them the way event photos are harder (the
labels follow the pixels): ``half`` (half size, JPEG quality 90), ``dark`` (gamma 2 and 80 % brightness, a
dim venue), ``jpeg`` (quality 40), ``hard`` (all three, quality 60) and ``tilt45`` / ``tilt135`` (the photo
foreshortened by 1.6 along a diagonal, as a logo seen from the side and above) and ``busy`` (the photo as one
quarter of a 2 x 2 mosaic with three shared scenes: as much other texture as an event photo, competing for
the matcher's feature budget) and ``large`` (enlarged to a 12-megapixel camera frame, 4032 px: searched the
way large event photos are, on shrunk copies). Settings are judged on all of them, not on the clean photos alone.

``--extra-brands DIR`` registers every SVG or PNG mark in DIR as well (named ``x_<file stem>``; a stem that
is a registered brand's name is skipped): brands the detector was never developed on, none of them labelled
in these photos, so every box of one is false. It measures how the cues hold up with marks of other shapes
(e.g. the simple-icons package: ``npm pack simple-icons@16.37.0``, then ``--extra-brands package/icons
--extra-count 48``; ``--extra-seed`` draws another sample) and what more brands cost per photo.

``--composites N`` also scores the default detector on N synthetic pictures per group of brands (the shared
references; the extra brands when given), each of 1-2 of the group's marks pasted onto a shared scene or face
photo the way ``influvision logos train`` makes its training set (random colours, perspective, blur,
occlusion, lighting, JPEG), with every brand registered: recall there is lower than on real photos, but the
two groups are judged alike, so a cue tuned to the shared marks shows as a gap between them, and a mark that
fits things in photos of people as false boxes.
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import random
import re
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import cv2
import numpy as np
import torch
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from influvision.logos.cues import cue_names  # noqa: E402
from influvision.logos.detect import LogoDetector  # noqa: E402
from influvision.logos.evaluate import match_to_labels, named_detections  # noqa: E402
from influvision.logos.matcher import VIEWS  # noqa: E402
from influvision.logos.references import LogoReference, LogoReferenceError, load_reference  # noqa: E402
from influvision.logos.synth import render_image  # noqa: E402
from influvision.logos.text import ocr_available  # noqa: E402


@dataclass
class Tally:
    tp: int = 0
    fp: int = 0
    gt: int = 0
    per_brand: dict[str, list[int]] = field(default_factory=dict)  # brand -> [gt, tp, fp]
    photo: list[int] = field(default_factory=lambda: [0, 0, 0])  # [present pairs, found pairs, false pairs]

    def brand(self, name: str) -> list[int]:
        return self.per_brand.setdefault(name, [0, 0, 0])


def score_photo(dets: list[tuple[str, list[float], float]], labels: list[dict], tally: Tally) -> None:
    """Add one photo's detections (brand, box, score) against its labels to ``tally``."""
    for lab in labels:
        if not lab.get("difficult"):
            tally.gt += 1
            tally.brand(lab["brand"])[0] += 1
    for brand, j in match_to_labels(dets, labels):
        if j is None:
            tally.fp += 1
            tally.brand(brand)[2] += 1
        elif not labels[j].get("difficult"):
            tally.tp += 1
            tally.brand(brand)[1] += 1
    present = {lab["brand"] for lab in labels if not lab.get("difficult")}
    anywhere = {lab["brand"] for lab in labels}
    reported = {d[0] for d in dets}
    tally.photo[0] += len(present)
    tally.photo[1] += len(present & reported)
    tally.photo[2] += len(reported - anywhere)


def _pr(tp: int, fp: int, gt: int) -> tuple[float, float]:
    return (tp / (tp + fp) if tp + fp else 1.0), (tp / gt if gt else 0.0)


def _degrade(arr: np.ndarray, labels: list[dict], scale: float = 1.0, gamma: float = 1.0,
             quality: int = 90) -> tuple[np.ndarray, list[dict]]:
    img = Image.fromarray(arr)
    if scale != 1.0:
        img = img.resize((max(1, round(img.width * scale)), max(1, round(img.height * scale))), Image.BILINEAR)
    a = np.asarray(img)
    if gamma != 1.0:
        a = ((a.astype(np.float32) / 255.0) ** gamma * 255.0 * 0.8).clip(0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, "JPEG", quality=quality)
    out = np.asarray(Image.open(buf).convert("RGB"))
    return out, [{**lab, "box": [v * scale for v in lab["box"]]} for lab in labels]


def _tilt(arr: np.ndarray, labels: list[dict], phi: float, tilt: float = 1.6) -> tuple[np.ndarray, list[dict]]:
    """Foreshorten by ``tilt`` along the axis at ``phi`` degrees; label boxes become their corners' bounds."""
    h, w = arr.shape[:2]
    rot = np.vstack([cv2.getRotationMatrix2D((w / 2, h / 2), phi, 1.0), [0, 0, 1]])
    back = np.vstack([cv2.getRotationMatrix2D((w / 2, h / 2), -phi, 1.0), [0, 0, 1]])
    m = back @ np.diag([1 / tilt, 1.0, 1.0]) @ rot
    corners = np.array([[0, 0, 1], [w, 0, 1], [0, h, 1], [w, h, 1]], float) @ m.T
    m[:2, 2] -= corners[:, :2].min(axis=0)
    size = tuple(int(v) for v in corners[:, :2].max(axis=0) - corners[:, :2].min(axis=0))
    # A plain border: a reflected one would mirror logos near the edge into unlabelled copies.
    out = cv2.warpAffine(arr, m[:2], size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                         borderValue=(128, 128, 128))
    new = []
    for lab in labels:
        x1, y1, x2, y2 = lab["box"]
        q = np.array([[x1, y1, 1], [x2, y1, 1], [x1, y2, 1], [x2, y2, 1]], float) @ m.T
        new.append({**lab, "box": [*q[:, :2].min(axis=0).tolist(), *q[:, :2].max(axis=0).tolist()]})
    return out, new


def _busy(arr: np.ndarray, labels: list[dict]) -> tuple[np.ndarray, list[dict]]:
    """The photo as one quarter of a 2 x 2 mosaic with three of the shared scenes (crowds, rooms) resized to
    its size: a logo among as much other texture as an event photo has, competing for the matcher's feature
    budget. Which quarter and which scenes follow from the photo's own pixels (deterministic)."""
    h, w = arr.shape[:2]
    fillers = _scene_fillers()
    seed = int(arr[:: max(1, h // 7), :: max(1, w // 7)].sum())
    pos = seed % 4
    canvas = np.zeros((2 * h, 2 * w, 3), np.uint8)
    for j in range(4):
        tile = arr if j == pos else cv2.resize(fillers[(seed + j) % len(fillers)], (w, h),
                                                 interpolation=cv2.INTER_AREA)
        canvas[(j // 2) * h:(j // 2 + 1) * h, (j % 2) * w:(j % 2 + 1) * w] = tile
    dy, dx = (pos // 2) * h, (pos % 2) * w
    return canvas, [{**lab, "box": [lab["box"][0] + dx, lab["box"][1] + dy, lab["box"][2] + dx, lab["box"][3] + dy]}
                    for lab in labels]


def _enlarged(arr: np.ndarray, labels: list[dict], side: int = 4032) -> tuple[np.ndarray, list[dict]]:
    """The photo enlarged to a camera's frame (longer side ``side``, sides multiples of 8, JPEG quality 90): no
    more detail, but searched the way a 12-megapixel event photo is, on copies shrunk to the searches' sizes."""
    h, w = arr.shape[:2]
    s = side / max(h, w)
    size = (max(8, round(w * s / 8) * 8), max(8, round(h * s / 8) * 8))
    big = cv2.resize(arr, size, interpolation=cv2.INTER_CUBIC)
    buf = io.BytesIO()
    Image.fromarray(big).save(buf, "JPEG", quality=90)
    sx, sy = size[0] / w, size[1] / h
    return (np.asarray(Image.open(buf).convert("RGB")),
            [{**lab, "box": [lab["box"][0] * sx, lab["box"][1] * sy, lab["box"][2] * sx, lab["box"][3] * sy]}
             for lab in labels])


@cache
def _scene_fillers() -> tuple[np.ndarray, ...]:
    return tuple(np.asarray(Image.open(p).convert("RGB")) for p in sorted((SHARED / "data" / "scenes").glob("*.jpg")))


CONDITIONS = {
    "clean": lambda a, lab: (a, lab),
    "half": lambda a, lab: _degrade(a, lab, scale=0.5),
    "dark": lambda a, lab: _degrade(a, lab, gamma=2.0),
    "jpeg": lambda a, lab: _degrade(a, lab, quality=40),
    "hard": lambda a, lab: _degrade(a, lab, scale=0.5, gamma=2.0, quality=60),
    "tilt45": lambda a, lab: _tilt(a, lab, 45.0),
    "tilt135": lambda a, lab: _tilt(a, lab, 135.0),
    "busy": _busy,
    "large": lambda a, lab: _enlarged(a, lab),
}


# Words of signs and posters, some holding the letters of registered wordmarks inside longer words.
_SIGN_WORDS = ["summer", "market", "station", "opening", "night", "welcome", "festival", "ticket",
               "office", "avenue", "street", "exit", "garden", "museum", "parking", "north", "south",
               "music", "hotel", "label", "little", "delete", "intelligent", "international", "internet",
               "intent", "local", "vocal", "cocoa", "hold", "delhi", "hill", "shell", "headline"]


def signage_photos(n: int = 30, seed: int = 0) -> list[np.ndarray]:
    """``n`` generated photos of printed words (no registered mark): lines of two words in OpenCV's font,
    random colours, sizes and strokes, lines may overlap. Letters of plain wordmarks ("intel" in
    "intelligent") line up in them, so they test the cues against text."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        bg = rng.integers(0, 256, 3)
        img = np.empty((600, 800, 3), np.uint8)
        img[:] = bg
        for _ in range(8):
            fg = tuple(int(v) for v in (255 - bg + rng.integers(-40, 40, 3)).clip(0, 255))
            words = " ".join(rng.choice(_SIGN_WORDS, 2))
            at = (int(rng.integers(0, 500)), int(rng.integers(40, 600)))
            size, stroke = float(rng.uniform(1.0, 4.0)), int(rng.integers(2, 10))
            cv2.putText(img, words, at, cv2.FONT_HERSHEY_SIMPLEX, size, fg, stroke, cv2.LINE_AA)
        out.append(img)
    return out


def extra_references(folder: Path, taken: set[str], count: int | None = None,
                     seed: int = 0) -> tuple[list[LogoReference], list[str]]:
    """Marks of other brands (every SVG and PNG in ``folder``, or a seeded sample of ``count`` of them) named
    ``x_<stem>``, leaving out stems in ``taken``; and the refusals (a plain or textureless mark)."""
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in (".svg", ".png") and p.stem not in taken)
    if count is not None and count < len(files):
        files = sorted(random.Random(seed).sample(files, count))
    refs, refused = [], []
    for p in files:
        name = "x_" + re.sub(r"[^a-z0-9_-]", "_", p.stem.lower())[:60]
        try:
            refs.append(load_reference(name, p))
        except LogoReferenceError as e:
            refused.append(str(e))
    return refs, refused


def composites(extra: Sequence[LogoReference], n: int, seed: int = 7, side: int = 800) -> dict[str, dict]:
    """Recall and false boxes of the default detector on ``n`` synthetic pictures per group of brands (the
    shared references, and ``extra`` when given), every brand registered (see the module doc)."""
    data = SHARED / "data"
    shared = [load_reference(p.stem, p) for p in sorted((data / "logos" / "refs").glob("*.png"))]
    refs = shared + list(extra)
    names = [r.name for r in refs]
    backgrounds = [np.asarray(Image.open(p).convert("RGB")) for p in
                   sorted((data / "scenes").glob("*.jpg")) + sorted((data / "faces").glob("*/*.jpg"))[::3]]
    det = LogoDetector(refs, text=False)
    groups = {"shared brands": range(len(shared))}
    if extra:
        groups["extra brands"] = range(len(shared), len(refs))
    out: dict[str, dict] = {}
    for group, members in groups.items():
        tally = Tally()
        sub = [refs[i] for i in members]
        for i in range(n):
            img, instances = render_image(sub, list(members), np.random.default_rng([seed, i]), backgrounds, side,
                                          max_logos=2)
            labels = [{"brand": names[t.cls], "box": list(t.box)} for t in instances]
            score_photo(named_detections(det.detect([img]), names), labels, tally)
        p, r = _pr(tally.tp, tally.fp, tally.gt)
        out[group] = {"precision": p, "recall": r, "tp": tally.tp, "fp": tally.fp, "gt": tally.gt,
                      "per_brand": tally.per_brand}
        print(f"\n## composites, {group} ({len(sub)} marks, {n} pictures): precision {p:.2f}, recall {r:.2f} "
              f"({tally.tp} TP, {tally.fp} FP, {tally.gt} marks)")
        print("| brand | marks | found | false |\n|---|---|---|---|")
        for b, (g, tp, fp) in sorted(tally.per_brand.items()):
            print(f"| {b} | {g} | {tp} | {fp} |")
    return out


def run(methods: dict[str, dict], show_brands: bool = True, n_neg_step: int = 3,
        conditions: Sequence[str] = ("clean",), extra: Sequence[LogoReference] = ()) -> dict[str, dict]:
    data = SHARED / "data" / "logos"
    brands_meta = json.loads((data / "scenes" / "labels.json").read_text())
    images = brands_meta["images"]
    refs = [load_reference(p.stem, p) for p in sorted((data / "refs").glob("*.png"))] + list(extra)
    names = [r.name for r in refs]
    n_extra = len(extra)
    extra_names = {r.name for r in extra}
    photos = {f: np.asarray(Image.open(data / "scenes" / f).convert("RGB")) for f in sorted(images)}
    negatives = [np.asarray(Image.open(p).convert("RGB"))
                 for p in sorted((SHARED / "data" / "faces").glob("*/*"))[::n_neg_step]]
    signs = signage_photos()
    results: dict[str, dict] = {}
    for method, kwargs in methods.items():
        t0 = time.perf_counter()
        det = LogoDetector(refs, **kwargs)
        build_s = time.perf_counter() - t0
        per_condition: dict[str, dict] = {}
        for cond in conditions:
            tally = Tally()
            elapsed = 0.0
            distractor_hits = 0
            extra_hits: Counter[str] = Counter()  # boxes of the brands added with --extra-brands: all false
            sources: Counter[str] = Counter()  # detections by the cues that found them
            for f, arr in photos.items():
                arr, labels = CONDITIONS[cond](arr, images[f]["logos"])
                t = time.perf_counter()
                out = det.detect([arr])
                elapsed += time.perf_counter() - t
                dets = named_detections(out, names)
                sources.update("+".join(cue_names(src)) for src in out.columns["source"].tolist())
                distractor_hits += sum(d[0] in ("google", "intel") for d in dets)
                extra_hits.update(d[0] for d in dets if d[0] in extra_names)
                score_photo(dets, labels, tally)
            p, r = _pr(tally.tp, tally.fp, tally.gt)
            pp, pr_ = _pr(tally.photo[1], tally.photo[2], tally.photo[0])
            per_condition[cond] = {"precision": p, "recall": r, "tp": tally.tp, "fp": tally.fp, "gt": tally.gt,
                                   "photo_precision": pp, "photo_recall": pr_,
                                   "ms_per_photo": 1000 * elapsed / len(photos), "distractor_hits": distractor_hits,
                                   "per_brand": tally.per_brand, "extra_brand_hits": dict(extra_hits),
                                   "sources": dict(sources)}
        # Photos of people from faces/: no registered logo is labelled there, so anything found is suspect.
        neg_found = [named_detections(det.detect([arr]), names) for arr in negatives]
        sign_found = [named_detections(det.detect([arr]), names) for arr in signs]
        neg_hits, sign_hits = sum(map(len, neg_found)), sum(map(len, sign_found))
        first = per_condition[conditions[0]]
        results[method] = {**first, "condition": conditions[0], "build_s": build_s,
                           "negative_photos": len(negatives), "negative_hits": neg_hits, "signage_photos": len(signs),
                           "signage_hits": sign_hits, "conditions": per_condition,
                           "brands": len(names), "extra_brands": n_extra,
                           "negative_brands": dict(Counter(d[0] for f in neg_found for d in f)),
                           "signage_brands": dict(Counter(d[0] for f in sign_found for d in f))}
        c = first
        print(f"\n## {method}: precision {c['precision']:.2f}, recall {c['recall']:.2f} ({c['tp']} TP, {c['fp']} FP, "
              f"{c['gt']} boxes; {conditions[0]} photos); photo level P {c['photo_precision']:.2f} / "
              f"R {c['photo_recall']:.2f}; {c['ms_per_photo']:.0f} ms/photo (build {build_s:.1f} s); google/intel "
              f"reported {c['distractor_hits']}x; {neg_hits} detections on {len(negatives)} face photos and "
              f"{sign_hits} on {len(signs)} generated signage photos; "
              f"found by {', '.join(f'{k} {v}' for k, v in sorted(c['sources'].items())) or 'nothing'}")
        if n_extra:
            r = results[method]
            print(f"{len(names)} brands registered ({n_extra} extra, unlabelled); extra brands' boxes: "
                  + "; ".join(f"{cond} {sum(v['extra_brand_hits'].values())} {dict(v['extra_brand_hits'])}"
                              for cond, v in per_condition.items())
                  + f"; brands on face photos {r['negative_brands']}, on signage {r['signage_brands']}")
        if len(conditions) > 1:
            print("| photos | precision | recall | TP / FP | ms/photo |\n|---|---|---|---|---|")
            for cond, c in per_condition.items():
                print(f"| {cond} | {c['precision']:.2f} | {c['recall']:.2f} | {c['tp']} / {c['fp']} | "
                      f"{c['ms_per_photo']:.0f} |")
        if show_brands:
            print("| brand | boxes | found | false |\n|---|---|---|---|")
            for b, (g, tp, fp) in sorted(first["per_brand"].items()):
                print(f"| {b} | {g} | {tp} | {fp} |")
    return results


def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="only the cues and their fusions, with default settings")
    ap.add_argument("--json", type=Path, help="also write the numbers here")
    ap.add_argument("--conditions", default="clean", help="comma-separated photo conditions to score, of "
                    f"{', '.join(CONDITIONS)}, or 'all' (default: clean)")
    ap.add_argument("--extra-brands", type=Path, metavar="DIR",
                    help="also register every SVG/PNG mark in DIR (unlabelled brands: each of their boxes is false)")
    ap.add_argument("--extra-count", type=int, help="a seeded sample of this many marks of --extra-brands")
    ap.add_argument("--extra-seed", type=int, default=0, help="the seed of that sample (default 0)")
    ap.add_argument("--composites", type=int, default=0, metavar="N",
                    help="also score N synthetic pictures per group of brands (shared; extra when given)")
    args = ap.parse_args(argv)
    torch.set_num_threads(2)
    logging.basicConfig(level=logging.WARNING)
    sift_only = {"text": False, "silhouette": False}
    methods: dict[str, dict] = {"sift+silhouette (default)": {"text": False}, "sift": sift_only,
                                "silhouette": {"sift": False, "text": False}}
    if ocr_available():
        methods["text"] = {"sift": False, "silhouette": False, "text": True}
        methods["sift+silhouette+text"] = {"text": True}
    else:
        print("rapidocr-onnxruntime is not installed: the text methods are skipped")
    if not args.quick:
        methods["sift+silhouette, no printed frames"] = {"text": False, "frames": False}
        methods["sift, upright reference only (no tilted views)"] = {**sift_only, "views": VIEWS[:1]}
        methods["sift, no diagonal tilts (upright, 0 and 90 degrees)"] = {
            **sift_only, "views": [v for v in VIEWS if v[1] in (0.0, 90.0)]}
        methods["sift, 4000 photo features"] = {**sift_only, "max_features": 4000}
        methods["sift, looser: ratio 0.85, min_inliers 6"] = {**sift_only, "ratio": 0.85, "min_inliers": 6}
    conditions = list(CONDITIONS) if args.conditions == "all" else args.conditions.split(",")
    unknown = sorted(set(conditions) - set(CONDITIONS))
    if unknown:
        ap.error(f"unknown conditions {unknown}; choose from {', '.join(CONDITIONS)}")
    extra: list[LogoReference] = []
    if args.extra_brands:
        taken = {p.stem for p in (SHARED / "data" / "logos" / "refs").glob("*.png")}
        extra, refused = extra_references(args.extra_brands, taken, args.extra_count, args.extra_seed)
        print(f"{len(extra)} extra brands from {args.extra_brands}; {len(refused)} refused at registration"
              + "".join(f"\n  {e}" for e in refused))
    res = run(methods, conditions=conditions, extra=extra)
    if args.composites:
        res["composites"] = composites(extra, args.composites)
    if args.json:
        args.json.write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()

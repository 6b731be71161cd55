"""Logo detection accuracy on the shared logo photos: precision/recall at IoU 0.5, per method and brand.

Run from the repository root: ``python -m benchmarks.logo_accuracy`` (or ``python benchmarks/logo_accuracy.py``).
Methods: ``sift`` (the geometric matcher alone), ``text`` (the OCR text cue alone) and ``sift+text`` (both,
fused); the text methods need the optional extra ``ocr`` (rapidocr-onnxruntime) and are skipped without it.

Rules: a detection is a true positive when it overlaps an unmatched labelled box of the same brand with
IoU >= 0.5 (best-scoring detections claim boxes first). Boxes flagged ``difficult`` are neither rewarded
nor penalised: a detection matching one is ignored, and they are not counted in recall. Every other
detection is a false positive, including a second detection of an already matched box. The photo-level
table counts (photo, brand) pairs: a brand is present when it has a non-difficult box in the photo.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from influvision.logos.detect import LogoDetector  # noqa: E402
from influvision.logos.evaluate import match_to_labels, named_detections  # noqa: E402
from influvision.logos.matcher import VIEWS  # noqa: E402
from influvision.logos.references import load_reference  # noqa: E402
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


def run(methods: dict[str, dict], show_brands: bool = True, n_neg_step: int = 3) -> dict[str, dict]:
    data = SHARED / "data" / "logos"
    brands_meta = json.loads((data / "scenes" / "labels.json").read_text())
    images = brands_meta["images"]
    refs = [load_reference(p.stem, p) for p in sorted((data / "refs").glob("*.png"))]
    names = [r.name for r in refs]
    photos = {f: np.asarray(Image.open(data / "scenes" / f).convert("RGB")) for f in sorted(images)}
    negatives = [np.asarray(Image.open(p).convert("RGB"))
                 for p in sorted((SHARED / "data" / "faces").glob("*/*"))[::n_neg_step]]
    results: dict[str, dict] = {}
    for method, kwargs in methods.items():
        t0 = time.perf_counter()
        det = LogoDetector(refs, **kwargs)
        build_s = time.perf_counter() - t0
        tally = Tally()
        elapsed = 0.0
        distractor_hits = 0
        sources = [0, 0, 0]  # detections found by SIFT only, text only, both
        for f, arr in photos.items():
            t = time.perf_counter()
            out = det.detect([arr])
            elapsed += time.perf_counter() - t
            dets = named_detections(out, names)
            for src in out.columns["source"].tolist():
                sources[{1: 0, 2: 1, 3: 2}[src]] += 1
            distractor_hits += sum(d[0] in ("google", "intel") for d in dets)
            score_photo(dets, images[f]["logos"], tally)
        # Photos of people from faces/: no registered logo is labelled there, so anything found is suspect.
        neg_hits = sum(len(det.detect([arr])) for arr in negatives)
        p, r = _pr(tally.tp, tally.fp, tally.gt)
        pp, pr_ = _pr(tally.photo[1], tally.photo[2], tally.photo[0])
        results[method] = {"precision": p, "recall": r, "tp": tally.tp, "fp": tally.fp, "gt": tally.gt,
                           "photo_precision": pp, "photo_recall": pr_, "ms_per_photo": 1000 * elapsed / len(photos),
                           "build_s": build_s, "distractor_hits": distractor_hits, "per_brand": tally.per_brand,
                           "negative_photos": len(negatives), "negative_hits": neg_hits,
                           "sources": {"sift_only": sources[0], "text_only": sources[1], "both": sources[2]}}
        print(f"\n## {method}: precision {p:.2f}, recall {r:.2f} ({tally.tp} TP, {tally.fp} FP, {tally.gt} boxes); "
              f"photo level P {pp:.2f} / R {pr_:.2f}; {1000 * elapsed / len(photos):.0f} ms/photo "
              f"(build {build_s:.1f} s); google/intel reported {distractor_hits}x; "
              f"{neg_hits} detections on {len(negatives)} face photos; "
              f"found by SIFT only {sources[0]}, text only {sources[1]}, both {sources[2]}")
        if show_brands:
            print("| brand | boxes | found | false |\n|---|---|---|---|")
            for b in sorted(tally.per_brand):
                g, tp, fp = tally.per_brand[b]
                print(f"| {b} | {g} | {tp} | {fp} |")
    return results


def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="only sift, text and sift+text with default settings")
    ap.add_argument("--json", type=Path, help="also write the numbers here")
    args = ap.parse_args(argv)
    torch.set_num_threads(2)
    logging.basicConfig(level=logging.WARNING)
    methods: dict[str, dict] = {"sift": {"text": False}}
    if ocr_available():
        methods["text"] = {"sift": False, "text": True}
        methods["sift+text"] = {"text": True}
    else:
        print("rapidocr-onnxruntime is not installed: the text and sift+text methods are skipped")
    if not args.quick:
        methods["sift, upright reference only (no tilted views)"] = {"views": VIEWS[:1], "text": False}
        methods["sift, looser: ratio 0.85, min_inliers 6"] = {"ratio": 0.85, "min_inliers": 6, "text": False}
    res = run(methods)
    if args.json:
        args.json.write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()

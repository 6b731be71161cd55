"""Trained logo detector (YOLO on synthetic composites) against the SIFT matcher on the shared logo photos.

Run from the repository root: ``python -m benchmarks.logo_trained [--images N] [--epochs N] [--imgsz N]``.

Trains on all shared brand references composited onto real backgrounds (``scenes/``, ``faces/`` and frames
of ``videos/``; never ``logos/scenes``, which is only scored), seeded. Then scores three methods on
``logos/scenes`` with the scoring of ``benchmarks.logo_accuracy`` (IoU 0.5, difficult boxes ignored):
the trained model alone, the matcher alone, and their union (NMS across both, per photo). Every third
photo of ``faces/`` is kept out of the backgrounds and used as negatives, as in ``logo_accuracy``.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torchvision.ops import nms

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from benchmarks.logo_accuracy import Tally, _pr, score_photo  # noqa: E402
from influvision.logos.detect import LogoDetector  # noqa: E402
from influvision.logos.evaluate import named_detections  # noqa: E402
from influvision.logos.references import load_reference  # noqa: E402
from influvision.logos.synth import load_backgrounds  # noqa: E402
from influvision.logos.trained import (  # noqa: E402
    DEFAULT_MIN_SCORE,
    DetectorBlob,
    TrainedLogoDetector,
    train_detector,
)

Det = tuple[str, list[float], float]


def _rgb(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


def _union(a: list[Det], b: list[Det], iou: float = 0.5) -> list[Det]:
    """Both methods' detections of one photo, NMS across brands and methods (the higher score stays)."""
    both = a + b
    if not both:
        return []
    boxes = torch.tensor([d[1] for d in both], dtype=torch.float32)
    scores = torch.tensor([d[2] for d in both], dtype=torch.float32)
    return [both[i] for i in nms(boxes, scores, iou).tolist()]


def _report(name: str, tally: Tally, ms: float, neg_hits: int, n_neg: int) -> dict:
    p, r = _pr(tally.tp, tally.fp, tally.gt)
    pp, pr_ = _pr(tally.photo[1], tally.photo[2], tally.photo[0])
    print(f"\n## {name}: precision {p:.2f}, recall {r:.2f} ({tally.tp} TP, {tally.fp} FP, {tally.gt} boxes); "
          f"photo level P {pp:.2f} / R {pr_:.2f}; {ms:.0f} ms/photo; {neg_hits} detections on {n_neg} face photos")
    print("| brand | boxes | found | false |\n|---|---|---|---|")
    for b in sorted(tally.per_brand):
        g, tp, fp = tally.per_brand[b]
        print(f"| {b} | {g} | {tp} | {fp} |")
    return {"precision": p, "recall": r, "tp": tally.tp, "fp": tally.fp, "gt": tally.gt, "photo_precision": pp,
            "photo_recall": pr_, "ms_per_photo": ms, "negative_hits": neg_hits, "per_brand": tally.per_brand}


def _above(outs: dict[str, list[Det]], threshold: float) -> dict[str, list[Det]]:
    return {f: [d for d in dets if d[2] >= threshold] for f, dets in outs.items()}


def _sweep(thresholds: Sequence[float], trained: dict[str, list[Det]], matcher: dict[str, list[Det]],
           trained_neg: dict[str, list[Det]], matcher_neg: dict[str, list[Det]], labels: dict) -> list[dict]:
    """Precision and recall of the trained model, alone and in union with the matcher, per score threshold."""
    rows = []
    print("\n## threshold sweep (trained model's minimum score)\n")
    print("| threshold | trained P | trained R | union P | union R | union F1 | detections on face photos |")
    print("|---|---|---|---|---|---|---|")
    for t in sorted(thresholds):
        row: dict[str, float] = {"threshold": t}
        for name, outs in (("trained", _above(trained, t)), ("union", None)):
            if outs is None:
                outs = {f: _union(d, matcher[f]) for f, d in _above(trained, t).items()}
            tally = Tally()
            for f in outs:
                score_photo(outs[f], labels[f]["logos"], tally)
            row[f"{name}_p"], row[f"{name}_r"] = _pr(tally.tp, tally.fp, tally.gt)
        p, r = row["union_p"], row["union_r"]
        row["union_f1"] = 2 * p * r / (p + r) if p + r else 0.0
        row["neg"] = sum(len(_union(d, matcher_neg[f])) for f, d in _above(trained_neg, t).items())
        rows.append(row)
        print(f"| {t:.2f} | {row['trained_p']:.2f} | {row['trained_r']:.2f} | {p:.2f} | {r:.2f} | "
              f"{row['union_f1']:.2f} | {row['neg']} |")
    return rows


def _timed(fn: Callable[[np.ndarray], list[Det]], photos: dict[str, np.ndarray]) -> tuple[dict[str, list[Det]], float]:
    out, elapsed = {}, 0.0
    for f, arr in photos.items():
        t = time.perf_counter()
        out[f] = fn(arr)
        elapsed += time.perf_counter() - t
    return out, 1000 * elapsed / max(1, len(photos))


def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=1000, help="synthetic pictures (train + val)")
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--imgsz", type=int, default=320)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--model", default="yolov8n.yaml", help="ultralytics model yaml (yolov8s.yaml: larger)")
    ap.add_argument("--workers", type=int, default=0, help="synthesis and loader processes (0: CPU cores)")
    ap.add_argument("--minutes", type=float, help="train for this long (epochs fitted to it) instead of --epochs")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    ap.add_argument("--min-score", type=float, default=DEFAULT_MIN_SCORE,
                    help="trained model's score threshold (the library's default)")
    ap.add_argument("--sweep", type=float, nargs="*", default=[0.25, 0.35, 0.5, 0.6, 0.7, 0.8],
                    help="also score the trained model (alone and with the matcher) at these thresholds")
    ap.add_argument("--save", type=Path, help="write the trained blob here (reuse it with --load)")
    ap.add_argument("--load", type=Path, help="score a blob saved with --save instead of training")
    ap.add_argument("--json", type=Path, help="also write the numbers here")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.WARNING)

    labels = json.loads((SHARED / "logos" / "scenes" / "labels.json").read_text())["images"]
    refs = [load_reference(p.stem, p) for p in sorted((SHARED / "logos" / "refs").glob("*.png"))]
    face_files = sorted((SHARED / "faces").glob("*/*"))
    negatives = face_files[::3]
    results: dict[str, dict] = {}
    if args.load:
        data = args.load.read_bytes()
        blob = DetectorBlob(data, args.load.with_suffix(".sha256").read_text().strip())
        train_s = 0.0
    else:
        held_out = set(negatives)
        bg_paths = [SHARED / "scenes", SHARED / "videos"] + [f for f in face_files if f not in held_out]
        backgrounds = load_backgrounds(bg_paths)
        t0 = time.perf_counter()
        res = train_detector(refs, backgrounds=backgrounds, n_images=args.images, epochs=args.epochs,
                             imgsz=args.imgsz, batch=args.batch, seed=args.seed, device=args.device,
                             model=args.model, workers=args.workers, max_minutes=args.minutes,
                             progress=lambda m: print(f"[train] {m}", flush=True))
        train_s = time.perf_counter() - t0
        blob = res.blob
        print(f"\ntraining: {args.images} pictures ({len(backgrounds)} backgrounds), {args.epochs} epochs at "
              f"{args.imgsz} px: {train_s:.0f} s (synthetic set {res.synth_s:.0f} s); synthetic val {res.metrics}")
        results["training"] = {"seconds": train_s, "synth_s": res.synth_s, "metrics": res.metrics,
                               "args": {k: str(v) for k, v in vars(args).items()}}
        if args.save:
            args.save.write_bytes(blob.data)
            args.save.with_suffix(".sha256").write_text(blob.sha256 + "\n")

    floor = min([args.min_score, *args.sweep])
    trained = TrainedLogoDetector(blob, device=args.device, min_score=floor)
    matcher = LogoDetector(refs, device=args.device)
    photos = {f: _rgb(SHARED / "logos" / "scenes" / f) for f in sorted(labels)}
    neg_photos = {str(p): _rgb(p) for p in negatives}

    def run_trained(arr: np.ndarray) -> list[Det]:
        return named_detections(trained.detect([arr]), trained.brands)

    def run_matcher(arr: np.ndarray) -> list[Det]:
        return named_detections(matcher.detect([arr]), matcher.brands)

    t_all, t_ms = _timed(run_trained, photos)
    m_out, m_ms = _timed(run_matcher, photos)
    t_neg_all, m_neg = _timed(run_trained, neg_photos)[0], _timed(run_matcher, neg_photos)[0]
    results["sweep"] = _sweep(args.sweep, t_all, m_out, t_neg_all, m_neg, labels)
    t_out, t_neg = _above(t_all, args.min_score), _above(t_neg_all, args.min_score)
    u_neg = sum(len(_union(t_neg[f], m_neg[f])) for f in neg_photos)
    for name, outs, ms, neg in (
            ("trained only", t_out, t_ms, sum(map(len, t_neg.values()))),
            ("matcher only", m_out, m_ms, sum(map(len, m_neg.values()))),
            ("union (NMS across both)", {f: _union(t_out[f], m_out[f]) for f in photos}, t_ms + m_ms, u_neg)):
        tally = Tally()
        for f in photos:
            score_photo(outs[f], labels[f]["logos"], tally)
        results[name] = _report(name, tally, ms, neg, len(neg_photos))
    print(f"\ntraining time {train_s:.0f} s; trained model {len(blob.data) / 1e6:.1f} MB; "
          f"min_score {args.min_score}; inference at {trained.imgsz} px")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1, default=str))


if __name__ == "__main__":
    main()

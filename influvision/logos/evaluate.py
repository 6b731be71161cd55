"""Box-level precision and recall of a logo detector on labelled photos (IoU 0.5, difficult boxes ignored).

Used by ``influvision logos train`` to decide whether the trained model or the matcher is better. The
rules are those of ``benchmarks/logo_accuracy.py``: best-scoring detections claim boxes first; a detection
on a ``difficult`` box is neither rewarded nor penalised; any other unmatched detection is false.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from ..boxes import box_iou
from ..decode.images import load_image
from ..errors import InfluvisionError
from ..types import Logos

IOU = 0.5


class _Detector(Protocol):
    @property
    def brands(self) -> list[str]: ...

    def detect(self, images: Sequence[np.ndarray]) -> Logos: ...


class _Thresholded(_Detector, Protocol):
    min_score: float


@dataclass
class Score:
    """True/false positives and labelled boxes, summed over photos."""

    tp: int = 0
    fp: int = 0
    gt: int = 0

    @property
    def precision(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else 1.0

    @property
    def recall(self) -> float:
        return self.tp / self.gt if self.gt else 0.0

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0

    def as_dict(self) -> dict[str, float]:
        return {"precision": self.precision, "recall": self.recall, "f1": self.f1, "tp": self.tp, "fp": self.fp,
                "gt": self.gt}

    def __str__(self) -> str:
        return (f"precision {self.precision:.2f}, recall {self.recall:.2f} "
                f"({self.tp} TP, {self.fp} FP, {self.gt} boxes)")


def match_to_labels(dets: Iterable[tuple[str, Sequence[float], float]],
                    labels: Sequence[dict]) -> list[tuple[str, int | None]]:
    """Best-scoring detections first, each (brand, box, score) claims the unclaimed label of its brand that it
    overlaps most, if that IoU is at least ``IOU``. Returns (brand, label index or None) per detection."""
    used = [False] * len(labels)
    out: list[tuple[str, int | None]] = []
    for brand, box, _ in sorted(dets, key=lambda d: -d[2]):
        best, best_j = 0.0, -1
        for j, lab in enumerate(labels):
            if lab["brand"] == brand and not used[j]:
                v = box_iou(box, lab["box"])
                if v > best:
                    best, best_j = v, j
        if best >= IOU:
            used[best_j] = True
            out.append((brand, best_j))
        else:
            out.append((brand, None))
    return out


def score_photo(dets: Iterable[tuple[str, Sequence[float], float]], labels: Sequence[dict], score: Score) -> None:
    """Add one photo's detections (brand, box, score) against its labels ({brand, box, difficult?})."""
    score.gt += sum(not lab.get("difficult") for lab in labels)
    for _, j in match_to_labels(dets, labels):
        if j is None:
            score.fp += 1
        else:
            score.tp += not labels[j].get("difficult")


def named_detections(found: Logos, brands: Sequence[str]) -> list[tuple[str, list[float], float]]:
    """One photo's detections as (brand name, box, score), the form the scoring functions take."""
    return [(brands[b], box, s) for b, box, s in
            zip(found.brand.tolist(), found.boxes.tolist(), found.scores.tolist(), strict=True)]


def evaluate(detector: _Detector, photos: Sequence[tuple[np.ndarray, Sequence[dict]]]) -> Score:
    """Score a detector (``detect(images) -> Logos`` and ``brands``) on (photo, labels) pairs, one at a time."""
    score = Score()
    for img, labels in photos:
        score_photo(named_detections(detector.detect([img]), detector.brands), labels, score)
    return score


def read_yolo_split(root: str | Path, split: str, names: Sequence[str]) -> list[tuple[np.ndarray, list[dict]]]:
    """A YOLO-format split (``images/<split>``, ``labels/<split>``) as (photo, labels) pairs in pixels."""
    out = []
    for img_path in sorted((Path(root) / "images" / split).glob("*.jpg")):
        img = load_image(img_path, verify=False).pixels
        h, w = img.shape[:2]
        labels = []
        txt = Path(root) / "labels" / split / f"{img_path.stem}.txt"
        for line in txt.read_text().splitlines() if txt.exists() else []:
            c, cx, cy, bw, bh = line.split()
            x, y, ww, hh = float(cx) * w, float(cy) * h, float(bw) * w, float(bh) * h
            labels.append({"brand": names[int(c)], "box": [x - ww / 2, y - hh / 2, x + ww / 2, y + hh / 2]})
        out.append((img, labels))
    return out


def read_labelled_photos(labels_json: str | Path, brands: Sequence[str]) -> list[tuple[np.ndarray, list[dict]]]:
    """Photos listed in a labels.json (``images[file] = {logos: [{brand, box, difficult?}]}``, files beside it).

    Boxes of brands not in ``brands`` are dropped (nothing could find them).

    Raises:
        InfluvisionError: the file is missing, not JSON, or lacks ``images``; a listed photo is missing.
    """
    path = Path(labels_json)
    try:
        meta = json.loads(path.read_text())
        images = meta["images"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise InfluvisionError(f"{path}: not a logo labels.json with an 'images' table ({e})") from e
    known = set(brands)
    out = []
    for name in sorted(images):
        img = load_image(path.parent / name).pixels
        out.append((img, [lab for lab in images[name].get("logos", []) if lab.get("brand") in known]))
    return out


def sweep_min_score(detector: _Thresholded, photos: Sequence[tuple[np.ndarray, Sequence[dict]]],
                    thresholds: Sequence[float]) -> dict[float, Score]:
    """Score a detector with a ``min_score`` attribute at several thresholds, running it once per photo.

    Its detections at the lowest threshold are filtered for the higher ones; that equals running it at
    each threshold because non-maximum suppression keeps a box only against higher-scoring ones.
    """
    saved = detector.min_score
    detector.min_score = min(thresholds)
    try:
        runs = [(named_detections(detector.detect([img]), detector.brands), labels) for img, labels in photos]
    finally:
        detector.min_score = saved
    scores = {}
    for t in sorted(thresholds):
        scores[t] = Score()
        for dets, labels in runs:
            score_photo([d for d in dets if d[2] >= t], labels, scores[t])
    return scores


def best_min_score(scores: dict[float, Score]) -> float | None:
    """The threshold of the highest F1; among equals the highest threshold (fewer false logos). None when no
    threshold finds any labelled logo (an F1 of 0 everywhere calibrates nothing)."""
    best = max(scores, key=lambda t: (round(scores[t].f1, 6), t))
    return best if scores[best].f1 > 0 else None

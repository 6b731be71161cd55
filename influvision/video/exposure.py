"""Exposure arithmetic on time intervals: pure functions, no state, easy to audit.

Every interval is half-open ``[start_s, end_s)`` in seconds from the start of the video, held as a float64
array of shape (K, 2). An empty set of intervals is a (0, 2) array. Functions accept anything
``np.asarray`` turns into (K, 2) (lists of pairs included) and return normalised arrays: sorted,
non-overlapping, no empty pieces.

Exposure is always the length of a *union*: two tracks of the same person that overlap in time count once,
never as the sum of their lengths.
"""

from __future__ import annotations

import csv
import io
import itertools
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import ShapeError
from ..files import write_text_atomically

#: Default bridge between two pieces of one person's exposure (seconds). Gaps shorter than this are
#: counted as on screen: at 10 sampled frames per second it forgives up to four consecutive frames without
#: a detection (a turned head, motion blur) but never a real absence of half a second or more. Measured
#: on the labelled clips: see docs/video.md.
DEFAULT_MAX_GAP_S = 0.5

Intervals = np.ndarray  # (K, 2) float64, [start_s, end_s)


def as_intervals(intervals: object) -> Intervals:
    """Validate and convert to a (K, 2) float64 array, dropping empty or reversed pieces.

    Raises:
        ShapeError: not (K, 2), or a non-finite value.
    """
    arr = np.asarray(intervals, dtype=np.float64)
    if arr.size == 0:
        return np.zeros((0, 2), dtype=np.float64)
    if arr.ndim != 2 or arr.shape[1] != 2:
        raise ShapeError("intervals", "(K, 2) [start_s, end_s) pairs", arr.shape)
    if not np.isfinite(arr).all():
        raise ShapeError("intervals", "finite seconds", "a NaN or infinite value")
    return arr[arr[:, 1] > arr[:, 0]]


def union_intervals(intervals: object, max_gap_s: float = 0.0) -> Intervals:
    """Union of intervals, also bridging gaps *shorter* than ``max_gap_s`` seconds.

    Touching intervals (``a.end == b.start``) always merge. Returns (J, 2) sorted and disjoint; (0, 2) for
    no input.
    """
    arr = as_intervals(intervals)
    if len(arr) == 0:
        return arr
    if max_gap_s < 0:
        raise ValueError(f"max_gap_s must be >= 0, got {max_gap_s}")
    arr = arr[np.argsort(arr[:, 0], kind="stable")]
    # Running maximum of the ends: a new piece starts where a start lies beyond every earlier end (+gap).
    ends = np.maximum.accumulate(arr[:, 1])
    gap = arr[1:, 0] - ends[:-1]
    new = np.concatenate([[True], (gap > 0) & ~(gap < max_gap_s)])
    starts = arr[new, 0]
    group = np.cumsum(new) - 1
    out_ends = np.full(len(starts), -np.inf)
    np.maximum.at(out_ends, group, arr[:, 1])
    return np.stack([starts, out_ends], axis=1)


def total_seconds(intervals: object) -> float:
    """Length of the union of the intervals in seconds (overlaps counted once)."""
    u = union_intervals(intervals)
    return float((u[:, 1] - u[:, 0]).sum())


def exposure_seconds(intervals: object, max_gap_s: float = DEFAULT_MAX_GAP_S) -> float:
    """On-screen seconds: length of the union after bridging gaps shorter than ``max_gap_s``."""
    return total_seconds(union_intervals(intervals, max_gap_s))


def intersect_intervals(a: object, b: object) -> Intervals:
    """Intersection of two interval sets (each is unioned first). Returns (J, 2)."""
    ua, ub = union_intervals(a), union_intervals(b)
    if len(ua) == 0 or len(ub) == 0:
        return np.zeros((0, 2), dtype=np.float64)
    # All pairwise overlaps at once: K_a x K_b is small (a few hundred pieces per video at most).
    lo = np.maximum(ua[:, None, 0], ub[None, :, 0])
    hi = np.minimum(ua[:, None, 1], ub[None, :, 1])
    keep = hi > lo
    return union_intervals(np.stack([lo[keep], hi[keep]], axis=1))


def subtract_intervals(a: object, b: object) -> Intervals:
    """The parts of ``a`` not covered by ``b``. Returns (J, 2)."""
    ua, ub = union_intervals(a), union_intervals(b)
    if len(ua) == 0 or len(ub) == 0:
        return ua
    lo, hi = min(ua[0, 0], ub[0, 0]), max(ua[-1, 1], ub[-1, 1])
    # Complement of b within [lo, hi], then intersect with a.
    edges = np.concatenate([[lo], ub.ravel(), [hi]]).reshape(-1, 2)
    return intersect_intervals(ua, edges)


def interval_iou(a: object, b: object) -> float:
    """Temporal IoU: |a ∩ b| / |a ∪ b| in seconds; 1.0 when both are empty."""
    inter = total_seconds(intersect_intervals(a, b))
    union = total_seconds(np.concatenate([as_intervals(a), as_intervals(b)]))
    return 1.0 if union == 0 else inter / union


def alone_seconds(person_intervals: Mapping[str, object]) -> dict[str, float]:
    """Seconds each person is on screen with no other *listed* (registered) person.

    Unknown faces do not count as company: pass only registered people.
    """
    out: dict[str, float] = {}
    for name, iv in person_intervals.items():
        others = [as_intervals(v) for k, v in person_intervals.items() if k != name]
        rest = np.concatenate(others) if others else np.zeros((0, 2))
        out[name] = total_seconds(subtract_intervals(iv, rest))
    return out


def together_seconds(person_intervals: Mapping[str, object]) -> dict[tuple[str, str], float]:
    """Seconds each pair of people is on screen at the same time; keys are name pairs in sorted order.

    Pairs that never meet are left out.
    """
    out: dict[tuple[str, str], float] = {}
    for a, b in itertools.combinations(sorted(person_intervals), 2):
        s = total_seconds(intersect_intervals(person_intervals[a], person_intervals[b]))
        if s > 0:
            out[(a, b)] = s
    return out


@dataclass(frozen=True)
class TimelineRow:
    """One cell of the per-second timeline: ``person`` is visible for ``fraction`` of ``[second, second+1)``."""

    second: int
    person: str
    fraction: float


def timeline(person_intervals: Mapping[str, object], duration_s: float) -> list[TimelineRow]:
    """Per whole second of the video and per person, the fraction of that second the person is visible.

    Args:
        person_intervals: person -> (K, 2) intervals (already bridged as they should be counted).
        duration_s: video length in seconds; the last, partial second is measured against a full second.

    Returns:
        Rows sorted by second then person; only rows with a fraction > 0. Empty when nobody appears.
    """
    n_sec = max(0, math.ceil(duration_s - 1e-9))
    rows: list[TimelineRow] = []
    if n_sec == 0:
        return rows
    bins = np.arange(n_sec, dtype=np.float64)
    for person in sorted(person_intervals):
        u = union_intervals(person_intervals[person])
        if len(u) == 0:
            continue
        # Overlap of every interval with every one-second bin, summed per bin.
        lo = np.maximum(u[None, :, 0], bins[:, None])
        hi = np.minimum(u[None, :, 1], bins[:, None] + 1.0)
        frac = np.clip(hi - lo, 0.0, None).sum(axis=1)
        for s in np.flatnonzero(frac > 1e-9):
            rows.append(TimelineRow(int(s), person, round(float(min(frac[s], 1.0)), 4)))
    rows.sort(key=lambda r: (r.second, r.person))
    return rows


def timeline_csv(rows: Iterable[TimelineRow], path: str | Path | None = None) -> str:
    """The timeline as CSV text with header ``second,person,fraction``; also written to ``path`` if given."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["second", "person", "fraction"])
    for r in rows:
        w.writerow([r.second, r.person, f"{r.fraction:.4f}"])
    text = buf.getvalue()
    if path is not None:
        write_text_atomically(path, text)
    return text


def face_area_share(boxes: np.ndarray, width: int, height: int) -> np.ndarray:
    """Share of the frame area each face box covers (boxes clipped to the frame).

    Args:
        boxes: (N, 4) x1, y1, x2, y2 in frame pixels.
        width, height: frame size in pixels.
    Returns:
        (N,) float64 in [0, 1]; (0,) for no boxes.
    """
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    if width <= 0 or height <= 0:
        return np.zeros(len(b))
    w = np.clip(b[:, 2], 0, width) - np.clip(b[:, 0], 0, width)
    h = np.clip(b[:, 3], 0, height) - np.clip(b[:, 1], 0, height)
    return np.clip(w, 0, None) * np.clip(h, 0, None) / float(width * height)

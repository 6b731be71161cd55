"""Tallies: photo counts, exposure seconds, prominence and co-appearance, from the per-media results.

Pure functions over the report's media entries, so every number can be re-derived from the boxes listed
in the report: a person's ``photo_count`` is the number of distinct (non-duplicate) photos with a face
box carrying their name; video seconds are the union of that person's track intervals.
"""

from __future__ import annotations

import math
from collections import defaultdict
from itertools import combinations

import cv2
import numpy as np

from .report import MediaEntry, NearMiss, PairTally, SubjectTally
from .resample import block_mean
from .video.exposure import subtract_intervals, total_seconds

# A logo counts as "with" a person when the gap between the logo box and the face box is at most this
# many face heights: on their clothing (below the face), held beside them, or on a backdrop behind them.
NEAR_FACE_HEIGHTS = 3.0
# Faces and tracks counted for nobody are listed for review (Report.near_misses) when their nearest registered
# person is at most this far over the threshold. Strangers land here too (on the shared clips the closest
# unregistered tracks read 0.514-0.529 against the 0.5 threshold), so a near miss is a question, never a count.
NEAR_MISS_BAND = 0.05
# Unnamed tracks whose detections count for a named track of the person (docs/video.md, rules 5 and 6).
_COUNTED_FOR_SOMEONE = ("handed_over", "continues_named")


def prominence(box: list[float], width: int, height: int) -> tuple[float, float]:
    """(area share of the image, centrality): centrality is 1 at the image centre, 0 at a corner."""
    x1, y1, x2, y2 = box
    area = max(0.0, x2 - x1) * max(0.0, y2 - y1)
    share = area / max(1.0, float(width * height))
    cx, cy = (x1 + x2) / 2 - width / 2, (y1 + y2) / 2 - height / 2
    centrality = 1.0 - math.hypot(cx, cy) / max(1e-9, math.hypot(width / 2, height / 2))
    return round(share, 6), round(max(0.0, min(1.0, centrality)), 4)


# Logo sharpness is expressed per this many pixels of the box's longer side: for one crisp mark the Laplacian's
# variance falls as the mark's size grows (edges are a smaller share of a large box's pixels), so it is scaled by
# side / this. Before, boxes were shrunk to this side and smaller ones left as they were: the shared FedEx mark
# scored 5.33 at 32 px and 0.56 at 256 px and more; now 0.56-0.70 from 32 to 1024 px (drawn at whole fractions
# of its reference; a rendering softened by resampling at other sizes scores up to about half of that).
SHARPNESS_SIDE = 256


def region_sharpness(pixels: np.ndarray, box: list[float]) -> float:
    """var(Laplacian) / max(var(grey), 25) of an (H, W, 3) uint8 image inside ``box`` (x1, y1, x2, y2), times
    the box's longer side / :data:`SHARPNESS_SIDE`.

    The face chips' measure (:func:`~influvision.faces.quality.chip_sharpness`) on the box's own pixels (a box
    of twice :data:`SHARPNESS_SIDE` or more averaged in whole blocks first): a blurred, heavily compressed or
    enlarged logo scores low, and one crisp mark about the same at any size (a 64 px mark enlarged to 256 px
    scores a thirtieth of its crisp rendering at 256 px). 0 for a box under 3 px on a side.
    """
    h, w = pixels.shape[:2]
    x1, y1 = max(0, int(math.floor(box[0]))), max(0, int(math.floor(box[1])))
    x2, y2 = min(w, int(math.ceil(box[2]))), min(h, int(math.ceil(box[3])))
    if x2 - x1 < 3 or y2 - y1 < 3:
        return 0.0
    grey = cv2.cvtColor(np.ascontiguousarray(pixels[y1:y2, x1:x2]), cv2.COLOR_RGB2GRAY)
    k = min(max(grey.shape) // SHARPNESS_SIDE, min(grey.shape) // 3)  # a thin box keeps 3 px across
    if k >= 2:  # whole k x k blocks (a non-whole factor would soften the edges it measures); bounds the cost
        grey = block_mean(grey, k)
    grey = grey.astype(np.float32)
    lap = cv2.Laplacian(grey, cv2.CV_32F, ksize=1)[1:-1, 1:-1]
    return round(float(lap.var()) / max(float(grey.var()), 25.0) * max(grey.shape) / SHARPNESS_SIDE, 4)


def box_gap(a: list[float], b: list[float]) -> float:
    """Distance between two boxes' edges (0 when they overlap), in pixels."""
    dx = max(0.0, max(a[0], b[0]) - min(a[2], b[2]))
    dy = max(0.0, max(a[1], b[1]) - min(a[3], b[3]))
    return math.hypot(dx, dy)


def logo_near_face(logo_box: list[float], face_box: list[float]) -> bool:
    face_h = max(1.0, face_box[3] - face_box[1])
    return box_gap(logo_box, face_box) <= NEAR_FACE_HEIGHTS * face_h


def union_length(intervals: list[list[float]]) -> float:
    """Total length of a union of [start, end) intervals (overlaps counted once)."""
    total, end = 0.0, -math.inf
    for s, e in sorted(intervals):
        if e <= end:
            continue
        total += e - max(s, end)
        end = e
    return total


def tally_photos(media: list[MediaEntry]) -> tuple[dict[str, SubjectTally], dict[str, SubjectTally],
                                                   list[PairTally], list[PairTally]]:
    """Per person and brand tallies over photos, plus people-together and person-with-brand pairs.

    Duplicates (``duplicate_of`` set) and failed media are not counted.
    """
    people: dict[str, SubjectTally] = defaultdict(SubjectTally)
    brands: dict[str, SubjectTally] = defaultdict(SubjectTally)
    sims: dict[str, list[float]] = defaultdict(list)
    shares: dict[str, list[float]] = defaultdict(list)
    centres: dict[str, list[float]] = defaultdict(list)
    sharps: dict[str, list[float]] = defaultdict(list)
    together: dict[tuple[str, str], PairTally] = {}
    co: dict[tuple[str, str], PairTally] = {}
    for m in media:
        if m.kind != "photo" or (m.error and not m.frames_analysed) or m.duplicate_of:
            continue
        named = {f.identity: f for f in m.faces if f.identity}
        for name, f in named.items():
            t = people[name]
            t.photo_count += 1
            t.photos.append(m.path)
            sims[name].append(f.similarity)
            shares[name].append(f.area_share)
        for a, b in combinations(sorted(named), 2):
            p = together.setdefault((a, b), PairTally(a=a, b=b))
            p.photo_count += 1
            p.photos.append(m.path)
        seen_brands = {}
        for lg in m.logos:
            seen_brands.setdefault(lg.brand, []).append(lg)
        for brand, logos in seen_brands.items():
            t = brands[brand]
            t.photo_count += 1
            t.photos.append(m.path)
            shares["\0" + brand].extend(lg.area_share for lg in logos)
            centres[brand].extend(lg.centrality for lg in logos)
            sharps[brand].extend(lg.sharpness for lg in logos if lg.sharpness is not None)
            sims["\0" + brand].extend(lg.score for lg in logos)
            for name, f in named.items():
                p = co.setdefault((name, brand), PairTally(a=name, b=brand))
                p.photo_count += 1
                p.photos.append(m.path)
                if any(logo_near_face(lg.box, f.box) for lg in logos):
                    p.with_count += 1
    for name, t in people.items():
        t.mean_similarity = round(sum(sims[name]) / len(sims[name]), 4)
        t.best_similarity = round(max(sims[name]), 4)
        t.mean_area_share = round(sum(shares[name]) / len(shares[name]), 6)
    for brand, t in brands.items():
        key = "\0" + brand
        t.mean_similarity = round(sum(sims[key]) / len(sims[key]), 4)
        t.best_similarity = round(max(sims[key]), 4)
        t.mean_area_share = round(sum(shares[key]) / len(shares[key]), 6)
        t.mean_centrality = round(sum(centres[brand]) / len(centres[brand]), 4)
        if sharps[brand]:
            t.mean_sharpness = round(sum(sharps[brand]) / len(sharps[brand]), 4)
    return dict(people), dict(brands), sorted(together.values(), key=lambda p: (p.a, p.b)), \
        sorted(co.values(), key=lambda p: (p.a, p.b))


def near_misses(media: list[MediaEntry], threshold: float, band: float = NEAR_MISS_BAND) -> list[NearMiss]:
    """Faces in photos and tracks in videos counted for nobody whose nearest registered person is within
    ``threshold + band``: a photo face whose person is not named elsewhere in that photo, a track for the part of
    its time the person is not already counted on screen. Duplicates are left out."""
    out: list[NearMiss] = []
    for m in media:
        if m.duplicate_of:
            continue
        named = {f.identity for f in m.faces if f.identity}
        for f in m.faces:
            if f.identity is None and f.nearest and f.nearest not in named and f.distance is not None \
                    and f.distance <= threshold + band:
                out.append(NearMiss(person=f.nearest, path=m.path, kind="face", box=f.box, distance=f.distance,
                                    over_threshold=round(f.distance - threshold, 4), status=f.status))
        for t in m.tracks or []:
            if t.identity is not None or not t.nearest or t.distance is None or t.distance > threshold + band \
                    or t.status in _COUNTED_FOR_SOMEONE:
                continue
            counted = (m.people or {}).get(t.nearest)
            left = subtract_intervals(t.intervals, counted.intervals if counted else [])
            seconds = round(total_seconds(left), 3)
            if seconds > 0:
                out.append(NearMiss(person=t.nearest, path=m.path, kind="track", track_id=t.track_id,
                                    distance=t.distance, over_threshold=round(t.distance - threshold, 4),
                                    status=t.status, seconds=seconds,
                                    intervals=[[round(a, 3), round(b, 3)] for a, b in left.tolist()]))
    return out

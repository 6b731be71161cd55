"""Logo tracks: a brand's detections in successive searched frames linked into tracks, counted once confirmed.

Logos are searched at a few frames per second (:data:`~influvision.video.report.LOGO_FPS`). A detection in one
frame links to a track of the same brand whose last box it overlaps, when no shot cut lies between them and
at most one searched frame was missed. A track counts towards the brand's seconds only when it is confirmed:
seen in at least :data:`MIN_FRAMES` searched frames, or once with a score of at least :data:`SURE_SCORE`.
A lone weak detection in a single frame is the typical false brand (a pattern that happens to fit the
reference once); such tracks stay in the report, marked not counted, so the evidence is still there.

A mark that moves more than about its own width between searched frames (a logo on a passing car, a shirt
crossing the frame) does not overlap itself: each sighting starts a track of its own. Such single sightings
are joined when three or more in successive searched frames move at a steady velocity with a steady size
(:func:`_join_moving`): one place predicted from the two before it within half the mark's size. Two unrelated
weak boxes half a second apart are not joined (two points always fit a velocity), so the 2-frame rule keeps
its meaning for them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..boxes import box_iou
from .exposure import union_intervals

MIN_FRAMES = 2
# Matcher scores reach 0.8 at about 30 RANSAC inliers with the reference's shape clearly visible.
SURE_SCORE = 0.8
# Boxes of one logo in two searched frames overlap at least this much (it may move or zoom between them).
MIN_LINK_IOU = 0.1
# A moving mark's sightings (_join_moving): width and height change at most this factor from one searched frame
# to the next, and each place is predicted from the two before it within this share of the mark's size.
MOVING_MAX_SCALE = 1.5
MOVING_MAX_MISS = 0.5
# Sightings in a row needed before a moving mark's single sightings are joined.
MOVING_MIN_FRAMES = 3


@dataclass
class LogoDetection:
    """One brand box in one searched frame."""

    pts_s: float
    duration_s: float
    brand: str
    box: list[float]
    score: float
    area_share: float


@dataclass
class LogoTrack:
    """A brand's detections linked over searched frames (at most one per frame)."""

    track_id: int
    brand: str
    detections: list[LogoDetection] = field(default_factory=list)
    moving: bool = False  # joined from single sightings of a mark moving steadily (_join_moving)

    @property
    def frames(self) -> int:
        return len(self.detections)

    @property
    def best_score(self) -> float:
        return max(d.score for d in self.detections)

    @property
    def counted(self) -> bool:
        return self.frames >= MIN_FRAMES or self.best_score >= SURE_SCORE

    @property
    def status(self) -> str:
        if self.frames >= MIN_FRAMES:
            moving = " moving steadily" if self.moving else ""
            return f"counted: seen{moving} in {self.frames} searched frames"
        if self.best_score >= SURE_SCORE:
            return f"counted: one frame, score {self.best_score:.2f} >= {SURE_SCORE}"
        return f"not counted: one frame, score {self.best_score:.2f} < {SURE_SCORE}"

    def intervals(self, max_gap_s: float) -> np.ndarray:
        """(K, 2) [start_s, end_s) of this track, gaps shorter than ``max_gap_s`` bridged."""
        return union_intervals([(d.pts_s, d.pts_s + d.duration_s) for d in self.detections], max_gap_s)


def link_logo_tracks(detections: list[LogoDetection], cuts_s: list[float], step_s: float) -> list[LogoTrack]:
    """Link detections into tracks, greedily by overlap, frame by frame in time order.

    Args:
        detections: every brand box of every searched frame, any order.
        cuts_s: shot cut times; no track spans a cut.
        step_s: time between searched frames; a track tolerates one missed frame: a gap up to 1.5 ``step_s``,
            as searched frames fall on whole source frames (at 29.97 or 25 frames per second one missed
            frame leaves a gap of 0.5005 or 0.52 s for a step of 0.5 s), while two missed frames close it.

    Returns:
        Tracks in order of their first detection, ``track_id`` from 0.
    """
    tracks: list[LogoTrack] = []
    open_tracks: list[LogoTrack] = []
    cuts = np.asarray(sorted(cuts_s), dtype=np.float64)
    by_time: dict[float, list[LogoDetection]] = {}
    for d in detections:
        by_time.setdefault(d.pts_s, []).append(d)
    for t in sorted(by_time):
        # Tracks whose last frame is too old, or lies before a cut that precedes t, are closed.
        def alive(tr: LogoTrack, t: float = t) -> bool:
            last = tr.detections[-1]
            if t - (last.pts_s + last.duration_s) > 1.5 * step_s:
                return False
            return not np.any((cuts > last.pts_s + 1e-6) & (cuts <= t + 1e-6))

        open_tracks = [tr for tr in open_tracks if alive(tr)]
        pairs = sorted(((box_iou(tr.detections[-1].box, d.box), i, j)
                        for i, tr in enumerate(open_tracks) for j, d in enumerate(by_time[t])
                        if tr.brand == d.brand), reverse=True)
        used_tracks: set[int] = set()
        used_dets: set[int] = set()
        for iou, i, j in pairs:
            if iou < MIN_LINK_IOU:
                break
            if i in used_tracks or j in used_dets:
                continue
            open_tracks[i].detections.append(by_time[t][j])
            used_tracks.add(i)
            used_dets.add(j)
        for j, d in enumerate(by_time[t]):
            if j not in used_dets:
                tr = LogoTrack(track_id=len(tracks), brand=d.brand, detections=[d])
                tracks.append(tr)
                open_tracks.append(tr)
    return _join_moving(tracks, cuts, step_s)


def _centre(box: list[float]) -> np.ndarray:
    return np.array([(box[0] + box[2]) / 2, (box[1] + box[3]) / 2])


def _size(box: list[float]) -> np.ndarray:
    return np.array([box[2] - box[0], box[3] - box[1]])


def _steady(a: LogoDetection, b: LogoDetection, c: LogoDetection) -> bool:
    """Whether ``c`` is where ``a`` and ``b`` say the mark goes next, at about their size."""
    sa, sb, sc = _size(a.box), _size(b.box), _size(c.box)
    if np.any(sa <= 0) or np.any(sb <= 0) or np.any(sc <= 0):
        return False
    for x, y in ((sa, sb), (sb, sc)):
        ratio = y / x
        if np.any(ratio > MOVING_MAX_SCALE) or np.any(ratio < 1 / MOVING_MAX_SCALE):
            return False
    if b.pts_s <= a.pts_s or c.pts_s <= b.pts_s:
        return False
    velocity = (_centre(b.box) - _centre(a.box)) / (b.pts_s - a.pts_s)
    predicted = _centre(b.box) + velocity * (c.pts_s - b.pts_s)
    return bool(np.all(np.abs(predicted - _centre(c.box)) <= MOVING_MAX_MISS * sc))


def _join_moving(tracks: list[LogoTrack], cuts: np.ndarray, step_s: float) -> list[LogoTrack]:
    """Single-sighting tracks of one brand in successive searched frames (at most one frame missed, no cut
    between) joined into one track where at least :data:`MOVING_MIN_FRAMES` of them move steadily
    (:func:`_steady` for every three in a row). Greedy in time order; returns the tracks renumbered in order
    of their first detection."""
    singles = sorted((t for t in tracks if t.frames == 1), key=lambda t: t.detections[0].pts_s)
    joined: set[int] = set()
    chains: list[list[LogoTrack]] = []

    def next_to(prev: LogoDetection, d: LogoDetection) -> bool:
        gap = d.pts_s - (prev.pts_s + prev.duration_s)
        return (d.pts_s > prev.pts_s and gap <= 1.5 * step_s
                and not np.any((cuts > prev.pts_s + 1e-6) & (cuts <= d.pts_s + 1e-6)))

    for k, first in enumerate(singles):
        if id(first) in joined:
            continue
        a = first.detections[0]
        for second in singles[k + 1:]:
            b = second.detections[0]
            if b.pts_s - a.pts_s > 2.5 * step_s:
                break
            if id(second) in joined or second.brand != first.brand or not next_to(a, b):
                continue
            chain = [first, second]
            while True:  # extend by the sighting the last two predict
                p, q = chain[-2].detections[0], chain[-1].detections[0]
                nxt = next((t for t in singles if id(t) not in joined and t not in chain and t.brand == first.brand
                            and next_to(q, t.detections[0]) and _steady(p, q, t.detections[0])), None)
                if nxt is None:
                    break
                chain.append(nxt)
            if len(chain) >= MOVING_MIN_FRAMES:
                joined.update(id(t) for t in chain)
                chains.append(chain)
                break
    if not chains:
        return tracks
    out = [t for t in tracks if id(t) not in joined]
    out += [LogoTrack(track_id=-1, brand=c[0].brand, detections=[t.detections[0] for t in c], moving=True) for c in chains]
    out.sort(key=lambda t: t.detections[0].pts_s)  # stable: tracks of one start keep their order
    for i, t in enumerate(out):
        t.track_id = i
    return out

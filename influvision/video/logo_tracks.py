"""Logo tracks: a brand's detections in successive searched frames linked into tracks, counted once confirmed.

Logos are searched at a few frames per second (:data:`~influvision.video.report.LOGO_FPS`). A detection in one
frame links to a track of the same brand whose last box it overlaps, when no shot cut lies between them and
at most one searched frame was missed. A track counts towards the brand's seconds only when it is confirmed:
seen in at least :data:`MIN_FRAMES` searched frames, or once with a score of at least :data:`SURE_SCORE`.
A lone weak detection in a single frame is the typical false brand (a pattern that happens to fit the
reference once); such tracks stay in the report, marked not counted, so the evidence is still there.

A mark that moves more than about its own width between searched frames (a logo on a passing car, a shirt
crossing the frame) does not overlap itself: each sighting starts a track of its own. Such single sightings
are joined where they follow a steady path (:func:`_join_moving`): each place predicted from the two before it
within half the mark's size plus half the step, at about the same size; onto a track of two or more frames,
or three or more of them into a new track. Two unrelated weak boxes half a second apart are not joined (two
points always fit a velocity), so the 2-frame rule keeps its meaning for them. Within a track a missed
searched frame is bridged: the mark was seen on both sides of it.
"""

from __future__ import annotations

import bisect
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
# to the next, and each place is predicted from the two before it within this share of the mark's size plus
# this share of the predicted step (a curve, a change of speed; at most the mark's size more).
MOVING_MAX_SCALE = 1.5
MOVING_MAX_MISS = 0.5
MOVING_MAX_TURN = 0.5
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
    moving: bool = False  # joined from (or grown by) single sightings of a mark moving steadily (_join_moving)
    step_s: float = 0.0  # time between searched frames: a gap of one missed frame within the track is bridged

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
        """(K, 2) [start_s, end_s) of this track: gaps shorter than ``max_gap_s`` bridged, and so is a searched
        frame missed within the track (its detections are linked across it, so the mark was there)."""
        return union_intervals([(d.pts_s, d.pts_s + d.duration_s) for d in self.detections],
                               max(max_gap_s, 1.5 * self.step_s + 1e-6))


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
                tr = LogoTrack(track_id=len(tracks), brand=d.brand, detections=[d], step_s=step_s)
                tracks.append(tr)
                open_tracks.append(tr)
    return _join_moving(tracks, cuts, step_s)


def _centre(box: list[float]) -> np.ndarray:
    return np.array([(box[0] + box[2]) / 2, (box[1] + box[3]) / 2])


def _size(box: list[float]) -> np.ndarray:
    return np.array([box[2] - box[0], box[3] - box[1]])


def _steady(a: LogoDetection, b: LogoDetection, c: LogoDetection) -> bool:
    """Whether ``c`` is where ``a`` and ``b`` say the mark goes next (forward or backward in time), at about
    their size: within half the mark's size plus half the predicted step (a turn of up to about 30 degrees or
    a change of speed of up to half between searched frames), the latter at most the mark's size (a long jump
    must not open a window that random boxes fall into)."""
    if not (a.pts_s < b.pts_s < c.pts_s or a.pts_s > b.pts_s > c.pts_s):
        return False
    sa, sb, sc = _size(a.box), _size(b.box), _size(c.box)
    if np.any(sa <= 0) or np.any(sb <= 0) or np.any(sc <= 0):
        return False
    for x, y in ((sa, sb), (sb, sc)):
        ratio = y / x
        if np.any(ratio > MOVING_MAX_SCALE) or np.any(ratio < 1 / MOVING_MAX_SCALE):
            return False
    step = (_centre(b.box) - _centre(a.box)) * (c.pts_s - b.pts_s) / (b.pts_s - a.pts_s)
    miss = np.abs(_centre(b.box) + step - _centre(c.box))
    return bool(np.all(miss <= MOVING_MAX_MISS * sc + np.minimum(MOVING_MAX_TURN * float(np.hypot(*step)), sc)))


def _join_moving(tracks: list[LogoTrack], cuts: np.ndarray, step_s: float) -> list[LogoTrack]:
    """Single sightings (one-frame tracks) joined by a steady path (:func:`_steady`): onto either end of a
    track of two or more frames, and into new tracks where at least :data:`MOVING_MIN_FRAMES` of them follow
    one another; successive searched frames (at most one missed, no cut between), one brand. Greedy in time
    order, the nearest searched frame first. Returns the tracks renumbered in order of their first detection."""
    singles = sorted((t for t in tracks if t.frames == 1), key=lambda t: t.detections[0].pts_s)
    used: set[int] = set()

    def adjacent(earlier: LogoDetection, later: LogoDetection) -> bool:
        gap = later.pts_s - (earlier.pts_s + earlier.duration_s)
        return (later.pts_s > earlier.pts_s and gap <= 1.5 * step_s
                and not np.any((cuts > earlier.pts_s + 1e-6) & (cuts <= later.pts_s + 1e-6)))

    by_brand: dict[str, list[LogoTrack]] = {}
    for t in singles:
        by_brand.setdefault(t.brand, []).append(t)
    times = {b: [t.detections[0].pts_s for t in ts] for b, ts in by_brand.items()}

    def within(brand: str, lo: float, hi: float) -> list[LogoTrack]:
        """Single sightings of ``brand`` at times in [lo, hi] (a window of a few searched frames: no scan)."""
        return by_brand[brand][bisect.bisect_left(times[brand], lo):bisect.bisect_right(times[brand], hi)]

    def follower(p: LogoDetection, q: LogoDetection, brand: str, forward: bool) -> LogoTrack | None:
        """The unused single sighting that ``p`` then ``q`` predict next (before ``q`` when not ``forward``)."""
        if brand not in by_brand:
            return None
        window = within(brand, q.pts_s, q.pts_s + 2.5 * step_s) if forward else \
            within(brand, q.pts_s - 2.5 * step_s, q.pts_s)
        found = [t for t in window if id(t) not in used
                 and (adjacent(q, t.detections[0]) if forward else adjacent(t.detections[0], q))
                 and _steady(p, q, t.detections[0])]
        return min(found, key=lambda t: abs(t.detections[0].pts_s - q.pts_s), default=None)

    def extend(dets: list[LogoDetection], brand: str) -> None:
        """Grow a chain of detections (time order) at both ends while its end sightings predict another."""
        for forward in (True, False):
            while len(dets) >= 2:
                p, q = (dets[-2], dets[-1]) if forward else (dets[1], dets[0])
                nxt = follower(p, q, brand, forward)
                if nxt is None:
                    break
                used.add(id(nxt))
                if forward:
                    dets.append(nxt.detections[0])
                else:
                    dets.insert(0, nxt.detections[0])

    changed = False
    for t in [t for t in tracks if t.frames >= 2]:  # tracks linked by overlap grow by their own path
        before = t.frames
        extend(t.detections, t.brand)
        if t.frames > before:
            t.moving = changed = True
    chains: list[LogoTrack] = []
    for first in singles:
        if id(first) in used:
            continue
        a = first.detections[0]
        for second in within(first.brand, a.pts_s, a.pts_s + 2.5 * step_s):
            b = second.detections[0]
            if b.pts_s <= a.pts_s or id(second) in used or not adjacent(a, b):
                continue
            used.update((id(first), id(second)))
            dets = [a, b]
            extend(dets, first.brand)
            if len(dets) >= MOVING_MIN_FRAMES:
                chains.append(LogoTrack(track_id=-1, brand=first.brand, detections=dets, moving=True,
                                        step_s=first.step_s))
                break
            used.difference_update((id(first), id(second)))  # nothing followed them: both stay single
    if not chains and not changed:
        return tracks
    joined = {id(d) for c in chains for d in c.detections} | {id(t.detections[0]) for t in singles if id(t) in used}
    out = [t for t in tracks if not (t.frames == 1 and id(t.detections[0]) in joined)] + chains
    out.sort(key=lambda t: t.detections[0].pts_s)  # stable: tracks of one start keep their order
    for i, t in enumerate(out):
        t.track_id = i
    return out

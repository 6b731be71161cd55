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
or four or more of them into a new track. Two or three unrelated weak boxes are not joined (two points always
fit a velocity, three line up by chance in noisy footage), nor are sightings in a searched frame crowded with
single boxes of one brand, so the 2-frame rule keeps its meaning for them. Within a track a missed
searched frame is bridged: the mark was seen on both sides of it.
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass, field

import numpy as np

from ..boxes import box_iou
from .exposure import union_intervals

MIN_FRAMES = 2
# Matcher scores reach 0.8 at about 30 RANSAC inliers with the reference's shape clearly visible.
SURE_SCORE = 0.8
# Boxes of one logo in two searched frames overlap at least this much (it may move or zoom between them).
MIN_LINK_IOU = 0.1
# A track goes on across a gap of up to this many searched-frame steps after its last detection ends: one missed
# frame (searched frames fall on whole source frames, so at 29.97 or 25 frames per second one missed frame leaves
# 0.5005 or 0.52 s for a step of 0.5 s), while two missed frames end it.
MAX_GAP_STEPS = 1.5
# A moving mark's sightings (_join_moving): width and height change at most this factor from one searched frame
# to the next, and each place is predicted from the two before it within this share of the mark's size plus
# this share of the predicted step (a curve, a change of speed; at most the mark's size more).
MOVING_MAX_SCALE = 1.5
MOVING_MAX_MISS = 0.5
MOVING_MAX_TURN = 0.5
# Single sightings in a row needed to make a new track of a moving mark: three weak false boxes of one brand
# that happen to line up were joined too often in crowded, noisy footage (a review's stress test).
MOVING_MIN_FRAMES = 4
# Searched frames with more single sightings of one brand than this are not used to join moving marks.
MOVING_MAX_PER_FRAME = 2


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

    @property
    def bridge_s(self) -> float:
        """Longest gap between two successive detections of this track: one missed searched frame."""
        return MAX_GAP_STEPS * self.step_s

    def intervals(self, max_gap_s: float) -> np.ndarray:
        """(K, 2) [start_s, end_s) of this track: gaps shorter than ``max_gap_s`` bridged, and so is a searched
        frame missed within the track (its detections are linked across it, so the mark was there)."""
        return union_intervals([(d.pts_s, d.pts_s + d.duration_s) for d in self.detections],
                               max(max_gap_s, self.bridge_s + 1e-6))


def _links(earlier: LogoDetection, t: float, cuts: np.ndarray, step_s: float) -> bool:
    """Whether a detection at time ``t`` may follow ``earlier`` in one track: at most one searched frame missed
    between them (:data:`MAX_GAP_STEPS`) and no shot cut."""
    return (t - (earlier.pts_s + earlier.duration_s) <= MAX_GAP_STEPS * step_s
            and not np.any((cuts > earlier.pts_s + 1e-6) & (cuts <= t + 1e-6)))


def link_logo_tracks(detections: list[LogoDetection], cuts_s: list[float], step_s: float) -> list[LogoTrack]:
    """Link detections into tracks, greedily by overlap, frame by frame in time order.

    Args:
        detections: every brand box of every searched frame, any order.
        cuts_s: shot cut times; no track spans a cut.
        step_s: time between searched frames; a track tolerates one missed frame (:data:`MAX_GAP_STEPS`).

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
        open_tracks = [tr for tr in open_tracks if _links(tr.detections[-1], t, cuts, step_s)]
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


def _steady(a: LogoDetection, b: LogoDetection, c: LogoDetection) -> bool:
    """Whether ``c`` is where ``a`` and ``b`` say the mark goes next (forward or backward in time), at about
    their size: its centre within half the mark's size (the square root of its area) plus half the predicted
    step, the latter at most one mark size (a long jump must not open a window random boxes fall into). That
    follows a turn of up to about 60 degrees per searched frame at a step of one mark size, 45 at two, 20 at
    four, and a change of speed of up to half. Plain floats: it is called for every candidate."""
    if not (a.pts_s < b.pts_s < c.pts_s or a.pts_s > b.pts_s > c.pts_s):
        return False
    (wa, ha), (wb, hb), (wc, hc) = ((d.box[2] - d.box[0], d.box[3] - d.box[1]) for d in (a, b, c))
    if min(wa, ha, wb, hb, wc, hc) <= 0:
        return False
    for w0, h0, w1, h1 in ((wa, ha, wb, hb), (wb, hb, wc, hc)):
        if not (1 / MOVING_MAX_SCALE <= w1 / w0 <= MOVING_MAX_SCALE and 1 / MOVING_MAX_SCALE <= h1 / h0 <= MOVING_MAX_SCALE):
            return False
    ax, ay = (a.box[0] + a.box[2]) / 2, (a.box[1] + a.box[3]) / 2
    bx, by = (b.box[0] + b.box[2]) / 2, (b.box[1] + b.box[3]) / 2
    cx, cy = (c.box[0] + c.box[2]) / 2, (c.box[1] + c.box[3]) / 2
    f = (c.pts_s - b.pts_s) / (b.pts_s - a.pts_s)
    sx, sy = (bx - ax) * f, (by - ay) * f
    size = math.sqrt(wc * hc)
    return math.hypot(bx + sx - cx, by + sy - cy) <= MOVING_MAX_MISS * size + min(MOVING_MAX_TURN * math.hypot(sx, sy), size)


def _join_moving(tracks: list[LogoTrack], cuts: np.ndarray, step_s: float) -> list[LogoTrack]:
    """Single sightings (one-frame tracks) joined by a steady path (:func:`_steady`): onto either end of a
    track of two or more frames, and into new tracks where at least :data:`MOVING_MIN_FRAMES` of them follow
    one another; successive searched frames (at most one missed, no cut between), one brand. Greedy in time
    order, the nearest searched frame first. Returns the tracks renumbered in order of their first detection."""
    crowd: dict[tuple[str, float], int] = {}
    for t in tracks:
        if t.frames == 1:
            crowd[t.brand, t.detections[0].pts_s] = crowd.get((t.brand, t.detections[0].pts_s), 0) + 1
    # A frame with more single sightings of one brand than a few moving marks would give is noise (a pattern
    # the brand's reference fits all over): its sightings are not joined by motion.
    singles = sorted((t for t in tracks if t.frames == 1
                      and crowd[t.brand, t.detections[0].pts_s] <= MOVING_MAX_PER_FRAME),
                     key=lambda t: t.detections[0].pts_s)
    used: set[int] = set()

    def adjacent(earlier: LogoDetection, later: LogoDetection) -> bool:
        return later.pts_s > earlier.pts_s and _links(earlier, later.pts_s, cuts, step_s)

    reach = (MAX_GAP_STEPS + 1) * step_s  # from one sighting to the next after a missed searched frame
    single_of = {id(t.detections[0]): t for t in singles}
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
        window = within(brand, q.pts_s, q.pts_s + reach) if forward else \
            within(brand, q.pts_s - reach, q.pts_s)
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

    chains: list[LogoTrack] = []
    for first in singles:
        if id(first) in used:
            continue
        a = first.detections[0]
        for second in within(first.brand, a.pts_s, a.pts_s + reach):
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
            # Too short for a new track: every sighting it took stays single (and may join another chain).
            used.difference_update(id(single_of[id(d)]) for d in dets)
    # Then tracks linked by overlap grow by their own path (after the chains: a mark that arrives fast and slows
    # down keeps its fast sightings in one chain instead of losing them to the slow track's end).
    changed = False
    for t in [t for t in tracks if t.frames >= 2]:
        before = t.frames
        extend(t.detections, t.brand)
        if t.frames > before:
            t.moving = changed = True
    if not chains and not changed:
        return tracks
    joined = {id(d) for c in chains for d in c.detections} | {id(t.detections[0]) for t in singles if id(t) in used}
    out = [t for t in tracks if not (t.frames == 1 and id(t.detections[0]) in joined)] + chains
    out.sort(key=lambda t: t.detections[0].pts_s)  # stable: tracks of one start keep their order
    for i, t in enumerate(out):
        t.track_id = i
    return out

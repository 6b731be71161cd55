"""Logo tracks: a brand's detections in successive searched frames linked into tracks, counted once confirmed.

Logos are searched at a few frames per second (:data:`~influvision.video.report.LOGO_FPS`). A detection in one
frame links to a track of the same brand whose last box it overlaps, when no shot cut lies between them and
at most one searched frame was missed. A track counts towards the brand's seconds only when it is confirmed:
seen in at least :data:`MIN_FRAMES` searched frames, or once with a score of at least :data:`SURE_SCORE`.
A lone weak detection in a single frame is the typical false brand (a pattern that happens to fit the
reference once); such tracks stay in the report, marked not counted, so the evidence is still there.
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
            return f"counted: seen in {self.frames} searched frames"
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
    return tracks

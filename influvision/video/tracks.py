"""Face tracks: ByteTrack over face boxes, cut at every shot change.

A track is one face followed through consecutive sampled frames of one shot. :class:`FaceTracker` feeds
each frame's boxes to ``trackers.ByteTrackTracker`` (Roboflow, Apache-2.0) with the frame's real
timestamp, and keeps the result columnar: one ``track_id`` per detection, in the order detections were
given, -1 for a detection that never became part of a track (a face seen in a single sampled frame).

Three things are added to plain ByteTrack:

* ByteTrack hands out an id only when a new track is matched a second time, so the detection that started
  a track would come back as -1 and every track would lose its first frame (0.2 s per track at 5 sampled
  frames per second). The tracker remembers which detection spawned each track and gives it the id as soon
  as the track is confirmed.
* :class:`ShotCutDetector` spots hard cuts between consecutive sampled frames; at a cut all tracks end
  (the tracker is reset), so a track never spans two shots even when boxes happen to overlap.
* It also measures how far a camera pan moved the picture between them (:func:`frame_shift`), and the tracker
  follows boxes where they stand in the scene: a face the camera pans past stays one track even when it moves
  further than its width between sparsely sampled frames (unless the frame's faces stayed where they were: a
  subject the camera follows).
"""

from __future__ import annotations

import logging
import math

import cv2
import numpy as np
import supervision as sv
from trackers import ByteTrackTracker

from ..boxes import pairwise_iou
from ..errors import ShapeError

log = logging.getLogger(__name__)

#: Cut score threshold. The score between two consecutive sampled frames is
#: ``bhattacharyya(HSV hue-saturation histograms) + mean |Δ grey| / 100`` on small thumbnails (grey levels
#: 0-255). Measured on the shared clips at every frame and at 10, 5, 3 and 2 sampled frames per second:
#: the 30 frame pairs across a labelled cut scored 0.64-1.36 (weakest: the close-up to full-figure cut
#: of dirtydancing at 7.53 s), the 1136 pairs within a shot at most 0.56 (the wide, moving shot of nggyup
#: sampled at 2-3 frames per second). 0.6 sits between them; see docs/video.md.
CUT_THRESHOLD = 0.6

# A frame pair scoring over the threshold is no cut when the second frame is the first moved by a camera pan
# (is_pan). At low sampling rates a fast pan changes most of the picture between analysed frames: pans of
# 160-300 px/s over real frames scored up to 0.97 at 2 analysed frames per second. Measured on 160 x 90 grey
# frames: those pans gave phase correlation peaks of 0.56-0.94 and, aligned, differences of 0.2-8.9 grey levels;
# the labelled cuts of the shared clips at every frame and at 10, 5, 3 and 2 per second peaks of 0.16 at most
# and aligned differences of 27.8 or more.
PAN_MIN_RESPONSE = 0.4
PAN_MAX_RESIDUAL = 15.0
# The tracker follows a pan's shift only where aligning the frames by it leaves at most this share of their
# difference: a camera pan (a 225 px/s pan sampled twice a second: 3-4 grey levels left of 60) and not dancers
# or a moving figure that the correlation happens to lock on (dirtydancing's dance floor at 10 frames per
# second: shifts of 1-14 % of the frame that left as much difference as before, or more).
PAN_EXPLAINED = 0.5

_THUMB = (64, 36)  # grey thumbnail for the pixel difference (width, height)
_HIST_SIZE = (160, 90)  # image size the colour histogram is taken on
_HIST_BINS = [16, 8]  # hue, saturation


def _frame_signature(frame: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
        raise ShapeError("frame", "(H, W, 3) uint8 RGB", f"{frame.shape} {frame.dtype}")
    small = cv2.resize(frame, _HIST_SIZE, interpolation=cv2.INTER_AREA)
    grey_small = cv2.cvtColor(small, cv2.COLOR_RGB2GRAY)
    grey = cv2.resize(grey_small, _THUMB, interpolation=cv2.INTER_AREA).astype(np.float32)
    hsv = cv2.cvtColor(small, cv2.COLOR_RGB2HSV)
    hist = cv2.calcHist([hsv], [0, 1], None, _HIST_BINS, [0, 180, 0, 256])
    hist = cv2.normalize(hist, hist).flatten()
    return grey, hist, grey_small.astype(np.float32)


def frame_shift(a: np.ndarray, b: np.ndarray) -> tuple[float, float, float] | None:
    """How far the picture moved from grey frame ``a`` to ``b`` by phase correlation: (dx, dy) in their pixels and
    the mean difference left, in grey levels, with ``a`` shifted by it over the part both show; None without a
    clear correlation peak (:data:`PAN_MIN_RESPONSE`) or when they would share under a third of each side.

    Args:
        a, b: (H, W) float32 grey frames of one size.
    """
    h, w = a.shape
    (dx, dy), response = cv2.phaseCorrelate(a, b, cv2.createHanningWindow((w, h), cv2.CV_32F))
    x0, x1 = math.ceil(max(0.0, dx)), w + math.floor(min(0.0, dx))
    y0, y1 = math.ceil(max(0.0, dy)), h + math.floor(min(0.0, dy))
    if response < PAN_MIN_RESPONSE or x1 - x0 < w / 3 or y1 - y0 < h / 3:
        return None
    shifted = cv2.warpAffine(a, np.float32([[1, 0, dx], [0, 1, dy]]), (w, h))
    return float(dx), float(dy), float(np.abs(shifted[y0:y1, x0:x1] - b[y0:y1, x0:x1]).mean())


def is_pan(a: np.ndarray, b: np.ndarray) -> bool:
    """Whether grey frame ``b`` is ``a`` moved sideways or up and down (the camera panning): a :func:`frame_shift`
    that leaves a mean difference of at most :data:`PAN_MAX_RESIDUAL` grey levels."""
    return _panned(frame_shift(a, b))


def _panned(shift: tuple[float, float, float] | None) -> bool:
    """Whether a :func:`frame_shift` result is a camera pan: a clear shift that leaves at most
    :data:`PAN_MAX_RESIDUAL` grey levels of difference."""
    return shift is not None and shift[2] <= PAN_MAX_RESIDUAL


class ShotCutDetector:
    """Detects hard cuts between consecutive frames given one at a time, and measures camera pans.

    Args:
        threshold: cut score at or above which a cut is declared (see :data:`CUT_THRESHOLD`).

    After each :meth:`is_cut`, :attr:`motion` is how far the picture moved since the previous frame (dx, dy in
    the frame's pixels) where the two are one picture panned (:func:`is_pan`) and the shift explains most of
    what changed (:data:`PAN_EXPLAINED`), else (0, 0).
    """

    def __init__(self, threshold: float = CUT_THRESHOLD):
        self.threshold = threshold
        self._prev: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
        self.motion = (0.0, 0.0)

    def score(self, frame: np.ndarray) -> float:
        """Cut score between this frame and the previous one (0.0 for the first frame); updates the state.

        Args:
            frame: (H, W, 3) uint8 RGB on the host.
        """
        sig = _frame_signature(frame)
        prev, self._prev = self._prev, sig
        if prev is None:
            return 0.0
        mad = float(np.abs(sig[0] - prev[0]).mean())
        hist = float(cv2.compareHist(prev[1], sig[1], cv2.HISTCMP_BHATTACHARYYA))
        return hist + mad / 100.0

    def is_cut(self, frame: np.ndarray) -> bool:
        """True when ``frame`` starts a new shot (never for the first frame, nor where the camera panned)."""
        prev = self._prev
        cut_score = self.score(frame)
        self.motion = (0.0, 0.0)
        if prev is None:
            return False
        shift = frame_shift(prev[2], self._prev[2])
        pan = _panned(shift)
        if pan and shift[2] <= PAN_EXPLAINED * float(np.abs(prev[2] - self._prev[2]).mean()):
            h, w = frame.shape[:2]
            self.motion = (shift[0] * w / _HIST_SIZE[0], shift[1] * h / _HIST_SIZE[1])
        return cut_score >= self.threshold and not pan

    def reset(self) -> None:
        self._prev = None
        self.motion = (0.0, 0.0)


class _ByteTrack(ByteTrackTracker):
    """ByteTrack that records which detection row spawned each new tracklet (see module docstring)."""

    spawned: list[tuple[object, int]]

    def _spawn_new_tracks(self, detection_boxes, confidences, unmatched_high_local, high_indices,
                          out_det_indices, out_tracker_ids) -> None:  # type: ignore[no-untyped-def]
        before = len(self.tracks)
        super()._spawn_new_tracks(detection_boxes, confidences, unmatched_high_local, high_indices,
                                  out_det_indices, out_tracker_ids)
        # The parent appends one tracklet per unmatched high detection that clears the activation
        # threshold, in the order of unmatched_high_local.
        rows = [int(high_indices[i]) for i in unmatched_high_local
                if float(confidences[int(high_indices[i])]) >= self.track_activation_threshold]
        new = self.tracks[before:]
        if len(new) != len(rows):  # pragma: no cover - guards against a change in trackers' internals
            log.warning("ByteTrack spawned %d tracks for %d detections; first frames not recovered",
                        len(new), len(rows))
            rows = []
            new = []
        self.spawned = list(zip(new, rows, strict=True))


class FaceTracker:
    """Assigns track ids to face boxes frame by frame; ids are unique over the whole video.

    Args:
        frame_rate: sampled frames per second (scales ByteTrack's motion model and lost-track budget).
        lost_track_s: how long a track survives without a matching detection, in seconds (at least two
            sampled frames).
        min_iou: least IoU between a track's predicted box and a detection to continue the track.
        activation_score: least detector score that may start a track.
        high_score: detections below this score only continue existing tracks (ByteTrack's second stage).

    After feeding every frame with :meth:`update`, :attr:`track_ids` holds the (M,) int64 id of every
    detection given so far, in order (-1: not part of any track).
    """

    def __init__(self, frame_rate: float = 10.0, *, lost_track_s: float = 1.0, min_iou: float = 0.1,
                 activation_score: float = 0.7, high_score: float = 0.6):
        if not frame_rate > 0:
            raise ValueError(f"frame_rate must be > 0, got {frame_rate}")
        # A track outlives one missed sampled frame at any rate: at under 1 sampled frame per second the gap
        # between two frames alone would pass a budget of 1 s, and no track would ever be confirmed.
        lost_track_s = max(lost_track_s, 2.0 / frame_rate)
        self._bt = _ByteTrack(lost_track_buffer=max(0, round(lost_track_s * 30)), frame_rate=frame_rate,
                              track_activation_threshold=activation_score, minimum_consecutive_frames=1,
                              minimum_iou_threshold=min_iou, high_conf_det_threshold=high_score)
        self._bt.spawned = []
        self._ids: list[int] = []
        self._pending: dict[int, tuple[object, int]] = {}  # id(tracklet) -> (tracklet, global row)
        self._offset = 0  # ByteTrack restarts its ids after a reset; ours continue
        self._max_local = -1
        self._camera = np.zeros(2, dtype=np.float64)  # how far the picture has moved since the shot began
        self._last = np.zeros((0, 4), dtype=np.float32)  # the previous frame's boxes, frame pixels
        self.cuts = 0

    @property
    def track_ids(self) -> np.ndarray:
        """(M,) int64 track id per detection given so far, -1 for untracked."""
        return np.asarray(self._ids, dtype=np.int64)

    def cut(self) -> None:
        """End every track (a shot change): later detections start new tracks with new ids."""
        self._bt.reset()
        self._pending.clear()
        self._camera[:] = 0.0
        self._last = np.zeros((0, 4), dtype=np.float32)
        self._offset += self._max_local + 1
        self._max_local = -1
        self.cuts += 1

    def update(self, boxes: np.ndarray, scores: np.ndarray, pts_s: float,
               motion: tuple[float, float] = (0.0, 0.0)) -> np.ndarray:
        """Add one frame's detections.

        Args:
            boxes: (N, 4) float x1, y1, x2, y2 in frame pixels; N may be 0.
            scores: (N,) detector confidence in [0, 1].
            pts_s: the frame's time in seconds (strictly increasing between calls).
            motion: how far the picture moved since the previous frame (dx, dy in frame pixels: a camera pan,
                :attr:`ShotCutDetector.motion`). Boxes are tracked where they are in the scene, so a face the
                camera pans past stays one track however far it moves between analysed frames.

        Returns:
            (N,) int64 ids of this frame's detections as known now; a detection that starts a track reads
            -1 here and is given the id in :attr:`track_ids` once the track is confirmed.
        """
        boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
        scores = np.asarray(scores, dtype=np.float32).reshape(-1)
        if scores.shape[0] != boxes.shape[0]:
            raise ShapeError("scores", f"({boxes.shape[0]},) like boxes", scores.shape)
        n = boxes.shape[0]
        base = len(self._ids)
        self._bt.spawned = []
        if self._follows_scene(boxes, motion):
            self._camera += motion
        self._last = boxes
        cx, cy = self._camera
        scene = boxes - np.array([cx, cy, cx, cy], dtype=np.float32)
        det = sv.Detections(xyxy=scene, confidence=scores, data={"row": np.arange(n)})
        out = self._bt.update(det, timestamp=float(pts_s))
        local = np.full(n, -1, dtype=np.int64)
        if len(out):
            local[np.asarray(out.data["row"], dtype=np.int64)] = np.asarray(out.tracker_id, dtype=np.int64)
        if (local >= 0).any():
            self._max_local = max(self._max_local, int(local.max()))
        ids = np.where(local >= 0, local + self._offset, -1)
        self._ids.extend(ids.tolist())
        for tracklet, row in self._bt.spawned:
            self._pending[id(tracklet)] = (tracklet, base + row)
        self._resolve_pending()
        return ids

    def _follows_scene(self, boxes: np.ndarray, motion: tuple[float, float]) -> bool:
        """Whether this frame's faces moved with the picture (faces standing in a scene the camera pans across)
        rather than stayed in place in the frame (a subject the camera follows while the background slides
        by): more of them overlap the last frame's faces shifted by ``motion`` than unshifted. Without faces in
        both frames to tell, the picture's motion is followed."""
        if not (motion[0] or motion[1]) or not len(boxes) or not len(self._last):
            return True
        dx, dy = motion
        moved = self._last + np.array([dx, dy, dx, dy], dtype=np.float32)
        return _matched(boxes, moved) >= _matched(boxes, self._last)

    def _resolve_pending(self) -> None:
        alive = {id(t) for t in self._bt.tracks}
        for key, (tracklet, row) in list(self._pending.items()):
            local = int(tracklet.tracker_id)  # type: ignore[attr-defined]
            if local >= 0:
                self._ids[row] = local + self._offset
                self._max_local = max(self._max_local, local)
                del self._pending[key]
            elif key not in alive:
                del self._pending[key]


def _matched(boxes: np.ndarray, earlier: np.ndarray, min_iou: float = 0.3) -> int:
    """How many of ``boxes`` (N, 4) overlap one of ``earlier`` (M, 4) by at least ``min_iou``."""
    return int((pairwise_iou(boxes, earlier).max(axis=1) >= min_iou).sum())

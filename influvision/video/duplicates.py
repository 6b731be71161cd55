"""Re-encoded copies of a video: the same footage at another size, bitrate or codec is counted once.

A byte-identical copy is found by its SHA-256 (api.py). A re-encoded one has other bytes, so two videos are
compared only when their lengths agree (within half a second or 1 %): then frames at the same times, two per
second (as often as logos are searched, so nothing the analysis counts can hide between them), must be the
same shot (:func:`influvision.duplicates.same_shot`, with a tolerance for video compression: resized,
recompressed or tone-edited, but no region that changed). Two recordings of one scene, say fixed-length segments from one camera, differ wherever anybody moved
and stay two videos; footage in which nothing moves at all would be called a copy.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np

from ..decode.video import iter_frames, probe_video
from ..duplicates import NEAR_DUPLICATE_MAX_DISTANCE, hamming, phash, same_shot
from ..errors import MediaError

log = logging.getLogger(__name__)

# Frames compared, spread evenly over the video: at least COMPARED_FRAMES, and COMPARED_PER_S per second (the
# logo search's rate, video.report.LOGO_FPS: a sponsor's mark shown for a second in one copy must not be called
# the same footage).
COMPARED_FRAMES = 8
COMPARED_PER_S = 2.0
# Largest shot_difference of a frame and its copy. Video codecs at low bitrates smear more than photo JPEGs:
# nggyup.mp4 re-encoded at 854 px, crf 34 reaches 16.8, dirtydancing at 640 px, crf 38 24.7 (at 426 px, crf 45,
# 46: such a copy counts as a video of its own); two 2-s segments of street_crowd.mp4 differ by 194-212.
FRAME_MAX_DIFF = 30.0
# Longer side of the opening frame kept per analysed video.
_OPENING_SIDE = 320


def same_length(a_s: float, b_s: float) -> bool:
    """Whether two videos of these lengths (seconds) last the same time (within 0.5 s or 1 %), the
    precondition for being copies."""
    if a_s <= 0 or b_s <= 0:
        return False
    return abs(a_s - b_s) <= max(0.5, 0.01 * max(a_s, b_s))


class CopyFinder:
    """Finds, for each new video, an earlier analysed one it is a copy of.

    Only videos of the same length are compared, and first on their opening frames (one decoded frame per
    video, kept as a small grey picture), so that a hundred equal-length segments of one camera cost a hundred
    frame decodes, not ten thousand video decodes.
    """

    def __init__(self) -> None:
        self._videos: list[tuple[str, Path, float]] = []
        self._openings: dict[Path, np.ndarray | None] = {}

    def add(self, name: str, path: str | Path, duration_s: float) -> None:
        """Remember an analysed video and its declared length."""
        self._videos.append((name, Path(path), duration_s))

    def original_of(self, path: str | Path) -> str | None:
        """The name of the earlier video that ``path`` is a copy of, else None (also when ``path`` cannot be
        read: it is analysed and its error reported in its own right). Probes ``path`` only when there is an
        earlier video."""
        if not self._videos:
            return None
        path = Path(path)
        try:
            duration_s = probe_video(path).duration_s
        except MediaError:
            return None
        for name, earlier, earlier_s in self._videos:
            if not same_length(earlier_s, duration_s):
                continue
            a, b = self._opening(earlier), self._opening(path)
            if a is None or b is None or not same_shot(a, b, FRAME_MAX_DIFF):
                continue
            if same_footage(earlier, earlier_s, path, duration_s):
                return name
        return None

    def _opening(self, path: Path) -> np.ndarray | None:
        if path not in self._openings:
            try:
                first = next(_stream(path, None, batch=1), None)  # every frame sampled: the first comes out at once
            except MediaError:
                first = None
            if first is not None:
                grey = cv2.cvtColor(first, cv2.COLOR_RGB2GRAY)
                scale = min(1.0, _OPENING_SIDE / max(grey.shape))
                self._openings[path] = cv2.resize(grey, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
            else:
                self._openings[path] = None
        return self._openings[path]


def same_footage(a: str | Path, a_s: float, b: str | Path, b_s: float, frames: int = COMPARED_FRAMES,
                 per_s: float = COMPARED_PER_S) -> bool:
    """Whether video ``b`` is a re-encoded copy of video ``a`` (``a_s``, ``b_s``: their declared lengths in
    seconds): the same length, and frames at the same times (``per_s`` per second, at least ``frames``) that are
    each the same shot. Decodes both side by side (only when their lengths agree) and stops at the first frame
    that differs; a video that cannot be decoded is no copy."""
    if not same_length(a_s, b_s):
        return False
    n = max(frames, math.ceil(per_s * min(a_s, b_s)))
    rate = n / min(a_s, b_s)
    compared = 0
    try:
        for x, y in zip(_stream(a, rate), _stream(b, rate), strict=False):
            # The perceptual hash as for photos: a black or dark-stage frame leaves too little lit to compare
            # pixel by pixel, and without it every video of the same length became a copy of a black one.
            if not same_shot(x, y, FRAME_MAX_DIFF) or hamming(phash(x), phash(y)) > NEAR_DUPLICATE_MAX_DISTANCE:
                return False
            compared += 1
            if compared == n:
                return True
    except MediaError as e:
        log.debug("cannot compare %s with %s: %s", a, b, e)
    return False


def _stream(path: str | Path, rate: float | None, batch: int = 4) -> Iterator[np.ndarray]:
    """The frames of a video sampled at ``rate`` per second (None: every frame), decoded ``batch`` at a time."""
    for frames in iter_frames(path, sample_fps=rate, batch_size=batch):
        yield from frames.frames

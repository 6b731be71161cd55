"""Re-encoded copies of a video: the same footage at another size, bitrate or codec is counted once.

A byte-identical copy is found by its SHA-256 (api.py). A re-encoded one has other bytes, so two videos are
compared only when their lengths agree (within half a second or 1 %): then frames at the same times must be
the same shot (:func:`influvision.sources.same_shot`, with a tolerance for video compression: resized,
recompressed or tone-edited, but no region that changed). Two recordings of one scene, say fixed-length segments from one camera, differ wherever anybody moved
and stay two videos; footage in which nothing moves at all would be called a copy.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from ..decode.video import VideoInfo, iter_frames
from ..errors import MediaError
from ..sources import same_shot

log = logging.getLogger(__name__)

# Frames compared, spread evenly over the video.
COMPARED_FRAMES = 8
# Largest shot_difference of a frame and its copy. Video codecs at low bitrates smear more than photo JPEGs:
# nggyup.mp4 re-encoded at 854 px, crf 34 reaches 16.8, dirtydancing at 640 px, crf 38 24.7 (at 426 px, crf 45,
# 46: such a copy counts as a video of its own); two 2-s segments of street_crowd.mp4 differ by 194-212.
FRAME_MAX_DIFF = 30.0


def same_length(a: VideoInfo, b: VideoInfo) -> bool:
    """Whether two videos last the same time (within 0.5 s or 1 %), the precondition for being copies."""
    if a.duration_s <= 0 or b.duration_s <= 0:
        return False
    return abs(a.duration_s - b.duration_s) <= max(0.5, 0.01 * max(a.duration_s, b.duration_s))


def same_footage(a: str | Path, info_a: VideoInfo, b: str | Path, info_b: VideoInfo,
                 frames: int = COMPARED_FRAMES) -> bool:
    """Whether video ``b`` is a re-encoded copy of video ``a``: the same length, and ``frames`` frames at the
    same times that are each the same shot. Decodes both (only when their lengths agree); a video that
    cannot be decoded is no copy."""
    if not same_length(info_a, info_b):
        return False
    rate = frames / min(info_a.duration_s, info_b.duration_s)
    try:
        fa, fb = _frames(a, rate, frames), _frames(b, rate, frames)
    except MediaError as e:
        log.debug("cannot compare %s with %s: %s", a, b, e)
        return False
    return len(fa) == len(fb) == frames and all(same_shot(x, y, FRAME_MAX_DIFF) for x, y in zip(fa, fb, strict=True))


def _frames(path: str | Path, rate: float, n: int) -> list[np.ndarray]:
    out: list[np.ndarray] = []
    for batch in iter_frames(path, sample_fps=rate, batch_size=n):
        out += batch.frames
        if len(out) >= n:
            break
    return out[:n]

"""The working copies the logo searches and the logo sharpness measure work on, and the area downscaling of
large photos to them.

OpenCV's area resampling (``INTER_AREA``) is fast only for a whole-number factor; shrinking a 12-megapixel
photo to 800 px by a factor like 5.2 costs 40-45 ms on one core, about as much as the search it feeds on a
photo with nothing in it. :func:`shrink` first averages whole ``k`` x ``k`` blocks (the fast path) and then
resamples the rest of the factor, at least 2, by area: the same box averages but for the soft edges of the
second step's boxes, in about half the time (12-megapixel copies of the shared scenes at 800 and 1000 px:
within 0.2-1.3 grey levels of ``INTER_AREA`` on average). Left to the second step alone, a factor near 1
would be an interpolation that moves edges by a fraction of a pixel (2-3 grey levels on average).
"""

from __future__ import annotations

import cv2
import numpy as np


def work_scale(width: int, height: int, work_side: int, max_upscale: float) -> float:
    """Scale of the copy a search works on: its longer side ``work_side``, small images enlarged at most
    ``max_upscale`` times."""
    return min(max_upscale, work_side / max(width, height, 1))


def rescaled(image: np.ndarray, scale: float) -> np.ndarray:
    """``image`` (H, W) or (H, W, C) uint8 at ``scale``: itself (contiguous) at 1, :func:`shrink` below, bicubic
    above."""
    h, w = image.shape[:2]
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    if scale == 1:
        return np.ascontiguousarray(image)
    if scale < 1:
        return shrink(image, size)
    return cv2.resize(image, size, interpolation=cv2.INTER_CUBIC)


def block_mean(image: np.ndarray, k: int) -> np.ndarray:
    """``image`` averaged in whole ``k`` x ``k`` blocks (OpenCV's fast area path), its last ``H mod k`` rows and
    ``W mod k`` columns dropped."""
    h, w = image.shape[:2]
    return cv2.resize(image[: h - h % k, : w - w % k], (w // k, h // k), interpolation=cv2.INTER_AREA)


def shrink(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``image`` (H, W) or (H, W, C) uint8 resampled by area to ``size`` (width, height), both sides at most
    the image's.

    An image at least four times larger on both sides is first averaged in ``k`` x ``k`` blocks
    (:func:`block_mean`), ``k`` half the factor or less: the dropped rows and columns are under ``k`` source
    pixels (1-2 for the logo searches' copies of a 12-megapixel photo), which callers map back as if the whole
    image had been resampled. A whole-number factor is resampled in one step (OpenCV's fast path already).
    """
    h, w = image.shape[:2]
    out_w, out_h = size
    if not (0 < out_w <= w and 0 < out_h <= h):
        raise ValueError(f"shrink: size {size} is not within the image's {w} x {h}")
    k = min(w // out_w, h // out_h) // 2
    whole = w % out_w == 0 and h % out_h == 0 and w // out_w == h // out_h
    if k >= 2 and not whole:
        image = block_mean(image, k)
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)

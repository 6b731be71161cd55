"""Brightening dim photos before a search that counts contrast in grey levels.

Darkness squeezes the contrast of a face or a mark into a few grey levels, where a detector's fixed steps
(MSER's stability step, MTCNN's learned filters) no longer see it. A gamma curve that takes the photo's mean
grey level to :data:`LIFT_MEAN` spreads the dark tones again. It also amplifies noise and JPEG blocks, and
on some photos it loses what the dark original showed, so callers search a dim photo twice (as it is and
brightened) and keep what either finds.
"""

from __future__ import annotations

import math

import cv2
import numpy as np
import torch
from torch import Tensor

# The mean grey level (0-255) a dim photo's mean is taken to.
LIFT_MEAN = 110.0
# Rec. 601 luma weights of R, G, B (OpenCV's RGB -> grey).
LUMA = (0.299, 0.587, 0.114)


def lift_gamma(mean: float) -> float:
    """The exponent g of ``255 * (x / 255) ** g`` that takes a mean grey level ``mean`` to :data:`LIFT_MEAN`
    (1.0 for a mean already at or above it)."""
    if mean >= LIFT_MEAN:
        return 1.0
    return math.log(LIFT_MEAN / 255.0) / math.log(max(mean, 1.0) / 255.0)


def lifted(image: np.ndarray, below: float) -> np.ndarray:
    """A uint8 RGB (H, W, 3) or grey (H, W) image whose mean grey level is under ``below``, brightened by
    :func:`lift_gamma`; the image itself otherwise."""
    if not image.size:
        return image
    mean = float((cv2.cvtColor(image, cv2.COLOR_RGB2GRAY) if image.ndim == 3 else image).mean())
    if mean >= below:
        return image
    lut = np.clip(255.0 * (np.arange(256) / 255.0) ** lift_gamma(mean) + 0.5, 0, 255).astype(np.uint8)
    return cv2.LUT(image, lut)


def grey_means(images: list[Tensor]) -> Tensor:
    """(B,) mean grey level of (3, H, W) float RGB images in 0-255, on their device."""
    w = torch.tensor(LUMA, dtype=torch.float32, device=images[0].device)
    return torch.stack([(x.mean(dim=(1, 2)) * w).sum() for x in images])


def lifted_tensor(x: Tensor, mean: float) -> Tensor:
    """A (3, H, W) float RGB image in 0-255 with mean grey level ``mean``, brightened by :func:`lift_gamma`
    and rounded to whole grey levels (as decoded pixels are)."""
    return (x / 255.0).pow(lift_gamma(mean)).mul(255.0).round()

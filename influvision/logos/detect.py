"""The logo detector front: validates input, runs the matcher, scores and de-duplicates its candidates.

Only geometrically verified evidence is reported: every box comes from a RANSAC homography between a
registered reference and the photo (see :mod:`influvision.logos.matcher`). A brand that is not matched
is simply absent; there is no fallback that guesses.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import torch

from ..errors import InfluvisionError, ShapeError
from ..types import Logos
from .matcher import VIEWS, Candidate, SiftMatcher
from .references import LogoReference

log = logging.getLogger(__name__)

# Inliers at which the inlier part of the score reaches one half.
_INLIER_HALF = 10.0


class LogoDetector:
    """Finds registered brand marks in photos.

    Args:
        references: the brands to look for, from :func:`~influvision.logos.references.load_reference`;
            ``Logos.brand`` indexes this list. Names must be unique.
        device: torch device for descriptor matching and for the returned :class:`~influvision.types.Logos`
            (feature extraction and RANSAC run on the CPU).
        min_inliers: RANSAC inliers (at distinct reference points) a detection needs. Lower finds more
            and risks more false brands.
        ratio: Lowe ratio threshold; the runner-up is the best match of another brand or another place.
        min_score: detections scoring below this are dropped (scores are in [0, 1]).
        work_side: photos are resampled so their longer side is this many pixels (at most 2x upscaling)
            before feature extraction; it bounds the time per photo.
        max_features: SIFT features kept per photo.
        views: (tilt, longitude in degrees) affine simulations of each reference; more views match
            stronger perspective at the cost of construction time and matching work.

    Raises:
        InfluvisionError: no references.
    """

    def __init__(self, references: Sequence[LogoReference], *, device: str | torch.device = "cpu",
                 min_inliers: int = 8, ratio: float = 0.8, min_score: float = 0.0, work_side: int = 1000,
                 max_features: int = 4000, views: Sequence[tuple[float, float]] = VIEWS) -> None:
        if not references:
            raise InfluvisionError("LogoDetector needs at least one registered brand reference")
        # Several references may share a brand name (e.g. a wordmark and an emblem): each is matched on
        # its own and ``brands[i]`` maps a detection back to its brand.
        self.references = list(references)
        self.device = torch.device(device)
        self.min_score = min_score
        self._matcher = SiftMatcher(self.references, device=self.device, min_inliers=min_inliers, ratio=ratio,
                                    work_side=work_side, max_features=max_features, views=views)

    @property
    def brands(self) -> list[str]:
        """Brand name of each reference, in index order (``Logos.brand`` values index this list)."""
        return [r.name for r in self.references]

    def detect(self, images: Sequence[np.ndarray]) -> Logos:
        """Detect registered logos in a batch of photos.

        Args:
            images: K arrays of shape (H, W, 3), dtype uint8, RGB. Any size; large photos are downscaled
                internally and boxes are returned in the source pixels.

        Returns:
            :class:`~influvision.types.Logos` with M rows on ``device``: ``image_index`` (M,) int64,
            ``boxes`` (M, 4) float32 x1, y1, x2, y2 in source pixels, ``scores`` (M,) float32 in [0, 1],
            ``brand`` (M,) int64, and columns ``inliers`` (M,) int64 (RANSAC inliers) and ``agreement``
            (M,) float32 (|correlation| of the photo with the reference shape inside the box, in [0, 1]).
            Several instances per photo and brand are possible. An empty ``images`` or photos with no
            registered logo give M = 0.

        Raises:
            ShapeError: an image is not an (H, W, 3) uint8 array.
        """
        for k, img in enumerate(images):
            if not isinstance(img, np.ndarray) or img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
                got = (type(img).__name__ if not isinstance(img, np.ndarray)
                       else f"{tuple(img.shape)} {img.dtype}")
                raise ShapeError(f"images[{k}]", "an (H, W, 3) uint8 RGB array", got)
        if len(images) == 0:
            return _with_columns(Logos.empty(self.device))
        cands = self._matcher.match(list(images))
        scored = [(c, _score(c)) for c in cands]
        scored = [(c, s) for c, s in scored if s >= self.min_score]
        kept = _suppress(scored)
        log.debug("logo detection: %d images, %d candidates, %d kept", len(images), len(cands), len(kept))
        if not kept:
            return _with_columns(Logos.empty(self.device))
        dev = self.device
        return Logos(
            image_index=torch.tensor([c.image_index for c, _ in kept], dtype=torch.long, device=dev),
            boxes=torch.tensor([c.box for c, _ in kept], dtype=torch.float32, device=dev),
            scores=torch.tensor([s for _, s in kept], dtype=torch.float32, device=dev),
            brand=torch.tensor([c.brand for c, _ in kept], dtype=torch.long, device=dev),
            columns={
                "inliers": torch.tensor([c.inliers for c, _ in kept], dtype=torch.long, device=dev),
                "agreement": torch.tensor([abs(c.agreement) for c, _ in kept], dtype=torch.float32, device=dev),
            },
        )


def _with_columns(empty: Logos) -> Logos:
    dev = empty.boxes.device
    return Logos(empty.image_index, empty.boxes, empty.scores, empty.brand,
                 {"inliers": torch.zeros(0, dtype=torch.long, device=dev),
                  "agreement": torch.zeros(0, dtype=torch.float32, device=dev)})


def _score(c: Candidate) -> float:
    """Confidence in [0, 1] from the inlier count and the shape agreement.

    Inliers carry most of the weight (0.5 at ``_INLIER_HALF``, towards 1 beyond); the agreement of the
    photo with the reference's silhouette inside the fitted quad adds up to 30 %.
    """
    inl = c.inliers / (c.inliers + _INLIER_HALF)
    return float(np.clip(0.7 * inl + 0.3 * min(1.0, abs(c.agreement) / 0.6), 0.0, 1.0))


def _suppress(scored: list[tuple[Candidate, float]], iou: float = 0.5) -> list[tuple[Candidate, float]]:
    """Greedy NMS per image over all brands: two brands cannot own one place; the stronger one stays."""
    scored = sorted(scored, key=lambda cs: -cs[1])
    kept: list[tuple[Candidate, float]] = []
    for c, s in scored:
        if all(k.image_index != c.image_index or _box_iou(k.box, c.box) < iou for k, _ in kept):
            kept.append((c, s))
    return kept


def _box_iou(a: Sequence[float], b: Sequence[float]) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0

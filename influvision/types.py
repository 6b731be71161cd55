"""The columnar structures passed between pipeline stages.

Stages pass one :class:`Faces` batch instead of lists of per-face objects: N faces found in a batch of
images, each column a tensor with N rows on one device. A stage fills its columns and hands the batch on;
selecting faces is one index or boolean mask applied to every column.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

from .errors import ShapeError


def check_rgb_images(images: Sequence[object]) -> None:
    """Raise :class:`ShapeError` naming the first item of ``images`` that is not an (H, W, 3) uint8 array."""
    for k, img in enumerate(images):
        if not isinstance(img, np.ndarray) or img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
            got = type(img).__name__ if not isinstance(img, np.ndarray) else f"{tuple(img.shape)} {img.dtype}"
            raise ShapeError(f"images[{k}]", "an (H, W, 3) uint8 RGB array", got)

# MTCNN's 5 landmarks, in image terms: left eye, right eye, nose tip, mouth left corner, mouth right corner
# ("left" = smaller x in the image).
LANDMARK_NAMES = ("left_eye", "right_eye", "nose", "mouth_left", "mouth_right")


@dataclass(frozen=True)
class Faces:
    """N detected faces over a batch of images.

    Attributes:
        image_index: (N,) int64, which image of the batch each face is in.
        boxes: (N, 4) float32, x1, y1, x2, y2 in the source image's pixels.
        scores: (N,) float32, detector confidence in [0, 1].
        landmarks: (N, 5, 2) float32, x, y in source pixels, order of :data:`LANDMARK_NAMES`.
        columns: further (N, ...) columns added by later stages, e.g. ``embedding`` (N, D),
            ``size_px``, ``frontalness``, ``sharpness``, ``identity`` (N,) int64 with -1 for unknown,
            ``similarity`` (N,).
    """

    image_index: Tensor
    boxes: Tensor
    scores: Tensor
    landmarks: Tensor
    columns: dict[str, Tensor] = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = self.image_index.shape[0]
        if self.boxes.ndim != 2 or self.boxes.shape[-1] != 4:
            raise ShapeError("boxes", "(N, 4)", tuple(self.boxes.shape))
        if self.landmarks.shape[1:] != (5, 2):
            raise ShapeError("landmarks", "(N, 5, 2)", tuple(self.landmarks.shape))
        for name, col in (("boxes", self.boxes), ("scores", self.scores), ("landmarks", self.landmarks),
                          *self.columns.items()):
            if col.shape[0] != n:
                raise ShapeError(f"column {name!r}", f"{n} rows like image_index", col.shape[0])

    def __len__(self) -> int:
        return int(self.image_index.shape[0])

    @property
    def device(self) -> torch.device:
        return self.boxes.device

    def __getitem__(self, index: Tensor | slice | Sequence[int]) -> Faces:
        """Select faces by boolean mask, integer indices or slice; every column follows."""
        if isinstance(index, Sequence) and not isinstance(index, Tensor):
            index = torch.as_tensor(index, dtype=torch.long, device=self.device)
        return Faces(
            image_index=self.image_index[index],
            boxes=self.boxes[index],
            scores=self.scores[index],
            landmarks=self.landmarks[index],
            columns={k: v[index] for k, v in self.columns.items()},
        )

    def with_columns(self, **columns: Tensor) -> Faces:
        """A new batch with these columns added or replaced."""
        return Faces(self.image_index, self.boxes, self.scores, self.landmarks, {**self.columns, **columns})

    def to(self, device: torch.device | str) -> Faces:
        return Faces(
            self.image_index.to(device),
            self.boxes.to(device),
            self.scores.to(device),
            self.landmarks.to(device),
            {k: v.to(device) for k, v in self.columns.items()},
        )

    def for_image(self, i: int) -> Faces:
        return self[self.image_index == i]

    @staticmethod
    def empty(device: torch.device | str = "cpu") -> Faces:
        return Faces(
            image_index=torch.zeros(0, dtype=torch.long, device=device),
            boxes=torch.zeros(0, 4, device=device),
            scores=torch.zeros(0, device=device),
            landmarks=torch.zeros(0, 5, 2, device=device),
        )

    @staticmethod
    def cat(batches: Sequence[Faces], image_offsets: Sequence[int] | None = None) -> Faces:
        """Concatenate batches; ``image_offsets[k]`` is added to batch k's image_index."""
        if not batches:
            return Faces.empty()
        offsets = image_offsets or [0] * len(batches)
        keys = set(batches[0].columns)
        for b in batches[1:]:
            keys &= set(b.columns)
        return Faces(
            image_index=torch.cat([b.image_index + o for b, o in zip(batches, offsets, strict=True)]),
            boxes=torch.cat([b.boxes for b in batches]),
            scores=torch.cat([b.scores for b in batches]),
            landmarks=torch.cat([b.landmarks for b in batches]),
            columns={k: torch.cat([b.columns[k] for b in batches]) for k in sorted(keys)},
        )


@dataclass(frozen=True)
class Logos:
    """M detected logos over a batch of images (same conventions as :class:`Faces`).

    Attributes:
        image_index: (M,) int64, which image of the batch.
        boxes: (M, 4) float32, x1, y1, x2, y2 in source pixels.
        scores: (M,) float32 in [0, 1], detector confidence.
        brand: (M,) int64, index into the list of brands the detector was built with.
        columns: further (M, ...) columns, e.g. ``inliers``, ``method`` codes.
    """

    image_index: Tensor
    boxes: Tensor
    scores: Tensor
    brand: Tensor
    columns: dict[str, Tensor] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.image_index.shape[0])

    def __getitem__(self, index: Tensor | slice) -> Logos:
        return Logos(self.image_index[index], self.boxes[index], self.scores[index], self.brand[index],
                     {k: v[index] for k, v in self.columns.items()})

    def for_image(self, i: int) -> Logos:
        return self[self.image_index == i]

    @staticmethod
    def empty(device: torch.device | str = "cpu") -> Logos:
        return Logos(torch.zeros(0, dtype=torch.long, device=device), torch.zeros(0, 4, device=device),
                     torch.zeros(0, device=device), torch.zeros(0, dtype=torch.long, device=device))

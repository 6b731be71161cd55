"""Detection -> alignment -> quality -> embedding for a batch of images, on one device.

This is the face half of the engine: one call per batch, no Python loop over faces, and the result stays
on the device (a :class:`~influvision.types.Faces` batch with ``embedding``, ``size_px``, ``frontalness``
and ``sharpness`` columns) until the caller copies what it reports.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
import torch

from ..types import Faces
from .align import align_to_chip
from .detect import FaceDetector
from .embed import PRECISIONS, load_embedder, resolve_device
from .quality import face_quality
from .resolution import RESOLUTION_LEVELS, at_resolution

Precision = Literal["auto", "fp32", "bf16"]

# Whether precision="auto" embeds in bfloat16 on CUDA. Measured on the CPU (docs/models.md): bf16 moves
# dlib descriptors by at most 0.010 Euclidean (cosine >= 0.99997) against a threshold of 0.5 and a margin
# of 0.04, and changes no identity on the shared scenes. The CPU stays float32 (bf16 is slower there).
BF16_ON_CUDA = True


def resolve_precision(precision: Precision | str, device: torch.device) -> str:
    """``"auto"`` -> ``"bf16"`` on CUDA (when :data:`BF16_ON_CUDA`), else ``"fp32"``; others unchanged.

    Raises:
        ValueError: not one of ``"auto"``, ``"fp32"``, ``"bf16"``.
    """
    if precision == "auto":
        return "bf16" if device.type == "cuda" and BF16_ON_CUDA else "fp32"
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be 'auto', 'fp32' or 'bf16', got {precision!r}")
    return str(precision)


def _to_device(image: np.ndarray | torch.Tensor, device: torch.device) -> torch.Tensor:
    """One image onto ``device``. The copy is asynchronous when the host memory is pinned (the photo
    loader pins decoded photos when the engine runs on CUDA); otherwise it is an ordinary copy."""
    if isinstance(image, np.ndarray) and not image.flags.writeable:
        image = image.copy()  # torch refuses to wrap read-only arrays without a warning
    return torch.as_tensor(image).to(device, non_blocking=True)


class FacePipeline:
    """Finds, aligns, rates and embeds every face in a batch of images.

    Args:
        embedder: registered embedder name.
        device: ``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:1"``...
        min_face_size: smallest face the detector looks for, in pixels of the image it searches.
        max_side: larger photos are searched on a copy downscaled to this long side (boxes map back to
            source pixels), so in a photo with long side L > max_side faces under
            ``min_face_size * L / max_side`` source pixels are missed.
        flip: average each face's embedding with its mirror's (test-time augmentation).
        precision: the embedder's arithmetic for faces found in images: ``"fp32"``, ``"bf16"`` (bfloat16
            autocast, channels_last) or ``"auto"`` (bf16 on CUDA, fp32 elsewhere; see :data:`BF16_ON_CUDA`).
            Reference variants (:meth:`embed_resolution_variants`) are always float32.

    Raises:
        ValueError: an unknown ``precision``.
    """

    def __init__(self, embedder: str = "dlib-resnet-v1", device: str | torch.device = "auto", *,
                 min_face_size: int = 20, max_side: int = 1600, flip: bool = True,
                 precision: Precision = "auto"):
        self.device = resolve_device(device)
        self.precision = resolve_precision(precision, self.device)
        self.detector = FaceDetector(self.device, min_face_size=min_face_size, max_side=max_side)
        self.embedder = load_embedder(embedder, device=self.device)
        self.flip = flip

    def __call__(self, images: Sequence[np.ndarray | torch.Tensor], *, keep_chips: bool = False) -> Faces:
        """Args: uint8 RGB HWC images of any sizes; ``keep_chips`` adds the aligned chips as column
        ``chip`` (N, S, S, 3) uint8. Returns all their faces with quality and embeddings."""
        on_device = [_to_device(im, self.device) for im in images]
        faces = self.detector.detect(on_device)
        return self._describe(on_device, faces, keep_chips)

    def detect(self, images: Sequence[np.ndarray | torch.Tensor]) -> Faces:
        """The faces of uint8 RGB HWC images: boxes, scores and landmarks only (no alignment or embedding)."""
        return self.detector.detect([_to_device(im, self.device) for im in images])

    def _describe(self, on_device: list[torch.Tensor], faces: Faces, keep_chips: bool) -> Faces:
        dim = self.embedder.dim
        if len(faces) == 0:
            z = torch.zeros(0, device=self.device)
            extra = {"chip": torch.zeros(0, self.embedder.input_size, self.embedder.input_size, 3,
                                         dtype=torch.uint8, device=self.device)} if keep_chips else {}
            return faces.with_columns(embedding=torch.zeros(0, dim, device=self.device),
                                      size_px=z, frontalness=z, sharpness=z, **extra)
        chips = align_to_chip(on_device, faces.image_index, faces.landmarks, size=self.embedder.input_size)
        quality = face_quality(faces, chips=chips)
        quality.pop("score", None)  # already the batch's `scores`
        embedding = self.embedder.embed(chips, flip=self.flip, precision=self.precision)
        extra = {"chip": chips} if keep_chips else {}
        return faces.with_columns(embedding=embedding, **quality, **extra)

    def embed_resolution_variants(self, chips: torch.Tensor) -> torch.Tensor:
        """(N, S, S, 3) uint8 chips -> (L, N, D) embeddings of the chips re-rendered at each of
        ``RESOLUTION_LEVELS`` (references for resolution-matched comparison of small faces)."""
        rendered = torch.cat([at_resolution(chips, level) for level in RESOLUTION_LEVELS])  # one embed call
        return self.embedder.embed(rendered, flip=self.flip).reshape(len(RESOLUTION_LEVELS), chips.shape[0], -1)

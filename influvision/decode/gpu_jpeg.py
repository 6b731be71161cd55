"""JPEG decoding on the GPU in batches, with the CPU loader as the reference and the fallback.

On CUDA the photo engine splits a JPEG's decode in two:

1. a CPU decode worker reads the file and runs every check the CPU loader runs before it decodes pixels
   (header and size limits, the marker walk, FFmpeg's strict decode of the compressed data, the EXIF
   orientation, the SHA-256 of the bytes): :func:`prepare_jpeg` returns a :class:`PendingJpeg`, or None when
   anything is unusual, in which case the CPU loader decodes the file as usual and names it if it is bad;
2. the main thread decodes the pending files of a batch with one ``torchvision.io.decode_jpeg(list, device=
   "cuda")`` call (:func:`decode_pending`), applies the EXIF orientation on the device exactly as
   :func:`influvision.decode.images.load_image` does, and copies each photo to the host once (duplicate
   detection and annotation need host pixels). A batch that fails is retried file by file; a file that
   still fails, or comes out at a size other than its header's, goes back to the CPU loader.

Only plain JPEGs go to the GPU: baseline, extended or progressive Huffman coding, greyscale or YCbCr, with
an end marker and no Adobe "stored as RGB" transform. CMYK/YCCK, arithmetic coding, MPO, truncated or damaged
files always take the CPU path, so their errors read the same as without a GPU.

The SHA-256 (duplicates, checkpoint keys) is of the same bytes either way. The pixels of a GPU decode are
nvJPEG's: they may differ from libjpeg's by the rounding of the inverse DCT and chroma upsampling (a level or
two), so a perceptual hash or a borderline face can differ in rare cases.
``decode_pending(..., device="cpu")`` runs the same code with libjpeg, which gives exactly the CPU loader's
pixels (tested).
"""

from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from ..errors import MediaError
from .images import (
    DEFAULT_MAX_PIXELS,
    DecodedImage,
    _check_jpeg,
    _jpeg_entropy_problem,
    _open,
    _orientation,
    _read_file,
    decode_jpeg_tensors,
    load_image,
    plain_jpeg,
)

logger = logging.getLogger(__name__)

__all__ = ["PendingJpeg", "cpu_fallback", "decode_pending", "gpu_decodable", "orient_tensor", "prepare_jpeg"]


@dataclass
class PendingJpeg:
    """A JPEG read and checked on the CPU, its pixels not decoded yet.

    Attributes:
        path: the name shown to users (error messages, :attr:`DecodedImage.path`).
        data: the file's bytes, a 1-D uint8 CPU tensor (what ``decode_jpeg`` takes).
        orientation: EXIF orientation 1-8 to apply after decoding.
        width, height: size after orientation, from the header.
        original_mode: Pillow's mode of the file, ``"RGB"`` or ``"L"``.
        sha256: hex SHA-256 of the bytes.
    """

    path: str
    data: Tensor
    orientation: int
    width: int
    height: int
    original_mode: str
    sha256: str

    @property
    def raw(self) -> bytes:
        """The file's bytes."""
        return self.data.numpy().tobytes()


def gpu_decodable(data: bytes, label: str, max_pixels: int = DEFAULT_MAX_PIXELS) -> PendingJpeg | None:
    """A :class:`PendingJpeg` when ``data`` is a JPEG the GPU path may decode, else None (use the CPU loader).

    Runs the CPU loader's checks that come before decoding pixels; any problem, or any feature outside
    the GPU path (see the module docstring), gives None, so the CPU loader reports bad files.

    Args:
        data: the file's bytes.
        label: the name used for the photo.
        max_pixels: as in :func:`~influvision.decode.images.load_image`.
    """
    if len(data) < 4 or data[:3] != b"\xff\xd8\xff":
        return None
    try:
        im = _open(data, label, max_pixels)
    except MediaError:
        return None
    if im.format != "JPEG":
        return None
    rep = _check_jpeg(data)
    if not plain_jpeg(im, rep):
        return None
    if _jpeg_entropy_problem(data[:rep.end]):
        return None
    orientation = _orientation(im, label)
    w, h = im.size
    if orientation >= 5:
        w, h = h, w
    buf = torch.frombuffer(bytearray(data), dtype=torch.uint8)
    return PendingJpeg(path=label, data=buf, orientation=orientation, width=w, height=h,
                       original_mode=im.mode, sha256=hashlib.sha256(data).hexdigest())


def prepare_jpeg(path: str | os.PathLike[str], name: str,
                 max_pixels: int = DEFAULT_MAX_PIXELS) -> PendingJpeg | DecodedImage:
    """CPU-worker half of a GPU decode: the file as a :class:`PendingJpeg`, or decoded by the CPU loader.

    Args:
        path: the file to read.
        name: the name used in errors and :attr:`DecodedImage.path`.
        max_pixels: as in :func:`~influvision.decode.images.load_image`.

    Returns:
        A :class:`PendingJpeg` for the GPU, or the CPU loader's :class:`DecodedImage` for any other file.

    Raises:
        MediaError: the file cannot be read or decoded (the CPU loader's message).
    """
    data = _read_file(Path(path), name)
    pending = gpu_decodable(data, name, max_pixels)
    if pending is not None:
        return pending
    return load_image(data, name=name, max_pixels=max_pixels)


def cpu_fallback(pending: PendingJpeg, max_pixels: int = DEFAULT_MAX_PIXELS) -> DecodedImage | MediaError:
    """Decode a pending JPEG with the CPU loader (after the GPU refused it); errors are returned."""
    try:
        return load_image(pending.raw, name=pending.path, max_pixels=max_pixels)
    except MediaError as e:
        return e


def orient_tensor(image: Tensor, orientation: int) -> Tensor:
    """Apply EXIF orientation 1-8 to an (H, W, C) tensor on any device, exactly as the CPU loader does.

    The same transforms as :func:`influvision.decode.images._orient` (and ``PIL.ImageOps.exif_transpose``);
    returns a view where possible, so call ``.contiguous()`` before relying on the layout.
    """
    if orientation == 2:
        return image.flip(1)
    if orientation == 3:
        return image.flip((0, 1))
    if orientation == 4:
        return image.flip(0)
    if orientation == 5:
        return image.transpose(0, 1)
    if orientation == 6:
        return torch.rot90(image, k=-1, dims=(0, 1))
    if orientation == 7:
        return image.flip((0, 1)).transpose(0, 1)
    if orientation == 8:
        return torch.rot90(image, k=1, dims=(0, 1))
    return image


def _decode(data: list[Tensor], device: torch.device) -> list[Tensor]:
    return decode_jpeg_tensors(data, device)


def _decode_each(pending: list[PendingJpeg], device: torch.device) -> list[Tensor | None]:
    """One batched decode; if it fails, file by file; None where a file fails alone."""
    try:
        return list(_decode([p.data for p in pending], device))
    except Exception as e:  # one bad file fails the whole batched call
        logger.debug("batched JPEG decode on %s failed (%s); decoding file by file", device, e)
    out: list[Tensor | None] = []
    for p in pending:
        try:
            out.append(_decode([p.data], device)[0])
        except Exception as e:
            logger.info("%s: JPEG decode on %s failed (%s); decoding on the CPU", p.path, device, e)
            out.append(None)
    return out


def decode_pending(pending: list[PendingJpeg], device: str | torch.device = "cuda",
                   max_pixels: int = DEFAULT_MAX_PIXELS,
                   ) -> list[tuple[DecodedImage | MediaError, Tensor | None]]:
    """Decode pending JPEGs on ``device`` in one batch, oriented, with one host copy each.

    Args:
        pending: from :func:`prepare_jpeg`.
        device: ``"cuda"`` (nvJPEG) in the engine; ``"cpu"`` (libjpeg) runs the same steps on the host.
        max_pixels: for the CPU fallback.

    Returns:
        For each file, in order: ``(DecodedImage, on_device)`` with host ``pixels`` (pinned on CUDA) and
        the (H, W, 3) uint8 pixels on ``device``, or, for a file the device could not decode, the CPU
        loader's ``(DecodedImage, None)`` or ``(MediaError, None)``.
    """
    dev = torch.device(device)
    if not pending:
        return []
    decoded = _decode_each(pending, dev)
    out: list[tuple[DecodedImage | MediaError, Tensor | None]] = []
    copied = False
    for p, chw in zip(pending, decoded, strict=True):
        on_device = None
        if chw is not None and chw.ndim == 3 and chw.shape[0] == 3:
            on_device = orient_tensor(chw.permute(1, 2, 0), p.orientation).contiguous()
            if tuple(on_device.shape[:2]) != (p.height, p.width):
                logger.info("%s: decoded at %s, header says %d x %d; decoding on the CPU", p.path,
                            tuple(on_device.shape[:2]), p.width, p.height)
                on_device = None
        if on_device is None:
            out.append((cpu_fallback(p, max_pixels), None))
            continue
        host = on_device
        if dev.type != "cpu":
            host = torch.empty(on_device.shape, dtype=torch.uint8, pin_memory=dev.type == "cuda")
            host.copy_(on_device, non_blocking=dev.type == "cuda")
            copied = True
        out.append((_as_decoded(p, host), on_device))
    if dev.type == "cuda" and copied:
        torch.cuda.current_stream(dev).synchronize()  # the host copies are read next (duplicate hashes)
    return out


def _as_decoded(p: PendingJpeg, host: Tensor) -> DecodedImage:
    pixels: np.ndarray = host.numpy()
    if not pixels.flags.writeable:
        pixels = pixels.copy()
    return DecodedImage(path=p.path, pixels=pixels, width=p.width, height=p.height,
                        original_mode=p.original_mode, format="JPEG", sha256=p.sha256)

"""The streaming engine behind :func:`influvision.track` for photos.

One path, whatever the device::

    decode workers (threads) ──> window of 2 x batch photos, in input order
        (pinned host pixels on CUDA; plain JPEGs only read and checked, then decoded together on the GPU)
    ──> in input order: errors, duplicates (sha256 + pHash), finished photos from the checkpoint
    ──> the rest sorted by size, cut into batches ──> analyse(batch) on the device
        (detection, alignment, embedding, one matrix product against the gallery, one host copy)
    ──> entries back in input order; annotation and checkpoint per analysed photo.

The loader keeps decoding the next window while a window is analysed (bounded prefetch), so decoding
overlaps compute. Sorting a window by size puts photos of one size together, so the detector's same-size
buckets hold several photos and shapes stay few; results do not depend on which photos share a batch.

Batch size ``"auto"`` is :func:`auto_batch_size`: from the free device memory and the estimate of
:func:`photo_cost_bytes` on CUDA, :data:`CPU_BATCH_SIZE` elsewhere. When CUDA runs out of memory during a
batch, the cache is emptied and the SAME photos are analysed again in halves (the smaller size is kept for the
rest of the run and logged once); a photo that does not fit alone is reported as skipped with the reason.
:class:`EngineStats` records the sizes used and the retries (the report's ``counts``).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal, TypeVar

import numpy as np
import torch
from torch import Tensor

from .checkpoint import Checkpoint
from .decode.gpu_jpeg import PendingJpeg, decode_pending
from .decode.images import DEFAULT_MAX_PIXELS, DecodedImage
from .decode.loader import iter_decoded, iter_prepared
from .duplicates import DuplicateIndex
from .errors import MediaError
from .hashing import sha256_file
from .report import MediaEntry
from .sources import MediaItem
from .types import Faces

if TYPE_CHECKING:
    from .annotate import FaceSearch

log = logging.getLogger(__name__)

__all__ = [
    "CPU_BATCH_SIZE",
    "BatchRunner",
    "BatchSize",
    "EngineStats",
    "Photo",
    "PhotoEngine",
    "auto_batch_size",
    "photo_cost_bytes",
    "resolve_batch_size",
]

BatchSize = int | Literal["auto"]

CPU_BATCH_SIZE = 8
"""Photos per batch off CUDA with ``batch_size="auto"``: larger batches do not run faster on a CPU."""
MAX_AUTO_BATCH_SIZE = 32
"""Upper bound of the automatic size: the prefetch window (2 x batch decoded photos) lives in host memory."""
NOMINAL_PHOTO_HW = (3000, 4000)
"""The photo the automatic size plans for: 12 megapixels, a phone photo."""
BYTES_PER_WORKING_PIXEL = 48
"""Device bytes per pixel the detector works on (after downscaling to ``max_side``): the float32 copy (12),
the summed-area table (12), P-Net's output maps of every scale (about 4: they are read back once the whole
pyramid is queued), with headroom for the P-Net pyramid level being made (12) and the rest."""
BYTES_PER_SOURCE_PIXEL = 25
"""Device bytes per pixel of the photo as decoded: its uint8 copy on the device (3), on CUDA the GPU-decoded
photos of the prefetch window, twice the batch (6), and the alignment's antialiasing pyramid, which is built
on the photo's own pixels (float32: 12 for the full-size level, up to 4 more for coarser levels that large
faces need). The pyramid is stored only around the faces, so this plans for faces all over the photo."""
DEVICE_RESERVE_BYTES = 2 << 30
"""Device memory left out of the plan: model weights, P-Net's canvases (capped at 2**23 pixels per call),
R-Net/O-Net and embedder chunks (fixed sizes), the transient float copy of one large photo, fragmentation."""
FREE_MEMORY_SHARE = 0.7
"""Share of the free device memory (less the reserve) the automatic size plans to fill."""
# Decoding threads by default: half the cores (the other half run torch's CPU work), 2 to 8. On the GPU
# each JPEG is still read, hashed and strictly checked by FFmpeg on the CPU, so 2 threads on a 16-core
# GPU machine would cap a photo archive at what two cores decode.
MIN_DECODE_WORKERS, MAX_DECODE_WORKERS = 2, 8


def default_workers(cpu_count: int | None = None) -> int:
    """Decoding threads for this machine: half its cores, at least 2 and at most 8."""
    cores = cpu_count if cpu_count is not None else (os.cpu_count() or 2)
    return max(MIN_DECODE_WORKERS, min(MAX_DECODE_WORKERS, cores // 2))


def photo_cost_bytes(height: int, width: int, max_side: int = 1600) -> int:
    """Estimated device memory one ``height x width`` photo adds to a batch, in bytes.

    ``BYTES_PER_WORKING_PIXEL`` x the pixels the detector searches (the photo downscaled to ``max_side`` on
    its long side) + ``BYTES_PER_SOURCE_PIXEL`` x the photo's own pixels. A 12-megapixel photo with
    ``max_side=1600``: about 392 MB. Per-batch work of fixed size is in :data:`DEVICE_RESERVE_BYTES`.

    Raises:
        ValueError: a side below 1.
    """
    if height < 1 or width < 1:
        raise ValueError(f"photo sides must be >= 1, got {height} x {width}")
    r = min(1.0, max_side / max(height, width))
    working = round(height * r) * round(width * r)
    return int(BYTES_PER_WORKING_PIXEL * working + BYTES_PER_SOURCE_PIXEL * height * width)


def auto_batch_size(device: str | torch.device, *, max_side: int = 1600,
                    free_bytes: int | None = None) -> int:
    """Photos per batch for ``device``: planned from free memory on CUDA, :data:`CPU_BATCH_SIZE` elsewhere.

    On CUDA: ``(FREE_MEMORY_SHARE x free - DEVICE_RESERVE_BYTES) / photo_cost_bytes(NOMINAL_PHOTO_HW)``,
    between 1 and :data:`MAX_AUTO_BATCH_SIZE`; e.g. 24 GiB free gives 32 (the cap), 4 GiB gives 2.
    Photos larger than planned are caught by the out-of-memory halving.

    Args:
        device: where the batches run.
        max_side: the detector's ``max_side``.
        free_bytes: free device memory; None asks ``torch.cuda.mem_get_info``.
    """
    dev = torch.device(device)
    if dev.type != "cuda":
        return CPU_BATCH_SIZE
    if free_bytes is None:
        free_bytes, _ = torch.cuda.mem_get_info(dev)
    budget = FREE_MEMORY_SHARE * free_bytes - DEVICE_RESERVE_BYTES
    per_photo = photo_cost_bytes(*NOMINAL_PHOTO_HW, max_side=max_side)
    return int(max(1, min(MAX_AUTO_BATCH_SIZE, budget // per_photo)))


def resolve_batch_size(batch_size: BatchSize, device: str | torch.device, *, max_side: int = 1600) -> int:
    """``"auto"`` -> :func:`auto_batch_size`; a positive int is kept.

    Raises:
        ValueError: neither ``"auto"`` nor an int >= 1.
    """
    if batch_size == "auto":
        return auto_batch_size(device, max_side=max_side)
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be 'auto' or an integer >= 1, got {batch_size!r}")
    return batch_size


@dataclass
class Photo:
    """A decoded photo on its way to a batch.

    Attributes:
        item: where it came from (``item.path`` names it in the report).
        image: host pixels and metadata.
        on_device: the same pixels already on the device (GPU-decoded JPEGs), else None.
    """

    item: MediaItem
    image: DecodedImage
    on_device: Tensor | None = None


AnalyseFn = Callable[[list[Photo]], list[MediaEntry]]
"""The device part of one batch: photos -> one media entry each, in order. Must not change state
outside its result (a batch may be analysed again after running out of memory)."""


@dataclass
class EngineStats:
    """What the engine did with batches (copied into the report's ``counts``).

    Attributes:
        batch_sizes: the batch size it started with, then each size after an out-of-memory halving.
        oom_retries: batches redone after the device ran out of memory (each halving counts one, as does
            a photo that did not fit alone).
    """

    batch_sizes: list[int] = field(default_factory=list)
    oom_retries: int = 0


T = TypeVar("T")
R = TypeVar("R")


def _attempt(analyse: Callable[[list[T]], R], batch: list[T]) -> R | None:
    """``analyse(batch)``, or None when the device ran out of memory.

    Returning from the handler drops the exception and its traceback, and with them the frames that hold
    the batch's device tensors, so the caller can give that memory back before retrying.
    """
    try:
        return analyse(batch)
    except torch.OutOfMemoryError:
        return None


def split_on_oom(faces_fn: Callable[[Sequence[np.ndarray]], Faces], device: torch.device,
                 stats: EngineStats | None = None) -> Callable[[Sequence[np.ndarray]], Faces]:
    """Per-frame face work for videos that, when the device runs out of memory, analyses the same frames
    again in two halves (recursively) and joins the results: no frame is lost or analysed twice.

    Raises (from the returned function):
        MediaError: one frame alone does not fit.
    """
    def run(frames: Sequence[np.ndarray]) -> Faces:
        faces = _attempt(faces_fn, list(frames))
        if faces is not None:
            return faces
        if device.type == "cuda":
            torch.cuda.empty_cache()
        if stats is not None:
            stats.oom_retries += 1
        if len(frames) == 1:
            h, w = frames[0].shape[:2]
            raise MediaError("video", f"not enough {device.type.upper()} memory to analyse one {w} x {h} frame")
        mid = len(frames) // 2
        first, second = run(frames[:mid]), run(frames[mid:])
        if not len(first):
            return Faces.cat([second], [mid])
        if not len(second):
            return first
        return Faces.cat([first, second], [0, mid])

    return run


class BatchRunner:
    """Runs photos through an :data:`AnalyseFn` in batches, halving the batch on out-of-memory errors.

    Args:
        batch_size: photos per batch to start with (>= 1).
        device: where the batches run (its cache is emptied after an out-of-memory error).
        stats: where sizes and retries are recorded.
    """

    def __init__(self, batch_size: int, device: torch.device, stats: EngineStats | None = None):
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.size = batch_size
        self.device = device
        self.stats = stats if stats is not None else EngineStats()
        self.stats.batch_sizes.append(batch_size)

    def run(self, photos: Sequence[Photo], analyse: AnalyseFn,
            on_done: Callable[[Photo, MediaEntry], object] | None = None) -> list[MediaEntry]:
        """One entry per photo, in order; none is lost or analysed into the result twice.

        A batch that runs out of memory is analysed again, from its first photo, in batches of half its
        length; a photo alone that still does not fit gets an entry with ``error`` set. ``on_done`` is called
        with each photo and its entry as soon as its batch is finished.

        Raises:
            RuntimeError: ``analyse`` returned a different number of entries than photos.
        """
        out: list[MediaEntry] = []
        start = 0
        while start < len(photos):
            batch = list(photos[start:start + self.size])
            entries = _attempt(analyse, batch)
            if entries is None:
                self._recover()
                self.stats.oom_retries += 1
                if len(batch) == 1:
                    out.append(self._does_not_fit(batch[0]))
                    if on_done is not None:
                        on_done(batch[0], out[-1])
                    start += 1
                else:
                    self._shrink(len(batch) // 2)
                continue
            if len(entries) != len(batch):
                raise RuntimeError(f"analysis returned {len(entries)} entries for {len(batch)} photos")
            out.extend(entries)
            if on_done is not None:
                for photo, entry in zip(batch, entries, strict=True):
                    on_done(photo, entry)
            start += len(batch)
        return out

    def _recover(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.empty_cache()

    def _shrink(self, size: int) -> None:
        if size < self.size:
            log.warning("%s ran out of memory; analysing photos in batches of %d (was %d)",
                        self.device, size, self.size)
            self.size = size
            self.stats.batch_sizes.append(size)

    def _does_not_fit(self, photo: Photo) -> MediaEntry:
        im = photo.image
        err = MediaError(photo.item.path, f"not enough {self.device.type.upper()} memory to analyse this "
                                          f"{im.width} x {im.height} photo, even alone; analyse it with "
                                          "device='cpu' or free device memory")
        log.warning("%s", err)
        return MediaEntry(path=photo.item.path, kind="photo", width=im.width, height=im.height,
                          error=str(err))


Decoded = DecodedImage | PendingJpeg | MediaError


class PhotoEngine:
    """Streams photos through decode -> duplicates/resume -> size-sorted batches -> ``analyse``.

    Args:
        analyse: the device part of a batch (see :data:`AnalyseFn`).
        device: where ``analyse`` runs.
        batch_size: photos per batch, or ``"auto"`` (:func:`resolve_batch_size`).
        workers: decoding threads; None: :func:`default_workers`.
        max_side: the detector's ``max_side`` (for the automatic batch size).
        gpu_jpeg: decode plain JPEGs on ``device`` in batches (:mod:`influvision.decode.gpu_jpeg`);
            None: on CUDA only.
        max_pixels: largest photo decoded (see :func:`~influvision.decode.images.load_image`).

    Raises:
        ValueError: a bad ``batch_size``.
    """

    def __init__(self, analyse: AnalyseFn, device: str | torch.device, *, batch_size: BatchSize = "auto",
                 workers: int | None = None, max_side: int = 1600, gpu_jpeg: bool | None = None,
                 max_pixels: int = DEFAULT_MAX_PIXELS):
        self.analyse = analyse
        self.device = torch.device(device)
        self.stats = EngineStats()
        self.runner = BatchRunner(resolve_batch_size(batch_size, self.device, max_side=max_side),
                                  self.device, self.stats)
        self.window = max(2 * self.runner.size, 8)
        self.workers = workers if workers is not None else default_workers()
        self.gpu_jpeg = self.device.type == "cuda" if gpu_jpeg is None else gpu_jpeg
        self.pin_memory = self.device.type == "cuda"
        self.max_pixels = max_pixels

    def run(self, items: Sequence[MediaItem], *, checkpoint: Checkpoint | None = None,
            annotate_dir: str | Path | None = None, blur_unknown: bool = False,
            faces_in: FaceSearch | None = None,
            progress: Callable[[int], object] | None = None) -> list[MediaEntry]:
        """One entry per photo item, in the order of ``items``.

        Every photo is decoded, resumed ones too: duplicates are found across runs, in input order. An
        analysed photo is annotated (``annotate_dir``) and recorded in ``checkpoint`` as soon as its batch is
        finished: an interrupted run loses at most the batch in progress.

        Args:
            items: photo items.
            checkpoint: finished photos are taken from it and new ones recorded in it.
            annotate_dir: write annotated copies here.
            blur_unknown: blur unregistered faces in the annotated copies.
            faces_in: with ``blur_unknown``, face boxes per photo by a search for blurring
                (:func:`~influvision.annotate.privacy_search`); every one that is not a named face is blurred too.
            progress: called with the number of photos finished, once per window.
        """
        # Keyed by the item object, not its path: two inputs may be shown under one name.
        results: dict[int, MediaEntry] = {}
        dups = DuplicateIndex()
        originals: dict[str, MediaItem] = {}  # the photo each duplicate group is counted by, by name
        for window in self._windows(items):
            photos, resumed = self._triage(window, dups, originals, checkpoint, results)
            for image, done in resumed:  # annotated again: the copy may be wanted elsewhere, or blurred now
                _annotate(image.pixels, done, annotate_dir, blur_unknown, faces_in)
            # Similar sizes side by side; the sort is stable, so equal sizes keep their input order.
            photos.sort(key=lambda p: (p.image.height, p.image.width))

            def done(photo: Photo, entry: MediaEntry) -> None:
                results[id(photo.item)] = entry
                if entry.error is None:
                    _first_frame_only(photo, entry)
                    self._finish(photo, entry, checkpoint, annotate_dir, blur_unknown, faces_in)

            self.runner.run(photos, self.analyse, on_done=done)
            del photos
            if progress is not None:
                progress(len(window))
        return [results[id(i)] for i in items]

    def _windows(self, items: Sequence[MediaItem]) -> Iterator[list[tuple[MediaItem, Decoded]]]:
        decoded: Iterator[tuple[MediaItem, Decoded]]
        loader = iter_prepared if self.gpu_jpeg else iter_decoded
        decoded = loader(items, workers=self.workers, prefetch=self.window, max_pixels=self.max_pixels,
                         pin_memory=self.pin_memory)
        window: list[tuple[MediaItem, Decoded]] = []
        for pair in decoded:
            window.append(pair)
            if len(window) == self.window:
                yield window
                window = []
        if window:
            yield window

    def _decode_on_device(self, window: list[tuple[MediaItem, Decoded]],
                          ) -> list[tuple[MediaItem, DecodedImage | MediaError, Tensor | None]]:
        """The window, in order, with its pending JPEGs decoded on the device a batch at a time."""
        pending = [(k, dec) for k, (_, dec) in enumerate(window) if isinstance(dec, PendingJpeg)]
        done: dict[int, tuple[DecodedImage | MediaError, Tensor | None]] = {}
        for start in range(0, len(pending), self.runner.size):
            chunk = pending[start:start + self.runner.size]
            decoded = decode_pending([dec for _, dec in chunk], self.device, self.max_pixels)
            done.update(zip((k for k, _ in chunk), decoded, strict=True))
        out: list[tuple[MediaItem, DecodedImage | MediaError, Tensor | None]] = []
        for k, (item, dec) in enumerate(window):
            if isinstance(dec, PendingJpeg):
                out.append((item, *done[k]))
            else:
                out.append((item, dec, None))
        return out

    def _triage(self, window: list[tuple[MediaItem, Decoded]], dups: DuplicateIndex, originals: dict[str, MediaItem],
                ckpt: Checkpoint | None, results: dict[int, MediaEntry],
                ) -> tuple[list[Photo], list[tuple[DecodedImage, MediaEntry]]]:
        """Errors, duplicates and resumed photos of a window go to ``results``; returned: the photos to analyse,
        and the resumed ones with their entries."""
        todo: list[Photo] = []
        resumed: list[tuple[DecodedImage, MediaEntry]] = []
        for item, dec, on_device in self._decode_on_device(window):
            if isinstance(dec, MediaError):
                results[id(item)] = MediaEntry(path=item.path, kind="photo", error=str(dec))
                continue
            earlier = dups.add(item.path, dec.pixels, item.local_path, sha256=dec.sha256)
            if earlier is not None:
                results[id(item)] = MediaEntry(path=item.path, kind="photo", width=dec.width,
                                                height=dec.height, duplicate_of=earlier)
                continue
            old = originals.pop(dups.superseded, None) if dups.superseded is not None else None
            originals[item.path] = item
            if old is not None:  # a far larger copy of an earlier photo: it is counted instead
                first = results.get(id(old))  # analysed in an earlier window, or resumed
                pending = [p for p in todo if p.item is old]  # or still to be analysed in this one
                todo = [p for p in todo if p.item is not old]
                resumed = [(image, e) for image, e in resumed if e is not first]
                w, h = ((pending[0].image.width, pending[0].image.height) if pending else
                        (first.width, first.height) if first is not None else (0, 0))
                for other in results.values():
                    if other.duplicate_of == old.path:
                        other.duplicate_of = item.path
                results[id(old)] = MediaEntry(path=old.path, kind="photo", width=w, height=h,
                                              duplicate_of=item.path)
            done = ckpt.get(item, _content_key(item, dec)) if ckpt is not None else None
            if done is not None:
                results[id(item)] = done
                resumed.append((dec, done))
            else:
                todo.append(Photo(item, dec, on_device))
        return todo, resumed

    @staticmethod
    def _finish(photo: Photo, entry: MediaEntry, ckpt: Checkpoint | None, annotate_dir: str | Path | None,
                blur_unknown: bool, faces_in: FaceSearch | None) -> None:
        _annotate(photo.image.pixels, entry, annotate_dir, blur_unknown, faces_in)
        if ckpt is not None:
            ckpt.put(photo.item, entry, _content_key(photo.item, photo.image))


def _first_frame_only(photo: Photo, entry: MediaEntry) -> None:
    """Mark a photo whose file holds more pages or animation frames than the first, which alone was analysed:
    partly analysed, as a video that stops early (``frames_analysed`` 1 and an ``error`` that says so)."""
    n = photo.image.frames
    if n > 1:
        entry.frames_analysed = 1
        entry.error = (f"{photo.item.path}: the file holds {n} pages or animation frames and only the first was "
                       "analysed; save the others as photos of their own to count them")
        log.warning("%s", entry.error)


def _annotate(pixels: np.ndarray, entry: MediaEntry, annotate_dir: str | Path | None, blur_unknown: bool,
              faces_in: FaceSearch | None = None) -> None:
    """Write the photo's annotated copy when asked, and record it in ``entry.annotated`` (None otherwise)."""
    entry.annotated = None
    if annotate_dir is not None:
        from .annotate import annotate_photo

        try:
            entry.annotated = [str(annotate_photo(pixels, entry, Path(annotate_dir), blur_unknown=blur_unknown,
                                                  faces_in=faces_in))]
        except (OSError, ValueError) as e:  # annotation is a by-product: never fail the run
            log.warning("could not write the annotated copy of %s: %s", entry.path, e)


def _content_key(item: MediaItem, image: DecodedImage) -> str:
    """The checkpoint key of a photo: the SHA-256 its decoder recorded, else that of the file."""
    return image.sha256 or sha256_file(item.local_path)

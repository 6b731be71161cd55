"""Decode photos ahead of the consumer in a small thread pool, yielding them in input order.

Pillow releases the GIL while it decodes, so a few threads keep the detector fed. At most ``prefetch``
photos are submitted or decoded and not yet handed over, so memory stays flat however many photos there are
(roughly ``prefetch`` x the largest photo's H x W x 3 bytes, plus the one the consumer holds).

For a CUDA device the engine asks for pinned (page-locked) pixels, copied there by the worker threads, so
that the host-to-device copies of a batch are asynchronous, and uses :func:`iter_prepared`, whose workers
leave plain JPEGs undecoded for a batched GPU decode (:mod:`influvision.decode.gpu_jpeg`).
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

import numpy as np
import torch

from ..errors import MediaError
from ..sources import MediaItem
from .gpu_jpeg import PendingJpeg, prepare_jpeg
from .images import DEFAULT_MAX_PIXELS, DecodedImage, load_image

logger = logging.getLogger(__name__)

__all__ = ["iter_decoded", "iter_prepared"]

T = TypeVar("T")


def iter_decoded(items: Sequence[MediaItem], *, workers: int = 2, prefetch: int = 8,
                 max_pixels: int = DEFAULT_MAX_PIXELS,
                 pin_memory: bool = False) -> Iterator[tuple[MediaItem, DecodedImage | MediaError]]:
    """Decode photos in background threads; yield ``(item, result)`` in the order of ``items``.

    Args:
        items: photo items (``kind == "photo"``); the file read is ``item.local_path``, errors and
            :attr:`DecodedImage.path` use ``item.path``.
        workers: decoding threads (>= 1).
        prefetch: most photos in flight (submitted or decoded, not yet yielded), >= ``workers``.
        max_pixels: passed to :func:`~influvision.decode.images.load_image`.
        pin_memory: put the pixels in pinned host memory (needs CUDA; for asynchronous copies to it).

    Yields:
        ``(item, DecodedImage)`` with (H, W, 3) uint8 RGB host pixels, or ``(item, MediaError)`` naming the
        photo and the problem; a bad photo never stops the iteration. An empty ``items`` yields nothing.

    Raises:
        ValueError: an item is a video, or ``workers`` / ``prefetch`` are below 1 (checked before any work).

    Stopping early (``break``, ``close()``, garbage collection) cancels what has not started and waits only
    for the at most ``workers`` decodes already running.
    """
    _check_args(items, workers, prefetch)

    def decode(item: MediaItem) -> DecodedImage | MediaError:
        decoded = _guarded(item, lambda: load_image(item.local_path, name=item.path, max_pixels=max_pixels))
        return _pin(decoded, pin_memory)

    return _iterate(list(items), workers, max(prefetch, workers), decode)


def iter_prepared(items: Sequence[MediaItem], *, workers: int = 2, prefetch: int = 8,
                  max_pixels: int = DEFAULT_MAX_PIXELS, pin_memory: bool = False,
                  ) -> Iterator[tuple[MediaItem, DecodedImage | PendingJpeg | MediaError]]:
    """:func:`iter_decoded` for a GPU decode: plain JPEGs come back read and checked, not decoded.

    Each plain JPEG is yielded as a :class:`~influvision.decode.gpu_jpeg.PendingJpeg` (decode it with
    :func:`~influvision.decode.gpu_jpeg.decode_pending`); every other file as :func:`iter_decoded` yields it.
    Arguments, order, bounds and errors are those of :func:`iter_decoded`.
    """
    _check_args(items, workers, prefetch)

    def decode(item: MediaItem) -> DecodedImage | PendingJpeg | MediaError:
        return _pin(_guarded(item, lambda: prepare_jpeg(item.local_path, item.path, max_pixels)), pin_memory)

    return _iterate(list(items), workers, max(prefetch, workers), decode)


def _check_args(items: Sequence[MediaItem], workers: int, prefetch: int) -> None:
    if workers < 1 or prefetch < 1:
        raise ValueError(f"workers and prefetch must be >= 1, got workers={workers}, prefetch={prefetch}")
    videos = [i.path for i in items if i.kind != "photo"]
    if videos:
        raise ValueError(f"iter_decoded decodes photos only; {len(videos)} video item(s) given, "
                         f"e.g. {videos[0]!r}: pass MediaSet.photos")


def _guarded(item: MediaItem, decode: Callable[[], T]) -> T | MediaError:
    try:
        return decode()
    except MediaError as e:
        return e
    except Exception as e:  # a decoder bug must cost one photo, not the run
        logger.exception("unexpected error decoding %s", item.path)
        return MediaError(item.path, f"could not be decoded ({type(e).__name__}: {e})")


def _pin(result: T, pin_memory: bool) -> T:
    """Move a decoded photo's pixels into pinned host memory (in the worker thread, off the hot loop)."""
    if not pin_memory or not isinstance(result, DecodedImage):
        return result
    try:
        pinned = torch.empty(result.pixels.shape, dtype=torch.uint8, pin_memory=True)
    except RuntimeError as e:  # no CUDA driver: pageable memory works, only slower to copy
        logger.debug("cannot pin host memory (%s); using pageable memory", e)
        return result
    # The view keeps the pinned block alive as long as the photo is held; the engine holds it until its
    # batch's results are on the host, which waits for the asynchronous copy to the device.
    view: np.ndarray = pinned.numpy()
    np.copyto(view, result.pixels)
    result.pixels = view
    return result


def _iterate(items: list[MediaItem], workers: int, prefetch: int,
             decode: Callable[[MediaItem], T]) -> Iterator[tuple[MediaItem, T]]:
    if not items:
        return
    pool = ThreadPoolExecutor(max_workers=min(workers, len(items)), thread_name_prefix="influvision-decode")
    pending: deque[tuple[MediaItem, Future[T]]] = deque()
    upcoming = iter(items)
    try:
        for item in upcoming:
            pending.append((item, pool.submit(decode, item)))
            if len(pending) >= prefetch:
                break
        while pending:
            item, future = pending.popleft()
            result = future.result()
            # Refill before yielding so that decoding continues while the consumer works.
            nxt = next(upcoming, None)
            if nxt is not None:
                pending.append((nxt, pool.submit(decode, nxt)))
            del future
            yield item, result
            del result
    finally:
        for _, future in pending:
            future.cancel()
        pending.clear()
        pool.shutdown(wait=True, cancel_futures=True)

"""Decode photos ahead of the consumer in a small thread pool, yielding them in input order.

Pillow releases the GIL while it decodes, so a few threads keep the detector fed. At most ``prefetch``
photos are submitted or decoded and not yet handed over, so memory stays flat however many photos there are
(roughly ``prefetch`` x the largest photo's H x W x 3 bytes, plus the one the consumer holds).
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor

from ..errors import MediaError
from ..sources import MediaItem
from .images import DEFAULT_MAX_PIXELS, DecodedImage, load_image

logger = logging.getLogger(__name__)

__all__ = ["iter_decoded"]


def iter_decoded(items: Sequence[MediaItem], *, workers: int = 2, prefetch: int = 8,
                 max_pixels: int = DEFAULT_MAX_PIXELS) -> Iterator[tuple[MediaItem, DecodedImage | MediaError]]:
    """Decode photos in background threads; yield ``(item, result)`` in the order of ``items``.

    Args:
        items: photo items (``kind == "photo"``); the file read is ``item.local_path``, errors and
            :attr:`DecodedImage.path` use ``item.path``.
        workers: decoding threads (>= 1).
        prefetch: most photos in flight (submitted or decoded, not yet yielded), >= ``workers``.
        max_pixels: passed to :func:`~influvision.decode.images.load_image`.

    Yields:
        ``(item, DecodedImage)`` with (H, W, 3) uint8 RGB host pixels, or ``(item, MediaError)`` naming the
        photo and the problem; a bad photo never stops the iteration. An empty ``items`` yields nothing.

    Raises:
        ValueError: an item is a video, or ``workers`` / ``prefetch`` are below 1 (checked before any work).

    Stopping early (``break``, ``close()``, garbage collection) cancels what has not started and waits only
    for the at most ``workers`` decodes already running.
    """
    if workers < 1 or prefetch < 1:
        raise ValueError(f"workers and prefetch must be >= 1, got workers={workers}, prefetch={prefetch}")
    videos = [i.path for i in items if i.kind != "photo"]
    if videos:
        raise ValueError(f"iter_decoded decodes photos only; {len(videos)} video item(s) given, "
                         f"e.g. {videos[0]!r}: pass MediaSet.photos")
    return _iterate(list(items), workers, max(prefetch, workers), max_pixels)


def _decode(item: MediaItem, max_pixels: int) -> DecodedImage | MediaError:
    try:
        return load_image(item.local_path, name=item.path, max_pixels=max_pixels)
    except MediaError as e:
        return e
    except Exception as e:  # a decoder bug must cost one photo, not the run
        logger.exception("unexpected error decoding %s", item.path)
        return MediaError(item.path, f"could not be decoded ({type(e).__name__}: {e})")


def _iterate(items: list[MediaItem], workers: int, prefetch: int,
             max_pixels: int) -> Iterator[tuple[MediaItem, DecodedImage | MediaError]]:
    if not items:
        return
    pool = ThreadPoolExecutor(max_workers=min(workers, len(items)), thread_name_prefix="influvision-decode")
    pending: deque[tuple[MediaItem, Future[DecodedImage | MediaError]]] = deque()
    upcoming = iter(items)
    try:
        for item in upcoming:
            pending.append((item, pool.submit(_decode, item, max_pixels)))
            if len(pending) >= prefetch:
                break
        while pending:
            item, future = pending.popleft()
            result = future.result()
            # Refill before yielding so that decoding continues while the consumer works.
            nxt = next(upcoming, None)
            if nxt is not None:
                pending.append((nxt, pool.submit(_decode, nxt, max_pixels)))
            del future
            yield item, result
            del result
    finally:
        for _, future in pending:
            future.cancel()
        pending.clear()
        pool.shutdown(wait=True, cancel_futures=True)

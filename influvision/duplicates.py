"""Repeated photos in a run: byte-identical files by SHA-256, and the same shot resized, re-encoded or
tone-edited by a 64-bit DCT perceptual hash confirmed pixel by pixel (:func:`shot_difference`), so that a
photo posted twice is counted once. Video copies: :mod:`influvision.video.duplicates`.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
import scipy.fft

from .decode.images import load_image
from .errors import MediaError, ShapeError
from .hashing import sha256_file

logger = logging.getLogger(__name__)

__all__ = [
    "NEAR_DUPLICATE_MAX_DISTANCE",
    "DuplicateIndex",
    "find_duplicates",
    "hamming",
    "phash",
    "same_shot",
    "shot_difference",
]

# Largest Hamming distance (of 64 bits) between pHashes still called the same photo; chosen by measurement on
# the shared data (see DuplicateIndex and the tests): resized and re-encoded copies stay well below it,
# different photos well above.
NEAR_DUPLICATE_MAX_DISTANCE = 8
# A pHash match is confirmed pixel by pixel (same_shot): the hash of a 32 x 32 thumbnail cannot see a 30 px
# face, so two shots of one scene from a fixed camera hash alike though different people are in them. Largest
# shot_difference of one shot: re-encoded, resized and gamma-edited copies of the 36 shared scene and logo
# photos reach 11.8, a dim 20-30 px face pasted into a copy 11-179 (median 89): `python -m benchmarks.duplicates`.
SAME_SHOT_MAX_DIFF = 14.0
# A near duplicate with at least this many times the pixels of the stored photo takes its place as the one
# analysed: a 240 px web copy met first must not stand for the full-size shot, whose faces it is too small to name.
SUPERSEDE_PIXELS = 2.0
# Colour differences count half: JPEG keeps colour at half resolution and compresses it harder, so a re-encoded
# copy's colour axes differ about twice as much as its grey (quality 40: 9.6 against 4.7 at most).
_CHROMA_WEIGHT = 0.5
# Share of the picture that must be neither black nor white in both photos for them to be compared, unless
# they are clipped in mostly the same places (two black frames; a product photographed on white).
_MIN_COMPARED = 0.5
# Photos narrower than this (in pixels) are duplicates only when byte-identical: 300 noise strips 2 px wide
# gave 123 perceptual-hash "copies" of one another.
MIN_NEAR_DUPLICATE_SIDE = 16
# Longer side at which same_shot compares two photos.
SAME_SHOT_SIDE = 1024


def phash(pixels: np.ndarray) -> int:
    """64-bit DCT perceptual hash of an image.

    Luma at 32 x 32 by area averaging, 2-D DCT-II, the 8 x 8 lowest frequencies compared with the median of
    the 63 AC terms. Robust to resizing, re-compression and mild colour changes; not to crops, rotations or
    mirroring.

    Args:
        pixels: (H, W, 3) uint8 RGB or (H, W) uint8 grey, host memory, H, W >= 1.

    Returns:
        The hash as a Python int in [0, 2**64); bit 63 is coefficient (0, 0), then row-major.
    """
    if pixels.ndim == 3 and pixels.shape[2] == 3:
        grey = cv2.cvtColor(np.ascontiguousarray(pixels), cv2.COLOR_RGB2GRAY)
    elif pixels.ndim == 2:
        grey = np.ascontiguousarray(pixels)
    else:
        raise ShapeError("pixels", "(H, W, 3) RGB or (H, W) grey uint8", tuple(pixels.shape))
    if grey.dtype != np.uint8 or grey.size == 0:
        raise ShapeError("pixels", "non-empty uint8", f"{grey.dtype} {tuple(pixels.shape)}")
    small = cv2.resize(grey, (32, 32), interpolation=cv2.INTER_AREA).astype(np.float64)
    low = scipy.fft.dctn(small, type=2, norm="ortho")[:8, :8].ravel()
    bits = low > np.median(low[1:])
    return int(np.packbits(bits).view(">u8")[0])


def hamming(a: int, b: int) -> int:
    """Number of differing bits between two 64-bit hashes."""
    return (a ^ b).bit_count()


def same_shot(a: np.ndarray, b: np.ndarray, max_diff: float = SAME_SHOT_MAX_DIFF) -> bool:
    """Whether two photos are one shot, resized, re-encoded or tone-edited, and not two shots of one scene:
    their :func:`shot_difference` is at most ``max_diff``."""
    return shot_difference(a, b) <= max_diff


def shot_difference(a: np.ndarray, b: np.ndarray) -> float:
    """The largest mean difference (0-255) of any 8 x 8 patch between two photos of one scene, in grey or, when
    both are in colour, on either colour axis of Lab.

    Both are compared at a common size (at most ``SAME_SHOT_SIDE`` on the longer side), blurred to remove
    compression noise, each channel's levels mapped onto the other photo's and back (a brightness, gamma,
    white-balance or saturation edit is the same shot); pixels clipped to black or white in either are left
    out, and where most of the picture is clipped in one and not in the other the two are never the same
    (``inf``). A person who is in one and not the other makes their patch differ, down to about 30 px high in a
    photo of up to 4000 px (at 4032 px a pasted 20 px face, at 6000 px a 30 px one, were taken for the same shot:
    faces the detector does not search at its default ``max_side`` either), and so does a sponsor's mark that
    differs from the wall it is on only in colour.

    Args:
        a, b: (H, W, 3) uint8 RGB or (H, W) uint8 grey, host memory.
    """
    h, w = min(a.shape[0], b.shape[0]), min(a.shape[1], b.shape[1])
    s = min(1.0, SAME_SHOT_SIDE / max(h, w))
    size = (max(1, round(w * s)), max(1, round(h * s)))

    def channels(x: np.ndarray) -> tuple[list[np.ndarray], np.ndarray]:
        x = np.ascontiguousarray(x)
        g = cv2.cvtColor(x, cv2.COLOR_RGB2GRAY) if x.ndim == 3 else x
        g = cv2.resize(g, size, interpolation=cv2.INTER_AREA)
        out = [g]
        if x.ndim == 3:  # a mark in the wall's own grey level differs only in colour
            lab = cv2.cvtColor(cv2.resize(x, size, interpolation=cv2.INTER_AREA), cv2.COLOR_RGB2LAB)
            out += [lab[..., 1], lab[..., 2]]
        return [cv2.GaussianBlur(c.astype(np.float32), (0, 0), 2.0) for c in out], (g > 8) & (g < 240)

    (ca, va), (cb, vb) = channels(a), channels(b)
    # Pixels clipped to black or white in either photo (a brightened copy) say nothing about the scene; but
    # where most of the picture is clipped in one and not in the other (a black frame against a lit one),
    # nothing is left to call them the same.
    both = va & vb
    if both.mean() < _MIN_COMPARED and (va != vb).mean() > _MIN_COMPARED / 2:
        return math.inf
    valid = both.astype(np.float32)
    weight = cv2.blur(valid, (8, 8))
    q = np.linspace(0, 100, 257)
    worst = 0.0
    for k, (x, y) in enumerate(zip(ca, cb, strict=False)):  # grey, then Lab's colour axes when both have colour
        # Each channel's levels mapped onto the other's, both ways (a flat frame maps anything onto itself): a
        # brightness, gamma, white-balance or saturation edit is the same shot.
        for u, v in ((x, y), (y, x)):
            mapped = np.interp(v, np.percentile(v, q), np.percentile(u, q)).astype(np.float32)
            diff = cv2.blur(np.abs(u - mapped) * valid, (8, 8)) / np.maximum(weight, 1e-6)
            worst = max(worst, (1.0 if k == 0 else _CHROMA_WEIGHT) * float(diff[weight >= 0.5].max(initial=0.0)))
    return worst


class DuplicateIndex:
    """Remembers a run's photos and says which later photo repeats an earlier one.

    Exact duplicates by the SHA-256 of the file bytes; near duplicates (the same shot resized or re-encoded)
    by :func:`phash` within ``max_distance`` bits, confirmed by :func:`same_shot` against the earlier photo's
    pixels (decoded again from its file, so nothing but hashes is kept). The first photo added is the
    original, unless a near duplicate with :data:`SUPERSEDE_PIXELS` times its pixels comes later: that one
    takes its place (:attr:`superseded` names the photo it replaced, which is then a duplicate of it). A
    duplicate is not stored, so chains resolve to the original. Lookup is one vectorised XOR + popcount over
    the stored hashes (O(N) per photo: about 10 us per photo at N = 10,000).

    Attributes:
        matches: path of each duplicate -> (path of its original, Hamming distance; -1 when the file bytes are
            identical).
        superseded: after :meth:`add`, the path of the stored photo the new one replaced as the original, else None.
    """

    def __init__(self, max_distance: int = NEAR_DUPLICATE_MAX_DISTANCE):
        self.max_distance = max_distance
        self.matches: dict[str, tuple[str, int]] = {}
        self.superseded: str | None = None
        self._by_sha: dict[str, str] = {}
        self._paths: list[str] = []
        self._pixels: list[int] = []  # of each stored photo
        self._sources: list[Path | np.ndarray] = []  # where each stored photo's pixels can be had again
        self._hashes = np.zeros(256, dtype=np.uint64)

    def __len__(self) -> int:
        """Number of distinct photos stored."""
        return len(self._paths)

    def add(self, path: str, pixels: np.ndarray, local_path: str | os.PathLike[str] | None = None, *,
            sha256: str | None = None) -> str | None:
        """Register a photo; return the path of the earlier photo it duplicates, else None.

        A near duplicate with :data:`SUPERSEDE_PIXELS` times the pixels of the stored photo it repeats is not a
        duplicate: it replaces that photo as the original, and :attr:`superseded` says which photo that was.

        Args:
            path: the photo's name as users see it.
            pixels: (H, W, 3) uint8 RGB (or (H, W) grey), host memory.
            local_path: the file, hashed for the exact check when ``sha256`` is not given.
            sha256: hex digest of the file bytes (:attr:`DecodedImage.sha256`); saves reading the file again.
                With neither, the pixel bytes are hashed.
        """
        self.superseded = None
        if sha256 is None and local_path is not None:
            sha256 = sha256_file(Path(local_path))
        key = sha256 or "pixels:" + hashlib.sha256(np.ascontiguousarray(pixels).data).hexdigest()
        if key in self._by_sha:
            self.matches[path] = (self._by_sha[key], -1)
            return self._by_sha[key]
        if min(pixels.shape[:2]) < MIN_NEAR_DUPLICATE_SIDE:  # too few pixels for a hash to tell photos apart
            self._by_sha[key] = path
            return None
        h = np.uint64(phash(pixels))
        n = len(self._paths)
        if n:
            dist = np.bitwise_count(self._hashes[:n] ^ h)
            near = np.flatnonzero(dist <= self.max_distance)  # usually none: no sort over all N
            for k in near[np.argsort(dist[near], kind="stable")][:3]:
                if self._same_shot(pixels, int(k)):
                    size = pixels.shape[0] * pixels.shape[1]
                    if size >= SUPERSEDE_PIXELS * self._pixels[k]:
                        self._supersede(int(k), path, pixels, local_path, key, h, int(dist[k]))
                        return None
                    self.matches[path] = (self._paths[k], int(dist[k]))
                    return self._paths[k]
        if n == len(self._hashes):
            self._hashes = np.concatenate([self._hashes, np.zeros_like(self._hashes)])
        self._hashes[n] = h
        self._paths.append(path)
        self._pixels.append(pixels.shape[0] * pixels.shape[1])
        self._sources.append(Path(local_path) if local_path is not None else pixels)
        self._by_sha[key] = path
        return None

    def _supersede(self, k: int, path: str, pixels: np.ndarray, local_path: str | os.PathLike[str] | None,
                   key: str, h: np.uint64, dist: int) -> None:
        """``path`` takes the place of stored photo ``k`` as the original of its group."""
        old = self._paths[k]
        self.superseded = old
        self.matches = {p: ((path, d) if orig == old else (orig, d)) for p, (orig, d) in self.matches.items()}
        self.matches[old] = (path, dist)
        self._by_sha = {sha: (path if orig == old else orig) for sha, orig in self._by_sha.items()}
        self._by_sha[key] = path
        self._paths[k], self._pixels[k], self._hashes[k] = path, pixels.shape[0] * pixels.shape[1], h
        self._sources[k] = Path(local_path) if local_path is not None else pixels

    def _same_shot(self, pixels: np.ndarray, k: int) -> bool:
        source = self._sources[k]
        if isinstance(source, np.ndarray):
            return same_shot(source, pixels)
        try:
            return same_shot(load_image(source, verify=False).pixels, pixels)
        except MediaError as e:  # gone since: without the comparison it is not called a duplicate
            logger.warning("%s: cannot compare with %s (%s); not treated as a duplicate", source, self._paths[k],
                           e.problem)
            return False


def find_duplicates(images: Sequence[tuple[str, np.ndarray]],
                    max_distance: int = NEAR_DUPLICATE_MAX_DISTANCE) -> dict[str, str]:
    """Each duplicate's path -> its original's path, for (path, (H, W, 3) uint8 pixels) in order (the original is
    the first photo of the group, or a later one with far more pixels: :class:`DuplicateIndex`).

    Only pixels are given, so "exact" means identical pixels; see :class:`DuplicateIndex` for file hashes.
    """
    index = DuplicateIndex(max_distance)
    for p, px in images:
        index.add(p, px)
    return {p: orig for p, (orig, _) in index.matches.items()}



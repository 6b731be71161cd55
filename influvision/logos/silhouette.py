"""The silhouette cue: find flat marks (the swoosh, the arches, the leaping cat) by their outline.

SIFT verifies a mark by its corners; a flat icon has too few of them (docs/logos.md, Limitations). But its
outline is distinctive, and an affine map (a logo seen at an angle, as long as the view is not strongly
foreshortened) changes an outline only in ways that second moments undo:

1. **Reference.** Each connected part of the mark (and each hole inside it) that carries at least half of
   the mark's ink is a *silhouette*. It is put in its moment frame (centred, covariance whitened) and
   rastered on a :data:`GRID` x :data:`GRID` grid at :data:`ROTATIONS` rotations (whitening leaves the
   rotation open). A silhouette that is nearly a plain figure in that frame (a disc, square, triangle,
   half-disc, ring or L: every ellipse whitens to a disc, every parallelogram to a square) is not used:
   it would stand for every ball and sign. Marks made of many small parts (a wordmark's letters, the
   peacock's feathers) get no silhouette and are left to the other cues.
2. **Photo.** Candidate regions are maximally stable extremal regions (MSER) of the lightness, the
   red-green and the blue-yellow channels (Lab L, a*, b*), each in both polarities, so a mark is a region
   whether it is printed dark on light, light on dark or only differs in colour.
3. **Comparison.** Every region is rastered in its own moment frame and compared with every silhouette
   at every rotation as one matrix product (IoU of the rasters). Pairs above :data:`PRE_IOU` are refined
   by a local search over a 2 x 2 map and a shift (moments are pulled by small protrusions), then kept
   when the refined IoU reaches ``min_iou``, beats the region's best fit to a plain figure by
   :data:`GENERIC_GAP`, the implied affine map is a plausible view (anisotropy at most
   :data:`MAX_ANISOTROPY`, rotation within :data:`MAX_ROTATION_DEG`) and the region stands out from its
   surroundings like a printed figure on a ground (:func:`outline_contrast`). The mark's box is its
   reference content box carried through that map.

What it cannot do: marks whose parts are not one region in the photo (a mark over a busy background that
touches it, a swoosh printed with an outline only), marks under about 12 px in the working copy, strong
perspective, and marks that are themselves near-plain figures (the apple is too close to a disc in its
moment frame; BMW and Vodafone's outer discs). Measured in benchmarks/RESULTS.md.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import cache

import cv2
import numpy as np

from ..boxes import box_inside, box_iou
from ..engine import default_workers
from ..types import check_rgb_images
from .cues import CueCandidate
from .references import LogoReference

# Raster side of a shape in its moment frame, and the half-width of that frame in standard deviations
# (a whitened disc has radius 2; elongated marks reach further).
GRID = 40
EXTENT = 2.8
ROTATIONS = 48
# A part must carry this share of the mark's ink to be a silhouette of the whole mark.
MIN_PART = 0.5
# Reference silhouettes whose best fit to a plain figure reaches this IoU are not used.
MAX_GENERIC = 0.85
# Region-silhouette pairs refined (before refinement), and the margin a region must fit a mark better
# than it fits a plain figure.
PRE_IOU = 0.7
GENERIC_GAP = 0.1
MAX_ANISOTROPY = 3.0
MAX_ROTATION_DEG = 50.0
# Lab channels searched: lightness, red-green, blue-yellow.
_CHANNELS = (0, 1, 2)
# A matching region must stand out this much from its surroundings (:func:`outline_contrast`): printed
# marks on the shared photos measure 2.9-34, the swoosh-shaped shadows and folds of face photos 2.0.
MIN_OUTLINE_CONTRAST = 3.0
# MSER regions smaller than this (pixels of the working copy) are not compared.
MIN_REGION_PX = 120

_lin = (np.arange(GRID) + 0.5) / GRID * 2 * EXTENT - EXTENT
_GRID_PTS = np.stack(np.meshgrid(_lin, _lin), -1).reshape(-1, 2)  # (GRID*GRID, 2) x, y in the moment frame
_ANGLES = np.arange(ROTATIONS) * (2 * np.pi / ROTATIONS)
# Local refinement: coordinate steps of the 2 x 2 map (4 entries) and the shift (2), coarse to fine; each
# step tries the 12 neighbours +-1 unit of one coordinate (a shift moves twice the step).
_STEPS = (0.08, 0.04, 0.02)
_STEP_M = np.zeros((12, 2, 2))
_STEP_T = np.zeros((12, 2))
for _j in range(6):
    for _sign, _row in ((1.0, 2 * _j), (-1.0, 2 * _j + 1)):
        if _j < 4:
            _STEP_M[_row].flat[_j] = _sign
        else:
            _STEP_T[_row, _j - 4] = 2 * _sign


class _Frame:
    """A binary mask with its moment frame; :meth:`sample` rasters it at moment-frame points ``m g + t``
    (:func:`_rasters` rasters many masks at ``g`` itself in one pass)."""

    def __init__(self, mask: np.ndarray, origin: tuple[float, float] = (0.0, 0.0)) -> None:
        self.mask = mask
        self.origin = np.asarray(origin, dtype=np.float64)
        m = cv2.moments(mask.view(np.uint8), binaryImage=True)
        n = m["m00"]
        self.mean = np.array([m["m10"] / n, m["m01"] / n]) + 0.5 + self.origin
        # + a pixel's own spread, so a one-pixel line is not singular
        cov = np.array([[m["mu20"], m["mu11"]], [m["mu11"], m["mu02"]]]) / n + np.eye(2) / 12.0
        w, v = np.linalg.eigh(cov)
        self.half = (v * np.sqrt(w)) @ v.T          # cov^(1/2)
        self.inv_half = (v / np.sqrt(w)) @ v.T      # cov^(-1/2)

    def sample(self, m: np.ndarray, t: np.ndarray) -> np.ndarray:
        """(K, GRID*GRID) bool rasters for K maps ``m`` (K, 2, 2) and shifts ``t`` (K, 2)."""
        g = np.matmul(_GRID_PTS, m.transpose(0, 2, 1)) + t[:, None, :]
        p = g @ self.half.T + (self.mean - self.origin)
        xi, yi = np.floor(p[..., 0]).astype(np.int64), np.floor(p[..., 1]).astype(np.int64)
        h, w = self.mask.shape
        inside = (xi >= 0) & (yi >= 0) & (xi < w) & (yi < h)
        out = np.zeros(xi.shape, dtype=bool)
        out[inside] = self.mask[yi[inside], xi[inside]]
        return out


def _rasters(frames: Sequence[_Frame]) -> np.ndarray:
    """(R, GRID*GRID) bool: each frame's mask rastered in its own moment frame, all in one vectorised pass
    over the masks packed end to end (no Python loop per region)."""
    shapes = np.array([f.mask.shape for f in frames], dtype=np.int64)  # (R, 2) h, w
    offsets = np.concatenate([[0], np.cumsum(shapes[:, 0] * shapes[:, 1])[:-1]])
    flat = np.concatenate([f.mask.ravel() for f in frames])
    half = np.stack([f.half for f in frames])
    shift = np.stack([f.mean - f.origin for f in frames])
    p = np.matmul(_GRID_PTS, half.transpose(0, 2, 1)) + shift[:, None, :]
    xi, yi = np.floor(p[..., 0]).astype(np.int64), np.floor(p[..., 1]).astype(np.int64)
    inside = (xi >= 0) & (yi >= 0) & (xi < shapes[:, 1, None]) & (yi < shapes[:, 0, None])
    idx = offsets[:, None] + yi * shapes[:, 1, None] + xi
    out = np.zeros(idx.shape, dtype=bool)
    out[inside] = flat[idx[inside]]
    return out


def _rotation(a: np.ndarray | float) -> np.ndarray:
    c, s = np.cos(a), np.sin(a)
    return np.stack([np.stack([c, -s], -1), np.stack([s, c], -1)], -2)


def _rotated_rasters(frame: _Frame) -> np.ndarray:
    return frame.sample(_rotation(_ANGLES), np.zeros((ROTATIONS, 2)))


def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every row of ``a`` (N, K) with every row of ``b`` (M, K), both bool: (N, M)."""
    af, bf = a.astype(np.float32), b.astype(np.float32)
    inter = af @ bf.T
    return inter / np.maximum(af.sum(1)[:, None] + bf.sum(1)[None, :] - inter, 1.0)


def _plain_figures() -> np.ndarray:
    """Rotated rasters of the plain figures a silhouette must not resemble."""
    n = 400
    figs = []
    disc = np.zeros((n, n), np.uint8)
    cv2.circle(disc, (200, 200), 150, 1, -1)
    figs.append(disc)
    square = np.zeros((n, n), np.uint8)
    square[100:300, 100:300] = 1
    figs.append(square)
    tri = np.zeros((n, n), np.uint8)
    cv2.fillPoly(tri, [np.array([[200, 50], [350, 330], [50, 330]], np.int32)], 1)
    figs.append(tri)
    half = np.zeros((n, n), np.uint8)
    cv2.ellipse(half, (200, 250), (150, 150), 0, 180, 360, 1, -1)
    figs.append(half)
    for inner in (60, 90, 110):  # rings from thick to thin (letters o and O)
        ring = disc.copy()
        cv2.circle(ring, (200, 200), inner, 0, -1)
        figs.append(ring)
    ell = np.zeros((n, n), np.uint8)
    cv2.fillPoly(ell, [np.array([[50, 50], [350, 50], [350, 120], [120, 120], [120, 350], [50, 350]], np.int32)], 1)
    figs.append(ell)
    return np.concatenate([_rotated_rasters(_Frame(f.astype(bool))) for f in figs])


@cache
def _plain() -> np.ndarray:
    """Rotated rasters of the plain figures a silhouette must not resemble, built once."""
    return _plain_figures()


@dataclass
class _Silhouette:
    ref_index: int
    frame: _Frame
    rasters: np.ndarray  # (ROTATIONS, GRID*GRID) bool
    content_box: tuple[float, float, float, float]


def silhouettes(reference: LogoReference) -> list[_Frame]:
    """The parts of a mark that can stand for it (see the module doc); parts too close to a plain figure are
    left out."""
    ink = reference.shape > 0.5
    total = int(ink.sum())
    out = []
    for part, is_hole in ((ink, False), (~ink, True)):
        n, labels, stats, _ = cv2.connectedComponentsWithStats(part.astype(np.uint8), connectivity=8)
        for i in range(1, n):
            x, y, w, h, area = stats[i]
            if is_hole and (x == 0 or y == 0 or x + w >= ink.shape[1] or y + h >= ink.shape[0]):
                continue  # the background around the mark, not a hole in it
            if area < MIN_PART * total:
                continue
            frame = _Frame(labels == i)
            if float(_iou(_rotated_rasters(frame)[:: ROTATIONS // 8], _plain()).max()) < MAX_GENERIC:
                out.append(frame)
    return out


class SilhouetteCue:
    """Finds registered marks by their outline (module doc).

    Args:
        references: the registered marks; ``ref_index`` of a candidate indexes this list.
        min_iou: refined raster IoU a region needs to be reported.
        work_side: photos are searched on a copy whose longer side is at most this many pixels.
        workers: threads searching photos, one photo each (OpenCV and NumPy release the GIL); None: as many
            as decode photos (:func:`influvision.engine.default_workers`). Results do not depend on it.
    """

    def __init__(self, references: Sequence[LogoReference], *, min_iou: float = 0.8, work_side: int = 800,
                 workers: int | None = None) -> None:
        self.min_iou = min_iou
        self.work_side = work_side
        self.workers = workers if workers is not None else default_workers()
        self._parts = [_Silhouette(i, frame, _rotated_rasters(frame), ref.content_box)
                       for i, ref in enumerate(references) for frame in silhouettes(ref)]
        self._bank = np.concatenate([p.rasters for p in self._parts]) if self._parts else np.zeros((0, GRID * GRID), bool)

    @property
    def searched(self) -> list[int]:
        """Indices of the references that have a silhouette (the others are never found by this cue)."""
        return sorted({p.ref_index for p in self._parts})

    def find(self, images: Sequence[np.ndarray]) -> list[CueCandidate]:
        """Marks found in each uint8 RGB (H, W, 3) image, boxes in source pixels; ``score`` is the refined
        raster IoU."""
        check_rgb_images(images)
        if not self._parts:
            return []
        if self.workers <= 1 or len(images) <= 1:
            found = [self._find_one(k, image) for k, image in enumerate(images)]
        else:
            with ThreadPoolExecutor(min(self.workers, len(images))) as pool:
                found = list(pool.map(self._find_one, range(len(images)), images))
        return [c for per_image in found for c in per_image]

    def _regions(self, image: np.ndarray) -> tuple[list[_Frame], float, np.ndarray]:
        """MSER regions of the working copy, its scale, and its Lab pixels."""
        h, w = image.shape[:2]
        scale = min(1.0, self.work_side / max(h, w, 1))
        small = cv2.resize(image, (max(1, round(w * scale)), max(1, round(h * scale))),
                           interpolation=cv2.INTER_AREA) if scale < 1 else np.ascontiguousarray(image)
        if min(small.shape[:2]) < 3 or small.shape[0] * small.shape[1] < MIN_REGION_PX:
            return [], scale, np.zeros((0, 0, 3), np.uint8)  # too small for a mark (and for OpenCV's MSER)
        lab = cv2.cvtColor(small, cv2.COLOR_RGB2LAB)
        mser = cv2.MSER_create(delta=5, min_area=MIN_REGION_PX, max_area=int(0.4 * small.shape[0] * small.shape[1]))
        frames, seen = [], set()
        for channel in (lab[..., c] for c in _CHANNELS):
            # OpenCV's MSER on one channel finds both dark-on-light and light-on-dark regions.
            regions, boxes = mser.detectRegions(np.ascontiguousarray(channel))
            for pts, (x0, y0, bw, bh) in zip(regions, boxes, strict=True):
                # Nested stable regions and other channels repeat nearly the same region: one is enough.
                key = (x0 // 2, y0 // 2, bw // 2, bh // 2, int(np.log(len(pts)) / 0.03))
                if len(pts) < MIN_REGION_PX or key in seen:
                    continue
                seen.add(key)
                mask = np.zeros((bh, bw), dtype=bool)
                mask[pts[:, 1] - y0, pts[:, 0] - x0] = True
                frames.append(_Frame(mask, (float(x0), float(y0))))
        return frames, scale, lab

    def _find_one(self, k: int, image: np.ndarray) -> list[CueCandidate]:
        frames, scale, lab = self._regions(image)
        if not frames:
            return []
        rasters = _rasters(frames)
        iou = _iou(rasters, self._bank).reshape(len(frames), len(self._parts), ROTATIONS)
        best = iou.max(2)
        plain: dict[int, float] = {}
        found = []
        for r, p in zip(*np.nonzero(best >= PRE_IOU), strict=True):
            part, region = self._parts[p], frames[r]
            # A silhouette with rotational symmetry fits as well upside down: start from the best upright fit.
            fits = np.where(_upright(region, part.frame), iou[r, p], -1.0)
            rot = int(fits.argmax())
            if fits[rot] < PRE_IOU:
                continue
            score, m, t = _refine(rasters[r], part.frame, _rotation(_ANGLES[rot]))
            if score < self.min_iou:
                continue
            if r not in plain:
                plain[r] = float(_iou(rasters[r:r + 1], _plain()).max())
            if score - plain[r] < GENERIC_GAP or outline_contrast(lab, region) < MIN_OUTLINE_CONTRAST:
                continue
            box = _mapped_box(region, part, m, t, scale)
            if box is not None:
                found.append(CueCandidate(k, part.ref_index, box, float(score)))
        # One mark gives nested stable regions (the whole mark, a part that lost its tip): a box mostly inside
        # a better one of the same brand is that mark again.
        kept: list[CueCandidate] = []
        for c in sorted(found, key=lambda c: -c.score):
            if all(box_iou(c.box, o.box) < 0.5 and (c.ref_index != o.ref_index or box_inside(c.box, o.box) < 0.7)
                   for o in kept):
                kept.append(c)
        return kept


def outline_contrast(lab: np.ndarray, region: _Frame) -> float:
    """How sharply a region stands out from its surroundings: the Lab colour difference between the 2 px
    just inside and the 2 px just outside its outline, over the colour spread (mean per-channel standard
    deviation) of its interior and of a ring 3-5 px outside. A printed mark is a crisp figure on a ground;
    a shadow or a fold that happens to have a mark's outline fades into its surroundings. ``lab`` is the uint8
    Lab image ``region`` was found in."""
    pad = 6
    h, w = lab.shape[:2]
    x0, y0 = int(region.origin[0]), int(region.origin[1])
    mh, mw = region.mask.shape
    cx0, cy0, cx1, cy1 = max(0, x0 - pad), max(0, y0 - pad), min(w, x0 + mw + pad), min(h, y0 + mh + pad)
    inside = np.zeros((cy1 - cy0, cx1 - cx0), np.uint8)
    inside[y0 - cy0:y0 - cy0 + mh, x0 - cx0:x0 - cx0 + mw] = region.mask
    crop = lab[cy0:cy1, cx0:cx1].astype(np.float32)
    kernel = np.ones((3, 3), np.uint8)
    core = cv2.erode(inside, kernel, iterations=2).astype(bool)
    grown2 = cv2.dilate(inside, kernel, iterations=2).astype(bool)
    grown3 = cv2.dilate(inside, kernel, iterations=3).astype(bool)
    grown5 = cv2.dilate(inside, kernel, iterations=5).astype(bool)
    inner_band, outer_band, far = inside.astype(bool) & ~core, grown2 & ~inside.astype(bool), grown5 & ~grown3
    if not inner_band.any() or not outer_band.any():
        return 0.0
    step = float(np.linalg.norm(crop[inner_band].mean(0) - crop[outer_band].mean(0)))
    spread = sum(float(crop[a].std(0).mean()) for a in (core, far) if a.any())
    return step / max(spread, 1.0)


def _upright(region: _Frame, ref: _Frame) -> np.ndarray:
    """(ROTATIONS,) bool: the rotations of the bank whose implied view turns the mark by at most
    :data:`MAX_ROTATION_DEG` plus one rotation step (which refinement can take back)."""
    a = region.half @ _rotation(-_ANGLES) @ ref.inv_half  # the map of :func:`_mapped_box` at m = rotation
    return np.abs(_turn_degrees(a)) <= MAX_ROTATION_DEG + 360.0 / ROTATIONS


def _turn_degrees(a: np.ndarray) -> np.ndarray:
    """The rotation part of (..., 2, 2) linear maps (their polar decomposition), in degrees."""
    u, _, vt = np.linalg.svd(a)
    rot = u @ vt
    return np.degrees(np.arctan2(rot[..., 1, 0], rot[..., 0, 0]))


def _refine(region: np.ndarray, ref: _Frame, m0: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """Greedy coordinate search of the map ``m`` and shift ``t`` that maximise the IoU of ``region`` with
    the reference sampled at ``m g + t``; all 12 neighbours of a step are sampled in one call."""
    m, t = m0.astype(np.float64), np.zeros(2)
    best = float(_iou(region[None], ref.sample(m[None], t[None]))[0, 0])
    for step in _STEPS:
        dm, dt = _STEP_M * step, _STEP_T * step
        while True:
            scores = _iou(region[None], ref.sample(m + dm, t + dt))[0]
            j = int(scores.argmax())
            if scores[j] <= best + 1e-4:
                break
            best, m, t = float(scores[j]), m + dm[j], t + dt[j]
    return best, m, t


def _mapped_box(region: _Frame, part: _Silhouette, m: np.ndarray, t: np.ndarray,
                scale: float) -> tuple[float, float, float, float] | None:
    """The reference's content box carried into the photo (source pixels), or None for an implausible view.

    Region moment-frame point g sits at ``m g + t`` in the reference's moment frame, so a reference pixel
    x_r maps to ``region.mean + region.half m^-1 (ref.inv_half (x_r - ref.mean) - t)``."""
    if abs(np.linalg.det(m)) < 1e-6:
        return None
    m_inv = np.linalg.inv(m)
    a = region.half @ m_inv @ part.frame.inv_half
    if np.linalg.det(a) <= 0:  # a mirror image
        return None
    sv = np.linalg.svd(a, compute_uv=False)
    if sv[0] / sv[1] > MAX_ANISOTROPY or abs(_turn_degrees(a)) > MAX_ROTATION_DEG:
        return None
    x1, y1, x2, y2 = part.content_box
    corners = np.array([[x1, y1], [x2, y1], [x2, y2], [x1, y2]], dtype=np.float64)
    g = ((corners - part.frame.mean) @ part.frame.inv_half.T - t) @ m_inv.T
    mapped = (g @ region.half.T + region.mean) / scale
    return (float(mapped[:, 0].min()), float(mapped[:, 1].min()), float(mapped[:, 0].max()), float(mapped[:, 1].max()))

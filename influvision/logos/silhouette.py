"""The silhouette cue: find flat marks (the swoosh, the arches, the leaping cat) by their outline.

SIFT verifies a mark by its corners; a flat icon has too few of them (docs/logos.md, Limitations). But its
outline is distinctive, and an affine map (a logo seen at an angle, as long as the view is not strongly
foreshortened) changes an outline only in ways that second moments undo:

1. **Reference.** Each connected part of the mark (and each hole inside it) that carries at least half of
   the mark's ink is a *silhouette*. It is put in its moment frame (centred, covariance whitened) and
   rastered on a :data:`GRID` x :data:`GRID` grid at :data:`ROTATIONS` rotations (whitening leaves the
   rotation open). A silhouette that is nearly a plain figure in that frame (a disc, square, triangle,
   half-disc, ring, L, arc or crescent: every ellipse whitens to a disc, every parallelogram to a square) is
   not used: it would stand for every ball and sign, brow and lock of hair. Nor is one that is nearly a letter, digit or common pictogram
   (:mod:`~influvision.logos.glyphs`: a slanted "H" stands for every "h" and "n" in the words printed around
   it, a star for every star on a flag or a sign). Marks made of many small parts (a wordmark's letters, the
   peacock's feathers) get no silhouette: step 4 finds them by their parts.
2. **Photo.** Candidate regions are maximally stable extremal regions (MSER) of the lightness, the
   red-green and the blue-yellow channels (Lab L, a*, b*), each in both polarities, so a mark is a region
   whether it is printed dark on light, light on dark or only differs in colour. A dim photo (mean grey level
   under :data:`~influvision.logos.cues.DARK_MEAN`) gives regions as it is and brightened: MSER's stability
   step is counted in grey levels, which darkness squeezes.
3. **Comparison.** Every region is rastered in its own moment frame and compared with every silhouette
   at every rotation as one matrix product (IoU of the rasters). Pairs above :data:`PRE_IOU` (and within
   :data:`REFINE_REACH` of what the silhouette needs in the end) are refined by a local search over a 2 x 2
   map and a shift (moments are pulled by small protrusions), then kept when the refined IoU reaches
   ``min_iou`` and beats by :data:`MARK_GAP` the silhouette's own best fit to a plain figure or glyph (a
   region of that shape would fit the mark about as well), the region fits the mark better than any plain
   figure by :data:`GENERIC_GAP`, the implied affine map is a plausible view
   (anisotropy at most :data:`MAX_ANISOTROPY`, rotation within :data:`MAX_ROTATION_DEG`) and the region
   stands out from its surroundings like a printed figure on a ground (:func:`outline_contrast`). The mark's box is its
   reference content box carried through that map. Regions cut by two sides of the photo are not compared
   (their outline is partly the photo's frame).
4. **Marks of several parts.** A mark whose parts are each too small or too plain to stand for it (the
   peacock's six feathers, DHL's letters, the apple's body and leaf: a mark with no silhouette) is found
   when regions fit different parts in one view: every region that fits one of the mark's
   :data:`MAX_PARTS` largest parts at raster IoU :data:`PART_IOU` (any plausible rotation, unrefined)
   implies a map and a box for the whole mark, and fits of different parts, by regions in different
   places (boxes apart; for a mark that needs every part it is searched by, pixels apart is enough: slanted
   bars side by side), that imply nearly the same box and map agree.
   A mark whose parts are all plain figures (bars, discs, ellipses) needs all of them, up to three, in one
   view; pairs of such parts agree by chance too easily (two slots of a wheel as the Adidas bars).
   An agreeing set is the mark when its parts cover enough of the ink (:data:`MIN_SUPPORT_2` with two parts,
   :data:`MIN_SUPPORT_3` with more), at least one of them fits its part better than any plain figure by
   :data:`PART_GAP`, each stands out from its surroundings (:data:`PART_CONTRAST`) and the box is mostly
   inside the photo. One leaf-shaped blob next to a head is not the apple unless it sits where the leaf
   sits, at the leaf's size and turn. A set that looks like a line of letters must also have clear space
   beside it (:func:`_continues`): the letters of "intel" inside "intelligent", or scattered along a
   sentence, agree on a view as well as the wordmark does.

What it cannot do: marks whose parts are not regions in the photo (a mark over a busy background that
touches it, a swoosh printed with an outline only), marks under about 12 px in the working copy (8 px in a
small photo upscaled twice), strong perspective, marks that are near-plain figures unless their outline is
sharp (BMW and Vodafone's discs: found where the photo shows them crisply) and marks made only of plain parts
(the Adidas bars alone: three parallelograms agree by chance too easily to count).
Measured in benchmarks/RESULTS.md.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import cache, cached_property

import cv2
import numpy as np

from ..boxes import box_inside, box_iou, pairwise_iou
from ..engine import default_workers
from ..resample import rescaled, work_scale
from ..tone import lifted
from ..types import check_rgb_images
from .cues import DARK_MEAN, CueCandidate
from .glyphs import components, letter_masks, plain_masks, symbol_masks
from .references import LogoReference

# Raster side of a shape in its moment frame, and the half-width of that frame in standard deviations
# (a whitened disc has radius 2; elongated marks reach further).
GRID = 40
EXTENT = 2.8
ROTATIONS = 48
# A part must carry this share of the mark's ink to be a silhouette of the whole mark.
MIN_PART = 0.5
# Reference silhouettes whose best fit to a plain figure or to a glyph (a letter's stroke, a pictogram) reaches
# this IoU are not used.
MAX_GENERIC = 0.85
# Region-silhouette pairs refined (before refinement), and the margin a region must fit a mark better
# than it fits a plain figure. A silhouette that needs more than ``min_iou`` (MARK_GAP) refines only pairs
# within REFINE_REACH of its own least fit: the refinement added at most 0.2 to a fit, and no fit that ended
# above its least fit started more than 0.1 under it (RESULTS.md, 2026-12-07). Near-generic marks (rounded
# squares, discs) are the silhouettes most regions pass PRE_IOU for.
PRE_IOU = 0.7
REFINE_REACH = 0.12
GENERIC_GAP = 0.1
# A region must fit a silhouette better by this much than the silhouette fits its nearest plain figure or glyph
# (both unrefined): a rounded shield with a keyhole is 0.82 from a letter's stroke, so a region shaped like that
# letter fits the mark about as well. The refinement adds about this much to a fit; a larger gap also drops Vodafone's speech
# mark (0.83 to a glyph) where the photo shows it (RESULTS.md, 2026-12-07).
MARK_GAP = 0.02
MAX_ANISOTROPY = 3.0
MAX_ROTATION_DEG = 50.0
# Lab channels searched: lightness, red-green, blue-yellow.
_CHANNELS = (0, 1, 2)
# A matching region must stand out this much from its surroundings (:func:`outline_contrast`): printed
# marks on the shared photos measure 2.9-34, the swoosh-shaped shadows and folds of face photos 2.0.
MIN_OUTLINE_CONTRAST = 3.0
# MSER regions smaller than this (pixels of the working copy) are not compared.
MIN_REGION_PX = 120
# Marks of several parts (module doc, step 4): parts carrying at least MIN_SHARE of the ink, the largest
# MAX_PARTS of them; a region fits a part at raster IoU PART_IOU (no refinement); fits agree on the mark
# when their mark boxes overlap by AGREE_BOX and their maps differ by at most AGREE_MAP (relative norm).
MIN_SHARE = 0.04
MAX_PARTS = 8
PART_IOU = 0.75
AGREE_BOX = 0.6
AGREE_MAP = 0.3
# Agreeing fits must cover this share of the ink with two parts, or MIN_SUPPORT_3 with three or more, and one
# of them must fit its part better than a plain figure by PART_GAP; each must stand out by PART_CONTRAST.
MIN_SUPPORT_2 = 0.6
MIN_SUPPORT_3 = 0.5
PART_GAP = 0.05
PART_CONTRAST = 2.0
# A set of parts that looks like a line of letters must have no letter-sized region within this many letter
# heights beside it (:func:`_continues`).
CLEAR_SPACE = 1.5
# Letter height the text around a wordmark's box is searched at (:func:`letters_beside`).
_LETTER_PX = 48
# A mark box less than this share inside the photo is a guess about what is not there.
MIN_INSIDE = 0.5
# A region whose box comes this close (working-copy pixels) to two sides of the photo is cut by its frame.
_FRAME_PX = 2
# Fit candidates kept per mark and photo for the agreement search (best first).
MAX_FITS = 600

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
        # + a pixel's own spread (1/12), so a one-pixel line is not singular
        a, b, c = m["mu20"] / n + 1 / 12, m["mu11"] / n, m["mu02"] / n + 1 / 12
        # cov^(1/2) and cov^(-1/2) of the 2 x 2 covariance in closed form (s^2 = det, t^2 = trace + 2 s)
        s = float(np.sqrt(a * c - b * b))
        t = float(np.sqrt(a + c + 2 * s))
        self.half = np.array([[a + s, b], [b, c + s]]) / t
        self.inv_half = np.array([[c + s, -b], [-b, a + s]]) / (s * t)

    @cached_property
    def plainness(self) -> float:
        """Best raster IoU of the mask, at 8 rotations, with a plain figure (kept: a reference part's is asked for
        when its mark is checked for a silhouette and again when the cue weighs its parts)."""
        return float(_iou(self.rotated[:: ROTATIONS // 8], _plain()).max())

    @cached_property
    def glyphness(self) -> float:
        """Best raster IoU of the mask, at every rotation, with a stroke of a letter or digit or a pictogram."""
        return float(_iou(self.rotated, _glyphs()).max())

    @cached_property
    def rotated(self) -> np.ndarray:
        """(ROTATIONS, GRID*GRID) bool: the mask rastered in its moment frame at each of the bank's rotations
        (kept: a reference part's are asked for by its plain-figure and glyph fits and by the cue's bank)."""
        return self.sample(_rotation(_ANGLES), np.zeros((ROTATIONS, 2)))

    @cached_property
    def _padded(self) -> np.ndarray:
        """The mask with a one-pixel empty border, flattened: clipped sample points read False off the mask."""
        return np.pad(self.mask, 1).ravel()

    def sample(self, m: np.ndarray, t: np.ndarray) -> np.ndarray:
        """(K, GRID*GRID) bool rasters for K maps ``m`` (K, 2, 2) and shifts ``t`` (K, 2)."""
        # Moment-frame point g sits at half (m g + t) + mean in the mask: one affine map per raster.
        a = np.matmul(self.half, m)
        b = t @ self.half.T + (self.mean - self.origin)
        gx, gy = _GRID_PTS[:, 0], _GRID_PTS[:, 1]
        px = a[:, 0, 0, None] * gx + a[:, 0, 1, None] * gy + b[:, 0, None]
        py = a[:, 1, 0, None] * gx + a[:, 1, 1, None] * gy + b[:, 1, None]
        h, w = self.mask.shape
        xi = np.clip(np.floor(px), -1, w).astype(np.int64) + 1
        yi = np.clip(np.floor(py), -1, h).astype(np.int64) + 1
        return self._padded[yi * (w + 2) + xi]


def _rasters(frames: Sequence[_Frame]) -> np.ndarray:
    """(R, GRID*GRID) bool: each frame's mask rastered in its own moment frame, all in one vectorised pass
    over the masks packed end to end (no Python loop per region)."""
    shapes = np.array([f.mask.shape for f in frames], dtype=np.int64)  # (R, 2) h, w
    offsets = np.concatenate([[0], np.cumsum(shapes[:, 0] * shapes[:, 1])[:-1]])
    flat = np.concatenate([f.mask.ravel() for f in frames] + [np.zeros(1, dtype=bool)])  # last: off every mask
    half = np.stack([f.half for f in frames])
    shift = np.stack([f.mean - f.origin for f in frames])
    gx, gy = _GRID_PTS[:, 0], _GRID_PTS[:, 1]
    xi = np.floor(half[:, 0, 0, None] * gx + half[:, 0, 1, None] * gy + shift[:, 0, None]).astype(np.int64)
    yi = np.floor(half[:, 1, 0, None] * gx + half[:, 1, 1, None] * gy + shift[:, 1, None]).astype(np.int64)
    w, h = shapes[:, 1, None], shapes[:, 0, None]
    inside = (xi >= 0) & (yi >= 0) & (xi < w) & (yi < h)
    return flat[np.where(inside, offsets[:, None] + yi * w + xi, len(flat) - 1)]


def _rotation(a: np.ndarray | float) -> np.ndarray:
    c, s = np.cos(a), np.sin(a)
    return np.stack([np.stack([c, -s], -1), np.stack([s, c], -1)], -2)


class _Bank:
    """Bool rasters kept as float32 with their pixel counts, for :func:`_iou` against many photos' regions."""

    def __init__(self, rasters: np.ndarray) -> None:
        self.values = np.ascontiguousarray(rasters, dtype=np.float32)
        self.counts = self.values.sum(1)


def _iou(a: np.ndarray, b: np.ndarray | _Bank) -> np.ndarray:
    """IoU of every row of ``a`` (N, K) with every row of ``b`` (M, K), both bool: (N, M)."""
    af = a.astype(np.float32)
    bank = b if isinstance(b, _Bank) else _Bank(b)
    inter = af @ bank.values.T
    return inter / np.maximum(af.sum(1)[:, None] + bank.counts[None, :] - inter, 1.0)


@cache
def _plain() -> _Bank:
    """Rotated rasters of the plain figures (:func:`~influvision.logos.glyphs.plain_masks`) a silhouette must not
    resemble, built once."""
    return _Bank(np.concatenate([_Frame(m).rotated for m in plain_masks()]))


@cache
def _glyphs() -> _Bank:
    """Rasters of the letters' strokes and the pictograms (:mod:`~influvision.logos.glyphs`) in their moment
    frames, built once; a shape is compared with them at every rotation of its own."""
    return _Bank(_rasters([_Frame(m) for m in letter_masks() + symbol_masks()]))


@dataclass
class _Part:
    ref_index: int
    frame: _Frame
    share: float  # of the mark's ink
    whole: bool  # a silhouette: stands for the mark alone (step 1)
    in_set: bool  # one of the parts of a mark of several parts (step 4)
    content_box: tuple[float, float, float, float]


def _components(reference: LogoReference) -> list[tuple[float, _Frame]]:
    """(share of the ink, frame) of each connected part of the mark and each hole inside it, largest first."""
    ink = reference.shape > 0.5
    total = max(int(ink.sum()), 1)
    out = [(area / total, _Frame(m)) for part, is_hole in ((ink, False), (~ink, True))
           for area, m in components(part, MIN_SHARE * total, inner=is_hole)]
    return sorted(out, key=lambda t: -t[0])


def _parts(reference: LogoReference, ref_index: int) -> list[_Part]:
    comps = _components(reference)
    large = [share >= MIN_PART and frame.plainness < MAX_GENERIC for share, frame in comps]
    wholes = [big and frame.glyphness < MAX_GENERIC for big, (_, frame) in zip(large, comps, strict=True)]
    # A mark with a silhouette is searched whole; one without, by its parts (fewer fits to weigh per photo). A
    # mark whose large part is a glyph is not searched by its parts either: they would be a letter's strokes and
    # counters, a star's points.
    in_set = len(comps[:MAX_PARTS]) >= 2 and not any(large)
    out = []
    for k, ((share, frame), whole) in enumerate(zip(comps, wholes, strict=True)):
        member = in_set and k < MAX_PARTS
        if whole or member:
            out.append(_Part(ref_index, frame, share, whole, member, reference.content_box))
    return out


def silhouettes(reference: LogoReference) -> list[_Frame]:
    """The parts of a mark that can stand for it alone (see the module doc); parts too close to a plain
    figure are left out."""
    return [p.frame for p in _parts(reference, 0) if p.whole]


def outline_searched(reference: LogoReference) -> bool:
    """Whether the cue searches the mark at all: by a silhouette or by the agreement of its parts."""
    return any(p.whole or p.in_set for p in _parts(reference, 0))


class SilhouetteCue:
    """Finds registered marks by their outline (module doc).

    Args:
        references: the registered marks; ``ref_index`` of a candidate indexes this list.
        min_iou: refined raster IoU a region needs to be reported (more for a silhouette near a plain figure or a
            glyph: :data:`MARK_GAP`).
        work_side: photos are searched on a copy whose longer side is this many pixels (smaller photos are
            upscaled at most ``max_upscale`` times, so small marks have outlines the comparison can use).
        workers: threads searching photos, one photo each (OpenCV and NumPy release the GIL); None: as many
            as decode photos (:func:`influvision.engine.default_workers`). Results do not depend on it.
    """

    def __init__(self, references: Sequence[LogoReference], *, min_iou: float = 0.8, work_side: int = 800,
                 max_upscale: float = 2.0, workers: int | None = None) -> None:
        self.min_iou = min_iou
        self.work_side = work_side
        self.max_upscale = max_upscale
        self.workers = workers if workers is not None else default_workers()
        self._parts = [part for i, ref in enumerate(references) for part in _parts(ref, i)]
        self._bank = _Bank(np.concatenate([p.frame.rotated for p in self._parts]) if self._parts
                           else np.zeros((0, GRID * GRID), bool))
        self._whole = np.array([p.whole for p in self._parts], dtype=bool)
        self._in_set = np.array([p.in_set for p in self._parts], dtype=bool)
        self._least_fit = np.array([max(min_iou, max(p.frame.plainness, p.frame.glyphness) + MARK_GAP) if p.whole
                                    else min_iou for p in self._parts])
        self._least_pre = np.maximum(PRE_IOU, self._least_fit - REFINE_REACH)
        # Parts needed in one view, per mark searched by its parts: two, or as many as it has up to three when
        # every part is a plain figure (bars, discs, ellipses), whose pairs agree by chance too easily.
        self._least_parts: dict[int, int] = {}
        self._every_part: set[int] = set()  # marks that must show every part they are searched by
        for ref in {p.ref_index for p in self._parts if p.in_set}:
            members = [p for p in self._parts if p.in_set and p.ref_index == ref]
            plain = all(p.frame.plainness >= MAX_GENERIC for p in members)
            self._least_parts[ref] = min(3, len(members)) if plain else 2
            if self._least_parts[ref] == len(members):
                self._every_part.add(ref)

    @property
    def searched(self) -> list[int]:
        """Indices of the references the cue searches (the others are never found by this cue)."""
        return sorted({p.ref_index for p in self._parts})

    def find(self, images: Sequence[np.ndarray]) -> list[CueCandidate]:
        """Marks found in each uint8 RGB (H, W, 3) image, boxes in source pixels; ``score`` is the refined
        raster IoU of a silhouette, or for a mark found by its parts their fit rescaled to the same range."""
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
        if h == 0 or w == 0:
            return [], 1.0, np.zeros((0, 0, 3), np.uint8)
        scale = work_scale(w, h, self.work_side, self.max_upscale)
        small = rescaled(image, scale)
        # In an upscaled copy the least region grows with the scale (not its square): a region of the same
        # few source pixels is then mostly interpolation (measured in RESULTS.md, 2026-12-06).
        frames, lab = _mser_regions(small, min_area=round(MIN_REGION_PX * max(1.0, scale)))
        return frames, scale, lab

    def _find_one(self, k: int, image: np.ndarray) -> list[CueCandidate]:
        frames, scale, lab = self._regions(image)
        if not frames:
            return []
        rasters = _rasters(frames)
        iou = _iou(rasters, self._bank).reshape(len(frames), len(self._parts), ROTATIONS)
        photo = _Photo(frames, rasters, lab, scale, image.shape[1], image.shape[0])
        found = self._whole_marks(k, iou, photo) + self._marks_by_parts(k, iou, photo)
        # One mark gives nested stable regions (the whole mark, a part that lost its tip): a box mostly inside
        # a better one of the same brand is that mark again.
        kept: list[CueCandidate] = []
        for c in sorted(found, key=lambda c: -c.score):
            if all(box_iou(c.box, o.box) < 0.5 and (c.ref_index != o.ref_index or box_inside(c.box, o.box) < 0.7)
                   for o in kept):
                kept.append(c)
        return kept

    def _whole_marks(self, k: int, iou: np.ndarray, photo: _Photo) -> list[CueCandidate]:
        """Regions that fit a silhouette (steps 1-3)."""
        best = np.where(self._whole[None, :], iou.max(2), 0.0)
        found = []
        for r, p in zip(*np.nonzero(best >= self._least_pre[None, :]), strict=True):
            if photo.framed[r]:
                continue
            part, region = self._parts[p], photo.frames[r]
            # A silhouette with rotational symmetry fits as well upside down: start from the best upright fit.
            fits = np.where(_upright(region, part.frame), iou[r, p], -1.0)
            rot = int(fits.argmax())
            if fits[rot] < self._least_pre[p]:
                continue
            # The region's own tests first (kept per region): most regions fail them, and a refinement costs more.
            if photo.plain(r) > 1.0 - GENERIC_GAP or photo.contrast(r) < MIN_OUTLINE_CONTRAST:
                continue
            score, m, t = _refine(photo.rasters[r], part.frame, _rotation(_ANGLES[rot]))
            if score < self._least_fit[p] or score - photo.plain(r) < GENERIC_GAP:
                continue
            box = _mapped_box(region, part, m, t, photo.scale)
            if box is not None:
                found.append(CueCandidate(k, part.ref_index, box, float(score)))
        return found

    def _marks_by_parts(self, k: int, iou: np.ndarray, photo: _Photo) -> list[CueCandidate]:
        """Marks of several parts found by regions that fit different parts in one view (step 4)."""
        fits = self._part_fits(iou, photo)
        if fits is None:
            return []
        share = np.array([q.share for q in self._parts])
        found = []
        for ref in np.unique(fits.ref):
            idx = np.nonzero(fits.ref == ref)[0]
            idx = idx[np.argsort(-fits.fit[idx], kind="stable")][:MAX_FITS]
            views = [v for v in (_View.of(m, fits, share)
                                 for m in _agreeing_sets(fits, idx, share, photo, ref in self._every_part))
                     if self._is_mark(v, fits, photo)]
            # Parts that look alike (the feathers) also agree on a view shifted by one part: the view that
            # explains more of the mark, and then fits it better, takes the regions.
            used = np.zeros(len(photo.frames), dtype=bool)
            for v in sorted(views, key=lambda v: (-v.support, -v.fit)):
                regions = fits.region[v.members]
                if used[regions].any():
                    continue
                used |= photo.nested[regions].any(0)
                box = v.box / photo.scale
                score = self.min_iou + (1.0 - self.min_iou) * (v.fit - PART_IOU) / (1.0 - PART_IOU)
                found.append(CueCandidate(k, int(ref), tuple(float(x) for x in box), float(score)))
        return found

    def _part_fits(self, iou: np.ndarray, photo: _Photo) -> _Fits | None:
        """Every (region, part, rotation) fit of a part of a mark of several parts at :data:`PART_IOU` that is
        a plausible view, with the map and the whole mark's box it implies (working-copy pixels)."""
        r, p, a = np.nonzero((iou >= PART_IOU) & self._in_set[None, :, None] & ~photo.framed[:, None, None])
        frames = photo.frames
        region_half = np.stack([f.half for f in frames])
        part_inv = np.stack([q.frame.inv_half for q in self._parts])
        # The map from reference pixels to working-copy pixels (that of :func:`_mapped_box` at m = rotation).
        maps = region_half[r] @ _rotation(-_ANGLES[a]) @ part_inv[p]
        ok = _plausible(maps)
        r, p, a, maps = r[ok], p[ok], a[ok], maps[ok]
        if len(r) == 0:
            return None
        part_mean = np.stack([q.frame.mean for q in self._parts])[p]
        region_mean = np.stack([f.mean for f in frames])[r]
        x1, y1, x2, y2 = np.array([q.content_box for q in self._parts])[p].T
        corners = np.stack([np.stack([x1, y1], -1), np.stack([x2, y1], -1), np.stack([x2, y2], -1),
                            np.stack([x1, y2], -1)], 1)  # (N, 4, 2)
        mapped = np.einsum("nij,nkj->nki", maps, corners - part_mean[:, None]) + region_mean[:, None]
        return _Fits(region=r, part=p, ref=np.array([q.ref_index for q in self._parts])[p], fit=iou[r, p, a],
                     map=maps, box=np.concatenate([mapped.min(1), mapped.max(1)], 1))

    def _is_mark(self, view: _View, fits: _Fits, photo: _Photo) -> bool:
        """Whether an agreeing set of fits is evidence enough for the mark (step 4)."""
        members = view.members
        if len(members) < self._least_parts[int(fits.ref[members[0]])]:
            return False
        if view.support < (MIN_SUPPORT_2 if len(members) == 2 else MIN_SUPPORT_3):
            return False
        if max(fits.fit[m] - photo.plain(fits.region[m]) for m in members) < PART_GAP:
            return False
        if box_inside((view.box / photo.scale).tolist(), (0, 0, photo.width, photo.height)) < MIN_INSIDE:
            return False
        return not _continues(view.box, fits.region[members], photo)


@dataclass
class _Fits:
    """Fits of regions to parts of marks (columns of N rows), each with the view of the whole mark it implies."""

    region: np.ndarray  # (N,) region index
    part: np.ndarray  # (N,) part index
    ref: np.ndarray  # (N,) the part's mark
    fit: np.ndarray  # (N,) raster IoU
    map: np.ndarray  # (N, 2, 2) reference pixels -> working-copy pixels
    box: np.ndarray  # (N, 4) the mark's content box in the working copy


def _agreeing_sets(fits: _Fits, idx: np.ndarray, share: np.ndarray, photo: _Photo,
                   all_parts: bool) -> list[np.ndarray]:
    """Sets of fits of one mark (``idx``, best first) that agree on one view: different parts, fitted by
    regions in different places, implying nearly the same box and map. One set per fit not yet in a set that
    covers :data:`MIN_SUPPORT_3` of the ink, grown greedily from it, best fits first; members whose region
    does not stand out are then dropped.

    Regions are in different places when their boxes overlap little. For a mark that must show every part it
    is searched by (``all_parts``: the three Adidas bars) regions whose boxes overlap but whose pixels do not
    are too: slanted bars side by side have overlapping boxes, and a view needing every part seldom agrees by
    chance. Other marks keep the box rule, which also stops neighbouring feathers of a fan (3 of NBC's 6 make
    a view) from joining a view shifted by one feather."""
    part, region = fits.part[idx], fits.region[idx]
    apart = photo.overlap[np.ix_(region, region)] <= 0.2
    boxes = fits.box[idx].astype(np.float32)
    agree = ((pairwise_iou(boxes, boxes) >= AGREE_BOX)
             & (_map_distance(fits.map[idx]) <= AGREE_MAP)
             & (part[:, None] != part[None, :]))
    if all_parts:
        for i, j in zip(*np.nonzero(np.triu(agree & ~apart)), strict=True):
            apart[i, j] = apart[j, i] = photo.pixel_overlap(int(region[i]), int(region[j])) <= 0.2
    agree &= apart
    sets, seen = [], np.zeros(len(idx), dtype=bool)
    for s in np.nonzero(agree.any(1))[0]:
        if seen[s]:
            continue  # already in a set grown from a better fit
        members, parts = [s], {part[s]}
        for o in np.nonzero(agree[s])[0]:
            if part[o] not in parts and agree[o, members].all():
                members.append(o)
                parts.add(part[o])
        if share[part[members]].sum() < MIN_SUPPORT_3:
            continue
        seen[members] = True
        kept = [m for m in members if photo.contrast(region[m]) >= PART_CONTRAST]
        if len(kept) >= 2:
            sets.append(idx[kept])
    return sets


@dataclass(frozen=True)
class _View:
    """An agreeing set of fits of one mark's parts: the view of the whole mark they imply."""

    members: np.ndarray  # indices into the _Fits
    support: float  # share of the mark's ink their parts carry
    fit: float  # their raster IoUs weighted by their parts' shares
    box: np.ndarray  # (4,) the median of the mark boxes they imply, working-copy pixels

    @classmethod
    def of(cls, members: np.ndarray, fits: _Fits, share: np.ndarray) -> _View:
        w = share[fits.part[members]]
        return cls(members, float(w.sum()), float((fits.fit[members] * w).sum() / w.sum()),
                   np.median(fits.box[members], 0))


@dataclass
class _Photo:
    """One photo's regions, with their plain-figure fits and outline contrasts computed when first asked."""

    frames: list[_Frame]
    rasters: np.ndarray
    lab: np.ndarray
    scale: float
    width: int
    height: int
    _plain: dict[int, float] = field(default_factory=dict)
    _contrast: dict[int, float] = field(default_factory=dict)

    @cached_property
    def boxes(self) -> np.ndarray:
        """(R, 4) x1, y1, x2, y2 of the regions in working-copy pixels."""
        return np.array([[f.origin[0], f.origin[1], f.origin[0] + f.mask.shape[1], f.origin[1] + f.mask.shape[0]]
                         for f in self.frames], dtype=np.float64).reshape(-1, 4)

    @cached_property
    def framed(self) -> np.ndarray:
        """(R,) bool: regions cut by two or more sides of the photo. Part of their outline is the photo's frame
        (a shirt filling the picture, the sky above a horizon), so their shape says nothing about a mark's."""
        h, w = self.lab.shape[:2]
        b = self.boxes
        sides = ((b[:, 0] <= _FRAME_PX).astype(int) + (b[:, 1] <= _FRAME_PX) + (b[:, 2] >= w - _FRAME_PX)
                 + (b[:, 3] >= h - _FRAME_PX))
        return sides >= 2

    @cached_property
    def overlap(self) -> np.ndarray:
        """(R, R) intersection of two regions' boxes over the smaller one."""
        return _overlap(self.boxes)

    def pixel_overlap(self, a: int, b: int) -> float:
        """Pixels two regions share over the smaller one's pixel count: 1 for nested regions, 0 for regions
        side by side even where their boxes overlap."""
        fa, fb = self.frames[a], self.frames[b]
        (ax, ay), (bx, by) = fa.origin.astype(int), fb.origin.astype(int)
        x0, y0 = max(ax, bx), max(ay, by)
        x1 = min(ax + fa.mask.shape[1], bx + fb.mask.shape[1])
        y1 = min(ay + fa.mask.shape[0], by + fb.mask.shape[0])
        if x1 <= x0 or y1 <= y0:
            return 0.0
        shared = np.count_nonzero(fa.mask[y0 - ay:y1 - ay, x0 - ax:x1 - ax] & fb.mask[y0 - by:y1 - by, x0 - bx:x1 - bx])
        return shared / max(1, min(np.count_nonzero(fa.mask), np.count_nonzero(fb.mask)))

    @cached_property
    def nested(self) -> np.ndarray:
        """(R, R) bool: regions of one place (one inside the other, mostly): a mark's parts are used once."""
        return self.overlap >= 0.5

    def plain(self, r: int) -> float:
        if r not in self._plain:
            self._plain[r] = float(_iou(self.rasters[r:r + 1], _plain()).max())
        return self._plain[r]

    def contrast(self, r: int) -> float:
        if r not in self._contrast:
            self._contrast[r] = outline_contrast(self.lab, self.frames[r])
        return self._contrast[r]


def _continues(box: np.ndarray, members: np.ndarray, photo: _Photo) -> bool:
    """Whether an agreeing set that looks like a line of letters goes on beside its box (:func:`_letter_line`,
    :func:`_letters_beside`). Letters of a wordmark found inside a longer word (or in a line of text that
    happens to hold them) have such neighbours; a printed wordmark has clear space around it. Sets of unlike
    parts (feathers, the apple's body and leaf) are not tested: a person standing beside a mark is no reason
    to doubt it. ``members`` are the set's regions; boxes in working-copy pixels."""
    line = _letter_line(photo.boxes[members], min_parts=2)
    if line is None:
        return False
    height, y_lo, y_hi = line
    return _letters_beside(photo, box, height, y_lo - height / 4, y_hi + height / 4, members)


def _mser_regions(small: np.ndarray, min_area: int = MIN_REGION_PX) -> tuple[list[_Frame], np.ndarray]:
    """MSER regions of at least ``min_area`` pixels of a uint8 RGB working copy (step 2) and the Lab pixels
    their outline contrast is measured on; none for an image too small. A dark copy is searched as it is and
    brightened (:func:`influvision.tone.lifted`), and its contrasts are measured on the brightened one."""
    if min(small.shape[:2]) < 3 or small.shape[0] * small.shape[1] < min_area:
        return [], np.zeros((0, 0, 3), np.uint8)  # too small for a mark (and for OpenCV's MSER)
    bright = lifted(small, DARK_MEAN)
    labs = [cv2.cvtColor(im, cv2.COLOR_RGB2LAB) for im in ((small, bright) if bright is not small else (small,))]
    mser = cv2.MSER_create(delta=5, min_area=min_area, max_area=int(0.4 * small.shape[0] * small.shape[1]))
    found: list[np.ndarray] = []
    boxes = []
    for channel in (lab[..., c] for lab in labs for c in _CHANNELS):
        # OpenCV's MSER on one channel finds both dark-on-light and light-on-dark regions.
        regions, bx = mser.detectRegions(np.ascontiguousarray(channel))
        found.extend(regions)
        boxes.append(np.asarray(bx, dtype=np.int64).reshape(-1, 4))
    sizes = np.fromiter(map(len, found), dtype=np.int64, count=len(found))
    ok = np.nonzero(sizes >= min_area)[0]
    if len(ok) == 0:
        return [], labs[-1]
    box = np.concatenate(boxes)[ok]
    # Nested stable regions and other channels repeat nearly the same region: the first of a place and size
    # is enough.
    keys = np.column_stack([box // 2, (np.log(sizes[ok]) / 0.03).astype(np.int64)])
    first = np.sort(np.unique(keys, axis=0, return_index=True)[1])
    return _frames_of(found, ok[first], box[first]), labs[-1]


def _frames_of(found: Sequence[np.ndarray], kept: np.ndarray, box: np.ndarray) -> list[_Frame]:
    """:class:`_Frame` of each kept MSER region (``found[kept[i]]``: (n, 2) pixel x, y; ``box[i]``: x0, y0, w, h)."""
    frames = []
    for i, (x0, y0, bw, bh) in zip(kept, box.tolist(), strict=True):
        pts = found[i]
        mask = np.zeros(bh * bw, dtype=bool)
        mask[(pts[:, 1] - y0) * bw + (pts[:, 0] - x0)] = True  # flat indices: half the time of (y, x) pairs
        frames.append(_Frame(mask.reshape(bh, bw), (float(x0), float(y0))))
    return frames


def _letter_line(boxes: np.ndarray, min_parts: int) -> tuple[float, float, float] | None:
    """(letter height, lowest and highest centre y) when ``boxes`` (K, 4) look like a line of letters: at
    least ``min_parts`` of one height (within 1.5x), level (centres within half a height) and side by side
    (no two overlap horizontally by more than a third of the narrower); None otherwise."""
    if len(boxes) < min_parts:
        return None
    heights = boxes[:, 3] - boxes[:, 1]
    height = float(np.median(heights))
    cy = (boxes[:, 1] + boxes[:, 3]) / 2
    if heights.max() > 1.5 * heights.min() or cy.max() - cy.min() > height / 2:
        return None
    widths = boxes[:, 2] - boxes[:, 0]
    shared = _span_overlap(boxes[:, None, 0], boxes[:, None, 2], boxes[None, :, 0], boxes[None, :, 2])
    np.fill_diagonal(shared, 0)
    if (shared > np.minimum(widths[:, None], widths[None, :]) / 3).any():
        return None
    return height, float(cy.min()), float(cy.max())


def _letters_beside(photo: _Photo, box: np.ndarray, height: float, y_lo: float, y_hi: float,
                    members: np.ndarray | None = None) -> bool:
    """Whether a region of about ``height``, centred between ``y_lo`` and ``y_hi``, mostly outside ``box`` but
    within :data:`CLEAR_SPACE` heights of its left or right side (and not one of ``members``' places), stands
    out like a printed letter (outline contrast >= :data:`PART_CONTRAST`)."""
    x1, y1, x2, y2 = box
    b = photo.boxes
    centre_x, centre_y = (b[:, 0] + b[:, 2]) / 2, (b[:, 1] + b[:, 3]) / 2
    size = b[:, 3] - b[:, 1]
    inside = _span_overlap(b[:, 0], b[:, 2], x1, x2) * _span_overlap(b[:, 1], b[:, 3], y1, y2)
    reach = CLEAR_SPACE * height
    beside = (((centre_x < x1) & (centre_x >= x1 - reach)) | ((centre_x > x2) & (centre_x <= x2 + reach)))
    beside &= (centre_y >= y_lo) & (centre_y <= y_hi)
    beside &= (size >= 0.6 * height) & (size <= 1.6 * height)
    beside &= inside < 0.5 * (b[:, 2] - b[:, 0]) * size  # not one of the mark's own parts, poking out
    if members is not None:
        beside &= ~photo.nested[:, members].any(1)
    return any(photo.contrast(j) >= PART_CONTRAST for j in np.nonzero(beside)[0])


def letter_height(reference: LogoReference) -> float | None:
    """For a mark that is a line of plain letters (Intel's wordmark: at least three parts of one height, level,
    side by side), the letter height as a share of its content box height; None for any other mark."""
    boxes = []
    for _, frame in _components(reference)[:MAX_PARTS]:
        ys, xs = np.nonzero(frame.mask.any(1))[0], np.nonzero(frame.mask.any(0))[0]
        boxes.append([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])
    line = _letter_line(np.array(boxes, dtype=np.float64).reshape(-1, 4), min_parts=3)
    if line is None:
        return None
    x1, y1, x2, y2 = reference.content_box
    return line[0] / max(y2 - y1, 1e-6)


def letters_beside(image: np.ndarray, box: Sequence[float], height: float) -> bool:
    """Whether printed letters about ``height`` pixels high continue the line of ``box`` (x1, y1, x2, y2 in
    source pixels of the uint8 RGB ``image``) within :data:`CLEAR_SPACE` letter heights of its left or right
    side: the box is then a wordmark's letters inside longer text, not the printed mark."""
    x1, y1, x2, y2 = (float(v) for v in box)
    h, w = image.shape[:2]
    margin = (CLEAR_SPACE + 1) * height
    cx0, cy0 = max(0, int(x1 - margin)), max(0, int(y1 - height))
    cx1, cy1 = min(w, int(np.ceil(x2 + margin))), min(h, int(np.ceil(y2 + height)))
    if cx1 - cx0 < 3 or cy1 - cy0 < 3 or height <= 0:
        return False
    scale = float(np.clip(_LETTER_PX / height, 0.25, 4.0))  # letters this tall whatever the photo's size
    crop = np.ascontiguousarray(image[cy0:cy1, cx0:cx1])
    small = cv2.resize(crop, (max(1, round(crop.shape[1] * scale)), max(1, round(crop.shape[0] * scale))),
                       interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    frames, lab = _mser_regions(small)
    if not frames:
        return False
    photo = _Photo(frames, np.zeros((len(frames), 0), bool), lab, scale, small.shape[1], small.shape[0])
    local = np.array([(x1 - cx0) * scale, (y1 - cy0) * scale, (x2 - cx0) * scale, (y2 - cy0) * scale])
    return _letters_beside(photo, local, height * scale, local[1], local[3])


def _plausible(maps: np.ndarray) -> np.ndarray:
    """(N,) bool: which (N, 2, 2) maps are a plausible view (no mirror, anisotropy and rotation bounded), in
    closed form for 2 x 2 maps (an SVD per fit is most of the time on photos with many regions)."""
    a, b, c, d = maps[:, 0, 0], maps[:, 0, 1], maps[:, 1, 0], maps[:, 1, 1]
    det = a * d - b * c
    frob = a * a + b * b + c * c + d * d
    gap = np.sqrt(np.maximum(frob * frob - 4 * det * det, 0.0))
    s_max, s_min = np.sqrt((frob + gap) / 2), np.sqrt(np.maximum((frob - gap) / 2, 0.0))
    turn = np.degrees(np.arctan2(c - b, a + d))  # the rotation of the polar decomposition when det > 0
    return (det > 0) & (s_max <= MAX_ANISOTROPY * s_min) & (np.abs(turn) <= MAX_ROTATION_DEG)


def _span_overlap(lo1: np.ndarray | float, hi1: np.ndarray | float, lo2: np.ndarray | float,
                  hi2: np.ndarray | float) -> np.ndarray:
    """Length shared by the intervals [lo1, hi1] and [lo2, hi2] (0 when apart), broadcast over the arrays."""
    return np.clip(np.minimum(hi1, hi2) - np.maximum(lo1, lo2), 0, None)


def _overlap(b: np.ndarray) -> np.ndarray:
    """(N, N) intersection of N boxes (x1, y1, x2, y2) over the smaller one's area: 1 for nested boxes."""
    inter = (_span_overlap(b[:, None, 0], b[:, None, 2], b[None, :, 0], b[None, :, 2])
             * _span_overlap(b[:, None, 1], b[:, None, 3], b[None, :, 1], b[None, :, 3]))
    area = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    return inter / np.maximum(np.minimum(area[:, None], area[None, :]), 1e-9)


def _map_distance(maps: np.ndarray) -> np.ndarray:
    """(N, N) norm of the difference of two linear maps over the norm of the first."""
    flat = maps.reshape(len(maps), 4).astype(np.float32)
    sq = (flat * flat).sum(1)
    diff = np.sqrt(np.maximum(sq[:, None] + sq[None, :] - 2 * flat @ flat.T, 0.0))
    return diff / np.maximum(np.sqrt(sq)[:, None], 1e-9)


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
    area = np.count_nonzero(region)

    def iou(samples: np.ndarray) -> np.ndarray:  # :func:`_iou` of the one region, on bools
        inter = np.count_nonzero(samples & region, axis=1)
        union = area + np.count_nonzero(samples, axis=1) - inter
        return inter.astype(np.float32) / np.maximum(union, 1).astype(np.float32)

    best = float(iou(ref.sample(m[None], t[None]))[0])
    for step in _STEPS:
        dm, dt = _STEP_M * step, _STEP_T * step
        while True:
            scores = iou(ref.sample(m + dm, t + dt))
            j = int(scores.argmax())
            if scores[j] <= best + 1e-4:
                break
            best, m, t = float(scores[j]), m + dm[j], t + dt[j]
    return best, m, t


def _mapped_box(region: _Frame, part: _Part, m: np.ndarray, t: np.ndarray,
                scale: float) -> tuple[float, float, float, float] | None:
    """The reference's content box carried into the photo (source pixels), or None for an implausible view.

    Region moment-frame point g sits at ``m g + t`` in the reference's moment frame, so a reference pixel
    x_r maps to ``region.mean + region.half m^-1 (ref.inv_half (x_r - ref.mean) - t)``."""
    if abs(np.linalg.det(m)) < 1e-6:
        return None
    m_inv = np.linalg.inv(m)
    if not _plausible((region.half @ m_inv @ part.frame.inv_half)[None])[0]:
        return None
    x1, y1, x2, y2 = part.content_box
    corners = np.array([[x1, y1], [x2, y1], [x2, y2], [x1, y2]], dtype=np.float64)
    g = ((corners - part.frame.mean) @ part.frame.inv_half.T - t) @ m_inv.T
    mapped = (g @ region.half.T + region.mean) / scale
    return (float(mapped[:, 0].min()), float(mapped[:, 1].min()), float(mapped[:, 0].max()), float(mapped[:, 1].max()))

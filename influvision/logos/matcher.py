"""Local-feature matching of flat brand marks: SIFT, a location-aware ratio test, RANSAC homographies.

Why the pieces are there:

* The references are single-colour silhouettes while the real logos are printed in any colour, light on
  dark or dark on light. SIFT descriptors flip with contrast polarity, so every reference is described
  twice: dark mark on light ground and its inverse.
* Real logos are seen in perspective; a few tilted views of each reference (affine simulation as in
  ASIFT) give descriptors that still match at 50-60 degrees of tilt.
* SIFT's contrast threshold counts grey levels, and a dim photo's marks have few: a dim photo is described
  a second time brightened (:meth:`SiftMatcher._features`).
* The ratio test runs against all brands at once: a photo feature that fits two brands (or two places of
  one brand) about as well is dropped. Neighbours of the same brand closer than a few canvas pixels are
  the same point seen in another simulated view, so they do not count as the runner-up.
* That test costs recall as brands are registered (each can be a runner-up) and in degraded photos, where
  true matches are farther. A brand the strict test finds nowhere in a photo is searched again with the
  features whose runner-up within that reference (Lowe's test per object) passes. The second pass only
  serves brands the first did not find: run for every brand, it fits homographies across two instances side
  by side and finds more boxes on text (RESULTS.md, 2026-12-07).
* Every candidate needs a homography with enough RANSAC inliers that maps the reference to a convex,
  plausibly sized and shaped quadrilateral, and the photo inside it must agree with the reference's
  shape (:func:`shape_agreement`): that check kills most chance alignments.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

import cv2
import numpy as np
import torch
from scipy.spatial import cKDTree

from ..engine import default_workers
from ..resample import rescaled, work_scale
from ..tone import lifted
from .cues import DARK_MEAN
from .references import LogoReference

log = logging.getLogger(__name__)
_T = TypeVar("_T")

# Affine simulations of each reference: (tilt, longitude in degrees). Tilt t compresses one axis by 1/t.
VIEWS: tuple[tuple[float, float], ...] = (
    (1.0, 0.0),
    (1.7, 0.0), (1.7, 45.0), (1.7, 90.0), (1.7, 135.0),
)

# Nearest reference descriptors looked at per photo feature (for the runner-up of the ratio test), and the
# extra ones shortlisted by the coarse product before the exact ranking.
_NEIGHBOURS = 12
_SHORTLIST_MARGIN = 8
# Dimensions of the coarse product: the descriptors' leading principal directions (RootSIFT puts 96 % of
# the reference descriptors' energy in 64 of 128; on the shared photos the ranking is that of the exact
# product, feature for feature).
_COARSE_DIMS = 64
# A keypoint of a dim copy's brightened version this close (working-copy pixels) to one of the copy's own is
# the same point (SiftMatcher._features).
_SAME_POINT_PX = 2.0
# Elements of one block of the coarse product on the CPU (16 MB in float32; see SiftMatcher._shortlist).
_BLOCK_ELEMENTS = 1 << 22


def coarse_dtype(device: torch.device) -> torch.dtype:
    """Precision of the shortlisting product: bfloat16 where the hardware multiplies it natively."""
    if device.type == "cuda" or (device.type == "cpu" and torch.cpu._is_avx512_bf16_supported()):
        return torch.bfloat16
    return torch.float32


@dataclass(frozen=True)
class Candidate:
    """One geometrically verified logo hypothesis in one image (source pixels)."""

    image_index: int
    brand: int
    box: tuple[float, float, float, float]
    quad: np.ndarray  # (4, 2) float32, the reference canvas's content corners in source pixels
    inliers: int
    matches: int
    agreement: float  # shape agreement in [-1, 1], see shape_agreement()


def _rootsift(desc: np.ndarray) -> np.ndarray:
    desc = desc.astype(np.float32)
    desc /= np.maximum(desc.sum(axis=1, keepdims=True), 1e-7)
    return np.sqrt(desc)


def _render(shape: np.ndarray, invert: bool) -> np.ndarray:
    """uint8 greyscale rendering of a [0, 1] shape: dark mark on light ground (or inverted)."""
    ink = shape if invert else 1.0 - shape
    img = (40.0 + 175.0 * ink).astype(np.float32)
    return cv2.GaussianBlur(img, (0, 0), 1.0).clip(0, 255).astype(np.uint8)


def _tilt_view(img: np.ndarray, tilt: float, phi: float) -> tuple[np.ndarray, np.ndarray]:
    """Warp ``img`` to a simulated view; returns the view and the 2x3 affine from view back to ``img``."""
    h, w = img.shape[:2]
    if tilt == 1.0 and phi == 0.0:
        return img, np.array([[1, 0, 0], [0, 1, 0]], dtype=np.float64)
    rot = cv2.getRotationMatrix2D((w / 2, h / 2), phi, 1.0)
    corners = np.array([[0, 0, 1], [w, 0, 1], [0, h, 1], [w, h, 1]], dtype=np.float64) @ rot.T
    x0, y0 = corners.min(axis=0)
    x1, y1 = corners.max(axis=0)
    rot[:, 2] -= (x0, y0)
    squash = np.array([[1.0 / tilt, 0, 0], [0, 1.0, 0], [0, 0, 1]])
    fwd = (squash @ np.vstack([rot, [0, 0, 1]]))[:2]
    size = (int(np.ceil((x1 - x0) / tilt)), int(np.ceil(y1 - y0)))
    # 128 is the rendering's mid-grey neither polarity uses, so the view's border adds no false edges.
    view = cv2.warpAffine(img, fwd, size, flags=cv2.INTER_AREA, borderMode=cv2.BORDER_REPLICATE)
    return view, cv2.invertAffineTransform(fwd)


def shape_agreement(grey_canvas: np.ndarray, shape: np.ndarray) -> float:
    """Pearson correlation in [-1, 1] between a photo patch warped to the reference canvas and its shape.

    Args:
        grey_canvas: (H, W) float32, photo intensities resampled onto the reference canvas.
        shape: (H, W) float32 in [0, 1], the reference shape.

    A real flat logo separates into mark and ground, so |r| is high (sign = polarity); a chance alignment
    of a few keypoints on unrelated texture gives |r| near 0. Returns 0 for a constant patch.
    """
    a = grey_canvas.astype(np.float64).ravel()
    b = shape.astype(np.float64).ravel()
    a = a - a.mean()
    b = b - b.mean()
    den = float(np.sqrt((a * a).sum() * (b * b).sum()))
    return float((a * b).sum() / den) if den > 1e-9 else 0.0


class SiftMatcher:
    """Finds registered marks in photos by SIFT matching against several renderings of each reference.

    Args:
        references: the registered brands; ``Candidate.brand`` indexes this list.
        device: torch device for descriptor matching (the SIFT extraction itself runs on the CPU).
        max_features: SIFT features kept per photo.
        work_side: photos are resized so that their longer side is this many pixels (small photos are
            upscaled at most ``max_upscale`` times): small logos need the upscaling to give keypoints.
        ratio: Lowe ratio threshold against the best runner-up of another brand or another place.
        min_inliers: RANSAC inliers needed for a candidate (at as many distinct reference points).
        max_instances: homographies tried per brand and photo (each removes its inliers).
        views: (tilt, longitude in degrees) affine simulations of each reference; (1, 0) is upright.
        workers: threads describing references and matching photos, one image each (OpenCV releases the
            GIL); None: as many as decode photos (:func:`influvision.engine.default_workers`). Results do
            not depend on it.
    """

    def __init__(self, references: Sequence[LogoReference], *, device: str | torch.device = "cpu",
                 max_features: int = 3000, work_side: int = 1000, max_upscale: float = 2.0,
                 ratio: float = 0.8, min_inliers: int = 8, max_instances: int = 3,
                 views: Sequence[tuple[float, float]] = VIEWS, workers: int | None = None) -> None:
        self.references = list(references)
        self.device = torch.device(device)
        self.max_features = max_features
        self.work_side = work_side
        self.max_upscale = max_upscale
        self.ratio = ratio
        self.min_inliers = min_inliers
        self.max_instances = max_instances
        self.views = tuple(views)
        self.workers = workers if workers is not None else default_workers()
        self._local = threading.local()  # one SIFT object per thread
        # Torch work runs one thread at a time: its own thread pool already uses the cores, and two
        # OpenMP pools on the same cores stall each other.
        self._torch_lock = threading.Lock()
        self._block: torch.Tensor | None = None  # the CPU product's reused buffer, used under _torch_lock
        descs, pts, brands = [], [], []
        for b, (ref, (d, p)) in enumerate(zip(self.references, self._map(self._describe_reference, self.references),
                                               strict=True)):
            descs.append(d)
            pts.append(p)
            brands.append(np.full(len(d), b, dtype=np.int64))
            log.debug("reference %s: %d descriptors", ref.name, len(d))
        self.db_desc = torch.from_numpy(np.concatenate(descs) if descs else np.zeros((0, 128), np.float32)
                                        ).to(self.device)
        self._coarse_dtype = coarse_dtype(self.device)
        self._coarse_basis = _principal_basis(self.db_desc, _COARSE_DIMS)
        self._db_coarse = (self.db_desc @ self._coarse_basis).to(self._coarse_dtype)
        self.db_pts = np.concatenate(pts) if pts else np.zeros((0, 2), np.float32)
        self.db_brand = np.concatenate(brands) if brands else np.zeros(0, np.int64)
        self._db_pts_t = torch.from_numpy(self.db_pts).to(self.device)
        self._db_brand_t = torch.from_numpy(self.db_brand).to(self.device)
        # References sharing a brand name form one group: they never compete in the ratio test.
        first = {}
        group = np.array([first.setdefault(r.name, i) for i, r in enumerate(self.references)], dtype=np.int64)
        self._group = group
        self._db_group_t = torch.from_numpy(group[self.db_brand] if len(self.db_brand) else self.db_brand).to(
            self.device)

    def _describe_reference(self, ref: LogoReference) -> tuple[np.ndarray, np.ndarray]:
        """RootSIFT descriptors (K, 128) and their canvas coordinates (K, 2) over all renderings and views."""
        descs, pts = [], []
        for invert in (False, True):
            base = _render(ref.shape, invert)
            for tilt, phi in self.views:
                view, back = _tilt_view(base, tilt, phi)
                kps, d = self._sift_for(1500).detectAndCompute(view, None)
                if d is None or not kps:
                    continue
                xy = np.array([k.pt for k in kps], dtype=np.float64)
                xy = np.hstack([xy, np.ones((len(xy), 1))]) @ back.T
                h, w = ref.shape.shape
                keep = (xy[:, 0] >= 0) & (xy[:, 0] < w) & (xy[:, 1] >= 0) & (xy[:, 1] < h)
                descs.append(_rootsift(d[keep]))
                pts.append(xy[keep].astype(np.float32))
        if not descs:
            return np.zeros((0, 128), np.float32), np.zeros((0, 2), np.float32)
        return np.concatenate(descs), np.concatenate(pts)

    def match(self, images: Sequence[np.ndarray]) -> list[Candidate]:
        """Verified candidates over a batch of (H, W, 3) uint8 RGB images, in image order; may be empty."""
        return [c for found in self._map(self._match_one, range(len(images)), images) for c in found]

    def _map(self, fn: Callable[..., _T], *args: Sequence[Any]) -> list[_T]:
        """``list(map(fn, *args))``, on up to ``workers`` threads."""
        n = len(args[0])
        if self.workers <= 1 or n <= 1:
            return list(map(fn, *args))
        with ThreadPoolExecutor(min(self.workers, n)) as pool:
            return list(pool.map(fn, *args))

    def _sift_for(self, features: int) -> cv2.SIFT:
        """This thread's SIFT extractor keeping ``features`` keypoints (OpenCV objects are not shared)."""
        key = f"sift{features}"
        sift = getattr(self._local, key, None)
        if sift is None:
            sift = cv2.SIFT_create(nfeatures=features, contrastThreshold=0.02)
            setattr(self._local, key, sift)
        return sift

    def working_copy(self, img: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
        """The grey photo, the grey copy SIFT describes (longer side ``work_side``, small photos upscaled at most
        ``max_upscale`` times) and its scale, for a non-empty (H, W, 3) uint8 RGB image."""
        h, w = img.shape[:2]
        s = work_scale(w, h, self.work_side, self.max_upscale)
        grey = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)
        return grey, rescaled(grey, s), s

    def _match_one(self, index: int, img: np.ndarray) -> list[Candidate]:
        h, w = img.shape[:2]
        if h == 0 or w == 0:
            return []
        grey, work, s = self.working_copy(img)
        xy, d = self._features(work)
        if len(xy) < self.min_inliers or len(self.db_desc) < 2:
            return []
        xy /= s
        # Source pixels per pixel of the copy the keypoints were found in, where a large photo was shrunk: the
        # fit's tolerances are in the copy's pixels there (a 4000 px photo's keypoints are good to about 4
        # source pixels, not 1), and in source pixels where a small photo was enlarged, as they were tuned.
        unit = max(1.0, 1.0 / s)
        with self._torch_lock:
            _, brand, ref_xy, ok, own_ok = self._ratio_matches(torch.from_numpy(_rootsift(d)).to(self.device))
        cands: list[Candidate] = []
        for passing in (ok, own_ok):
            found = {self._group[c.brand] for c in cands}
            for b in np.unique(brand[passing]):
                if self._group[b] in found:
                    continue
                sel = np.nonzero(passing & (brand == b))[0]
                cands.extend(self._fit_instances(index, int(b), ref_xy[sel], xy[sel], grey, (w, h), unit))
        return cands

    def _features(self, work: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """SIFT keypoints (K, 2) float32 and descriptors (K, 128) of a grey working copy. A dim copy (mean grey
        level under :data:`DARK_MEAN`) is also described brightened (:func:`influvision.tone.lifted`): SIFT's
        contrast threshold is in grey levels, which darkness squeezes. The brightened copy's keypoints within
        :data:`_SAME_POINT_PX` of one of the copy's own are that point again and are dropped (RANSAC would count
        them twice)."""
        sift = self._sift_for(self.max_features)
        kps, d = sift.detectAndCompute(work, None)
        xy = np.array([k.pt for k in kps], dtype=np.float32).reshape(-1, 2)
        d = d if d is not None else np.zeros((0, 128), np.float32)
        bright = lifted(work, DARK_MEAN)
        if bright is work:
            return xy, d
        kps2, d2 = sift.detectAndCompute(bright, None)
        if d2 is None or not kps2:
            return xy, d
        xy2 = np.array([k.pt for k in kps2], dtype=np.float32)
        if len(xy):
            new = cKDTree(xy).query(xy2, distance_upper_bound=_SAME_POINT_PX)[0] > _SAME_POINT_PX
            xy2, d2 = xy2[new], d2[new]
        return np.concatenate([xy, xy2]), np.concatenate([d, d2])

    def _ratio_matches(self, desc: torch.Tensor) -> tuple[np.ndarray, ...]:
        """For each photo feature: best db index, its reference, its canvas point, whether it passes the ratio test
        against every brand, and whether it passes it against its own reference's other places alone."""
        k = min(_NEIGHBOURS, self.db_desc.shape[0])
        # Shortlist with a coarse product (the (N, M) product is most of the matching time): projected on the
        # leading principal directions, in bfloat16 where the hardware has it. Then rank the shortlist with
        # exact float32 cosines: the neighbours and distances are those of the exact product unless the
        # coarse one pushed a true neighbour out of the shortlist's margin.
        cand = self._shortlist(desc, min(k + _SHORTLIST_MARGIN, self.db_desc.shape[0]))  # (N, k + margin)
        exact = torch.einsum("nd,nkd->nk", desc, self.db_desc[cand])  # cosine of unit RootSIFT vectors
        top_sim, order = exact.topk(k, dim=1)
        top_idx = cand.gather(1, order)
        dist = torch.sqrt(torch.clamp(2.0 - 2.0 * top_sim, min=0.0))
        b_brand = self._db_brand_t[top_idx]  # (N, k)
        b_pts = self._db_pts_t[top_idx]  # (N, k, 2)
        b_group = self._db_group_t[top_idx]
        same_ref = b_brand == b_brand[:, :1]
        same_place = (same_ref & ((b_pts - b_pts[:, :1]).norm(dim=-1) < 12.0)) | (
            ~same_ref & (b_group == b_group[:, :1]))
        def runner_up(allowed: torch.Tensor) -> torch.Tensor:  # distance of the first allowed neighbour, else 2
            first = torch.argmax(allowed.to(torch.int8), dim=1)
            return torch.where(allowed.any(dim=1), dist.gather(1, first[:, None])[:, 0],
                               torch.full_like(dist[:, 0], 2.0))

        # Runner-up: first neighbour that is another brand, or another place of the same reference; for the
        # second pass, another place of the same reference only.
        other = ~same_place
        ok = dist[:, 0] < self.ratio * runner_up(other)
        own_ok = dist[:, 0] < self.ratio * runner_up(other & same_ref)
        best = top_idx[:, 0]
        return (best.cpu().numpy(), b_brand[:, 0].cpu().numpy(), b_pts[:, 0].cpu().numpy(),
                ok.cpu().numpy(), own_ok.cpu().numpy())

    def _shortlist(self, desc: torch.Tensor, k: int) -> torch.Tensor:
        """(N, k) indices of each photo feature's ``k`` nearest reference descriptors by the coarse product.

        On the CPU the product runs over blocks of photo features into one reused buffer: a fresh (N, M)
        result (160 MB for 3,000 features) costs more in page faults than its arithmetic.
        """
        coarse = (desc @ self._coarse_basis).to(self._coarse_dtype)
        if self.device.type != "cpu":
            return (coarse @ self._db_coarse.T).topk(k, dim=1).indices
        n, m = coarse.shape[0], self._db_coarse.shape[0]
        rows = max(1, _BLOCK_ELEMENTS // max(m, 1))
        buf = self._block
        if buf is None or buf.shape[0] < min(rows, n) or buf.shape[1] != m or buf.dtype != coarse.dtype:
            buf = self._block = torch.empty((min(rows, n), m), dtype=coarse.dtype)
        out = torch.empty((n, k), dtype=torch.long)
        for start in range(0, n, rows):
            block = buf[:min(rows, n - start)]
            torch.mm(coarse[start:start + rows], self._db_coarse.T, out=block)
            out[start:start + len(block)] = block.topk(k, dim=1).indices
        return out

    def _fit_instances(self, index: int, b: int, src: np.ndarray, dst: np.ndarray, grey: np.ndarray,
                       wh: tuple[int, int], unit: float) -> list[Candidate]:
        ref = self.references[b]
        cx1, cy1, cx2, cy2 = ref.content_box
        corners = np.array([[cx1, cy1], [cx2, cy1], [cx2, cy2], [cx1, cy2]], dtype=np.float32)
        out: list[Candidate] = []
        remaining = np.arange(len(src))
        for _ in range(self.max_instances):
            if len(remaining) < self.min_inliers:
                break
            hmat, mask = cv2.findHomography(src[remaining], dst[remaining], cv2.USAC_MAGSAC, 4.0 * unit,
                                            maxIters=2000, confidence=0.999)
            if hmat is None or mask is None:
                break
            inl = mask.ravel().astype(bool)
            n_in = int(inl.sum())
            if n_in < self.min_inliers:
                break
            inl_idx, remaining = remaining[inl], remaining[~inl]
            quad = cv2.perspectiveTransform(corners[None], hmat)[0]
            if not _plausible_quad(quad, wh, (cx2 - cx1) / (cy2 - cy1), unit):
                continue
            # Distinct reference points among the inliers: repeated hits on one corner are one piece of evidence.
            if len(np.unique(np.round(src[inl_idx] / 6.0), axis=0)) < self.min_inliers:
                continue
            agreement = self._agreement(grey, hmat, ref)
            x1, y1 = quad.min(axis=0)
            x2, y2 = quad.max(axis=0)
            box = (max(0.0, float(x1)), max(0.0, float(y1)), min(float(wh[0]), float(x2)),
                   min(float(wh[1]), float(y2)))
            out.append(Candidate(index, b, box, quad.astype(np.float32), n_in, len(src), agreement))
        return out

    @staticmethod
    def _agreement(grey: np.ndarray, hmat: np.ndarray, ref: LogoReference) -> float:
        """:func:`shape_agreement` of the uint8 grey photo under ``hmat`` (reference canvas -> photo pixels).
        Only the part of the photo the canvas samples is made float: all of a 12-megapixel photo would cost
        more than the warp."""
        w, h = ref.size
        corners = np.array([[[0, 0], [w - 1, 0], [w - 1, h - 1], [0, h - 1]]], dtype=np.float64)
        rows, cols = grey.shape
        x0, y0, x1, y1 = 0, 0, cols, rows
        # With the canvas's corners all on one side of the horizon (homogeneous w of one sign), every canvas
        # pixel samples inside their quadrilateral. Bilinear samples read one pixel beyond their position, and
        # outside the photo BORDER_REPLICATE repeats the photo's edge, which the crop keeps wherever that is.
        depth = np.c_[corners[0], np.ones(4)] @ hmat[2]
        if depth.min() > 1e-6 or depth.max() < -1e-6:  # perspectiveTransform gives (0, 0) for |w| under ~1e-7
            xy = cv2.perspectiveTransform(corners, hmat)[0]
            x0 = int(np.clip(np.floor(xy[:, 0].min()) - 2, 0, cols - 1))
            y0 = int(np.clip(np.floor(xy[:, 1].min()) - 2, 0, rows - 1))
            x1 = int(np.clip(np.ceil(xy[:, 0].max()) + 3, x0 + 1, cols))
            y1 = int(np.clip(np.ceil(xy[:, 1].max()) + 3, y0 + 1, rows))
        shift = np.array([[1, 0, -x0], [0, 1, -y0], [0, 0, 1]], dtype=np.float64)
        canvas = cv2.warpPerspective(grey[y0:y1, x0:x1].astype(np.float32), shift @ hmat, (w, h),
                                     flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_REPLICATE)
        return shape_agreement(canvas, ref.shape)


def _principal_basis(desc: torch.Tensor, dims: int) -> torch.Tensor:
    """(D, k) orthonormal basis of the ``k = min(dims, M, D)`` leading principal directions of the rows of
    ``desc`` (M, D), uncentred, so projected dot products approximate the full ones; exact when M <= dims."""
    k = min(dims, *desc.shape)
    if k == 0:
        return torch.zeros((desc.shape[1], 0), dtype=desc.dtype, device=desc.device)
    _, _, vh = torch.linalg.svd(desc.double(), full_matrices=False)
    return vh[:k].T.to(desc.dtype).contiguous()


def _plausible_quad(quad: np.ndarray, wh: tuple[int, int], ref_aspect: float, unit: float = 1.0) -> bool:
    """Convex, not tiny (sides of 8 and an area of 12 x 12 ``unit`` pixels), not far larger than the photo, sides
    and aspect within what perspective allows."""
    q = quad.astype(np.float64)
    if not np.isfinite(q).all():
        return False
    if not cv2.isContourConvex(q.astype(np.float32).reshape(-1, 1, 2)):
        return False
    area = cv2.contourArea(q.astype(np.float32))
    w, h = wh
    if area < (12 * unit) ** 2 or area > 1.5 * w * h:
        return False
    sides = np.linalg.norm(np.roll(q, -1, axis=0) - q, axis=1)
    if sides.min() < 8 * unit or sides.max() / sides.min() > 6 * max(ref_aspect, 1 / ref_aspect):
        return False
    # Opposite sides of a flat mark seen in perspective keep comparable lengths.
    if max(sides[0], sides[2]) / max(min(sides[0], sides[2]), 1e-6) > 3.0:
        return False
    if max(sides[1], sides[3]) / max(min(sides[1], sides[3]), 1e-6) > 3.0:
        return False
    aspect = (sides[0] + sides[2]) / max(sides[1] + sides[3], 1e-6)
    ratio = aspect / ref_aspect
    return 1 / 3.5 < ratio < 3.5

"""Batched face alignment: MTCNN's 5 landmarks -> the dlib ResNet's 150x150 face chip, on any device.

Two steps, both batched over faces with tensor ops only:

1. :func:`similarity_from_landmarks` fits, for every face at once, the least-squares similarity (rotation,
   uniform scale, translation; never a reflection) between two 5-point sets in closed form.
2. :func:`sample_chips` samples every chip from the image it belongs to. Faces much larger than the chip are
   taken from a coarser level of a per-image blur-and-halve pyramid (antialiasing, as dlib's own chip
   extraction does), so that a chip never samples its source more sparsely than every second pixel.
   Sampling is one bilinear gather over all faces of all images, all levels packed in one buffer.

:func:`align_to_chip` chains both with :data:`DLIB_MTCNN_TEMPLATE`, the positions of MTCNN's points in the
frame dlib's ``get_face_chip(size=150, padding=0.25)`` samples, so chips from MTCNN landmarks embed like dlib's.

Coordinates: pixel centres sit at integer coordinates (x = column, y = row), in the image and in the chip.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor

from ..errors import ShapeError
from .tensors import gather_rows, index_tensor

logger = logging.getLogger(__name__)

__all__ = [
    "DLIB_MTCNN_TEMPLATE",
    "ChipAligner",
    "align_to_chip",
    "sample_chips",
    "similarity_from_landmarks",
    "template_for_size",
]

# Where MTCNN's 5 points (left eye, right eye, nose tip, mouth left, mouth right; "left" = smaller x) sit in
# dlib's 150x150 chip (size=150, padding=0.25), in the frame dlib actually samples (its chip_to_image map).
#
# Derived by benchmarks/derive_template.py: facenet-pytorch MTCNN(keep_all=True) on the 12 dlib fixture
# sources, each face's points mapped into the chip by the inverse of its exact chip_to_image_affine_2x3,
# averaged (std over faces: eyes 0.7-1.3 px, nose 4.2/1.7, mouth corners 3.4-4.5 px). Measured by aligning
# each face from its MTCNN points with the candidate template (this sampler, antialiased), embedding with
# the dlib port and taking the cosine to dlib's own descriptor (fixtures' descriptors.npy):
#
#   template                                              mean cos   min cos
#   dlib-port.md 6.1 (dlib 68-point stand-in)              0.99644    0.99282
#   face-baselines.md (MTCNN averages, rounded)            0.99676    0.99295
#   MTCNN mean, leave-one-out (each face without itself)   0.99656    0.99324
#   MTCNN mean over all 12 (this one, in-sample)           0.99676    0.99286
#
# The leave-one-out figure is the honest estimate for unseen faces (0.9966); the four candidates are within
# 0.0003 of each other, i.e. 12 faces cannot tell them apart. We ship the 12-face MTCNN mean: it is measured
# with the detector we run, and it agrees with face-baselines.md's independent measurement to 0.01 px.
DLIB_MTCNN_TEMPLATE = torch.tensor(
    [
        [46.83, 44.48],
        [101.41, 45.27],
        [75.01, 77.69],
        [48.69, 103.51],
        [98.32, 103.57],
    ],
    dtype=torch.float32,
)
_TEMPLATE_SIZE = 150

# A face is sampled from the pyramid level where one chip pixel covers at most this many source pixels.
_MAX_SCALE_PER_LEVEL = 2.0
# Margin around the faces' region when coarser levels are built from part of a photo, in pixels of the
# coarsest level built: the blur carries the crop's edge at most 2 pixels into a level, and the sampler
# reads one pixel further.
_CROP_MARGIN = 4
_BINOMIAL_5 = (1.0, 4.0, 6.0, 4.0, 1.0)


def template_for_size(size: int, template: Tensor | None = None) -> Tensor:
    """The 150-px template rescaled to a ``size`` x ``size`` chip.

    The scaling keeps the chip's outer pixel edges in place (pixel centres at integers): t' = (t + 0.5) *
    size / 150 - 0.5. Good enough for e.g. facenet's 160 px input; for other embedders' framings (ArcFace's
    112 px crop is framed much tighter) pass their own template instead.

    Returns:
        (5, 2) float32 on the template's device (CPU for the default).
    """
    base = DLIB_MTCNN_TEMPLATE if template is None else template
    if size == _TEMPLATE_SIZE:
        return base
    return (base + 0.5) * (size / _TEMPLATE_SIZE) - 0.5


def similarity_from_landmarks(src: Tensor, dst: Tensor) -> Tensor:
    """Least-squares similarity mapping ``src`` points onto ``dst`` points, for every face at once.

    Umeyama's fit restricted to proper rotations (no reflection), in its closed 2-D form: with centred points
    written as complex numbers, the rotation-and-scale is c = sum(conj(s) d) / sum(|s|^2), which minimises
    sum |d - (c s + t)|^2 over all rotations, scales >= 0 and translations exactly like the SVD route, without
    a batched SVD.

    Args:
        src: (N, K, 2) float points (x, y), K >= 2 (5 for MTCNN).
        dst: (K, 2) shared by all faces, or (N, K, 2); same device as ``src``.

    Returns:
        (N, 2, 3) affine A with dst ~ A[:, :, :2] @ src + A[:, :, 2], dtype promoted from the inputs
        (float32 for float32 in; computed in float64 internally), on ``src``'s device. N = 0 gives (0, 2, 3).
        Degenerate ``src`` (all points equal) gives a zero linear part, i.e. everything maps to dst's centroid.
    """
    if src.ndim != 3 or src.shape[-1] != 2:
        raise ShapeError("src", "(N, K, 2)", tuple(src.shape))
    if dst.ndim == 2:
        dst = dst.unsqueeze(0).expand(src.shape[0], -1, -1)
    if dst.shape != src.shape:
        raise ShapeError("dst", f"(K, 2) or (N, K, 2) matching src {tuple(src.shape)}", tuple(dst.shape))
    out_dtype = torch.promote_types(torch.promote_types(src.dtype, dst.dtype), torch.float32)
    s = src.to(torch.float64)
    d = dst.to(device=src.device, dtype=torch.float64)
    mu_s = s.mean(dim=1, keepdim=True)
    mu_d = d.mean(dim=1, keepdim=True)
    sc, dc = s - mu_s, d - mu_d
    ss = (sc * sc).sum(dim=(1, 2)).clamp_min(torch.finfo(torch.float64).tiny)
    a = (sc[..., 0] * dc[..., 0] + sc[..., 1] * dc[..., 1]).sum(dim=1) / ss
    b = (sc[..., 0] * dc[..., 1] - sc[..., 1] * dc[..., 0]).sum(dim=1) / ss
    lin = torch.stack([torch.stack([a, -b], dim=-1), torch.stack([b, a], dim=-1)], dim=1)  # (N, 2, 2)
    t = mu_d.squeeze(1) - (lin @ mu_s.squeeze(1).unsqueeze(-1)).squeeze(-1)
    return torch.cat([lin, t.unsqueeze(-1)], dim=-1).to(out_dtype)


def _as_hwc_uint8(image: Tensor | np.ndarray, index: int, device: torch.device) -> Tensor:
    """One image as a (H, W, 3) uint8 tensor on ``device``; grey (H, W) or (H, W, 1) is repeated to RGB."""
    if isinstance(image, np.ndarray):
        # from_numpy shares memory and warns on read-only arrays (e.g. np.asarray(PIL image)): copy those.
        image = np.ascontiguousarray(image) if image.flags.writeable else np.array(image)
        t = torch.from_numpy(image)
    else:
        t = image
    if t.dtype != torch.uint8:
        raise ShapeError(f"images[{index}]", "uint8 RGB (H, W, 3)", f"dtype {t.dtype}")
    if t.ndim == 2:
        t = t.unsqueeze(-1)
    if t.ndim != 3 or t.shape[-1] not in (1, 3) or t.shape[0] < 2 or t.shape[1] < 2:
        raise ShapeError(f"images[{index}]", "uint8 RGB (H, W, 3) with H, W >= 2", tuple(t.shape))
    t = t.to(device)
    return t.expand(-1, -1, 3) if t.shape[-1] == 1 else t


def _pyramid_down(level: Tensor) -> Tensor:
    """(H, W, 3) float -> (ceil(H/2), ceil(W/2), 3): [1,4,6,4,1]^2/256 blur, output pixel j centred on input
    pixel 2j (so level-k coordinates are level-0 coordinates / 2^k), edges replicated.

    Written as strided slices rather than a strided conv2d: on the CPU that is ~10x faster, on CUDA the same.
    The terms are summed in place into two buffers (the same arithmetic, in the same order, as one
    expression, which made a temporary per term): twice as fast on a 12-megapixel photo.
    """
    for dim in (0, 1):
        n = level.shape[dim]
        first, last = level.narrow(dim, 0, 1), level.narrow(dim, n - 1, 1)
        padded = torch.cat([first, first, level, last, last], dim=dim)
        half = (n + 1) // 2

        def tap(start: int, padded: Tensor = padded, dim: int = dim, half: int = half) -> Tensor:
            return padded.narrow(dim, start, 2 * half - 1)[(slice(None),) * dim + (slice(None, None, 2),)]

        # (t0 + t4 + 4 (t1 + t3) + 6 t2) / 16, two buffers instead of one per term.
        out = tap(0).to(torch.float32, copy=True).add_(tap(4))
        part = tap(1).to(torch.float32, copy=True).add_(tap(3)).mul_(4.0)
        out.add_(part)
        out.add_(torch.mul(tap(2), 6.0, out=part))
        level = out.mul_(1.0 / 16.0)
    return level


class _Level(NamedTuple):
    """Where one pyramid level of one image is stored: the rectangle starting at (``x0``, ``y0``), ``rows``
    x ``row`` pixels, of a level of ``height`` x ``width`` pixels (its full size, which decides what is
    outside the image), row after row from ``offset`` on."""

    offset: int
    height: int
    width: int
    x0: int
    y0: int
    rows: int
    row: int

    @property
    def end(self) -> int:
        """The buffer position just past the stored pixels."""
        return self.offset + self.rows * self.row


class _Pyramids(NamedTuple):
    """The pyramid levels of a batch in one (P, 3) float32 buffer, and (B, L) int64 tables per (image, level)
    of the :class:`_Level` fields; entries past an image's ``n_levels`` repeat its top level."""

    buffer: Tensor
    offset: Tensor
    height: Tensor
    width: Tensor
    x0: Tensor
    y0: Tensor
    rows: Tensor
    row: Tensor
    n_levels: Tensor


def _pack_pyramids(images: Sequence[Tensor], size: int, levels: Sequence[int],
                   regions: Sequence[tuple[float, float, float, float] | None] | None = None) -> _Pyramids:
    """The pyramid levels the faces need, of all images, stored only around the faces.

    Image i gets levels 0 to ``levels[i] - 1``, fewer while a level would be under ``size`` pixels on its
    longer side (a face needing a coarser level would be far larger than its image; it is then sampled from
    the top level). ``levels[i] == 0``: no face needs image i and nothing of it is stored (its entries
    describe an empty level that must not be sampled). Every level is built from, and stores, the part of
    the image around ``regions[i]`` (x1, y1, x2, y2 in level-0 pixels: where its faces are sampled; None: the
    whole image) with a margin wider than the blur can carry the crop's edge into any level built, and an
    origin on a multiple of 2^(levels - 1): every stored value is the one the whole image's pyramid has.
    """
    # Shapes are known on the host, so every level is written straight into one buffer: no float copy of
    # each image and no concatenation beside it.
    plans: list[list[_Level]] = []
    pos = 0
    for i, (img, wanted) in enumerate(zip(images, levels, strict=True)):
        h, w = (int(img.shape[0]), int(img.shape[1])) if wanted else (0, 0)
        fh, fw, n = h, w, 1 if wanted else 0
        while n < wanted and max(fh, fw) >= 2 * size and min(fh, fw) >= 4:
            fh, fw = (fh + 1) // 2, (fw + 1) // 2
            n += 1
        step = 1 << max(n - 1, 0)
        region = regions[i] if regions is not None else None
        cx0, cy0, cx1, cy1 = 0, 0, w, h
        if region is not None and n:
            margin = _CROP_MARGIN * step
            cx0 = max(0, int(np.floor((region[0] - margin) / step)) * step)
            cy0 = max(0, int(np.floor((region[1] - margin) / step)) * step)
            cx1 = min(w, int(np.ceil(region[2] + margin)))
            cy1 = min(h, int(np.ceil(region[3] + margin)))
            # Too narrow a crop (a region at or past the image's edge): that axis whole, so every stored
            # level keeps at least 4 pixels a side and the sampler's 2 x 2 reads stay inside.
            if cx1 - cx0 < 4 * step:
                cx0, cx1 = 0, w
            if cy1 - cy0 < 4 * step:
                cy0, cy1 = 0, h
        plan = [_Level(pos, h, w, cx0, cy0, cy1 - cy0, cx1 - cx0)]
        for k in range(1, n):
            last = plan[-1]
            plan.append(_Level(last.end, (last.height + 1) // 2, (last.width + 1) // 2,
                               cx0 >> k, cy0 >> k, (last.rows + 1) // 2, (last.row + 1) // 2))
        pos = plan[-1].end
        plans.append(plan)
    device = images[0].device
    buffer = torch.empty(pos, 3, dtype=torch.float32, device=device)
    for img, plan in zip(images, plans, strict=True):
        first = plan[0]
        if first.rows * first.row == 0:
            continue
        level = buffer[first.offset:first.end].view(first.rows, first.row, 3)
        level.copy_(img[first.y0:first.y0 + first.rows, first.x0:first.x0 + first.row])
        for lv in plan[1:]:
            nxt = buffer[lv.offset:lv.end].view(lv.rows, lv.row, 3)
            nxt.copy_(_pyramid_down(level))
            level = nxt
    n_max = max(len(p) for p in plans)

    def table(field: str) -> Tensor:
        rows = [[getattr(lv, field) for lv in p] for p in plans]
        return index_tensor([r + [r[-1]] * (n_max - len(r)) for r in rows], device)

    return _Pyramids(buffer, *(table(f) for f in _Level._fields), index_tensor([len(p) for p in plans], device))


def sample_chips(
    images: Sequence[Tensor | np.ndarray],
    image_index: Tensor,
    chip_to_image: Tensor,
    *,
    size: int = 150,
    antialias: bool = True,
    max_levels: int = 6,
) -> Tensor:
    """Sample N square chips, chip pixel (u, v) taken at image point ``chip_to_image @ (u, v, 1)``.

    Bilinear interpolation; a sample whose 2x2 neighbourhood is not wholly inside its image is black (0 in
    all channels), and values are truncated to uint8, both as dlib's ``extract_image_chips`` does. With
    ``antialias`` a face whose chip->image scale s exceeds 2 is sampled from pyramid level
    k = ceil(log2(s / 2)) of its image ([1,4,6,4,1] blur + 2x decimation per level), where the scale is <= 2.
    No Python loop over faces; one loop over images x pyramid levels builds the pyramids.

    Args:
        images: B uint8 RGB (H, W, 3) images, numpy or tensors, sizes may differ; grey (H, W) is accepted.
            All are moved to the device of the first tensor among them (else ``chip_to_image``'s device).
        image_index: (N,) int64, which image each chip comes from (values in [0, B); not checked on the
            device to avoid a host round-trip).
        chip_to_image: (N, 2, 3) float affine, chip pixel -> source pixel (before any pyramid).
        size: chip side in pixels.
        antialias: sample large faces from the pyramid (False: plain bilinear on the full image).
        max_levels: most pyramid levels per image, the full image included.

    Returns:
        (N, size, size, 3) uint8 RGB chips on the images' device; N = 0 gives (0, size, size, 3).
    """
    if chip_to_image.ndim != 3 or chip_to_image.shape[1:] != (2, 3):
        raise ShapeError("chip_to_image", "(N, 2, 3)", tuple(chip_to_image.shape))
    if image_index.shape != (chip_to_image.shape[0],):
        raise ShapeError("image_index", f"({chip_to_image.shape[0]},) like chip_to_image", tuple(image_index.shape))
    if size < 1:
        raise ShapeError("size", "a positive chip side", size)
    device = next((im.device for im in images if isinstance(im, Tensor)), chip_to_image.device)
    n = chip_to_image.shape[0]
    if n == 0 or len(images) == 0:
        if n:
            raise ShapeError("images", "at least one image for N > 0 faces", 0)
        return torch.zeros(0, size, size, 3, dtype=torch.uint8, device=device)
    imgs = [_as_hwc_uint8(im, i, device) for i, im in enumerate(images)]
    affine = chip_to_image.to(device=device, dtype=torch.float32)
    index = image_index.to(device=device, dtype=torch.long)
    if antialias:
        scale = affine[:, :, :2].det().abs().sqrt()
        level = torch.ceil(torch.log2(scale / _MAX_SCALE_PER_LEVEL) - 1e-6).clamp_min(0).long()
    else:
        level = torch.zeros_like(index)
    # Only the levels some face needs are built, only around the faces (each level from the one before),
    # and nothing for an image without faces: a large photo's whole pyramid costs far more than sampling
    # all its chips. Reading the needs back is the one wait for the device here.
    b = len(imgs)
    reach = affine[:, :, :2] * (size - 1)  # the chip's extent along each image axis, from its corner (0, 0)
    lo = affine[:, :, 2] + reach.clamp(max=0).sum(dim=2)  # (N, 2) x, y: the bounds of the chip's footprint
    hi = affine[:, :, 2] + reach.clamp(min=0).sum(dim=2)
    per_image = index[:, None].expand(-1, 2)
    needs = torch.cat([
        torch.zeros(b, 1, device=device).scatter_reduce_(
            0, index[:, None], (level + 1).clamp_max(max_levels)[:, None].float(), "amax"),
        torch.full((b, 2), torch.inf, device=device).scatter_reduce_(0, per_image, lo, "amin"),
        torch.full((b, 2), -torch.inf, device=device).scatter_reduce_(0, per_image, hi, "amax"),
    ], dim=1).tolist()
    regions = [(r[1], r[2], r[3], r[4]) if np.isfinite(r[1]) else None for r in needs]
    pyr = _pack_pyramids(imgs, size, [int(r[0]) for r in needs], regions)
    level = torch.minimum(level, pyr.n_levels[index] - 1)
    affine = affine / torch.exp2(level.float()).view(-1, 1, 1)  # level-k coords = level-0 coords / 2^k
    base, h, w = pyr.offset[index, level], pyr.height[index, level], pyr.width[index, level]
    ox, oy = pyr.x0[index, level].view(-1, 1), pyr.y0[index, level].view(-1, 1)
    row, rows = pyr.row[index, level].view(-1, 1), pyr.rows[index, level].view(-1, 1)
    buffer = pyr.buffer

    coords = torch.arange(size, device=device, dtype=torch.float32)
    v, u = torch.meshgrid(coords, coords, indexing="ij")
    uv1 = torch.stack([u, v, torch.ones_like(u)], dim=-1).view(1, size * size, 3)
    xy = uv1 @ affine.transpose(1, 2)  # (N, S*S, 2)
    x, y = xy[..., 0], xy[..., 1]
    x0f, y0f = torch.floor(x), torch.floor(y)
    fx, fy = (x - x0f).unsqueeze(-1), (y - y0f).unsqueeze(-1)
    w_, h_ = w.view(-1, 1), h.view(-1, 1)
    inside = (x0f >= 0) & (y0f >= 0) & (x0f + 1 < w_) & (y0f + 1 < h_)
    # Stored-rectangle coordinates; a sample outside the image reads the rectangle's first pixel (and is
    # zeroed), and the clamp keeps every read inside the rectangle whatever the affine.
    x0 = torch.minimum((torch.where(inside, x0f, 0).long() - ox).clamp(min=0), row - 2)
    y0 = torch.minimum((torch.where(inside, y0f, 0).long() - oy).clamp(min=0), rows - 2)
    i00 = base.view(-1, 1) + y0 * row + x0
    p00, p01 = gather_rows(buffer, i00), gather_rows(buffer, i00 + 1)
    p10, p11 = gather_rows(buffer, i00 + row), gather_rows(buffer, i00 + row + 1)
    top = p00 + (p01 - p00) * fx
    bottom = p10 + (p11 - p10) * fx
    value = (top + (bottom - top) * fy) * inside.unsqueeze(-1)
    # A small epsilon so that values that are integers in exact arithmetic do not truncate one level down
    # through float32 rounding (dlib computes in double).
    chips = (value + 1e-3).clamp_(0, 255).to(torch.uint8)
    return chips.view(n, size, size, 3)


def align_to_chip(
    images: Sequence[Tensor | np.ndarray],
    image_index: Tensor,
    landmarks: Tensor,
    *,
    size: int = 150,
    template: Tensor | None = None,
) -> Tensor:
    """Aligned face chips from MTCNN's 5 landmarks, all faces of all images in one call.

    Fits the similarity from the template (chip pixels) to each face's landmarks (least squares, as dlib
    fits its own template) and samples the chip through it with :func:`sample_chips` (antialiased).

    Args:
        images: B uint8 RGB (H, W, 3) images, numpy or tensors, CPU or CUDA, sizes may differ.
        image_index: (N,) int64 image of each face.
        landmarks: (N, 5, 2) float, x, y in source pixels: left eye, right eye, nose, mouth left, mouth right.
        size: chip side; the template is rescaled with :func:`template_for_size`.
        template: (5, 2) chip pixels for a ``size`` chip; default :data:`DLIB_MTCNN_TEMPLATE` rescaled,
            the framing the dlib ResNet embedder expects.

    Returns:
        (N, size, size, 3) uint8 RGB chips on the images' device; N = 0 gives (0, size, size, 3).
    """
    if landmarks.ndim != 3 or landmarks.shape[1:] != (5, 2):
        raise ShapeError("landmarks", "(N, 5, 2)", tuple(landmarks.shape))
    tmpl = template_for_size(size) if template is None else template
    if tmpl.shape != (5, 2):
        raise ShapeError("template", "(5, 2)", tuple(tmpl.shape))
    tmpl = tmpl.to(device=landmarks.device, dtype=torch.float32)
    chip_to_image = similarity_from_landmarks(tmpl.expand(landmarks.shape[0], 5, 2), landmarks.float())
    return sample_chips(images, image_index, chip_to_image, size=size)


class ChipAligner:
    """Holds a chip size and template; calling it is one :func:`align_to_chip` call.

    Example: ``ChipAligner()(images, faces.image_index, faces.landmarks)`` -> (N, 150, 150, 3) uint8.
    """

    def __init__(self, size: int = 150, template: Tensor | None = None):
        if size < 1:
            raise ShapeError("size", "a positive chip side", size)
        self.size = size
        self.template = template_for_size(size) if template is None else template
        if self.template.shape != (5, 2):
            raise ShapeError("template", "(5, 2)", tuple(self.template.shape))

    def __call__(self, images: Sequence[Tensor | np.ndarray], image_index: Tensor, landmarks: Tensor) -> Tensor:
        return align_to_chip(images, image_index, landmarks, size=self.size, template=self.template)

    def __repr__(self) -> str:
        return f"ChipAligner(size={self.size})"


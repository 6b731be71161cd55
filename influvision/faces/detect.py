"""Batched MTCNN face detection that keeps whole batches on the device.

The three MTCNN networks (P-Net, R-Net, O-Net, with facenet-pytorch's weights) run as in Zhang et al. 2016:

1. P-Net slides over an image pyramid (scales ``12 / min_face_size * factor**k``) and proposes boxes; NMS at
   IoU 0.5 within each (image, scale), then at IoU 0.7 within each image; boxes are regressed and squared.
2. R-Net scores 24x24 crops of the proposals; NMS at IoU 0.7 within each image; regression and squaring.
3. O-Net scores 48x48 crops, regresses the boxes and predicts 5 landmarks; a final NMS keeps a box unless
   it covers more than 70 % of a better box or a better box covers more than 70 % of it ("Min" overlap).

An image darker than ``dim_mean`` also goes through the three stages as a brightened copy in the same batch;
the final NMS then adds the faces only the copy shows to the original's (``FaceDetector(dim_mean=...)``).

Unlike facenet-pytorch's driver, every stage works on all images at once: each pyramid scale is one P-Net
call per bucket of images (same-size images stacked; on a GPU, different sizes also share a padded canvas
whose padding cannot leak into the result), candidates are tensors tagged with their image, NMS is grouped by image, and the R-Net and
O-Net crops of all boxes of all images come from one summed-area-table lookup per chunk. That lookup is
exactly the area resampling (``F.interpolate(mode="area")``) MTCNN's crops are made with, so scores match
facenet-pytorch's to float rounding rather than approximately (``roi_align``'s bilinear sampling flips
borderline faces). Nothing leaves the device; the caller decides when to copy.

Coordinates follow facenet-pytorch so that results agree with it and with templates fitted to it: boxes
are MTCNN's 1-based inclusive corners (a box around pixel columns a..b, 0-based, reads x1 = a + 1,
x2 = b + 1), landmarks are pixel-index coordinates (the centre of pixel row i, column j is x = j, y = i).
Crop windows reaching past the image are zero-padded as in the original MTCNN by default; see
``FaceDetector(border=...)`` for facenet-pytorch's behaviour.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Sequence
from typing import Literal, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.ops import batched_nms

from ..errors import ShapeError
from ..tone import grey_means, lifted_tensor
from ..types import Faces
from ..weights import load_torch_weights
from .tensors import gather_rows, index_tensor

logger = logging.getLogger(__name__)

_PNET_STRIDE = 2
_PNET_CELL = 12
# Largest number of canvas pixels (images x height x width) in one P-Net call; P-Net's first layer holds
# 10 float32 channels per pixel, so 2**23 pixels is about 0.3 GB of activations.
_PNET_MAX_PIXELS = 1 << 23
# Largest fraction of a P-Net call's canvas that may be padding (see _chunks).
_PNET_MAX_WASTE = 1 / 6
_PNET_MAX_WASTE_CPU = 0.0
# Largest number of crops per R-Net / O-Net call (O-Net's first layer: 32 x 46 x 46 floats a crop).
_RNET_CHUNK = 4096
_ONET_CHUNK = 1024
# Stands in for "nothing here" in P-Net's first max pool: the ceil-mode pool of an image alone sees only
# its own pixels, and padding must not change that.
_POOL_FILL = -1.0e4
# Images darker than this mean grey level are also searched brightened (FaceDetector's ``dim_mean``).
DIM_MEAN = 45.0


class _Nets(NamedTuple):
    pnet: nn.Module
    rnet: nn.Module
    onet: nn.Module


@functools.cache
def _load_nets(device: torch.device) -> _Nets:
    """P-, R- and O-Net on ``device``, loaded once per device per process.

    The state dicts are facenet-pytorch's, found and sha256-checked through the ``mtcnn`` weights manifest.
    """
    from facenet_pytorch.models.mtcnn import ONet, PNet, RNet

    nets = []
    for name, cls in (("pnet", PNet), ("rnet", RNet), ("onet", ONet)):
        net = cls(pretrained=False)
        net.load_state_dict(load_torch_weights("mtcnn", f"{name}.pt"))
        nets.append(net.eval().requires_grad_(False).to(device))
    logger.info("MTCNN weights loaded on %s", device)
    return _Nets(*nets)


def _normalize(x: Tensor) -> Tensor:
    """MTCNN's input scaling of 0..255 values: (x - 127.5) / 128."""
    return (x - 127.5) * 0.0078125


def _square(boxes: Tensor) -> Tensor:
    """Grow (K, 4) boxes to squares around the same centre (MTCNN's ``rerec``)."""
    w = boxes[:, 2] - boxes[:, 0]
    h = boxes[:, 3] - boxes[:, 1]
    side = torch.maximum(w, h)
    x1 = boxes[:, 0] + (w - side) * 0.5
    y1 = boxes[:, 1] + (h - side) * 0.5
    return torch.stack([x1, y1, x1 + side, y1 + side], dim=1)


def _regress(boxes: Tensor, reg: Tensor) -> Tensor:
    """Apply R-/O-Net offsets (K, 4), in units of the inclusive box size, to (K, 4) boxes (``bbreg``)."""
    wh = (boxes[:, 2:] - boxes[:, :2] + 1).repeat(1, 2)
    return boxes + reg * wh


def _nms_min(boxes: Tensor, scores: Tensor, groups: Tensor, threshold: float) -> Tensor:
    """Greedy NMS with overlap = intersection / smaller area (inclusive pixel areas), per group.

    Args:
        boxes: (K, 4) float, scores: (K,) float, groups: (K,) int64 (image index).
    Returns:
        (M,) int64 indices of the kept boxes, best score first; empty when K == 0.
    """
    order = torch.argsort(scores, descending=True)
    b, g = boxes[order], groups[order]
    area = (b[:, 2] - b[:, 0] + 1) * (b[:, 3] - b[:, 1] + 1)
    iw = (torch.minimum(b[:, None, 2], b[None, :, 2]) - torch.maximum(b[:, None, 0], b[None, :, 0]) + 1).clamp(min=0)
    ih = (torch.minimum(b[:, None, 3], b[None, :, 3]) - torch.maximum(b[:, None, 1], b[None, :, 1]) + 1).clamp(min=0)
    overlap = iw * ih / torch.minimum(area[:, None], area[None, :])
    k = b.shape[0]
    rank = torch.arange(k, device=b.device)
    # suppresses[i, j]: i ranks above j in the same group and overlaps it too much.
    suppresses = (overlap > threshold) & (g[:, None] == g[None, :]) & (rank[:, None] < rank[None, :])
    # Greedy NMS is the fixed point of keep[j] = no kept i suppresses j. Iterating from "keep all" fixes
    # one more rank per pass at least, and in practice stops after a pass or three (chains of overlaps).
    keep = torch.ones(k, dtype=torch.bool, device=b.device)
    for _ in range(k):
        new = ~(suppresses & keep[:, None]).any(dim=0)
        if torch.equal(new, keep):
            break
        keep = new
    return order[keep]


def _ordered(keep: Tensor, boxes: Tensor, scores: Tensor, image_index: Tensor) -> Tensor:
    """``keep`` ordered by image, then by descending score, ties (saturated scores) by x1: stable sorts, last
    key first, so that the order does not depend on which other images share the batch."""
    keep = keep[torch.sort(boxes[keep, 0], stable=True).indices]
    keep = keep[torch.sort(scores[keep], descending=True, stable=True).indices]
    return keep[torch.sort(image_index[keep], stable=True).indices]


def smallest_face_searched(width: int, height: int, *, min_face_size: float, max_side: int) -> float:
    """Smallest face side, in source pixels, that a detector with these settings looks for in an image of this
    size: an image longer than ``max_side`` is searched on a copy downscaled to it, which scales the limit up."""
    return float(min_face_size) * max(1.0, max(width, height) / max_side)


class FaceDetector:
    """MTCNN face detector over batches of images, on one device.

    Args:
        device: where the networks run and where the returned :class:`Faces` live.
        min_face_size: smallest face side searched for, in pixels of the detected (possibly downscaled)
            image. Smaller finds smaller faces and costs more pyramid levels.
        thresholds: P-Net, R-Net and O-Net probability thresholds.
        factor: ratio between consecutive pyramid scales, in (0, 1).
        max_side: images whose longer side exceeds this many pixels are detected on an antialiased
            downscaled copy; boxes and landmarks are mapped back to the original pixels.
        border: how R-Net and O-Net see a candidate box that extends past the image. ``"zero"`` (the
            original MTCNN) pads with black, so the nets see the face where it is; ``"stretch"``
            (facenet-pytorch) resizes the part inside the image to the whole crop, which reproduces
            facenet-pytorch's output exactly but misplaces boxes and landmarks of faces cut by the image
            border, e.g. tightly cropped face photos (eye error about 0.15-0.6 of the eye distance on
            150x150 face chips, against under 0.11 with ``"zero"``).
        dim_mean: an image whose mean grey level (0-255, after ``max_side``) is under this is searched twice,
            as it is and brightened by a gamma curve (:func:`influvision.tone.lifted_tensor`), and the faces
            of both are merged by the final NMS: in dim photos MTCNN misses faces whose contrast darkness has
            squeezed into a few grey levels. None: never.
        canvas_step: P-Net canvases are padded to a multiple of this many pixels, and their batches to a
            power of two, so that input shapes repeat across batches and calls: a GPU sets up its
            convolution kernels once per shape. None: 32 on CUDA, 1 (exact sizes) on the CPU, where
            padding only costs time. The detections do not depend on it (each image's own extent is
            masked).

    The networks' weights load lazily on the first :meth:`detect` (checked by sha256, once per device).
    """

    def __init__(
        self,
        device: str | torch.device = "cpu",
        *,
        min_face_size: int = 20,
        thresholds: tuple[float, float, float] = (0.6, 0.7, 0.7),
        factor: float = 0.709,
        max_side: int = 1600,
        border: Literal["zero", "stretch"] = "zero",
        dim_mean: float | None = DIM_MEAN,
        canvas_step: int | None = None,
    ) -> None:
        if min_face_size < 1:
            raise ValueError(f"min_face_size must be at least 1 pixel, got {min_face_size}")
        if len(thresholds) != 3 or not all(0.0 <= t <= 1.0 for t in thresholds):
            raise ValueError(f"thresholds must be three probabilities in [0, 1], got {thresholds}")
        if not 0.0 < factor < 1.0:
            raise ValueError(f"factor must be in (0, 1), got {factor}")
        if border not in ("zero", "stretch"):
            raise ValueError(f"border must be 'zero' or 'stretch', got {border!r}")
        if max_side < _PNET_CELL:
            raise ValueError(f"max_side must be at least {_PNET_CELL} pixels, got {max_side}")
        device = torch.device(device)
        if device.type == "cuda" and device.index is None:
            device = torch.device("cuda", torch.cuda.current_device())
        self.device = device
        self.min_face_size = int(min_face_size)
        self.thresholds = (float(thresholds[0]), float(thresholds[1]), float(thresholds[2]))
        self.factor = float(factor)
        self.max_side = int(max_side)
        self.border = border
        self.dim_mean = None if dim_mean is None else float(dim_mean)
        self.canvas_step = int(canvas_step) if canvas_step is not None else (32 if device.type == "cuda" else 1)
        if self.canvas_step < 1:
            raise ValueError(f"canvas_step must be at least 1, got {canvas_step}")

    def __repr__(self) -> str:
        return (f"FaceDetector(device={str(self.device)!r}, min_face_size={self.min_face_size}, "
                f"thresholds={self.thresholds}, factor={self.factor}, max_side={self.max_side}, border={self.border!r}, "
                f"dim_mean={self.dim_mean})")

    @property
    def _nets(self) -> _Nets:
        return _load_nets(self.device)

    # ------------------------------------------------------------------ public API

    def detect_one(self, image: np.ndarray | Tensor) -> Faces:
        """:meth:`detect` on a single image (all ``image_index`` are 0)."""
        return self.detect([image])

    @torch.inference_mode()
    def detect(self, images: Sequence[np.ndarray | Tensor]) -> Faces:
        """Find faces in a batch of images of any sizes.

        Args:
            images: uint8 RGB images, each an (H, W, 3) numpy array, or an (H, W, 3) or (3, H, W) tensor on
                any device (a tensor whose first dimension is 3 and last is not reads as (3, H, W));
                (H, W) or single-channel images are taken as grey. Sizes may differ; images of the same
                size share work, so bucketing a large batch by size helps. Images with no pyramid level
                (shorter side under ``min_face_size`` after ``max_side``) simply have no faces.

        Returns:
            One :class:`Faces` batch on this detector's device: ``image_index`` (N,) int64 into
            ``images``; ``boxes`` (N, 4) float32 x1, y1, x2, y2 in original pixels (MTCNN convention,
            see the module docstring; boxes may extend past the image); ``scores`` (N,) float32 O-Net
            face probability; ``landmarks`` (N, 5, 2) float32 x, y in original pixels: left eye, right
            eye, nose, mouth left, mouth right (left = smaller x). Faces are ordered by image, then by
            descending score. No images, or no faces, gives ``Faces.empty(device)``. Nothing is copied
            to the host: call ``.to("cpu")`` on the result when needed.

        Raises:
            ShapeError: an image is not uint8 or not shaped as above.
        """
        if len(images) == 0:
            return Faces.empty(self.device)
        work, back = self._prepare(images)
        work, source = self._with_brightened(work)
        found = self._detect_prepared(work)
        if found is None:
            return Faces.empty(self.device)
        image_index, boxes, scores, landmarks = found
        if source is not None:
            # A brightened copy's faces belong to its original. A face found in both is the original's: the
            # copy only adds the faces the dark original hid (its amplified noise moves landmarks of small
            # faces).
            from_copy = image_index >= len(images)
            image_index = source[image_index]
            keep = _nms_min(boxes, scores - 2.0 * from_copy.float(), image_index, 0.7)
            keep = _ordered(keep, boxes, scores, image_index)
            image_index, boxes, scores, landmarks = image_index[keep], boxes[keep], scores[keep], landmarks[keep]
        # Map back from the downscaled copies: boxes as edge coordinates shifted by MTCNN's one pixel,
        # landmarks as pixel centres.
        s = back[image_index]  # (N, 2): original / working size, x then y
        boxes = (boxes - 1) * s.repeat(1, 2) + 1
        landmarks = (landmarks + 0.5) * s[:, None, :] - 0.5
        return Faces(image_index=image_index, boxes=boxes, scores=scores, landmarks=landmarks)

    # ------------------------------------------------------------------ stages

    def _prepare(self, images: Sequence[np.ndarray | Tensor]) -> tuple[list[Tensor], Tensor]:
        """Images as (3, h, w) float32 on the device, downscaled to ``max_side``, and the (B, 2) factors
        (x, y) from working back to original pixels."""
        work: list[Tensor] = []
        back = torch.ones(len(images), 2, dtype=torch.float32)
        for i, image in enumerate(images):
            x = _as_chw_uint8(image, i).to(self.device, non_blocking=True)
            h, w = x.shape[1:]
            longest = max(h, w)
            if longest > self.max_side:
                r = self.max_side / longest
                nh, nw = max(1, round(h * r)), max(1, round(w * r))
                # Whole values like a decoded image (the crops' area tables sum integers). On the CPU the
                # resize runs on the uint8 pixels: 3-4x faster than on a float copy of a 12-megapixel photo,
                # and within one grey level of it.
                if x.device.type == "cpu":
                    x = F.interpolate(x[None], size=(nh, nw), mode="bilinear", align_corners=False,
                                      antialias=True)[0]
                else:
                    x = F.interpolate(x[None].float(), size=(nh, nw), mode="bilinear", align_corners=False,
                                      antialias=True)[0].clamp_(0, 255).round_()
                back[i, 0], back[i, 1] = w / nw, h / nh
            work.append(x.float())
        return work, back.to(self.device)

    def _with_brightened(self, work: list[Tensor]) -> tuple[list[Tensor], Tensor | None]:
        """The working images plus a brightened copy of each dim one, and (B',) the original each of them is
        (None when no image is dim)."""
        if self.dim_mean is None or not work:
            return work, None
        means = grey_means(work).tolist()  # one small copy to the host per batch
        dim = [i for i, m in enumerate(means) if m < self.dim_mean]
        if not dim:
            return work, None
        source = torch.tensor(list(range(len(work))) + dim, dtype=torch.long, device=self.device)
        return work + [lifted_tensor(work[i], means[i]) for i in dim], source

    def _detect_prepared(self, work: list[Tensor]) -> tuple[Tensor, Tensor, Tensor, Tensor] | None:
        # One summed-area table per image serves the pyramid's resizes and the R-/O-Net crops.
        tables = _area_tables(work)
        boxes, image_index = self._propose(work, tables)
        if boxes.shape[0] == 0:
            return None
        # One image's crops after another: the table lookups then stay within one image's memory.
        order = torch.sort(image_index, stable=True).indices
        boxes, image_index = boxes[order], image_index[order]
        sizes = torch.stack([tables.width, tables.height], dim=1)  # (B, 2) w, h

        # R-Net: score 24x24 crops of the squared proposals.
        reg, prob = self._run_crops(self._nets.rnet, tables, sizes, boxes, image_index, 24, _RNET_CHUNK)
        score = prob[:, 1]
        keep = score > self.thresholds[1]
        boxes, image_index, score, reg = boxes[keep], image_index[keep], score[keep], reg[keep]
        keep = batched_nms(boxes, score, image_index, 0.7)
        boxes = _square(_regress(boxes[keep], reg[keep]))
        image_index = image_index[keep]
        if boxes.shape[0] == 0:
            return None

        # O-Net: score 48x48 crops, regress, predict landmarks relative to the crop.
        reg, points, prob = self._run_crops(self._nets.onet, tables, sizes, boxes, image_index, 48, _ONET_CHUNK)
        score = prob[:, 1]
        keep = score > self.thresholds[2]
        boxes, image_index, score, reg, points = (
            boxes[keep], image_index[keep], score[keep], reg[keep], points[keep])
        if boxes.shape[0] == 0:
            return None
        wh = boxes[:, 2:] - boxes[:, :2] + 1  # (K, 2)
        # points: (K, 10) = 5 x-fractions then 5 y-fractions of the inclusive box.
        landmarks = points.view(-1, 2, 5).transpose(1, 2) * wh[:, None, :] + boxes[:, None, :2] - 1
        boxes = _regress(boxes, reg)
        keep = _ordered(_nms_min(boxes, score, image_index, 0.7), boxes, score, image_index)
        return image_index[keep], boxes[keep], score[keep], landmarks[keep].contiguous()

    def _scales(self, min_side: int) -> list[float]:
        """MTCNN's pyramid for an image whose shorter side is ``min_side`` (facenet-pytorch's arithmetic)."""
        m = 12.0 / self.min_face_size
        scales: list[float] = []
        scale, minl = m, min_side * m
        while minl >= 12:
            scales.append(scale)
            scale *= self.factor
            minl *= self.factor
        return scales

    def _propose(self, work: list[Tensor], tables: _AreaTables) -> tuple[Tensor, Tensor]:
        """P-Net over the pyramid of every image: squared, regressed boxes (K, 4) and image index (K,)."""
        pnet = self._nets.pnet
        sizes = [tuple(x.shape[1:]) for x in work]
        scales_of = [self._scales(min(hw)) for hw in sizes]
        n_scales = max((len(s) for s in scales_of), default=0)
        # Same-size images are resized together; larger images first so that chunks pad little.
        groups: dict[tuple[int, int], list[int]] = {}
        for i in sorted(range(len(work)), key=lambda i: -sizes[i][0] * sizes[i][1]):
            groups.setdefault(sizes[i], []).append(i)

        # Every scale's P-Net call is queued before any candidate is read back: reading them (a nonzero) makes
        # the host wait for the device, and waiting once keeps the device busy while the host queues.
        maps: list[_PnetMaps] = []
        for k in range(n_scales):
            active = [(hw, idx) for hw, idx in groups.items() if len(scales_of[idx[0]]) > k]
            scale = scales_of[active[0][1][0]][k]  # the same for every image: 12 / min_face * factor**k
            waste = _PNET_MAX_WASTE_CPU if self.device.type == "cpu" else _PNET_MAX_WASTE
            for chunk in _chunks(active, scale, waste):
                maps.append(self._pnet_chunk(pnet, chunk, tables, scale, k))
        found = [_pnet_candidates(m) for m in maps]
        if not found:
            empty = torch.zeros(0, 4, device=self.device)
            return empty, torch.zeros(0, dtype=torch.long, device=self.device)
        boxes, score, reg, image_index = (torch.cat(c) for c in zip(*(f[:4] for f in found), strict=True))
        scale_index = torch.cat([torch.full_like(f[3], f[4]) for f in found])
        keep = batched_nms(boxes, score, image_index * max(n_scales, 1) + scale_index, 0.5)
        boxes, score, reg, image_index = boxes[keep], score[keep], reg[keep], image_index[keep]
        keep = batched_nms(boxes, score, image_index, 0.7)
        boxes, reg, image_index = boxes[keep], reg[keep], image_index[keep]
        # P-Net's offsets are in units of the exclusive box size (unlike R-/O-Net's).
        wh = (boxes[:, 2:] - boxes[:, :2]).repeat(1, 2)
        return _square(boxes + reg * wh), image_index

    def _pnet_chunk(
        self,
        pnet: nn.Module,
        chunk: list[_Piece],
        tables: _AreaTables,
        scale: float,
        k: int,
    ) -> _PnetMaps:
        """One P-Net call on the images of ``chunk`` resized by ``scale``, padded to a shared canvas; its output
        maps stay on the device (:func:`_pnet_candidates` reads them)."""
        dev = self.device
        resized, image_ids, hs, ws = [], [], [], []
        for (h, w), idx in chunk:
            hs_, ws_ = int(h * scale + 1), int(w * scale + 1)  # facenet-pytorch's rounding
            resized.append(_normalize(_area_resize(tables, index_tensor(idx, dev), (h, w), (hs_, ws_))))
            image_ids += idx
            hs += [hs_] * len(idx)
            ws += [ws_] * len(idx)
        canvas = resized[0] if len(resized) == 1 else _pad_stack(resized)
        if self.canvas_step > 1:
            canvas, hs, ws = _fixed_canvas(canvas, hs, ws, self.canvas_step)
        canvas = canvas.contiguous(memory_format=torch.channels_last)
        extent = index_tensor(hs + ws, dev).view(2, -1)
        h_in, w_in = extent[0], extent[1]

        # P-Net by layers, so that the first pool sees each image's own extent only (-> same result
        # whatever the canvas).
        x = pnet.prelu1(pnet.conv1(canvas))
        if any(h != canvas.shape[2] or w != canvas.shape[3] for h, w in zip(hs, ws, strict=True)):
            rows = torch.arange(x.shape[2], device=dev)[None, :, None] < (h_in - 2)[:, None, None]
            cols = torch.arange(x.shape[3], device=dev)[None, None, :] < (w_in - 2)[:, None, None]
            x = x.masked_fill(~(rows & cols)[:, None], _POOL_FILL)
        x = pnet.pool1(x)
        x = pnet.prelu3(pnet.conv3(pnet.prelu2(pnet.conv2(x))))
        prob = torch.softmax(pnet.conv4_1(x), dim=1)[:, 1]  # (B, Ho, Wo)
        reg = pnet.conv4_2(x)  # (B, 4, Ho, Wo)

        # Output cells that exist for the image alone: ceil((s - 2) / 2) - 4 along each side.
        ho = torch.div(h_in - 1, 2, rounding_mode="floor") - 4
        wo = torch.div(w_in - 1, 2, rounding_mode="floor") - 4
        valid = ((torch.arange(prob.shape[1], device=dev)[None, :, None] < ho[:, None, None])
                 & (torch.arange(prob.shape[2], device=dev)[None, None, :] < wo[:, None, None]))
        return _PnetMaps((prob >= self.thresholds[0]) & valid, prob, reg, index_tensor(image_ids, dev), scale, k)

    def _run_crops(
        self, net: nn.Module, tables: _AreaTables, sizes: Tensor, boxes: Tensor, image_index: Tensor, size: int,
        chunk: int,
    ) -> tuple[Tensor, ...]:
        """Run ``net`` on size x size crops of (K, 4) boxes, ``chunk`` crops per call; outputs concatenated."""
        # MTCNN crops whole pixels: columns trunc(x1) - 1 .. trunc(x2) - 1 of the 1-based box, i.e. the
        # pixel-edge interval [trunc(x1) - 1, trunc(x2)).
        edges = boxes.trunc().long()
        lo, hi = edges[:, :2] - 1, edges[:, 2:]
        if self.border == "stretch":
            lo, hi = lo.clamp(min=0), torch.minimum(hi, sizes[image_index])
        outs = []
        for start in range(0, edges.shape[0], chunk):
            part = slice(start, start + chunk)
            crops = _area_crops(tables, image_index[part], lo[part], hi[part], size)
            outs.append(net(_normalize(crops)))
        return tuple(torch.cat(parts) for parts in zip(*outs, strict=True))


_Piece = tuple[tuple[int, int], list[int]]  # (h, w), image ids


class _PnetMaps(NamedTuple):
    """One P-Net call's outputs, still on the device."""

    hit: Tensor  # (B, Ho, Wo) bool: score over the threshold in a cell the image itself has
    prob: Tensor  # (B, Ho, Wo) face probability
    reg: Tensor  # (B, 4, Ho, Wo) box offsets
    image_ids: Tensor  # (n,) the canvas rows' images (rows past n are padding and never hit)
    scale: float
    k: int  # the scale's index in the pyramid


def _pnet_candidates(m: _PnetMaps) -> tuple[Tensor, Tensor, Tensor, Tensor, int]:
    """Candidate boxes (K, 4), scores (K,), offsets (K, 4), image indices (K,) and the scale index of one
    P-Net call (this reads a data-dependent count, so the host waits for the device here)."""
    b, y, xx = torch.nonzero(m.hit, as_tuple=True)
    cell = torch.stack([xx, y], dim=1).to(torch.float32)
    q1 = ((_PNET_STRIDE * cell + 1) / m.scale).floor()
    q2 = ((_PNET_STRIDE * cell + _PNET_CELL) / m.scale).floor()
    return torch.cat([q1, q2], dim=1), m.prob[b, y, xx], m.reg[b, :, y, xx], m.image_ids[b], m.k


def _chunks(
    active: list[tuple[tuple[int, int], list[int]]], scale: float, max_waste: float
) -> list[list[_Piece]]:
    """Split (size, image ids) groups, largest first, into P-Net calls on one padded canvas each.

    A call holds at most ``_PNET_MAX_PIXELS`` canvas pixels, of which at most the fraction ``max_waste``
    is padding: on a GPU, mixing sizes saves kernel launches; on the CPU padding only costs time, so
    there only same-size images share a call. A group may be split, an image never.
    """
    chunks: list[list[_Piece]] = []
    current: list[_Piece] = []
    canvas_h = canvas_w = count = used = 0
    for (h, w), idx in active:
        hs, ws = int(h * scale + 1), int(w * scale + 1)
        for i in idx:
            ch, cw = max(canvas_h, hs), max(canvas_w, ws)
            total = (count + 1) * ch * cw
            if current and (total > _PNET_MAX_PIXELS or total * (1 - max_waste) > used + hs * ws):
                chunks.append(current)
                current, canvas_h, canvas_w, count, used = [], 0, 0, 0, 0
                ch, cw = hs, ws
            if current and current[-1][0] == (h, w):
                current[-1][1].append(i)
            else:
                current.append(((h, w), [i]))
            canvas_h, canvas_w, count, used = ch, cw, count + 1, used + hs * ws
    if current:
        chunks.append(current)
    return chunks


def _fixed_canvas(canvas: Tensor, hs: list[int], ws: list[int], step: int) -> tuple[Tensor, list[int], list[int]]:
    """``canvas`` (n, C, H, W) zero-padded to multiples of ``step`` and to a power-of-two batch (unless that
    would pass ``_PNET_MAX_PIXELS``, the memory plan's bound); the added batch rows get extent 0 x 0, so no
    P-Net cell of theirs is valid."""
    n, _, h, w = canvas.shape
    canvas = F.pad(canvas, (0, -w % step, 0, -h % step))
    rows = 1 << (n - 1).bit_length()
    if rows * canvas.shape[2] * canvas.shape[3] > _PNET_MAX_PIXELS:
        rows = n
    if rows > n:
        canvas = torch.cat([canvas, canvas.new_zeros(rows - n, *canvas.shape[1:])])
    return canvas, hs + [0] * (rows - n), ws + [0] * (rows - n)


def _pad_stack(tensors: list[Tensor]) -> Tensor:
    """Concatenate (n_i, C, h_i, w_i) tensors into (sum n_i, C, max h, max w), zero-padded bottom-right."""
    h = max(t.shape[2] for t in tensors)
    w = max(t.shape[3] for t in tensors)
    return torch.cat([F.pad(t, (0, w - t.shape[3], 0, h - t.shape[2])) for t in tensors])


class _AreaTables(NamedTuple):
    """Summed-area tables of a batch of images, flattened into one buffer.

    ``values[offset[b] + y * (w_b + 1) + x]`` is the per-channel sum of image b's pixels above row y and
    left of column x, for 0 <= y <= h_b, 0 <= x <= w_b. Integers keep the sums exact.
    """

    values: Tensor  # (sum of (h_b + 1) * (w_b + 1), 3) int32 or int64
    offset: Tensor  # (B,) int64
    height: Tensor  # (B,) int64, h_b
    width: Tensor  # (B,) int64, w_b


def _area_tables(work: list[Tensor]) -> _AreaTables:
    """Summed-area tables of whole-valued (3, h, w) float images (int32 while 255 * h * w fits)."""
    dtype = torch.int32 if max(255 * x.shape[1] * x.shape[2] for x in work) < 2**31 else torch.int64
    dev = work[0].device
    sizes = [(x.shape[1] + 1) * (x.shape[2] + 1) for x in work]
    values = torch.zeros(sum(sizes), 3, dtype=dtype, device=dev)
    offsets = [0]
    for x, n in zip(work, sizes, strict=True):
        table = values[offsets[-1]:offsets[-1] + n].view(x.shape[1] + 1, x.shape[2] + 1, 3)
        table[1:, 1:] = x.permute(1, 2, 0)  # row 0 and column 0 stay zero
        table.cumsum_(0).cumsum_(1)
        offsets.append(offsets[-1] + n)
    return _AreaTables(
        values=values,
        offset=index_tensor(offsets[:-1], dev),
        height=index_tensor([x.shape[1] for x in work], dev),
        width=index_tensor([x.shape[2] for x in work], dev),
    )


def _area_resize(tables: _AreaTables, images: Tensor, size: tuple[int, int], out: tuple[int, int]) -> Tensor:
    """Same-size images resized by area averaging, from their summed-area tables: (n, 3, oh, ow) float32
    in channels-last memory.

    Output pixel (i, j) is the mean over rows ``floor(i * h / oh)`` to ``ceil((i + 1) * h / oh)`` and the
    like columns: ``F.interpolate(mode="area")`` (adaptive average pooling), the resampling MTCNN's pyramid
    is made with. The window sums are exact integers, and so are that kernel's float32 sums of whole-valued
    pixels, so the results are the same to the last bit (tested); this reads four table entries per output
    pixel instead of every input pixel of the window.

    Args:
        tables: from :func:`_area_tables`.
        images: (n,) indices of images of ``size`` (h, w) in ``tables``.
        size: their (h, w).
        out: the output (oh, ow).
    """
    (h, w), (oh, ow) = size, out
    dev = tables.values.device
    r0, r1 = _pool_windows(h, oh, dev)
    c0, c1 = _pool_windows(w, ow, dev)
    base = tables.offset[images][:, None, None]

    def corner(r: Tensor, c: Tensor) -> Tensor:
        return gather_rows(tables.values, base + (r[:, None] * (w + 1) + c[None, :]))  # (n, oh, ow, 3)

    sums = (corner(r1, c1) - corner(r0, c1) - corner(r1, c0) + corner(r0, c0)).to(torch.float32)
    # Divided by the window's height, then its width, in float32, as PyTorch's pooling kernel does.
    rows = (r1 - r0).to(torch.float32)[None, :, None, None]
    cols = (c1 - c0).to(torch.float32)[None, None, :, None]
    return (sums / rows / cols).permute(0, 3, 1, 2)


def _pool_windows(n_in: int, n_out: int, device: torch.device) -> tuple[Tensor, Tensor]:
    """Adaptive pooling's windows along one axis: starts floor(i * n_in / n_out), ends ceil((i + 1) * ...)."""
    i = torch.arange(n_out, device=device)
    return (i * n_in) // n_out, ((i + 1) * n_in + n_out - 1) // n_out


def _area_crops(tables: _AreaTables, image_index: Tensor, lo: Tensor, hi: Tensor, size: int) -> Tensor:
    """Crops of pixel-edge boxes resized to size x size by area averaging, zero outside the image.

    Output pixel (i, j) is the mean over the source pixels of rows ``floor(i * S / size)`` to
    ``ceil((i + 1) * S / size)`` of the box (S its height), likewise for columns: exactly
    ``F.interpolate(crop, mode="area")`` (= adaptive average pooling), the resampling MTCNN was run with,
    for all boxes at once through four lookups in the summed-area tables.

    Args:
        tables: from :func:`_area_tables`.
        image_index: (K,) int64; lo, hi: (K, 2) int64 x, y of the top-left and past-the-bottom-right
            pixel edges (may lie outside the image).
    Returns:
        (K, 3, size, size) float32 crops in 0..255; K == 0 gives an empty tensor.
    """
    extent = (hi - lo).clamp(min=1)  # a box with no pixels reads as zeros (its sums are 0)
    i = torch.arange(size + 1, device=lo.device)
    # Window bounds along each axis: start[k, a, n] and end[k, a, n] for axis a (x, y), output index n.
    start = lo[:, :, None] + torch.div(i[None, None, :-1] * extent[:, :, None], size, rounding_mode="floor")
    end = lo[:, :, None] + torch.div(i[None, None, 1:] * extent[:, :, None] + size - 1, size,
                                     rounding_mode="floor")
    count = ((end - start)[:, 1, :, None] * (end - start)[:, 0, None, :]).to(torch.float32)  # (K, n, n)
    # Clamping to the image clips each window to it; what falls outside counts as zeros.
    w = tables.width[image_index][:, None]
    h = tables.height[image_index][:, None]
    xs0, xs1 = torch.minimum(start[:, 0].clamp(min=0), w), torch.minimum(end[:, 0].clamp(min=0), w)
    ys0, ys1 = torch.minimum(start[:, 1].clamp(min=0), h), torch.minimum(end[:, 1].clamp(min=0), h)
    base = tables.offset[image_index][:, None, None]
    stride = (w + 1)[:, :, None]

    def corner(ys: Tensor, xs: Tensor) -> Tensor:
        return gather_rows(tables.values, base + ys[:, :, None] * stride + xs[:, None, :])  # (K, n, n, 3)

    total = corner(ys1, xs1) - corner(ys0, xs1) - corner(ys1, xs0) + corner(ys0, xs0)
    return (total.to(torch.float32) / count[..., None]).permute(0, 3, 1, 2)  # channels-last memory


def _as_chw_uint8(image: np.ndarray | Tensor, i: int) -> Tensor:
    """One input image as a (3, H, W) uint8 tensor (on its own device)."""
    what = f"images[{i}]"
    if isinstance(image, np.ndarray):
        if image.dtype != np.uint8:
            raise ShapeError(what, "uint8", image.dtype)
        if image.ndim == 2:
            image = image[:, :, None]
        if image.ndim != 3 or image.shape[2] not in (1, 3):
            raise ShapeError(what, "an (H, W, 3) RGB array", image.shape)
        if not image.flags.writeable:  # e.g. np.asarray(PIL image); torch wants writable memory
            image = image.copy()
        x = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)
    elif isinstance(image, Tensor):
        if image.dtype != torch.uint8:
            raise ShapeError(what, "uint8", image.dtype)
        x = image[None] if image.ndim == 2 else image
        if x.ndim != 3:
            raise ShapeError(what, "an (H, W, 3) or (3, H, W) RGB tensor", tuple(image.shape))
        # (3, H, 3) reads as channels-first: a strip 3 pixels wide holds no face either way.
        if x.shape[0] not in (1, 3) or (x.shape[-1] in (1, 3) and x.shape[0] != x.shape[-1]):
            if x.shape[-1] not in (1, 3):
                raise ShapeError(what, "an (H, W, 3) or (3, H, W) RGB tensor", tuple(image.shape))
            x = x.permute(2, 0, 1)
    else:
        raise ShapeError(what, "a numpy array or torch tensor", type(image).__name__)
    if x.shape[0] == 1:
        x = x.expand(3, -1, -1)
    return x


__all__ = ["FaceDetector"]

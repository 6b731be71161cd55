"""Synthetic logo photos for training a detector: registered references composited onto backgrounds.

Every logo instance is drawn with random colours (brand colours, the reference's own colours, white on
dark, dark on light, a random hue, or cut out of a coloured plate), a perspective warp and rotation, a
scale from about 16 px to most of the picture, fabric-like waviness, a lighting gradient, partial
occlusion; then the whole picture gets blur (gaussian or motion), brightness/contrast changes, noise and
JPEG recompression. Some pictures have no logo at all, and every picture may carry distractors (random
text, shapes) so that the detector does not fire on any printed mark.

The writer is deterministic: the same references, backgrounds and seed give byte-identical files. Each
picture draws from its own random stream (``SeedSequence(seed).spawn``), so the Nth picture does not
depend on how many pictures come before it in another split.

Backgrounds should be real photos of the kind the detector will see (people, rooms, streets). When none
are given, procedural backgrounds (gradients, noise, stripes, blobs) are used so the writer still works.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from ..boxes import box_iou
from ..errors import InfluvisionError
from .references import LogoReference

log = logging.getLogger(__name__)

# Share of pictures with no logo at all (negatives).
NEGATIVE_FRACTION = 0.1
# Smallest longer side of a pasted logo, in output pixels.
MIN_LOGO_PX = 16
# An occluder covers at most this share of a logo's box; a more hidden logo would be unfair to label.
MAX_OCCLUSION = 0.35
_COLOUR_MODES = ("reference", "brand", "light_on_dark", "dark_on_light", "random_hue", "plate_cutout")
_COLOUR_WEIGHTS = (0.22, 0.18, 0.18, 0.18, 0.12, 0.12)
_FONTS = (cv2.FONT_HERSHEY_SIMPLEX, cv2.FONT_HERSHEY_DUPLEX, cv2.FONT_HERSHEY_COMPLEX,
          cv2.FONT_HERSHEY_TRIPLEX, cv2.FONT_HERSHEY_SCRIPT_SIMPLEX, cv2.FONT_ITALIC)
_LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"


class SynthError(InfluvisionError, ValueError):
    """The synthetic set cannot be written; the message says why."""


@dataclass(frozen=True)
class Instance:
    """One pasted logo: class index and its box (x1, y1, x2, y2) in output pixels."""

    cls: int
    box: tuple[float, float, float, float]


def class_names(references: Sequence[LogoReference]) -> list[str]:
    """Sorted unique brand names: several references of one brand are one class."""
    return sorted({r.name for r in references})


def write_dataset(references: Sequence[LogoReference], out_dir: str | Path, *, n_train: int, n_val: int,
                  backgrounds: Sequence[np.ndarray] = (), image_size: int = 320, seed: int = 0,
                  max_logos: int = 4, workers: int = 1) -> Path:
    """Write a YOLO-format data set of synthetic logo photos.

    Layout: ``images/{train,val}/NNNNNN.jpg``, ``labels/{train,val}/NNNNNN.txt`` (one ``cls cx cy w h``
    line per logo, normalised to [0, 1]) and ``data.yaml`` whose class names are the brand names.

    Args:
        references: registered brand references; class ``i`` is ``class_names(references)[i]``.
        out_dir: folder to write into (created; existing files of the same names are overwritten).
        n_train: pictures in the training split (>= 1).
        n_val: pictures in the validation split (>= 1); drawn from other random streams than training.
        backgrounds: (H, W, 3) uint8 RGB photos to paste onto; empty: procedural backgrounds.
        image_size: longer side of every written picture, in pixels (>= 64).
        seed: random seed; the same inputs and seed give identical files.
        max_logos: most logos in one picture.
        workers: processes rendering pictures (0: one per CPU core). The files do not depend on it.

    Returns:
        The path of ``data.yaml``.

    Raises:
        SynthError: no references, bad sizes or counts, or a background that is not an RGB uint8 array.
    """
    if not references:
        raise SynthError("a synthetic logo set needs at least one brand reference")
    if n_train < 1 or n_val < 1:
        raise SynthError(f"n_train and n_val must be >= 1, got {n_train} and {n_val}")
    if image_size < 64:
        raise SynthError(f"image_size must be at least 64 px, got {image_size}")
    for k, bg in enumerate(backgrounds):
        if not isinstance(bg, np.ndarray) or bg.ndim != 3 or bg.shape[2] != 3 or bg.dtype != np.uint8:
            raise SynthError(f"backgrounds[{k}] must be an (H, W, 3) uint8 RGB array")
    names = class_names(references)
    cls_of = [names.index(r.name) for r in references]
    out = Path(out_dir)
    streams = np.random.SeedSequence(seed).spawn(n_train + n_val)
    jobs: list[tuple[str, int, np.random.SeedSequence]] = []
    for split, start, count in (("train", 0, n_train), ("val", n_train, n_val)):
        (out / "images" / split).mkdir(parents=True, exist_ok=True)
        (out / "labels" / split).mkdir(parents=True, exist_ok=True)
        jobs += [(split, i, streams[start + i]) for i in range(count)]
    context = (references, cls_of, backgrounds, image_size, max_logos, out)
    n_proc = min(len(jobs), workers if workers > 0 else os.cpu_count() or 1)
    if n_proc <= 1 or "fork" not in multiprocessing.get_all_start_methods():
        _set_context(context)
        for job in jobs:
            _render_and_write(job)
    else:
        # Forked workers inherit the references and backgrounds instead of unpickling them per task.
        with ProcessPoolExecutor(n_proc, mp_context=multiprocessing.get_context("fork"),
                                 initializer=_set_context, initargs=(context,)) as pool:
            for _ in pool.map(_render_and_write, jobs, chunksize=16):
                pass
    yaml_path = out / "data.yaml"
    lines = [f"path: {out.resolve()}", "train: images/train", "val: images/val", "names:"]
    lines += [f"  {i}: {n}" for i, n in enumerate(names)]
    yaml_path.write_text("\n".join(lines) + "\n")
    log.info("synthetic logo set: %d train + %d val pictures, %d classes in %s", n_train, n_val, len(names), out)
    return yaml_path


_context: tuple[Any, ...] = ()


def _set_context(context: tuple[Any, ...]) -> None:
    global _context
    _context = context


def _render_and_write(job: tuple[str, int, np.random.SeedSequence]) -> None:
    references, cls_of, backgrounds, image_size, max_logos, out = _context
    split, i, stream = job
    img, inst = render_image(references, cls_of, np.random.default_rng(stream), backgrounds, image_size, max_logos)
    _write_pair(out, split, i, img, inst)


def _write_pair(out: Path, split: str, i: int, img: np.ndarray, inst: list[Instance]) -> None:
    h, w = img.shape[:2]
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(img, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 95])
    if not ok:
        raise SynthError(f"could not encode synthetic picture {split}/{i}")
    (out / "images" / split / f"{i:06d}.jpg").write_bytes(buf.tobytes())
    rows = [f"{t.cls} {(t.box[0] + t.box[2]) / 2 / w:.6f} {(t.box[1] + t.box[3]) / 2 / h:.6f} "
            f"{(t.box[2] - t.box[0]) / w:.6f} {(t.box[3] - t.box[1]) / h:.6f}" for t in inst]
    (out / "labels" / split / f"{i:06d}.txt").write_text("\n".join(rows) + ("\n" if rows else ""))


def render_image(references: Sequence[LogoReference], cls_of: Sequence[int], rng: np.random.Generator,
                 backgrounds: Sequence[np.ndarray], image_size: int,
                 max_logos: int = 4) -> tuple[np.ndarray, list[Instance]]:
    """One synthetic picture and its logo boxes.

    Args:
        references: the references to draw from.
        cls_of: class index of each reference.
        rng: the picture's random stream.
        backgrounds: real photos to paste onto (empty: procedural).
        image_size: longer side of the picture.
        max_logos: most logos in the picture.

    Returns:
        (H, W, 3) uint8 RGB picture and its instances (boxes in its pixels).
    """
    canvas = np.ascontiguousarray(_background(rng, backgrounds, image_size))
    if rng.random() < 0.5:
        _distractors(canvas, rng)  # on uint8: OpenCV draws text only on 8-bit pictures
    canvas = canvas.astype(np.float32)
    instances: list[Instance] = []
    n = 0 if rng.random() < NEGATIVE_FRACTION else int(rng.integers(1, max_logos + 1))
    for _ in range(n):
        k = int(rng.integers(len(references)))
        placed = _paste_logo(canvas, references[k], rng, [t.box for t in instances])
        if placed is not None:
            instances.append(Instance(cls_of[k], placed))
    return _degrade(canvas, rng), instances


# ---- backgrounds -----------------------------------------------------------------------------------------

def _background(rng: np.random.Generator, backgrounds: Sequence[np.ndarray], size: int) -> np.ndarray:
    """A random crop of a real photo (or a procedural picture) whose longer side is ``size``."""
    if backgrounds and rng.random() < 0.9:
        src = backgrounds[int(rng.integers(len(backgrounds)))]
        sh, sw = src.shape[:2]
        frac = rng.uniform(0.45, 1.0)
        ch, cw = max(8, int(sh * frac)), max(8, int(sw * frac))
        y0, x0 = int(rng.integers(0, sh - ch + 1)), int(rng.integers(0, sw - cw + 1))
        crop = src[y0:y0 + ch, x0:x0 + cw]
        if rng.random() < 0.3:
            crop = crop[:, ::-1]
        s = size / max(ch, cw)
        out = cv2.resize(np.ascontiguousarray(crop), (max(1, round(cw * s)), max(1, round(ch * s))),
                         interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR)
        return out
    aspect = rng.choice([1.0, 0.75, 4 / 3, 0.5625])
    w, h = (size, round(size * aspect)) if aspect <= 1 else (round(size / aspect), size)
    return _procedural(rng, w, h)


def _procedural(rng: np.random.Generator, w: int, h: int) -> np.ndarray:
    """Gradient + texture + blobs: a stand-in when no real backgrounds are given."""
    c0, c1 = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
    t = np.linspace(0, 1, w, dtype=np.float32)[None, :, None] * np.cos(rng.uniform(0, np.pi)) + \
        np.linspace(0, 1, h, dtype=np.float32)[:, None, None] * np.sin(rng.uniform(0, np.pi))
    t = (t - t.min()) / max(float(t.max() - t.min()), 1e-6)
    img = c0 * (1 - t) + c1 * t
    kind = rng.integers(3)
    if kind == 0:  # stripes, like fabric or shelves
        period = rng.uniform(4, 40)
        ang = rng.uniform(0, np.pi)
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        img += (np.sin((xx * np.cos(ang) + yy * np.sin(ang)) / period * 2 * np.pi)[..., None] * rng.uniform(5, 40))
    elif kind == 1:  # smooth noise
        small = rng.normal(0, 40, (max(2, h // 16), max(2, w // 16), 3)).astype(np.float32)
        img += cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)
    for _ in range(int(rng.integers(0, 8))):
        centre = (int(rng.integers(0, w)), int(rng.integers(0, h)))
        axes = (int(rng.integers(5, max(6, w // 3))), int(rng.integers(5, max(6, h // 3))))
        cv2.ellipse(img, centre, axes, float(rng.uniform(0, 180)), 0, 360, rng.uniform(0, 255, 3).tolist(), -1)
    img += rng.normal(0, rng.uniform(0, 8), img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def _distractors(canvas: np.ndarray, rng: np.random.Generator) -> None:
    """Random words and shapes: printed marks that are not registered logos."""
    h, w = canvas.shape[:2]
    for _ in range(int(rng.integers(1, 4))):
        colour = rng.uniform(0, 255, 3).tolist()
        x, y = int(rng.integers(0, w)), int(rng.integers(0, h))
        if rng.random() < 0.6:
            word = "".join(rng.choice(list(_LETTERS), int(rng.integers(2, 9))))
            scale = float(rng.uniform(0.3, 1.6)) * w / 320
            cv2.putText(canvas, word, (x - w // 4, y), int(rng.choice(_FONTS)), scale, colour,
                        max(1, int(rng.integers(1, 4) * w / 320)), cv2.LINE_AA)
        else:
            pts = (rng.normal(0, rng.uniform(5, w / 8), (int(rng.integers(3, 7)), 2)) + (x, y)).astype(np.int32)
            cv2.fillPoly(canvas, [pts], colour, cv2.LINE_AA)


# ---- one logo --------------------------------------------------------------------------------------------

def _logo_layer(ref: LogoReference, rng: np.random.Generator, ground: np.ndarray
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Colour (H, W, 3) float32, opacity (H, W) float32 and the mark's own mask, on the reference canvas.

    ``ground`` is the mean background colour where the logo goes, so "light on dark" can pick a ground
    that really is dark (a plate behind the mark) when the photo there is not.
    """
    shape = ref.shape.astype(np.float32)
    mode = rng.choice(_COLOUR_MODES, p=_COLOUR_WEIGHTS)
    alpha = shape.copy()
    plate: np.ndarray | None = None
    lum = float(ground.mean())
    if mode == "reference":
        colour = ref.rgb.astype(np.float32)
        if float(np.abs(colour - ref.colour.astype(np.float32)).mean()) < 2 and rng.random() < 0.5:
            colour = np.broadcast_to(_jitter(ref.colour, rng, 12), colour.shape).copy()
    elif mode == "brand":
        colour = np.broadcast_to(_jitter(ref.colour, rng, 25), (*shape.shape, 3)).copy()
    elif mode == "light_on_dark":
        colour = np.broadcast_to(rng.uniform(200, 255, 3), (*shape.shape, 3)).astype(np.float32)
        if lum > 90 or rng.random() < 0.3:
            plate = rng.uniform(0, 80, 3)
    elif mode == "dark_on_light":
        colour = np.broadcast_to(rng.uniform(0, 60, 3), (*shape.shape, 3)).astype(np.float32)
        if lum < 150 or rng.random() < 0.3:
            plate = rng.uniform(180, 255, 3)
    elif mode == "random_hue":
        hsv = np.uint8([[[rng.integers(0, 180), rng.integers(80, 256), rng.integers(60, 256)]]])
        rgb = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)[0, 0].astype(np.float32)
        colour = np.broadcast_to(rgb, (*shape.shape, 3)).copy()
    else:  # plate_cutout: the mark is the plate's ground showing through a coloured plate (inverted)
        plate = _jitter(ref.colour, rng, 30) if rng.random() < 0.6 else rng.uniform(0, 255, 3)
        hole = rng.uniform(200, 255, 3) if float(np.mean(plate)) < 128 else rng.uniform(0, 60, 3)
        colour = np.broadcast_to(hole, (*shape.shape, 3)).astype(np.float32)
    if plate is not None:
        colour = colour * shape[..., None] + plate.astype(np.float32) * (1 - shape[..., None])
        alpha = _plate_mask(shape, rng)
    return colour, alpha, shape


def _jitter(rgb: np.ndarray, rng: np.random.Generator, amount: float) -> np.ndarray:
    return np.clip(rgb.astype(np.float32) + rng.normal(0, amount / 2, 3), 0, 255).astype(np.float32)


def _plate_mask(shape: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A rectangle, rounded rectangle or ellipse covering the mark's canvas (the margin included)."""
    h, w = shape.shape
    m = np.zeros((h, w), np.float32)
    pad = int(rng.integers(0, max(1, min(h, w) // 10)))
    kind = rng.integers(3)
    if kind == 0:
        m[pad:h - pad, pad:w - pad] = 1
    elif kind == 1:
        r = max(2, min(h, w) // 6)
        cv2.rectangle(m, (pad + r, pad), (w - pad - r, h - pad), 1, -1)
        cv2.rectangle(m, (pad, pad + r), (w - pad, h - pad - r), 1, -1)
        for cx, cy in ((pad + r, pad + r), (w - pad - r, pad + r), (pad + r, h - pad - r), (w - pad - r, h - pad - r)):
            cv2.circle(m, (cx, cy), r, 1, -1, cv2.LINE_AA)
    else:
        cv2.ellipse(m, (w // 2, h // 2), (w // 2 + pad, h // 2 + pad), 0, 0, 360, 1, -1, cv2.LINE_AA)
    return np.maximum(m, shape)


def _warp_matrix(ref_wh: tuple[int, int], content: tuple[float, float, float, float], target: float,
                 rng: np.random.Generator) -> np.ndarray:
    """3x3 homography from the reference canvas to the output: scale, rotation, perspective, centred at 0."""
    w, h = ref_wh
    cx1, cy1, cx2, cy2 = content
    s = target / max(cx2 - cx1, cy2 - cy1)
    ang = np.deg2rad(rng.normal(0, 12) if rng.random() < 0.85 else rng.uniform(-45, 45))
    aspect = float(np.exp(rng.normal(0, 0.12)))
    src = np.float32([[0, 0], [w, 0], [w, h], [0, h]])
    c = np.float32([(cx1 + cx2) / 2, (cy1 + cy2) / 2])
    dst = (src - c) * s * np.float32([aspect, 1 / aspect])
    # Perspective: move corners by up to ~22 % of the size (out-of-plane tilt of a flat print).
    jitter = rng.normal(0, 0.08, (4, 2)).clip(-0.22, 0.22) * s * max(w, h)
    if rng.random() < 0.5:  # a strong tilt around one axis: one side shorter than the other
        side = int(rng.integers(4))
        squeeze = rng.uniform(0.0, 0.35)
        i, j = side, (side + 1) % 4
        mid = (dst[i] + dst[j]) / 2
        dst[i] += (mid - dst[i]) * squeeze
        dst[j] += (mid - dst[j]) * squeeze
    dst = dst + jitter.astype(np.float32)
    rot = np.float32([[np.cos(ang), -np.sin(ang)], [np.sin(ang), np.cos(ang)]])
    dst = dst @ rot.T
    return cv2.getPerspectiveTransform(src, dst.astype(np.float32))


def _wave(layer: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Fabric-like waviness: a smooth sinusoidal displacement of the layer."""
    h, w = layer.shape[:2]
    amp = rng.uniform(1, 0.04 * max(h, w) + 1)
    period = rng.uniform(0.3, 1.2) * max(h, w)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    phase = rng.uniform(0, 2 * np.pi)
    if rng.random() < 0.5:
        mx, my = xx, yy + amp * np.sin(2 * np.pi * xx / period + phase)
    else:
        mx, my = xx + amp * np.sin(2 * np.pi * yy / period + phase), yy
    return cv2.remap(layer, mx.astype(np.float32), my.astype(np.float32), cv2.INTER_LINEAR,
                     borderMode=cv2.BORDER_CONSTANT, borderValue=0)


def _paste_logo(canvas: np.ndarray, ref: LogoReference, rng: np.random.Generator,
                taken: list[tuple[float, float, float, float]]) -> tuple[float, float, float, float] | None:
    """Composite one instance into ``canvas`` (in place); returns its box, or None if it found no room."""
    h, w = canvas.shape[:2]
    lo, hi = np.log(MIN_LOGO_PX), np.log(0.75 * min(h, w) + MIN_LOGO_PX)
    target = float(np.exp(rng.uniform(lo, hi)))
    rw, rh = ref.size
    hmat = _warp_matrix((rw, rh), ref.content_box, target, rng)
    cx1, cy1, cx2, cy2 = ref.content_box
    content = cv2.perspectiveTransform(np.float32([[[cx1, cy1], [cx2, cy1], [cx2, cy2], [cx1, cy2]]]), hmat)[0]
    full = cv2.perspectiveTransform(np.float32([[[0, 0], [rw, 0], [rw, rh], [0, rh]]]), hmat)[0]
    fw, fh = full.max(0) - full.min(0)
    if fw >= w or fh >= h:
        return None
    for _ in range(8):
        ox = rng.uniform(-full[:, 0].min(), w - full[:, 0].max())
        oy = rng.uniform(-full[:, 1].min(), h - full[:, 1].max())
        box = _box_of(content + (ox, oy), w, h)
        if all(box_iou(box, t) < 0.05 for t in taken):
            break
    else:
        return None
    shift = np.array([[1, 0, ox], [0, 1, oy], [0, 0, 1]], dtype=np.float64) @ hmat
    x1, y1, x2, y2 = (int(v) for v in box)
    ground = canvas[y1:y2 + 1, x1:x2 + 1].reshape(-1, 3).mean(0) if x2 > x1 and y2 > y1 else np.zeros(3)
    colour, alpha, shape = _logo_layer(ref, rng, ground)
    layer = np.dstack([colour, alpha * 255.0, shape * 255.0]).astype(np.float32)
    if rng.random() < 0.35:
        layer = _wave(layer, rng)
    warped = cv2.warpPerspective(layer, shift, (w, h), flags=cv2.INTER_LINEAR, borderValue=0)
    a = (warped[..., 3] / 255.0).clip(0, 1) * rng.uniform(0.75, 1.0)
    rgb = warped[..., :3]
    rgb = rgb * _lighting(rng, w, h)[..., None]
    canvas[:] = canvas * (1 - a[..., None]) + rgb * a[..., None]
    mark = warped[..., 4] > 127
    if not mark.any():
        return None
    ys, xs = np.nonzero(mark)
    box = (float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1))
    if max(box[2] - box[0], box[3] - box[1]) < MIN_LOGO_PX * 0.8:
        return None
    if rng.random() < 0.3:
        _occlude(canvas, box, rng)
    return box


def _lighting(rng: np.random.Generator, w: int, h: int) -> np.ndarray:
    """A multiplicative lighting gradient across the picture (shade on one side, highlight on the other)."""
    g0, g1 = rng.uniform(0.55, 1.0), rng.uniform(1.0, 1.25)
    ang = rng.uniform(0, 2 * np.pi)
    t = (np.linspace(0, 1, w, dtype=np.float32)[None, :] * np.cos(ang)
         + np.linspace(0, 1, h, dtype=np.float32)[:, None] * np.sin(ang))
    t = (t - t.min()) / max(float(t.max() - t.min()), 1e-6)
    return g0 + (g1 - g0) * t


def _occlude(canvas: np.ndarray, box: tuple[float, float, float, float], rng: np.random.Generator) -> None:
    """Hide a part of the box behind a flat or textured shape entering from one side."""
    x1, y1, x2, y2 = box
    bw, bh = x2 - x1, y2 - y1
    frac = rng.uniform(0.1, MAX_OCCLUSION)
    side = int(rng.integers(4))
    if side == 0:
        r = (x1 - 2, y1 - 2, x1 + bw * frac, y2 + 2)
    elif side == 1:
        r = (x2 - bw * frac, y1 - 2, x2 + 2, y2 + 2)
    elif side == 2:
        r = (x1 - 2, y1 - 2, x2 + 2, y1 + bh * frac)
    else:
        r = (x1 - 2, y2 - bh * frac, x2 + 2, y2 + 2)
    colour = rng.uniform(0, 255, 3).tolist()
    cv2.rectangle(canvas, (int(r[0]), int(r[1])), (int(r[2]), int(r[3])), colour, -1)


# ---- whole picture ---------------------------------------------------------------------------------------

def _degrade(canvas: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Camera-like degradations: brightness/contrast, blur, noise, JPEG recompression."""
    img = canvas * rng.uniform(0.7, 1.3) + rng.uniform(-30, 30)
    mean = img.mean()
    img = (img - mean) * rng.uniform(0.7, 1.2) + mean
    r = rng.random()
    if r < 0.25:
        img = cv2.GaussianBlur(img, (0, 0), rng.uniform(0.4, 1.6))
    elif r < 0.4:
        img = _motion_blur(img, rng)
    if rng.random() < 0.5:
        img = img + rng.normal(0, rng.uniform(1, 8), img.shape)
    out = np.clip(img, 0, 255).astype(np.uint8)
    if rng.random() < 0.5:
        q = int(rng.integers(30, 90))
        ok, buf = cv2.imencode(".jpg", out, [cv2.IMWRITE_JPEG_QUALITY, q])
        if ok:
            out = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)
    return np.ascontiguousarray(out)


def _motion_blur(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    k = int(rng.integers(3, 9))
    kernel = np.zeros((k, k), np.float32)
    kernel[k // 2, :] = 1.0 / k
    rot = cv2.getRotationMatrix2D((k / 2 - 0.5, k / 2 - 0.5), float(rng.uniform(0, 180)), 1.0)
    kernel = cv2.warpAffine(kernel, rot, (k, k))
    kernel /= max(float(kernel.sum()), 1e-6)
    return cv2.filter2D(img, -1, kernel)


def _box_of(quad: np.ndarray, w: int, h: int) -> tuple[float, float, float, float]:
    x1, y1 = quad.min(0)
    x2, y2 = quad.max(0)
    return (max(0.0, float(x1)), max(0.0, float(y1)), min(float(w), float(x2)), min(float(h), float(y2)))


def load_backgrounds(paths: Sequence[str | Path], *, max_side: int = 640, video_fps: float = 0.5,
                     max_per_video: int = 40) -> list[np.ndarray]:
    """Background photos from image files, folders (searched recursively) and videos (sampled frames).

    Args:
        paths: files or folders.
        max_side: photos are downscaled so their longer side is at most this (keeps memory small).
        video_fps: frames per second taken from a video.
        max_per_video: most frames taken from one video.

    Returns:
        (H, W, 3) uint8 RGB arrays, in a stable (sorted path) order.

    Raises:
        SynthError: a path does not exist, or nothing usable was found.
    """
    from ..decode.images import is_image_path, is_video_path, load_image
    from ..decode.video import iter_frames
    from ..errors import MediaError

    files: list[Path] = []
    for p in map(Path, paths):
        if not p.exists():
            raise SynthError(f"background path {p} does not exist")
        files.extend(sorted(q for q in p.rglob("*") if q.is_file()) if p.is_dir() else [p])
    out: list[np.ndarray] = []
    for f in files:
        try:
            if is_image_path(f):
                out.append(_shrink(load_image(f).pixels, max_side))
            elif is_video_path(f):
                taken = 0
                for batch in iter_frames(f, sample_fps=video_fps, batch_size=8):
                    for frame in batch.frames[:max_per_video - taken]:
                        out.append(_shrink(frame, max_side))
                        taken += 1
                    if taken >= max_per_video:
                        break
        except MediaError as e:
            log.warning("background %s skipped: %s", f, e)
    if not out:
        raise SynthError(f"no usable background photo or video in {', '.join(map(str, paths))}")
    return out


def _shrink(img: np.ndarray, max_side: int) -> np.ndarray:
    h, w = img.shape[:2]
    s = max_side / max(h, w)
    if s >= 1:
        return np.ascontiguousarray(img)
    return cv2.resize(img, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA)

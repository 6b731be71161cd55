"""Brand reference images: load, validate and normalise one registered logo.

A reference is one flat picture of the mark: a PNG with transparency (simple-icons style silhouettes, the
alpha channel is the shape), an opaque JPG/PNG crop of the logo (each pixel's colour distance to the crop's
border colour is the shape), or an SVG, rasterised with resvg onto a transparent canvas (so it is read like a
transparent PNG). SVGs that refer to
anything outside themselves (files, URLs) are refused: a reference must not read other files.
"""

from __future__ import annotations

import importlib.util
import io
import logging
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from xml.etree import ElementTree

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError

from ..errors import InfluvisionError
from ..files import MAX_REFERENCE_BYTES, read_regular_file

log = logging.getLogger(__name__)

BRAND_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
MIN_SIDE_PX = 32
# Fewest SIFT keypoints a normalised reference must give to be matchable.
MIN_KEYPOINTS = 4
# Below this many keypoints a mark is accepted with a warning: silhouettes such as the Nike swoosh (5) or the
# Apple apple (15) are registered but the matcher found none of them in the shared photos.
FEW_KEYPOINTS = 20
# Working resolution of the normalised shape: the longer side of the content, in pixels.
CANVAS_PX = 256
# Two marks whose ink, each scaled to one square over its content box, overlaps at this IoU are one mark drawn
# twice (the FedEx SVG against its PNG rendering: 0.96; the most alike of the 17 shared brands, Google's and
# Vodafone's, 0.57).
SAME_MARK_IOU = 0.85
# An opaque crop's shape is each pixel's contrast to the border's median colour; when more than this share of
# the border itself stands out from that colour (by ``_BORDER_CONTRAST``), the border is not a background (a
# photo, or a crop with scenery around the mark) and the shape holds background. Measured: 27 of the 29
# shared logo scene photos and 6 face photos 0.27-1.0 (the other two 0.03 and 0.10); the 17 shared marks
# flattened onto white or red and saved as JPEG 0.002-0.15.
BUSY_BORDER = 0.25
_BORDER_CONTRAST = 25.0
_OUTLINE_PX = 64
# Background margin kept around the content, as a fraction of its longer side.
PAD_FRACTION = 0.12
# Longer side, in pixels, that an SVG reference is rasterised to.
SVG_RENDER_PX = 1024
# Most elements an SVG may draw once its <use> references are expanded: a few-kB file can fan out to
# millions of shapes that take minutes to render. Logos have hundreds at most.
SVG_MAX_ELEMENTS = 5000
# Time and address space the SVG renderer may use.
SVG_RENDER_SECONDS = 20.0
SVG_RENDER_MEMORY = 2 << 30
# Largest reference image, in pixels (width x height).
MAX_REFERENCE_PIXELS = 40_000_000
# href/src values an SVG may use: fragments inside the document and inline data.
_INTERNAL_REF = re.compile(rb"""(?:xlink:)?href\s*=\s*["']\s*(#|data:)|src\s*=\s*["']\s*data:""", re.I)
_ANY_REF = re.compile(rb"""(?:xlink:)?href\s*=|\bsrc\s*=|url\((?!\s*["']?\s*(?:#|data:))""", re.I)


class LogoReferenceError(InfluvisionError, ValueError):
    """A brand reference cannot be registered; the message names the brand and says why."""


@dataclass(frozen=True)
class LogoReference:
    """One registered brand mark, normalised for matching.

    Attributes:
        name: brand name (lowercase letters, digits, ``_`` and ``-``).
        shape: (H, W) float32 in [0, 1], the mark's shape on a background of 0 with a margin of
            ``PAD_FRACTION`` around the content; the longer side of the content is ``CANVAS_PX``. For a
            transparent PNG it is the alpha channel; for an opaque crop each pixel's colour distance to the
            crop's border colour, so either polarity of the mark is 1.
        rgb: (H, W, 3) uint8, the mark's colours on the same canvas (undefined where ``shape`` is 0).
        colour: (3,) uint8 RGB, the mean colour of the mark (its brand colour for a flat icon).
        has_alpha: whether ``shape`` came from transparency.
        source_size: (width, height) of the image as given.
        keypoints: SIFT keypoints on the mark (see :data:`FEW_KEYPOINTS`).
        busy_border: for an opaque crop, the share of its border that stands out from the border's median
            colour (see :data:`BUSY_BORDER`); 0 for transparent images and SVGs.
    """

    name: str
    shape: np.ndarray
    rgb: np.ndarray
    colour: np.ndarray
    has_alpha: bool
    source_size: tuple[int, int]
    keypoints: int = 0
    busy_border: float = 0.0

    @property
    def background_warning(self) -> str:
        """A warning for an opaque reference whose border is not a plain background (empty otherwise): its
        shape, the contrast to the border colour, then holds scenery as well as the mark."""
        if self.busy_border <= BUSY_BORDER:
            return ""
        return (f"warning: {self.busy_border:.0%} of the image's border is unlike its background colour, so the "
                "mark cannot be told from what surrounds it (a photo rather than a logo?): crop tightly around "
                "the logo on a plain background, or give a transparent PNG or an SVG")

    @property
    def texture_warning(self) -> str:
        """A warning for marks with few corners, which the matcher rarely verifies (empty otherwise); it says
        whether the silhouette cue searches the mark's outline instead."""
        if self.keypoints >= FEW_KEYPOINTS:
            return ""
        from .silhouette import outline_searched  # imported here: that module builds on this one

        outline = ("the silhouette cue searches its outline" if outline_searched(self) else
                   "its outline is too plain (near a plain figure, a letter or a star) for the silhouette cue")
        return (f"warning: the mark has few corners ({self.keypoints} keypoints): the geometric matcher rarely "
                f"finds such marks and {outline} (docs/logos.md, Limitations); a trained detector can find more "
                "(influvision logos train)")

    @property
    def outline(self) -> tuple[np.ndarray, float]:
        """The ink over the content box scaled to a square (bool, ``_OUTLINE_PX`` a side) and the box's aspect
        ratio (width / height), for :func:`mark_likeness`."""
        x1, y1, x2, y2 = (int(v) for v in self.content_box)
        square = cv2.resize(self.shape[y1:y2, x1:x2], (_OUTLINE_PX, _OUTLINE_PX), interpolation=cv2.INTER_AREA)
        return square > 0.5, (x2 - x1) / (y2 - y1)

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) of the normalised canvas in pixels."""
        return int(self.shape.shape[1]), int(self.shape.shape[0])

    @property
    def content_box(self) -> tuple[float, float, float, float]:
        """x1, y1, x2, y2 of the mark inside the canvas (the canvas minus its margin), in canvas pixels."""
        ys, xs = np.nonzero(self.shape > 0.5)
        return float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)


def _plain_figure(fg: np.ndarray) -> str:
    """``"rectangle"`` or ``"ellipse"`` when the mask is one of them filled (at any angle), else ``""``: such
    a mark has no structure of its own and would stand for every sign, ball or lamp of its shape."""
    ink = fg.astype(np.uint8) * 255
    contours, _ = cv2.findContours(ink, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    if len(contours) != 1 or len(contours[0]) < 5:
        return ""
    outline = contours[0]
    rect = cv2.boxPoints(cv2.minAreaRect(outline))
    for figure, draw in (("rectangle", lambda m: cv2.fillPoly(m, [np.round(rect).astype(np.int32)], 1)),
                         ("ellipse", lambda m: cv2.ellipse(m, cv2.fitEllipse(outline), 1, -1))):
        model = np.zeros(fg.shape, np.uint8)
        draw(model)
        inter = np.logical_and(model > 0, fg).sum()
        union = np.logical_or(model > 0, fg).sum()
        # Rasterising a rotated model loses ~2 % at the edges; the shared marks reach 0.81 at most (apple).
        if union and inter / union > 0.95:
            return figure
    return ""


def mark_likeness(a: tuple[np.ndarray, float], b: tuple[np.ndarray, float]) -> float:
    """IoU of two marks' :attr:`LogoReference.outline` squares, 0 when their aspect ratios differ by more than
    15 %: near 1 for one mark registered twice, whatever the file type or size (see :data:`SAME_MARK_IOU`)."""
    (ma, ra), (mb, rb) = a, b
    if max(ra, rb) > 1.15 * min(ra, rb):
        return 0.0
    return float(np.count_nonzero(ma & mb) / max(np.count_nonzero(ma | mb), 1))


# What may come before an SVG's root element: a byte-order mark, the XML declaration, comments, processing
# instructions and a DOCTYPE (editors and exporters write all of them).
_SVG_START = re.compile(rb"(?:\xef\xbb\xbf)?(?:\s+|<\?.*?\?>|<!--.*?-->|<!DOCTYPE[^>\[]*(?:\[.*?\])?\s*>)*<svg[\s>/]",
                        re.S | re.I)


def _is_svg(data: bytes) -> bool:
    return _SVG_START.match(data[:65536]) is not None


def _read(name: str, source: str | Path | bytes) -> bytes:
    if isinstance(source, bytes | bytearray | memoryview):
        return bytes(source)
    path = Path(source)
    try:
        return read_regular_file(path, MAX_REFERENCE_BYTES)
    except OSError as err:
        raise LogoReferenceError(f"brand {name!r}: cannot read reference {path}: {err.strerror or err}") from err


def load_reference(name: str, source: str | Path | bytes) -> LogoReference:
    """Load and validate one brand reference.

    Args:
        name: brand name; lowercase letters, digits, ``_`` and ``-`` (1 to 64 characters).
        source: a file path, or the encoded bytes of a PNG (alpha used as the mask when present) or JPG.

    Returns:
        The normalised :class:`LogoReference`.

    Raises:
        LogoReferenceError: invalid name, unreadable file, a broken SVG or one referring to outside
            resources, a blank image, content smaller than ``MIN_SIDE_PX`` on a side, or a textureless mark.
    """
    if not isinstance(name, str) or not BRAND_NAME.match(name):
        raise LogoReferenceError(
            f"invalid brand name {name!r}: use 1-64 lowercase letters, digits, '_' or '-', starting with a "
            "letter or digit")
    data = _read(name, source)
    if _is_svg(data):
        data = rasterise_svg(name, data)
    try:
        with Image.open(io.BytesIO(data)) as img:
            if img.width * img.height > MAX_REFERENCE_PIXELS:
                raise LogoReferenceError(
                    f"brand {name!r}: the image is too large to be a logo reference ({img.width} x {img.height} "
                    f"px, at most {MAX_REFERENCE_PIXELS // 10**6} megapixels)")
            img.load()
            has_alpha = img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info)
            arr = np.asarray(img.convert("RGBA" if has_alpha else "RGB"))
    except UnidentifiedImageError:
        raise LogoReferenceError(f"brand {name!r}: not an image (neither a PNG, a JPG nor an SVG that can be read)"
                                 ) from None
    except Image.DecompressionBombError as err:
        raise LogoReferenceError(f"brand {name!r}: the image is too large to be a logo reference ({err})") from None
    except LogoReferenceError:
        raise
    except Exception as err:  # Pillow raises OSError, ValueError, SyntaxError, struct.error ... for bad data
        raise LogoReferenceError(f"brand {name!r}: not a readable PNG/JPG image ({err})") from err
    src_h, src_w = arr.shape[:2]

    if has_alpha:
        shape = arr[..., 3].astype(np.float32) / 255.0
        rgb = arr[..., :3]
        if float(shape.max()) < 0.05:
            raise LogoReferenceError(f"brand {name!r}: the reference is blank (fully transparent)")
        shape /= float(shape.max())  # a mark exported semi-transparent (a watermark) is still the mark
        # A transparent PNG whose content fills it entirely carries no shape in its alpha: treat as a crop.
        if float(shape.min()) > 0.5:
            has_alpha = False
    busy_border = 0.0
    if not has_alpha:
        rgb = arr[..., :3]
        shape, busy_border = _shape_from_crop(name, rgb)

    ys, xs = np.nonzero(shape > 0.5)
    if xs.size == 0:
        raise LogoReferenceError(f"brand {name!r}: the reference is blank (no mark found)")
    x1, x2, y1, y2 = xs.min(), xs.max() + 1, ys.min(), ys.max() + 1
    cw, ch = int(x2 - x1), int(y2 - y1)
    if min(cw, ch) < MIN_SIDE_PX:
        raise LogoReferenceError(
            f"brand {name!r}: the mark is too small ({cw}x{ch} px); give at least {MIN_SIDE_PX} px on each side")

    scale = CANVAS_PX / max(cw, ch)
    pad = int(round(PAD_FRACTION * CANVAS_PX))
    out_w, out_h = int(round(cw * scale)) + 2 * pad, int(round(ch * scale)) + 2 * pad
    # Affine from the source crop to the padded canvas; INTER_AREA when shrinking keeps edges clean.
    m = np.array([[scale, 0, pad - x1 * scale], [0, scale, pad - y1 * scale]], dtype=np.float64)
    interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    shape_c = cv2.warpAffine(shape, m, (out_w, out_h), flags=interp, borderValue=0.0)
    rgb_c = cv2.warpAffine(np.ascontiguousarray(rgb), m, (out_w, out_h), flags=interp, borderValue=(0, 0, 0))
    shape_c = np.clip(shape_c, 0.0, 1.0).astype(np.float32)

    fg = shape_c > 0.5
    plain = _plain_figure(fg)
    if plain:
        raise LogoReferenceError(f"brand {name!r}: the reference is a plain filled {plain}, not a mark")
    # Matching needs distinctive local structure: a mark with only a few corners cannot be told apart.
    grey = (255 - 200 * shape_c).astype(np.uint8)
    n_kp = len(cv2.SIFT_create(contrastThreshold=0.02).detect(grey, None))
    if n_kp < MIN_KEYPOINTS:
        raise LogoReferenceError(
            f"brand {name!r}: the reference is textureless ({n_kp} keypoints, need {MIN_KEYPOINTS}); give a "
            "sharper, higher-contrast image of the logo")
    colour = np.median(rgb_c[fg], axis=0).astype(np.uint8) if fg.any() else np.zeros(3, np.uint8)
    log.debug("reference %s: %dx%d source, canvas %dx%d, alpha=%s", name, src_w, src_h, out_w, out_h, has_alpha)
    return LogoReference(name=name, shape=shape_c, rgb=rgb_c, colour=colour, has_alpha=has_alpha,
                         source_size=(int(src_w), int(src_h)), keypoints=n_kp, busy_border=busy_border)


def rasterise_svg(name: str, data: bytes) -> bytes:
    """Render an SVG reference to PNG bytes with transparency, its longer side ``SVG_RENDER_PX`` pixels.

    Raises:
        LogoReferenceError: the SVG is not valid UTF-8 or cannot be rendered, has no size, or refers to
            external resources (files or URLs; only ``#fragment`` and ``data:`` references are allowed).
    """
    if re.search(rb"<!ENTITY", data, re.I):  # entity expansion is how small XML files become huge ones
        raise LogoReferenceError(f"brand {name!r}: the SVG declares XML entities; export it without them or as a PNG")
    external = [m for m in _ANY_REF.finditer(data) if not _INTERNAL_REF.match(data, m.start())]
    if external:
        raise LogoReferenceError(
            f"brand {name!r}: the SVG refers to external resources ({external[0].group(0).decode(errors='replace')!r}"
            "...); inline them or export a PNG")
    if importlib.util.find_spec("resvg_py") is None:  # a core dependency, but say so if it was removed
        raise LogoReferenceError(f"brand {name!r}: SVG references need 'resvg-py' (pip install resvg-py)")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise LogoReferenceError(f"brand {name!r}: the SVG cannot be rendered ({err})") from err
    n = _svg_elements(name, text)
    if n > SVG_MAX_ELEMENTS:
        raise LogoReferenceError(
            f"brand {name!r}: the SVG is too complex ({n} elements once <use> references are expanded, at most "
            f"{SVG_MAX_ELEMENTS}); export a PNG")
    return _render_svg(name, text)


# The child that renders an SVG: it imports only resvg, so it starts in a few tens of milliseconds. Both sides
# given: resvg fits the drawing inside, keeping its aspect, whatever size the SVG declares.
_RENDER_CHILD = ("import sys, resvg_py; n = int(sys.argv[1]); sys.stdout.buffer.write(bytes(resvg_py.svg_to_bytes("
                 "svg_string=sys.stdin.buffer.read().decode('utf-8'), width=n, height=n)))")


def _limit_child_memory() -> None:
    import resource

    resource.setrlimit(resource.RLIMIT_AS, (SVG_RENDER_MEMORY, SVG_RENDER_MEMORY))


def _render_svg(name: str, text: str) -> bytes:
    """PNG bytes of an SVG, rendered in a child process under a time and (POSIX) memory limit: markers,
    patterns, nested data: SVGs or embedded rasters can make a small file take minutes or gigabytes, and resvg
    aborts the process when an allocation fails."""
    try:
        done = subprocess.run([sys.executable, "-c", _RENDER_CHILD, str(SVG_RENDER_PX)], input=text.encode(),
                              capture_output=True, timeout=SVG_RENDER_SECONDS,
                              preexec_fn=_limit_child_memory if os.name == "posix" else None)
    except subprocess.TimeoutExpired:
        raise LogoReferenceError(f"brand {name!r}: the SVG takes more than {SVG_RENDER_SECONDS:g} s to render; "
                                 "export a PNG") from None
    if done.returncode != 0 or not done.stdout:
        lines = done.stderr.decode(errors="replace").strip().splitlines()
        why = lines[-1].removeprefix("ValueError: ") if lines else f"the renderer stopped with code {done.returncode}"
        if "memory allocation" in why or "MemoryError" in why:
            why = f"it needs more than {SVG_RENDER_MEMORY >> 30} GiB of memory to render"
        raise LogoReferenceError(f"brand {name!r}: the SVG cannot be rendered ({why})")
    return done.stdout


def _svg_elements(name: str, text: str) -> int:
    """Number of elements an SVG draws with every ``<use>`` expanded (its referenced element counted again)."""
    try:
        root = ElementTree.fromstring(text)
    except ElementTree.ParseError as err:
        raise LogoReferenceError(f"brand {name!r}: the SVG cannot be rendered (not well-formed XML: {err})") from None
    by_id = {e.get("id"): e for e in root.iter() if e.get("id")}
    sizes: dict[int, int] = {}
    active: set[int] = set()

    def size(e: ElementTree.Element) -> int:
        key = id(e)
        if key in sizes:
            return sizes[key]
        if key in active:  # a <use> cycle: resvg refuses it; count nothing more
            return 0
        active.add(key)
        n = 1 + sum(size(c) for c in e)
        if e.tag.rsplit("}", 1)[-1] == "use":
            ref = (e.get("href") or e.get("{http://www.w3.org/1999/xlink}href") or "").strip()
            target = by_id.get(ref[1:]) if ref.startswith("#") else None
            if target is not None:
                n += size(target)
        active.discard(key)
        sizes[key] = min(n, 10 * SVG_MAX_ELEMENTS)
        return sizes[key]

    try:
        return size(root)
    except RecursionError:
        return 10 * SVG_MAX_ELEMENTS


def _shape_from_crop(name: str, rgb: np.ndarray) -> tuple[np.ndarray, float]:
    """(H, W) float32 in [0, 1]: contrast of each pixel to the crop's border colour, for opaque crops; and the
    share of the border that stands out from that colour (:data:`BUSY_BORDER`).

    The border of a logo crop is mostly background, so the distance to the border's median colour marks
    the logo whichever its polarity. A crop with no contrast at all is blank.
    """
    img = rgb.astype(np.float32)
    border = np.concatenate([img[0], img[-1], img[:, 0], img[:, -1]])
    bg = np.median(border, axis=0)
    busy = float(np.mean(np.linalg.norm(border - bg, axis=-1) > _BORDER_CONTRAST))
    dist = np.linalg.norm(img - bg, axis=-1)
    peak = float(np.percentile(dist, 99))
    if peak < 25.0:
        raise LogoReferenceError(f"brand {name!r}: the reference is blank (no contrast in the image)")
    return np.clip(dist / peak, 0.0, 1.0).astype(np.float32), busy

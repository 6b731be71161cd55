"""Shapes printed everywhere: plain figures (a disc, a square, rings...), the strokes of Latin letters and digits
(a sans-serif and a serif font at several weights) and common pictograms (stars, a cross, an arrow).

A mark whose outline is a letter (a slanted "H", a "C" in a ring) would be found in every word printed
around an event, and a mark that is a star in every flag, shop sign and coffee cup's ring of stars. The
silhouette cue does not search such a mark by its outline, as it does not search one that is nearly a disc
or a square (:mod:`influvision.logos.silhouette`, step 1). Italics and other slants need no fonts of their
own: the cue compares shapes up to an affine map, which undoes a shear (and turns a regular star into any
evenly squashed one).
"""

from __future__ import annotations

import string

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFont, features

_CHARS = string.ascii_letters + string.digits
_SIZE = 160  # glyph height scale, pixels
_CANVAS = 300
# A connected stroke of a letter carrying this share of its ink is a shape of its own (the dot of an "i"
# is not; the body of an "i" and both strokes of a "%" would be).
_MIN_STROKE = 0.2


def _sans(stroke: int) -> list[np.ndarray]:
    """Letters of Pillow's bundled sans-serif font (Aileron), thickened by ``stroke`` pixels on each side."""
    font = ImageFont.load_default(size=_SIZE)
    out = []
    for ch in _CHARS:
        img = Image.new("L", (_CANVAS, _CANVAS), 0)
        ImageDraw.Draw(img).text((60, 40), ch, fill=255, font=font, stroke_width=stroke, stroke_fill=255)
        out.append(np.asarray(img) > 127)
    return out


def _serif(face: int, thickness: int) -> list[np.ndarray]:
    """Letters of one of OpenCV's stroke fonts drawn with lines ``thickness`` pixels wide."""
    out = []
    for ch in _CHARS:
        img = np.zeros((_CANVAS, _CANVAS), np.uint8)
        cv2.putText(img, ch, (70, 220), face, 5.0, 255, thickness, cv2.LINE_AA)
        out.append(img > 127)
    return out


def _polygon(points: np.ndarray) -> np.ndarray:
    img = np.zeros((_CANVAS, _CANVAS), np.uint8)
    cv2.fillPoly(img, [np.round(points).astype(np.int32)], 1)
    return img > 0


def _star(points: int, inner: float) -> np.ndarray:
    """A regular star of ``points`` points whose inner corners lie at ``inner`` times its outer radius."""
    a = np.arange(2 * points) * np.pi / points - np.pi / 2
    r = np.where(np.arange(2 * points) % 2 == 0, 120.0, 120.0 * inner)
    return _polygon(np.stack([150 + r * np.cos(a), 150 + r * np.sin(a)], 1))


def plain_masks() -> list[np.ndarray]:
    """Bool masks of the plain figures: a disc, a square, a triangle, a half-disc, rings from thick to thin (the
    letters o and O), an L, arcs (a third and a half of a ring, thick and thin) and crescents. Up to an affine
    map they are every ellipse, parallelogram and triangle; the arcs and crescents are the bent bands and
    moons that brows, eyelids, hair and smiles make in every photo of people."""
    n, c = 400, (200, 200)
    disc = np.zeros((n, n), np.uint8)
    cv2.circle(disc, c, 150, 1, -1)
    square = np.zeros((n, n), np.uint8)
    square[100:300, 100:300] = 1
    tri = np.zeros((n, n), np.uint8)
    cv2.fillPoly(tri, [np.array([[200, 50], [350, 330], [50, 330]], np.int32)], 1)
    half = np.zeros((n, n), np.uint8)
    cv2.ellipse(half, (200, 250), (150, 150), 0, 180, 360, 1, -1)
    rings = []
    for inner in (60, 90, 110):
        ring = disc.copy()
        cv2.circle(ring, c, inner, 0, -1)
        rings.append(ring)
    ell = np.zeros((n, n), np.uint8)
    cv2.fillPoly(ell, [np.array([[50, 50], [350, 50], [350, 120], [120, 120], [120, 350], [50, 350]], np.int32)], 1)
    arcs = []
    for span in (120, 180):
        for inner in (110, 130):
            arc = np.zeros((n, n), np.uint8)
            cv2.ellipse(arc, c, (150, 150), 0, 270 - span / 2, 270 + span / 2, 1, -1)
            cv2.circle(arc, c, inner, 0, -1)
            arcs.append(arc)
    crescents = []
    for offset in (60, 100):
        moon = disc.copy()
        cv2.circle(moon, (c[0], c[1] + offset), 150, 0, -1)
        crescents.append(moon)
    return [f.astype(bool) for f in (disc, square, tri, half, *rings, ell, *arcs, *crescents)]


def symbol_masks() -> list[np.ndarray]:
    """Bool masks of common pictograms: five-pointed stars (the classic one and a stouter one), a six-pointed
    star, a Greek cross and a block arrow. Hearts are not among them: whitened, most rounded marks (the apple,
    Vodafone's speech mark) come within 0.8 of one."""
    cross = np.zeros((_CANVAS, _CANVAS), bool)
    cross[115:185, 40:260] = True
    cross[40:260, 115:185] = True
    arrow = _polygon(np.array([[40, 120], [170, 120], [170, 60], [260, 150], [170, 240], [170, 180], [40, 180]],
                              np.float64))
    return [_star(5, 0.382), _star(5, 0.5), _star(6, 0.577), cross, arrow]


def letter_masks() -> list[np.ndarray]:
    """Bool masks of every stroke (connected ink carrying :data:`_MIN_STROKE` of a glyph's ink) of the letters
    and digits: a regular, bold and black sans-serif (when Pillow has FreeType for its bundled font) and a
    light and bold serif (the silhouette cue keeps only their rasters, built once per process)."""
    glyphs = []
    if features.check("freetype2"):
        for stroke in (0, 5, 10):
            glyphs.extend(_sans(stroke))
    for face in (cv2.FONT_HERSHEY_COMPLEX, cv2.FONT_HERSHEY_TRIPLEX):
        for thickness in (6, 14):
            glyphs.extend(_serif(face, thickness))
    return [m for glyph in glyphs for _, m in components(glyph, _MIN_STROKE * max(int(glyph.sum()), 1))]


def components(mask: np.ndarray, least: float, *, inner: bool = False) -> list[tuple[int, np.ndarray]]:
    """(pixel count, bool mask) of each 8-connected component of ``mask`` with at least ``least`` pixels, in
    label order; ``inner``: only those not touching the border (a mark's holes, not the ground around it)."""
    n, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    h, w = mask.shape
    out = []
    for i in range(1, n):
        x, y, cw, ch, area = stats[i]
        if inner and (x == 0 or y == 0 or x + cw >= w or y + ch >= h):
            continue
        if area >= least:
            out.append((int(area), labels == i))
    return out

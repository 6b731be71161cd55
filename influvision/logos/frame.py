"""A found mark's printed frame: the badge, seal or ring a mark is printed inside is part of the logo.

A reference is often only the emblem of a printed logo: the horse without the shield it sits in, the siren
without the ring of lettering around it. A cue boxes what it matched, the emblem, while the logo in the photo,
and what a viewer sees, is the whole badge. :func:`printed_frame` looks for that badge around a detection:
a closed outline that

1. surrounds the mark's box, centred on it, at least 15 % larger on one axis, at most 2x on either, and
   grown at most 1.6 times more on one axis than on the other (a frame follows the mark, give or take the
   mark's own aspect in a round badge; a banner around a mark is much wider than tall or the reverse);
2. is convex (solidity >= 0.9: a disc, an oval, a shield), fills 45-90 % of its box (a badge seen obliquely
   down to about half), and is neither a rectangle (over 90 %) nor any other quadrilateral: signs, panels,
   screens, labels and tags, upright or seen in perspective, surround marks without being part of them;
3. lies wholly inside the searched window, so it closes around the mark rather than running out of view.

Outlines are MSER regions of the window's Lab channels, holes filled. The innermost frame is kept (an outer
one is the frame's mount or surroundings); MSER finds one outline at several grey levels a few pixels apart,
so among the outlines within 10 % of the innermost's size, the largest is the frame's outer edge.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

# The window searched around a mark's box, in box sizes on each side: a frame up to 2x the box, centred,
# then lies inside it with room to spare.
_WINDOW = 0.75
# The mark's longer side in the searched window, pixels.
_MARK_PX = 128
# Growth of a frame's box over the mark's, per axis: at least on the larger axis, at most on both.
_MIN_GROWTH, _MAX_GROWTH = 1.15, 2.0
# Larger axis growth over the smaller one (a round badge around a mark 0.7 times as wide as tall: 1.4).
_MAX_ANISOTROPY = 1.6
# Offset of the frame's centre from the mark's, as a share of the frame's size on each axis.
_MAX_OFFSET = 0.12
_MIN_SOLIDITY = 0.9
# Share of its box a frame's filled outline covers: a disc 0.79, an upright shield about 0.7, a badge seen
# obliquely (foreshortened along a diagonal) down to about half; a rectangle nearly all.
_MIN_FILL, _MAX_FILL = 0.45, 0.9
# An outline within this share of its perimeter of a quadrilateral is one: a rectangle upright or in perspective
# stays 4 sides at it, a disc has 5 or more (3 % also let a sheared shield through, but picked wrong inner
# outlines more often when the mark's box moved by a pixel or two: RESULTS.md).
_CORNER_TOL = 0.04
# Window pixels an outline keeps from the window's border (and the photo's): one that reaches it is open.
_EDGE = 3
# Outlines within this factor of the innermost frame's size are the same frame at other grey levels.
_SAME_FRAME = 1.1


def printed_frame(image: np.ndarray, box: Sequence[float]) -> tuple[float, float, float, float] | None:
    """The box of the printed frame around a found mark, in source pixels, or None when it has none.

    Args:
        image: (H, W, 3) uint8 RGB photo.
        box: the mark's box x1, y1, x2, y2 in the photo's pixels.
    """
    x1, y1, x2, y2 = (float(v) for v in box)
    w, h = x2 - x1, y2 - y1
    if w < 4 or h < 4:
        return None
    ih, iw = image.shape[:2]
    wx1, wy1 = max(0, int(x1 - _WINDOW * w)), max(0, int(y1 - _WINDOW * h))
    wx2, wy2 = min(iw, int(np.ceil(x2 + _WINDOW * w))), min(ih, int(np.ceil(y2 + _WINDOW * h)))
    if wx2 - wx1 < 3 or wy2 - wy1 < 3:
        return None  # the box lies outside the photo
    s = _MARK_PX / max(w, h)
    crop = image[wy1:wy2, wx1:wx2]
    size = (max(3, round(crop.shape[1] * s)), max(3, round(crop.shape[0] * s)))
    window = cv2.resize(crop, size, interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_CUBIC)
    mark = np.array([(x1 - wx1) * s, (y1 - wy1) * s, (x2 - wx1) * s, (y2 - wy1) * s])
    frames = _frames(cv2.cvtColor(window, cv2.COLOR_RGB2LAB), mark)
    if not frames:
        return None
    frames.sort(key=lambda f: f[0])
    inner = frames[0][0]
    fx1, fy1, fx2, fy2 = max((f for f in frames if f[0] <= _SAME_FRAME * inner), key=lambda f: f[0])[1]
    return (float(wx1 + fx1 / s), float(wy1 + fy1 / s), float(wx1 + fx2 / s), float(wy1 + fy2 / s))


def _frames(lab: np.ndarray, mark: np.ndarray) -> list[tuple[float, tuple[int, int, int, int]]]:
    """(growth, box) of every outline in the window that passes the frame tests, in window pixels."""
    hh, ww = lab.shape[:2]
    mw, mh = mark[2] - mark[0], mark[3] - mark[1]
    mser = cv2.MSER_create(delta=5, min_area=max(30, int(0.1 * mw * mh)), max_area=int(0.9 * hh * ww))
    tol = 0.05 * np.array([mw, mh, -mw, -mh])
    inside = mark + tol  # the frame's box must cover the mark's, give or take 5 %
    out, seen = [], set()
    for c in range(3):
        regions, boxes = mser.detectRegions(np.ascontiguousarray(lab[..., c]))
        for pts, (rx, ry, rw, rh) in zip(regions, boxes, strict=True):
            key = (rx, ry, rw, rh)
            if key in seen or rx < _EDGE or ry < _EDGE or rx + rw > ww - _EDGE or ry + rh > hh - _EDGE:
                continue
            seen.add(key)
            if rx > inside[0] or ry > inside[1] or rx + rw < inside[2] or ry + rh < inside[3]:
                continue
            grow, least = max(rw / mw, rh / mh), min(rw / mw, rh / mh)
            if not _MIN_GROWTH <= grow <= _MAX_GROWTH or grow > _MAX_ANISOTROPY * least:
                continue
            if (abs(rx + rw / 2 - (mark[0] + mark[2]) / 2) > _MAX_OFFSET * rw
                    or abs(ry + rh / 2 - (mark[1] + mark[3]) / 2) > _MAX_OFFSET * rh):
                continue
            mask = np.zeros((rh + 2, rw + 2), np.uint8)
            mask[pts[:, 1] - ry + 1, pts[:, 0] - rx + 1] = 255
            contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
            outline = max(contours, key=cv2.contourArea)
            area = cv2.contourArea(outline)
            hull = cv2.contourArea(cv2.convexHull(outline))
            if hull <= 0 or area / hull < _MIN_SOLIDITY or not _MIN_FILL <= area / (rw * rh) <= _MAX_FILL:
                continue
            if len(cv2.approxPolyDP(outline, _CORNER_TOL * cv2.arcLength(outline, True), True)) <= 4:
                continue  # a quadrilateral: a sign, panel or tag, upright or in perspective
            out.append((grow, (rx, ry, rx + rw, ry + rh)))
    return out

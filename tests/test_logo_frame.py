"""The printed frame around a found mark (influvision.logos.frame): badges and seals, not signs and tags."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from influvision.boxes import box_iou
from influvision.logos.frame import printed_frame
from influvision.logos.references import LogoReference

YELLOW = (250, 210, 20)
# A shield 130 x 185 px: straight top and upper sides, the lower part rounded (two quarter ellipses).
_t = np.linspace(0.0, 1.0, 12)
_SHIELD = np.concatenate([
    [[135, 60], [265, 60], [265, 140]],
    np.stack([265 - 65 * (1 - np.cos(_t * np.pi / 2)), 140 + 105 * np.sin(_t * np.pi / 2)], axis=1)[1:],
    np.stack([200 - 65 * np.sin(_t * np.pi / 2), 245 - 105 * (1 - np.cos(_t * np.pi / 2))], axis=1)[1:],
]).round().astype(np.int32)


def _scene(refs: list[LogoReference], draw_ground, size=(300, 400)) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """A grey photo with a ground shape drawn by ``draw_ground(img)`` and the Ferrari horse (the shared
    reference's silhouette, 110 px high) printed black in its middle; returns the photo and the horse's box."""
    rng = np.random.default_rng(0)
    img = np.clip(rng.normal(120, 6, (*size, 3)), 0, 255).astype(np.uint8)
    draw_ground(img)
    horse = next(r for r in refs if r.name == "ferrari").shape > 0.5
    ys, xs = np.nonzero(horse)
    horse = horse[ys.min():ys.max() + 1, xs.min():xs.max() + 1]
    h = 110
    w = round(horse.shape[1] * h / horse.shape[0])
    mask = cv2.resize(horse.astype(np.uint8), (w, h), interpolation=cv2.INTER_NEAREST).astype(bool)
    y0, x0 = size[0] // 2 - h // 2, size[1] // 2 - w // 2
    img[y0:y0 + h, x0:x0 + w][mask] = (15, 15, 15)
    return img, (x0, y0, x0 + w, y0 + h)


def test_a_mark_inside_a_disc_is_boxed_with_the_disc(refs):
    img, mark = _scene(refs, lambda im: cv2.circle(im, (200, 150), 75, YELLOW, -1))
    frame = printed_frame(img, mark)
    assert frame is not None
    assert box_iou(frame, (125, 75, 276, 226)) > 0.85
    assert box_iou(mark, (125, 75, 276, 226)) < 0.5  # the mark alone would not pass as the badge


def test_a_mark_inside_a_shield_is_boxed_with_the_shield(refs):
    img, mark = _scene(refs, lambda im: cv2.fillPoly(im, [_SHIELD], YELLOW))
    frame = printed_frame(img, mark)
    assert frame is not None
    assert box_iou(frame, (135, 60, 266, 246)) > 0.85  # the shield's box


@pytest.mark.parametrize("ground", ["rectangle", "perspective", "cut by the photo's edge", "nothing"])
def test_signs_tags_and_open_grounds_are_not_frames(refs, ground):
    draw = {
        "rectangle": lambda im: cv2.rectangle(im, (120, 60), (280, 240), YELLOW, -1),
        # a square sign seen from the side: a trapezoid, which fills only part of its box
        "perspective": lambda im: cv2.fillPoly(im, [np.array([[110, 40], [290, 80], [290, 220], [110, 260]],
                                                             np.int32)], YELLOW),
        "cut by the photo's edge": lambda im: cv2.circle(im, (200, 150), 170, YELLOW, -1),
        "nothing": lambda im: None,
    }[ground]
    img, mark = _scene(refs, draw)
    assert printed_frame(img, mark) is None


def test_a_frame_much_larger_than_the_mark_is_not_its_badge(refs):
    # a round table top or a balloon behind a small mark: more than twice the mark's size on each axis
    img, mark = _scene(refs, lambda im: cv2.ellipse(im, (200, 150), (185, 140), 0, 0, 360, YELLOW, -1),
                       size=(300, 400))
    assert printed_frame(img, mark) is None


@pytest.mark.parametrize("box", [(0, 0, 400, 300), (-90, -90, -10, -10), (390, 290, 600, 500), (500, 400, 600, 500),
                                 (10, 10, 12, 12), (20, 20, 20.5, 200)])
def test_boxes_at_or_beyond_the_photo_and_degenerate_boxes_have_no_frame(refs, box):
    img, _ = _scene(refs, lambda im: cv2.circle(im, (200, 150), 75, YELLOW, -1))
    assert printed_frame(img, box) is None


def test_a_badge_seen_obliquely_is_still_a_frame(refs):
    # The disc badge foreshortened 2x along a diagonal (seen from the side and above): an oval turned 45°.
    img, mark = _scene(refs, lambda im: cv2.circle(im, (200, 150), 75, YELLOW, -1))
    c, s = np.cos(np.pi / 4), np.sin(np.pi / 4)
    rot = np.array([[c, -s], [s, c]])
    lin = rot @ np.diag([1 / 2.0, 1.0]) @ rot.T
    centre = np.array([200.0, 150.0])
    affine = np.hstack([lin, (centre - lin @ centre)[:, None]])
    tilted = cv2.warpAffine(img, affine, (400, 300), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)

    def bounds(points: np.ndarray) -> tuple[float, ...]:
        p = points @ lin.T + affine[:, 2]
        return (*p.min(axis=0), *p.max(axis=0))

    x1, y1, x2, y2 = mark
    angle = np.linspace(0, 2 * np.pi, 200)
    disc = np.stack([200 + 75 * np.cos(angle), 150 + 75 * np.sin(angle)], axis=1)
    frame = printed_frame(tilted, bounds(np.array([[x1, y1], [x2, y1], [x2, y2], [x1, y2]], float)))
    assert frame is not None
    assert box_iou(frame, bounds(disc)) > 0.85

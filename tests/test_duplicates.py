"""Repeated photos: byte-identical files, resized / re-encoded / tone-edited copies, and other shots of one
scene that are not copies, on real shared photos."""

from __future__ import annotations

import io
import itertools
import math
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from influvision.decode.images import load_image
from influvision.duplicates import (
    NEAR_DUPLICATE_MAX_DISTANCE,
    SAME_SHOT_MAX_DIFF,
    DuplicateIndex,
    find_duplicates,
    hamming,
    phash,
    same_shot,
    shot_difference,
)

SCENES = ("bbt2.jpg", "bbt4.jpg", "bbt5.jpg", "couple.jpg", "elton_john_with_cher.jpg", "group2.jpg",
          "obama_and_biden.jpg")


def _resized_copy(pixels: np.ndarray, scale: float, quality: int) -> np.ndarray:
    h, w = pixels.shape[:2]
    buf = io.BytesIO()
    Image.fromarray(pixels).resize((int(w * scale), int(h * scale)), Image.BILINEAR).save(
        buf, "JPEG", quality=quality)
    return load_image(buf.getvalue()).pixels


def test_duplicates_exact_and_near(shared_data: Path, tmp_path: Path) -> None:
    scenes = {name: load_image(shared_data / "scenes" / name) for name in SCENES}
    index = DuplicateIndex()
    for name, img in scenes.items():
        assert index.add(name, img.pixels, sha256=img.sha256) is None  # seven different scenes
    copy = tmp_path / "copy_of_couple.jpg"
    shutil.copyfile(shared_data / "scenes/couple.jpg", copy)
    assert index.add("copy.jpg", load_image(copy).pixels, copy) == "couple.jpg"  # by file hash
    assert index.matches["copy.jpg"] == ("couple.jpg", -1)
    small = _resized_copy(scenes["group2.jpg"].pixels, 0.5, 70)
    assert index.add("group2_small.jpg", small) == "group2.jpg"
    assert 0 <= index.matches["group2_small.jpg"][1] <= NEAR_DUPLICATE_MAX_DISTANCE
    tiny = _resized_copy(scenes["obama_and_biden.jpg"].pixels, 0.25, 40)
    assert index.add("ob_tiny.jpg", tiny) == "obama_and_biden.jpg"
    assert len(index) == 7 and index.superseded is None


def test_a_far_larger_copy_met_later_becomes_the_original(shared_data: Path) -> None:
    full = load_image(shared_data / "scenes" / "obama_and_biden.jpg").pixels
    index = DuplicateIndex()
    assert index.add("web/ob.jpg", _resized_copy(full, 0.3, 80)) is None
    assert index.add("web/ob_copy.jpg", _resized_copy(full, 0.35, 70)) == "web/ob.jpg"  # not twice the pixels
    assert index.add("originals/ob.jpg", full) is None and index.superseded == "web/ob.jpg"
    assert index.add("mail/ob.jpg", _resized_copy(full, 0.5, 70)) == "originals/ob.jpg"
    assert {p: orig for p, (orig, _) in index.matches.items()} == {
        "web/ob.jpg": "originals/ob.jpg", "web/ob_copy.jpg": "originals/ob.jpg", "mail/ob.jpg": "originals/ob.jpg"}
    assert len(index) == 1


def test_two_shots_of_one_scene_are_not_duplicates_though_they_hash_alike(shared_data: Path) -> None:
    """A fixed camera's next shot with one more person, 30 px high in a large photo: the 32 x 32 pHash cannot
    see it, the pixel comparison does; re-encoded, resized and tone-edited copies stay duplicates."""
    scene = load_image(shared_data / "scenes" / "couple.jpg").pixels
    face = load_image(shared_data / "faces" / "mindy_kaling" / "1.jpg").pixels
    fh = 30 * scene.shape[0] // 1080
    small = cv2.resize(face, (fh * face.shape[1] // face.shape[0], fh), interpolation=cv2.INTER_AREA)
    next_shot = scene.copy()
    next_shot[200:200 + small.shape[0], 300:300 + small.shape[1]] = small
    next_shot = _resized_copy(next_shot, 1.0, 60)
    assert hamming(phash(scene), phash(next_shot)) <= NEAR_DUPLICATE_MAX_DISTANCE  # the hash alone would merge
    index = DuplicateIndex()
    assert index.add("a.jpg", scene) is None
    assert index.add("b.jpg", next_shot) is None  # another photo: counted
    brighter = np.clip(scene.astype(np.int16) * 1.15 + 10, 0, 255).astype(np.uint8)
    for name, copy in (("resized.jpg", _resized_copy(scene, 0.5, 50)), ("brighter.jpg", _resized_copy(brighter, 1, 80))):
        assert index.add(name, copy) == "a.jpg", name
    assert same_shot(scene, _resized_copy(scene, 0.3, 40)) and not same_shot(scene, next_shot)


def test_near_duplicate_threshold_separates_real_photos(shared_data: Path) -> None:
    # Different photos: the closest pair measured in shared data (two 150 px grey face chips) lies at 12.
    names = ["faces/kunal_nayyar/2.png", "faces/simon_helberg/3.png", *(f"scenes/{s}" for s in SCENES)]
    pixels = [load_image(shared_data / n).pixels for n in names]
    hashes = [phash(p) for p in pixels]
    closest = min(hamming(a, b) for a, b in itertools.combinations(hashes, 2))
    assert closest > NEAR_DUPLICATE_MAX_DISTANCE
    assert find_duplicates(list(zip(names, pixels, strict=True))) == {}
    # Resized / re-encoded copies stay far below the threshold.
    for p, h in zip(pixels[2:], hashes[2:], strict=True):
        assert hamming(h, phash(_resized_copy(p, 0.3, 50))) <= NEAR_DUPLICATE_MAX_DISTANCE // 2


def test_phash_rejects_bad_shapes() -> None:
    from influvision.errors import ShapeError

    with pytest.raises(ShapeError):
        phash(np.zeros((4, 4, 4), np.uint8))
    with pytest.raises(ShapeError):
        phash(np.zeros((0, 4), np.uint8))


def test_shot_difference_sees_marks_in_colour_and_does_not_call_a_black_frame_the_same() -> None:
    rng = np.random.default_rng(1)
    wall = cv2.GaussianBlur(rng.integers(90, 160, (300, 400, 3), dtype=np.uint8), (0, 0), 3)
    marked = wall.copy()
    grey = float(cv2.cvtColor(wall[100:140, 100:260], cv2.COLOR_RGB2GRAY).mean())
    yellow = np.array([255.0, 204.0, 0.0]) * grey / (0.299 * 255 + 0.587 * 204)  # the wall's own grey level
    marked[110:130, 110:250] = yellow.astype(np.uint8)
    assert shot_difference(cv2.cvtColor(wall, cv2.COLOR_RGB2GRAY), cv2.cvtColor(marked, cv2.COLOR_RGB2GRAY)) \
        < SAME_SHOT_MAX_DIFF  # in grey the mark is all but invisible
    assert shot_difference(wall, marked) > 2 * SAME_SHOT_MAX_DIFF  # in colour it is not
    warmer = np.clip(wall * np.array([1.08, 1.0, 0.9]), 0, 255).astype(np.uint8)  # a white-balance edit
    assert shot_difference(wall, warmer) < SAME_SHOT_MAX_DIFF
    black = np.zeros_like(wall)
    assert shot_difference(black, wall) == shot_difference(wall, black) == math.inf
    assert shot_difference(black, black.copy()) == 0.0


def test_photos_too_narrow_to_hash_are_duplicates_only_when_identical() -> None:
    rng = np.random.default_rng(3)
    index = DuplicateIndex()
    strips = [rng.integers(0, 256, (400, 2, 3), dtype=np.uint8) for _ in range(40)]
    assert [index.add(f"s{k}.png", s) for k, s in enumerate(strips)] == [None] * 40
    assert index.add("again.png", strips[5].copy()) == "s5.png"  # the same pixels: still a duplicate

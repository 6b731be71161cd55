"""Face quality on real photos: frontalness, sharpness, size and the identifiable cut."""

from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from influvision.faces.align import align_to_chip
from influvision.faces.quality import (
    chip_sharpness,
    face_quality,
    face_size_px,
    frontalness,
)
from influvision.match import MatchSettings
from influvision.types import Faces


def _detect(image: np.ndarray) -> Faces:
    """The most confident face of an image, by facenet-pytorch's MTCNN."""
    facenet_pytorch = pytest.importorskip("facenet_pytorch")
    boxes, probs, points = facenet_pytorch.MTCNN(keep_all=True, device="cpu").detect(
        Image.fromarray(image), landmarks=True)
    best = int(np.argmax(probs))
    return Faces(
        image_index=torch.zeros(1, dtype=torch.long),
        boxes=torch.tensor(np.asarray(boxes[best:best + 1], dtype=np.float32)),
        scores=torch.tensor([float(probs[best])]),
        landmarks=torch.tensor(np.asarray(points[best:best + 1], dtype=np.float32)),
    )


@pytest.fixture(scope="module")
def obama(shared_data: Path) -> tuple[np.ndarray, Faces]:
    image = np.array(Image.open(shared_data / "faces" / "barack_obama" / "1.jpg").convert("RGB"))
    return image, _detect(image)


def test_frontal_face_beats_profiles(obama: tuple[np.ndarray, Faces], shared_data: Path) -> None:
    _, faces = obama
    frontal = frontalness(faces.landmarks)
    assert frontal[0] > 0.8
    # Synthetic profile: eyes close together, nose beyond the near eye, mouth corners bunched (as MTCNN
    # places them on a side view).
    profile = torch.tensor([[[100.0, 100.0], [112.0, 101.0], [78.0, 130.0], [104.0, 160.0], [112.0, 160.0]]])
    assert frontalness(profile)[0] < 0.1
    # A real near-profile (about 60° yaw) lies between.
    ben = np.array(Image.open(shared_data / "faces" / "ben_affleck" / "4.jpg").convert("RGB"))
    turned = frontalness(_detect(ben).landmarks)[0]
    assert 0.1 < turned < frontal[0] - 0.3
    # Roll, scale and shift leave frontalness alone and scale size_px.
    a = math.radians(25)
    rot = torch.tensor([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
    moved = faces.landmarks @ rot.T * 0.5 + torch.tensor([30.0, -20.0])
    torch.testing.assert_close(frontalness(moved), frontal, atol=1e-5, rtol=0)
    torch.testing.assert_close(face_size_px(moved), face_size_px(faces.landmarks) * 0.5, rtol=1e-5, atol=1e-4)


def test_size_px_follows_the_box(obama: tuple[np.ndarray, Faces]) -> None:
    _, faces = obama
    box_h = float(faces.boxes[0, 3] - faces.boxes[0, 1])
    assert 0.8 * box_h < float(face_size_px(faces.landmarks)[0]) < 1.25 * box_h
    # Degenerate landmarks fall back to the box height.
    assert float(face_size_px(torch.zeros(1, 5, 2), faces.boxes)[0]) == pytest.approx(box_h)


def test_blur_lowers_sharpness(obama: tuple[np.ndarray, Faces]) -> None:
    image, faces = obama
    chip = align_to_chip([image], faces.image_index, faces.landmarks)
    blurred = torch.from_numpy(cv2.GaussianBlur(chip[0].numpy(), (0, 0), 2.0))[None]
    sharp = chip_sharpness(torch.cat([chip, blurred]))
    assert sharp[0] > 0.015  # the default cut
    assert sharp[1] < 0.3 * sharp[0]


def test_a_tiny_face_measures_under_the_photo_rule(obama: tuple[np.ndarray, Faces]) -> None:
    image, faces = obama
    quality = face_quality(faces, images=[image])
    assert set(quality) == {"size_px", "frontalness", "sharpness", "score"}
    photo_rule = MatchSettings().min_face_px
    assert float(quality["size_px"][0]) > photo_rule
    # Shrink the photo so the face is ~20 px high; the landmarks follow.
    k = 20.0 / float(quality["size_px"][0])
    small = cv2.resize(image, (round(image.shape[1] * k), round(image.shape[0] * k)), interpolation=cv2.INTER_AREA)
    tiny = Faces(faces.image_index, faces.boxes * k, faces.scores, faces.landmarks * k)
    q_tiny = face_quality(tiny, images=[small])
    assert float(q_tiny["size_px"][0]) == pytest.approx(20.0, rel=0.05)
    assert q_tiny["sharpness"][0] < quality["sharpness"][0]
    assert float(q_tiny["size_px"][0]) < photo_rule  # too small to be named in a photo


def test_empty_batch() -> None:
    quality = face_quality(Faces.empty(), chips=torch.zeros(0, 150, 150, 3, dtype=torch.uint8))
    assert all(v.shape == (0,) for v in quality.values())

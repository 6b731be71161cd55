"""Face alignment on the dlib fixtures: sampler vs dlib's chips, Umeyama, batching, MTCNN -> dlib descriptors."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from influvision.errors import ShapeError
from influvision.faces.align import (
    DLIB_MTCNN_TEMPLATE,
    ChipAligner,
    align_to_chip,
    sample_chips,
    similarity_from_landmarks,
    template_for_size,
)


@pytest.fixture(scope="module")
def fixture_faces(dlib_fixtures: Path) -> dict:
    entries = json.loads((dlib_fixtures / "index.json").read_text())["entries"]
    return {
        "entries": entries,
        "images": [np.array(Image.open(dlib_fixtures / e["source_copy"]).convert("RGB")) for e in entries],
        "affines": torch.tensor([e["chip_to_image_affine_2x3"] for e in entries], dtype=torch.float64),
        "chips": np.stack([np.array(Image.open(dlib_fixtures / e["chip"]).convert("RGB")) for e in entries]),
        "levels": [e["dlib_pyramid_downsamples"] for e in entries],
    }


def _template_in_image(affines: torch.Tensor) -> torch.Tensor:
    """(N, 5, 2): the template mapped through each chip->image affine (landmarks a face would have)."""
    t = DLIB_MTCNN_TEMPLATE.double()
    return (t @ affines[:, :, :2].transpose(1, 2) + affines[:, None, :, 2]).float()


def test_sampler_reproduces_dlib_chips(fixture_faces: dict) -> None:
    n = len(fixture_faces["entries"])
    ref = fixture_faces["chips"].astype(np.int16)
    index = torch.arange(n)
    ours = sample_chips(fixture_faces["images"], index, fixture_faces["affines"])
    plain = sample_chips(fixture_faces["images"], index, fixture_faces["affines"], antialias=False)
    assert ours.shape == (n, 150, 150, 3) and ours.dtype == torch.uint8
    diff = np.abs(ours.numpy().astype(np.int16) - ref).mean(axis=(1, 2, 3))
    diff_plain = np.abs(plain.numpy().astype(np.int16) - ref).mean(axis=(1, 2, 3))
    levels = np.array(fixture_faces["levels"])
    # No pyramid in dlib: the same bilinear sampling, truncation and black border (measured 0.001).
    assert diff[levels == 0].max() < 0.05
    # dlib's integer pyramid differs from ours in detail (measured 1.6-3.8, larger for deeper pyramids) ...
    assert diff[levels > 0].max() < 4.5
    # ... but antialiasing is what brings it close: plain bilinear measured 1.9-8.7.
    assert diff[levels > 0].mean() < 0.7 * diff_plain[levels > 0].mean()


def test_umeyama_recovers_known_similarity() -> None:
    gen = torch.Generator().manual_seed(0)
    n = 7
    src = torch.rand(n, 5, 2, generator=gen, dtype=torch.float64) * 100
    angle = (torch.rand(n, generator=gen, dtype=torch.float64) - 0.5) * 2 * math.pi
    scale = 0.2 + 4 * torch.rand(n, generator=gen, dtype=torch.float64)
    shift = torch.randn(n, 2, generator=gen, dtype=torch.float64) * 300
    rot = torch.stack([torch.stack([angle.cos(), -angle.sin()], -1), torch.stack([angle.sin(), angle.cos()], -1)], 1)
    lin = scale.view(-1, 1, 1) * rot
    dst = src @ lin.transpose(1, 2) + shift.unsqueeze(1)
    fit = similarity_from_landmarks(src, dst)
    assert fit.shape == (n, 2, 3) and fit.dtype == torch.float64
    torch.testing.assert_close(fit[:, :, :2], lin, atol=1e-10, rtol=0)
    torch.testing.assert_close(fit[:, :, 2], shift, atol=1e-8, rtol=0)
    # A shared (5, 2) destination equals the expanded one.
    torch.testing.assert_close(similarity_from_landmarks(src, dst[0]), similarity_from_landmarks(src, dst[:1].expand(n, 5, 2)))
    # A mirrored target is fitted without reflection: det > 0 always.
    mirrored = dst * torch.tensor([-1.0, 1.0], dtype=torch.float64)
    assert (similarity_from_landmarks(src, mirrored)[:, :, :2].det() > 0).all()
    assert similarity_from_landmarks(torch.zeros(0, 5, 2), DLIB_MTCNN_TEMPLATE).shape == (0, 2, 3)


def test_several_images_in_one_call_equal_one_at_a_time(fixture_faces: dict) -> None:
    # Three images of different sizes (424x394, 1200x599, 2048x1991); faces at pyramid levels 0 and 1,
    # and a second face of image 0, shifted and smaller, interleaved.
    picks = [0, 3, 11]
    images = [fixture_faces["images"][i] for i in picks]
    landmarks = _template_in_image(fixture_faces["affines"][picks])
    extra = (landmarks[0] - landmarks[0].mean(0)) * 0.5 + torch.tensor([100.0, 120.0])
    landmarks = torch.cat([landmarks[:1], extra[None], landmarks[1:]])
    image_index = torch.tensor([0, 0, 1, 2])
    together = align_to_chip(images, image_index, landmarks)
    one_by_one = torch.cat([
        align_to_chip([images[int(i)]], torch.zeros(1, dtype=torch.long), landmarks[k:k + 1])
        for k, i in enumerate(image_index)
    ])
    assert together.shape == (4, 150, 150, 3)
    assert torch.equal(together, one_by_one)
    # Tensor images give the same chips as numpy ones, and the aligner class is one align_to_chip call.
    as_tensors = [torch.from_numpy(im) for im in images]
    assert torch.equal(ChipAligner()(as_tensors, image_index, landmarks), together)



def test_only_the_levels_faces_need_are_built(fixture_faces: dict) -> None:
    """An image no face comes from gets no pyramid, another only the levels its faces need; chips unchanged."""
    from influvision.faces.align import _pack_pyramids

    images = [fixture_faces["images"][i] for i in (0, 3, 11)]
    landmarks = _template_in_image(fixture_faces["affines"][[3]])
    in_batch = align_to_chip(images, torch.tensor([1]), landmarks)
    alone = align_to_chip([images[1]], torch.tensor([0]), landmarks)
    assert torch.equal(in_batch, alone)
    tensors = [torch.from_numpy(im) for im in images]
    h, w = images[1].shape[:2]
    pyr = _pack_pyramids(tensors, 150, [0, 1, 0])
    assert pyr.buffer.shape == (h * w, 3) and pyr.n_levels.tolist() == [1, 1, 1]
    assert pyr.height[:, 0].tolist() == [0, h, 0]
    buffer = _pack_pyramids(tensors, 150, [0, 2, 0]).buffer
    assert buffer.shape[0] == h * w + ((h + 1) // 2) * ((w + 1) // 2)
    torch.testing.assert_close(buffer[:h * w].view(h, w, 3), tensors[1].float(), atol=0, rtol=0)


def test_coarse_levels_built_around_the_faces_give_the_whole_pyramids_values(monkeypatch) -> None:
    """Large faces anywhere (centre, corners, edges, partly outside) on a noise image, where any edge effect
    of building the coarser levels from a crop would show: the chips equal those of whole-image pyramids."""
    from influvision.faces import align as align_module

    gen = torch.Generator().manual_seed(3)
    image = (torch.rand(1500, 2300, 3, generator=gen) * 255).to(torch.uint8)
    faces = []  # (chip scale, x, y) of the chip's top-left corner; scale 6 -> level 2, 20 -> level 4
    for scale, x, y in [(3.0, 900, 600), (6.0, 40, 30), (6.0, 2300 - 6 * 149 - 3, 1500 - 6 * 149 - 1),
                        (20.0, -500, 200), (2.5, 1200, -100), (4.5, 1777, 333), (1.0, 50, 1300)]:
        faces.append([[scale, 0.0, float(x)], [0.0, scale, float(y)]])
    affines = torch.tensor(faces)
    index = torch.zeros(len(faces), dtype=torch.long)
    calls = []
    whole = align_module._pack_pyramids

    def spy(images, size, levels, regions=None):
        calls.append(regions)
        return whole(images, size, levels, regions)

    monkeypatch.setattr(align_module, "_pack_pyramids", spy)
    cropped = sample_chips([image], index, affines)
    # Only the large faces in the middle: the levels they need are built from a crop of the image.
    middle = sample_chips([image], index[:1], affines[:1])
    monkeypatch.setattr(align_module, "_pack_pyramids", lambda images, size, levels, regions=None:
                        whole(images, size, levels, None))
    assert torch.equal(cropped, sample_chips([image], index, affines))
    assert torch.equal(middle, sample_chips([image], index[:1], affines[:1]))
    assert calls[1][0] is not None
    pyr = whole([image], 150, [2], calls[1])
    assert pyr.row[0, 1] < (2300 + 1) // 2 and pyr.rows[0, 1] < (1500 + 1) // 2  # really a crop

def test_empty_and_bad_input() -> None:
    image = np.zeros((40, 50, 3), dtype=np.uint8)
    empty = align_to_chip([image], torch.zeros(0, dtype=torch.long), torch.zeros(0, 5, 2))
    assert empty.shape == (0, 150, 150, 3) and empty.dtype == torch.uint8
    assert align_to_chip([], torch.zeros(0, dtype=torch.long), torch.zeros(0, 5, 2), size=112).shape == (0, 112, 112, 3)
    with pytest.raises(ShapeError):
        align_to_chip([image], torch.zeros(1, dtype=torch.long), torch.zeros(1, 4, 2))
    with pytest.raises(ShapeError):
        align_to_chip([image.astype(np.float32)], torch.zeros(1, dtype=torch.long), torch.rand(1, 5, 2) * 30)


def test_template_scales_and_outside_is_black(fixture_faces: dict) -> None:
    t160 = template_for_size(160)
    torch.testing.assert_close(t160, (DLIB_MTCNN_TEMPLATE + 0.5) * 160 / 150 - 0.5)
    # A face half outside the image: the chip's outside part is exactly black, its inside part is not.
    image = fixture_faces["images"][0]
    lm = _template_in_image(fixture_faces["affines"][:1]) - torch.tensor([250.0, 0.0])
    chip = align_to_chip([image], torch.zeros(1, dtype=torch.long), lm)[0]
    assert (chip[:, :30] == 0).all()
    assert chip[:, 120:].float().mean() > 30


def test_device_matches_cpu(fixture_faces: dict, device: str) -> None:
    picks = [0, 1]
    images = [torch.from_numpy(fixture_faces["images"][i]).to(device) for i in picks]
    lm = _template_in_image(fixture_faces["affines"][picks])
    chips = align_to_chip(images, torch.arange(2, device=device), lm.to(device))
    assert chips.device.type == device
    cpu = align_to_chip([fixture_faces["images"][i] for i in picks], torch.arange(2), lm)
    # Float rounding differs between devices; a truncation may then fall one level apart.
    assert (chips.cpu().int() - cpu.int()).abs().max() <= 1


def _mtcnn_landmarks(images: list[np.ndarray], rects: list[list[int]]) -> torch.Tensor:
    """facenet-pytorch MTCNN's 5 points of the detection overlapping each dlib rect most."""
    facenet_pytorch = pytest.importorskip("facenet_pytorch")
    # The fixture faces are all > 140 px: a large minimum face skips the fine, slow pyramid scales.
    mtcnn = facenet_pytorch.MTCNN(keep_all=True, min_face_size=80, device="cpu")
    out = []
    for img, rect in zip(images, rects, strict=True):
        boxes, _, points = mtcnn.detect(Image.fromarray(img), landmarks=True)
        boxes = torch.as_tensor(np.asarray(boxes, dtype=np.float64))
        r = torch.tensor(rect, dtype=torch.float64)
        lt = torch.maximum(boxes[:, :2], r[:2])
        rb = torch.minimum(boxes[:, 2:], r[2:])
        inter = (rb - lt).clamp_min(0).prod(1)
        out.append(np.asarray(points[int(inter.argmax())], dtype=np.float32))
    return torch.from_numpy(np.stack(out))


@pytest.mark.slow
def test_mtcnn_alignment_agrees_with_dlib_descriptors(fixture_faces: dict, dlib_fixtures: Path) -> None:
    from influvision.faces.embed import load_embedder

    entries = fixture_faces["entries"]
    landmarks = _mtcnn_landmarks(fixture_faces["images"], [e["detector_rect_ltrb"] for e in entries])
    chips = align_to_chip(fixture_faces["images"], torch.arange(len(entries)), landmarks)
    embedder = load_embedder("dlib-resnet-v1", device="cpu")
    with torch.no_grad():
        ours = embedder.embed(chips).double()
    ref = torch.from_numpy(np.load(dlib_fixtures / "descriptors.npy")).double()
    cos = torch.nn.functional.cosine_similarity(ours, ref, dim=1)
    # Measured 0.99658 mean, 0.99476 min (plain bilinear, no pyramid: 0.99541 / 0.98947).
    assert cos.mean() >= 0.99
    assert cos.min() >= 0.985

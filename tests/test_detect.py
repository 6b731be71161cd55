"""The batched MTCNN detector against facenet-pytorch's MTCNN and dlib's landmarks, on the shared photos."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torchvision.ops import box_iou

from influvision.errors import ShapeError
from influvision.faces import detect as detect_module
from influvision.faces.detect import FaceDetector
from influvision.types import Faces

SCENES = ["bbt2.jpg", "bbt4.jpg", "bbt5.jpg", "couple.jpg", "elton_john_with_cher.jpg", "group2.jpg",
          "obama_and_biden.jpg"]
# Small and large photos, grey face chips, two faces, overlapping detections, a border false positive.
FACE_PHOTOS = ["ben_affleck/1.jpg", "elton_john/3.jpg", "madonna/3.jpg", "mindy_kaling/7.jpg",
               "kunal_nayyar/2.png", "melissa_rauch/2.png", "katy_perry/2.jpg", "george_clooney/1.jpg"]
# Photos of things without people (FlickrLogos scenes), checked by eye.
NO_FACE = ["logos/scenes/fl27_2073826793.jpg", "logos/scenes/fl27_128500912.jpg"]
NO_DOWNSCALE = 4096  # the two 2000+ px scenes are compared with facenet-pytorch at full size


def _rgb(path: Path) -> np.ndarray:
    return np.array(Image.open(path).convert("RGB"))  # writable, so torch.from_numpy takes it as is


@pytest.fixture(scope="module")
def photos(shared_data: Path) -> dict[str, np.ndarray]:
    """The comparison selection, name -> (H, W, 3) uint8 RGB."""
    out = {f"scenes/{n}": _rgb(shared_data / "scenes" / n) for n in SCENES}
    out.update({f"faces/{n}": _rgb(shared_data / "faces" / n) for n in FACE_PHOTOS})
    return out


@pytest.fixture(scope="module")
def reference(photos: dict[str, np.ndarray]) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """facenet-pytorch's MTCNN on each photo alone: boxes (n, 4), probabilities (n,), landmarks (n, 5, 2)."""
    from facenet_pytorch import MTCNN

    mtcnn = MTCNN(keep_all=True, device="cpu")
    out = {}
    for name, img in photos.items():
        boxes, probs, points = mtcnn.detect(img, landmarks=True)
        if boxes is None:
            out[name] = (np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros((0, 5, 2), np.float32))
        else:
            out[name] = (boxes.astype(np.float32), probs.astype(np.float32), points.astype(np.float32))
    return out


@pytest.fixture(scope="module")
def ours_alone(photos: dict[str, np.ndarray]) -> dict[str, Faces]:
    """Our default detector (zero border) on each photo alone, at full size."""
    det = FaceDetector("cpu", max_side=NO_DOWNSCALE)
    return {name: det.detect([img]) for name, img in photos.items()}


def _match(ref_boxes: np.ndarray, ours: Faces) -> tuple[np.ndarray, np.ndarray]:
    """For each reference box, the index of our best-overlapping box and that IoU."""
    iou = box_iou(torch.from_numpy(ref_boxes), ours.boxes.cpu())
    best = iou.max(dim=1)
    return best.indices.numpy(), best.values.numpy()


def test_stretch_border_reproduces_facenet_pytorch(photos, reference):
    """With facenet-pytorch's crop handling, the batched driver gives its results to float rounding."""
    det = FaceDetector("cpu", max_side=NO_DOWNSCALE, border="stretch")
    names = list(photos)
    found = det.detect([photos[n] for n in names])
    total, worst_box, worst_lm, worst_p = 0, 0.0, 0.0, 0.0
    for i, name in enumerate(names):
        ref_boxes, ref_probs, ref_points = reference[name]
        ours = found.for_image(i)
        assert len(ours) == len(ref_boxes), name
        if len(ours) == 0:
            continue
        k, iou = _match(ref_boxes, ours)
        assert len(set(k.tolist())) == len(k), name
        worst_box = max(worst_box, float(np.abs(ours.boxes[k].numpy() - ref_boxes).max()))
        worst_lm = max(worst_lm, float(np.abs(ours.landmarks[k].numpy() - ref_points).max()))
        worst_p = max(worst_p, float(np.abs(ours.scores[k].numpy() - ref_probs).max()))
        total += len(ours)
    assert total >= 30  # 7 scenes and 8 photos: 24 faces in scenes alone
    assert worst_box < 0.05 and worst_lm < 0.05 and worst_p < 1e-4, (worst_box, worst_lm, worst_p)


def test_zero_border_agrees_with_facenet_away_from_the_border(photos, reference, ours_alone):
    """The default zero border changes only faces whose crops reach past the image."""
    compared = 0
    for name, img in photos.items():
        h, w = img.shape[:2]
        ref_boxes, ref_probs, ref_points = reference[name]
        ours = ours_alone[name]
        # Faces whose square crop, grown by a third, stays inside the image never saw the border.
        side = np.maximum(ref_boxes[:, 2] - ref_boxes[:, 0], ref_boxes[:, 3] - ref_boxes[:, 1])
        cx, cy = (ref_boxes[:, 0] + ref_boxes[:, 2]) / 2, (ref_boxes[:, 1] + ref_boxes[:, 3]) / 2
        half = side * 2 / 3
        inside = (cx - half >= 0) & (cy - half >= 0) & (cx + half <= w) & (cy + half <= h)
        if not inside.any():
            continue
        k, iou = _match(ref_boxes[inside], ours)
        assert (iou > 0.98).all(), (name, iou)
        np.testing.assert_allclose(ours.boxes[k].numpy(), ref_boxes[inside], atol=0.05, err_msg=name)
        np.testing.assert_allclose(ours.landmarks[k].numpy(), ref_points[inside], atol=0.05, err_msg=name)
        np.testing.assert_allclose(ours.scores[k].numpy(), ref_probs[inside], atol=1e-4, err_msg=name)
        compared += int(inside.sum())
    assert compared >= 20


def test_default_counts_match_facenet_on_scenes(photos, reference, ours_alone):
    """Same number of faces per scene; every face matched within 4 px, except the one face cut by the
    left border of bbt2 (zero padding moves its box, IoU still above 0.6)."""
    worst = 0.0
    for name in (f"scenes/{n}" for n in SCENES):
        ref_boxes = reference[name][0]
        ours = ours_alone[name]
        assert len(ours) == len(ref_boxes), name
        k, iou = _match(ref_boxes, ours)
        assert len(set(k.tolist())) == len(k), name
        err = np.abs(ours.boxes[k].numpy() - ref_boxes).max(axis=1)
        cut = ref_boxes[:, 0] < 0
        assert (err[~cut] <= 4).all() and (iou[cut] > 0.6).all(), (name, err, iou)
        worst = max(worst, float(err[~cut].max()))
    assert worst < 4


def test_zero_border_finds_landmarks_on_tight_face_chips(dlib_fixtures: Path):
    """On 150x150 face chips (the face fills the image), zero padding puts the eyes where dlib does;
    facenet-pytorch's stretched crops put them off by a large fraction of the eye distance."""
    entries = json.loads((dlib_fixtures / "index.json").read_text())["entries"]
    chips, eyes = [], []
    for e in entries:
        affine = np.vstack([np.array(e["chip_to_image_affine_2x3"]), [0, 0, 1]])
        pts = np.array(e["landmarks5_xy"], dtype=np.float64)
        # dlib's 5 points: 0/1 the image-right eye's corners, 2/3 the image-left eye's.
        img_eyes = np.stack([pts[2:4].mean(0), pts[0:2].mean(0)])
        inv = np.linalg.inv(affine)
        eyes.append(img_eyes @ inv[:2, :2].T + inv[:2, 2])
        chips.append(_rgb(dlib_fixtures / e["chip"]))
    eyes_t = torch.tensor(np.stack(eyes), dtype=torch.float32)  # (12, 2, 2)

    def eye_errors(border: str) -> torch.Tensor:
        found = FaceDetector("cpu", border=border).detect(chips)
        assert torch.equal(torch.unique(found.image_index), torch.arange(len(chips)))
        err = (found.landmarks[:, :2] - eyes_t[found.image_index]).norm(dim=2).max(dim=1).values
        iod = (eyes_t[:, 1] - eyes_t[:, 0]).norm(dim=1)[found.image_index]
        # the face nearest dlib's eyes in each chip
        rel = err / iod
        return torch.stack([rel[found.image_index == i].min() for i in range(len(chips))])

    zero, stretch = eye_errors("zero"), eye_errors("stretch")
    assert zero.max() < 0.12, zero
    assert stretch.median() > 2 * zero.median(), (zero, stretch)


def test_eyes_agree_with_dlib_on_source_photos(dlib_fixtures: Path):
    entries = json.loads((dlib_fixtures / "index.json").read_text())["entries"]
    det = FaceDetector("cpu", min_face_size=60)  # portraits: the smallest face is 155 px wide
    for e in entries:
        pts = np.array(e["landmarks5_xy"], dtype=np.float32)
        eyes = torch.from_numpy(np.stack([pts[2:4].mean(0), pts[0:2].mean(0)]))
        found = det.detect_one(_rgb(dlib_fixtures / e["source_copy"]))
        err = (found.landmarks[:, :2] - eyes).norm(dim=2).max(dim=1).values.min()
        assert err / (eyes[1] - eyes[0]).norm() < 0.12, e["source_copy"]


def test_one_call_over_mixed_sizes_equals_one_image_at_a_time(photos, ours_alone):
    names = list(photos)
    batch = FaceDetector("cpu", max_side=NO_DOWNSCALE).detect([photos[n] for n in names])
    assert torch.all(batch.image_index[1:] >= batch.image_index[:-1])
    for i, name in enumerate(names):
        got, alone = batch.for_image(i), ours_alone[name]
        assert len(got) == len(alone), name
        torch.testing.assert_close(got.boxes, alone.boxes, atol=1e-3, rtol=0)
        torch.testing.assert_close(got.landmarks, alone.landmarks, atol=1e-3, rtol=0)
        torch.testing.assert_close(got.scores, alone.scores, atol=1e-5, rtol=0)


def test_chunked_batches_of_repeated_sizes_equal_single_images(shared_data: Path, monkeypatch):
    """Same-size images split over several P-Net calls, different sizes padded onto one canvas, and
    R-/O-Net inputs split in small chunks: the same faces as one image at a time."""
    a = _rgb(shared_data / "faces/ben_affleck/1.jpg")  # 115 x 170: 69 x 103 px at the first scale
    b = _rgb(shared_data / "faces/elton_john/3.jpg")  # 236 x 353, two faces
    det = FaceDetector("cpu")
    alone = {"a": det.detect([a]), "b": det.detect([b])}
    monkeypatch.setattr(detect_module, "_PNET_MAX_PIXELS", 16000)  # two 69 x 103 images a call at most
    monkeypatch.setattr(detect_module, "_PNET_MAX_WASTE_CPU", 0.9)  # mix sizes on one canvas, as on a GPU
    monkeypatch.setattr(detect_module, "_RNET_CHUNK", 7)
    monkeypatch.setattr(detect_module, "_ONET_CHUNK", 2)
    order = ["a", "a", "b", "a", "b", "a", "a"]
    batch = det.detect([a if k == "a" else b for k in order])
    assert len(batch) == sum(len(alone[k]) for k in order) == 9
    for i, k in enumerate(order):
        torch.testing.assert_close(batch.for_image(i).boxes, alone[k].boxes, atol=1e-3, rtol=0)
        torch.testing.assert_close(batch.for_image(i).landmarks, alone[k].landmarks, atol=1e-3, rtol=0)


@pytest.mark.parametrize("step", [1, 32])
def test_pnet_on_a_shared_canvas_scores_every_cell_as_alone(shared_data: Path, step: int):
    """Padding a smaller image onto a larger canvas (and, with ``canvas_step``, that canvas onto a fixed
    one) changes none of its P-Net cells, its last row and column included (with threshold 0 every cell is
    a candidate)."""
    det = FaceDetector("cpu", thresholds=(0.0, 0.7, 0.7), canvas_step=step)
    a = torch.from_numpy(_rgb(shared_data / "faces/ben_affleck/1.jpg")).permute(2, 0, 1).float()
    b = torch.from_numpy(_rgb(shared_data / "faces/elton_john/3.jpg")).permute(2, 0, 1).float()
    tables = detect_module._area_tables([a, b])
    piece_a, piece_b = ((170, 115), [0]), ((353, 236), [1])
    with torch.inference_mode():
        for scale in (0.6, 0.6 * 0.709, 0.6 * 0.709**2):  # odd and even sizes after the first conv
            shared = detect_module._pnet_candidates(
                det._pnet_chunk(det._nets.pnet, [piece_b, piece_a], tables, scale, 0))
            for piece in (piece_a, piece_b):
                alone = detect_module._pnet_candidates(det._pnet_chunk(det._nets.pnet, [piece], tables, scale, 0))
                mine = shared[3] == piece[1][0]
                assert mine.sum() == alone[1].numel() > 0
                torch.testing.assert_close(shared[0][mine], alone[0], atol=0, rtol=0)
                torch.testing.assert_close(shared[1][mine], alone[1], atol=1e-5, rtol=0)
                torch.testing.assert_close(shared[2][mine], alone[2], atol=1e-5, rtol=0)


def test_faces_batch_columns_and_landmark_order(photos, ours_alone):
    faces = ours_alone["scenes/bbt4.jpg"]
    assert len(faces) == 6
    assert faces.image_index.dtype == torch.long and faces.boxes.dtype == torch.float32
    assert faces.scores.dtype == torch.float32 and faces.landmarks.shape == (6, 5, 2)
    assert (faces.scores > 0.7).all() and (faces.scores[:-1] >= faces.scores[1:]).all()
    lm = faces.landmarks
    assert (lm[:, 0, 0] < lm[:, 1, 0]).all() and (lm[:, 3, 0] < lm[:, 4, 0]).all()  # left = smaller x
    assert (lm[:, :2, 1].max(dim=1).values < lm[:, 3:, 1].min(dim=1).values).all()  # eyes above the mouth
    inside = ((lm >= faces.boxes[:, None, :2]) & (lm <= faces.boxes[:, None, 2:])).all()
    assert inside


def test_no_face_and_degenerate_images(shared_data: Path):
    det = FaceDetector("cpu")
    assert len(det.detect([])) == 0 and det.detect([]).device == torch.device("cpu")
    negatives = [_rgb(shared_data / p) for p in NO_FACE]
    blank = np.full((480, 640, 3), 127, np.uint8)
    tiny = np.asarray(Image.open(shared_data / "faces/ben_affleck/1.jpg").convert("RGB").resize((10, 10)))
    empty = np.zeros((0, 0, 3), np.uint8)
    for images in ([blank], negatives, [tiny], [np.zeros((1, 1, 3), np.uint8)], [empty]):
        out = det.detect(images)
        assert len(out) == 0 and out.landmarks.shape == (0, 5, 2)
    # Degenerate images next to a real one change nothing for it.
    face = _rgb(shared_data / "faces/ben_affleck/1.jpg")
    mixed = det.detect([tiny, face, empty, blank])
    alone = det.detect([face])
    assert len(alone) == 1 and torch.equal(mixed.image_index, torch.ones_like(alone.image_index))
    torch.testing.assert_close(mixed.boxes, alone.boxes, atol=1e-3, rtol=0)


def test_huge_image_is_detected_downscaled_in_original_pixels(photos, ours_alone):
    small = photos["scenes/bbt4.jpg"]  # 710 x 473
    huge = cv2.resize(small, (6000, 4000), interpolation=cv2.INTER_CUBIC)
    sx, sy = 6000 / small.shape[1], 4000 / small.shape[0]
    found = FaceDetector("cpu", max_side=1600).detect([huge])
    expected = ours_alone["scenes/bbt4.jpg"]
    assert len(found) == len(expected) == 6
    scale = torch.tensor([sx, sy, sx, sy])
    k, iou = _match((expected.boxes * scale).numpy(), found)
    assert len(set(k.tolist())) == 6 and (iou > 0.8).all(), iou
    # Landmarks within 8 % of the face width of the rescaled small-image ones.
    lm_small = (expected.landmarks + 0.5) * torch.tensor([sx, sy]) - 0.5
    width = found.boxes[k, 2] - found.boxes[k, 0]
    err = (found.landmarks[k] - lm_small).norm(dim=2).max(dim=1).values / width
    assert (err < 0.08).all(), err
    assert found.boxes[:, 2].max() > 1600 and found.boxes[:, 3].max() > 1600 * 473 / 710  # not left downscaled


def test_greyscale_and_input_layouts(shared_data: Path):
    det = FaceDetector("cpu")
    pil = Image.open(shared_data / "faces/jennifer_aniston/2.jpg").convert("RGB")
    colour = det.detect_one(np.asarray(pil))
    grey = np.asarray(pil.convert("L"))
    grey_rgb = np.asarray(pil.convert("L").convert("RGB"))
    out = det.detect([grey_rgb, grey, torch.from_numpy(grey_rgb.copy()), torch.from_numpy(grey_rgb.copy()).permute(2, 0, 1)])
    assert len(colour) == 1 and len(out) == 4
    assert box_iou(out.boxes[:1], colour.boxes).item() > 0.85
    for i in range(1, 4):
        torch.testing.assert_close(out.boxes[i], out.boxes[0])
        torch.testing.assert_close(out.landmarks[i], out.landmarks[0])
    with pytest.raises(ShapeError):
        det.detect([grey_rgb.astype(np.float32)])
    with pytest.raises(ShapeError):
        det.detect([np.zeros((50, 50, 4), np.uint8)])
    with pytest.raises(ShapeError):
        det.detect([torch.zeros(2, 50, 50, 3, dtype=torch.uint8)])
    with pytest.raises(ValueError):
        FaceDetector(border="mirror")  # type: ignore[arg-type]


def test_device_placement_and_weights_loaded_once(shared_data: Path, device: str):
    img = _rgb(shared_data / "scenes/elton_john_with_cher.jpg")
    det = FaceDetector(device)
    on_device = det.detect([torch.from_numpy(img.copy()).to(device)])
    assert on_device.device.type == torch.device(device).type and len(on_device) == 2
    cpu = FaceDetector("cpu").detect([img])
    torch.testing.assert_close(on_device.boxes.cpu(), cpu.boxes, atol=0.05, rtol=0)
    torch.testing.assert_close(on_device.landmarks.cpu(), cpu.landmarks, atol=0.05, rtol=0)
    assert det._nets is FaceDetector(device)._nets
    assert next(det._nets.onet.parameters()).device.type == torch.device(device).type


def test_min_face_area_nms_keeps_best_of_nested_boxes():
    boxes = torch.tensor([[0, 0, 99, 99], [10, 10, 49, 49], [60, 60, 159, 159], [300, 0, 340, 40],
                          [0, 0, 99, 99]], dtype=torch.float32)
    scores = torch.tensor([0.9, 0.95, 0.8, 0.7, 0.99])
    groups = torch.tensor([0, 0, 0, 0, 1])
    keep = detect_module._nms_min(boxes, scores, groups, 0.7)
    # box 1 lies inside box 0 (overlap 1 of the smaller) and wins; box 0 goes; box 2 overlaps box 0 by
    # 0.16 only; box 3 is apart; box 4 is in another image.
    assert keep.tolist() == [4, 1, 2, 3]
    assert detect_module._nms_min(boxes[:0], scores[:0], groups[:0], 0.7).numel() == 0


def test_pyramid_resizes_from_area_tables_equal_area_interpolation_bit_for_bit():
    from influvision.faces.detect import _area_resize, _area_tables

    gen = torch.Generator().manual_seed(7)
    for h, w in ((333, 500), (97, 131), (1200, 1600)):
        images = [torch.randint(0, 256, (3, h, w), generator=gen).float() for _ in range(2)]
        tables = _area_tables(images)
        for scale in (0.6, 0.6 * 0.709**3, 0.05):
            out = (int(h * scale + 1), int(w * scale + 1))
            mine = _area_resize(tables, torch.tensor([1, 0]), (h, w), out)
            ref = F.interpolate(torch.stack(images[::-1]), size=out, mode="area")
            assert mine.shape == ref.shape and torch.equal(mine, ref)


def test_fixed_canvases_change_no_detection(photos):
    """Canvases padded to multiples of 32 px and batches to powers of two (the CUDA default) find the same
    faces as exact canvases, in one mixed-size batch."""
    images = list(photos.values())
    exact = FaceDetector("cpu", canvas_step=1).detect(images)
    fixed_det = FaceDetector("cpu", canvas_step=32)
    assert FaceDetector("cpu").canvas_step == 1
    fixed = fixed_det.detect(images)
    assert fixed.image_index.tolist() == exact.image_index.tolist() and len(exact) >= 30
    torch.testing.assert_close(fixed.boxes, exact.boxes, atol=1e-3, rtol=0)
    torch.testing.assert_close(fixed.landmarks, exact.landmarks, atol=1e-3, rtol=0)
    with pytest.raises(ValueError, match="canvas_step"):
        FaceDetector("cpu", canvas_step=0)


def _dimmed(img: np.ndarray, brightness: float) -> np.ndarray:
    """A dim venue: every pixel times ``brightness``, then JPEG quality 70."""
    import io

    buf = io.BytesIO()
    Image.fromarray((img.astype(np.float32) * brightness).round().astype(np.uint8)).save(buf, "JPEG", quality=70)
    return _rgb(buf)


@pytest.mark.parametrize("name", ["jim_parsons/1.png", "johnny_galecki/3.png"])
def test_a_dim_photo_is_also_searched_brightened(shared_data: Path, name: str):
    img = _rgb(shared_data / "faces" / name)
    clean = FaceDetector().detect_one(img)
    dim = _dimmed(img, 0.15)
    assert dim.mean() < detect_module.DIM_MEAN and len(clean) == 1
    assert len(FaceDetector(dim_mean=None).detect_one(dim)) == 0  # the face's contrast is a few grey levels
    found = FaceDetector().detect_one(dim)
    assert len(found) == 1 and box_iou(found.boxes, clean.boxes).item() >= 0.6


def test_faces_the_dim_original_shows_keep_their_own_boxes(shared_data: Path):
    # Faces found in the dim photo and in its brightened copy are the original's detections, unchanged; the
    # copy only adds faces, and a bright photo in the same batch is untouched.
    # In bbt2 at 30 % brightness the brightened copy scores one of the faces higher than the original does.
    scene, bright = _rgb(shared_data / "scenes" / "bbt2.jpg"), _rgb(shared_data / "scenes" / "couple.jpg")
    dim = _dimmed(scene, 0.3)
    assert dim.mean() < detect_module.DIM_MEAN < bright.mean()
    alone = FaceDetector(dim_mean=None).detect([dim, bright])
    both = FaceDetector().detect([dim, bright])
    for i in (0, 1):
        a, b = alone.boxes[alone.image_index == i], both.boxes[both.image_index == i]
        assert len(a) and all((b == box).all(dim=1).any() for box in a)
    assert len(both.boxes[both.image_index == 1]) == len(alone.boxes[alone.image_index == 1])

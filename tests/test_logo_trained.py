"""Synthetic logo sets, the trained YOLO logo detector, its storage in the gallery and its CLI (CPU, tiny)."""

from __future__ import annotations

import hashlib
import json
import logging
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from influvision.errors import GalleryError, ShapeError
from influvision.gallery import Gallery
from influvision.logos.references import LogoReference, load_reference
from influvision.logos.synth import SynthError, class_names, write_dataset

BRANDS = ("fedex", "nike", "bmw")


@pytest.fixture(scope="module")
def ref_paths(shared_data: Path) -> dict[str, Path]:
    return {b: shared_data / "logos" / "refs" / f"{b}.png" for b in BRANDS}


@pytest.fixture(scope="module")
def refs(ref_paths: dict[str, Path]) -> list[LogoReference]:
    return [load_reference(b, p) for b, p in ref_paths.items()]


@pytest.fixture(scope="module")
def backgrounds(shared_data: Path) -> list[np.ndarray]:
    files = sorted((shared_data / "scenes").glob("*.jpg"))[:3]
    return [np.asarray(Image.open(f).convert("RGB")) for f in files]


@pytest.fixture(scope="module")
def photo(shared_data: Path) -> np.ndarray:
    return np.asarray(Image.open(shared_data / "logos" / "scenes" / "fl27_213783134.jpg").convert("RGB"))


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
            and p.name != "data.yaml"}


# ---- synthetic set ---------------------------------------------------------------------------------------

def test_synthetic_set_is_deterministic_and_labels_fit(refs, backgrounds, tmp_path):
    a = write_dataset(refs, tmp_path / "a", n_train=10, n_val=3, backgrounds=backgrounds, image_size=160, seed=3)
    # Several rendering processes write the same files as one.
    write_dataset(refs, tmp_path / "b", n_train=10, n_val=3, backgrounds=backgrounds, image_size=160, seed=3,
                  workers=3)
    write_dataset(refs, tmp_path / "c", n_train=10, n_val=3, backgrounds=backgrounds, image_size=160, seed=4)
    same, other = _tree(tmp_path / "a"), _tree(tmp_path / "b")
    assert same == other
    assert same != _tree(tmp_path / "c")
    assert "names:\n  0: bmw\n  1: fedex\n  2: nike" in a.read_text()

    n_boxes = 0
    for split, count in (("train", 10), ("val", 3)):
        images = sorted((tmp_path / "a" / "images" / split).glob("*.jpg"))
        assert len(images) == count
        for img_path in images:
            w, h = Image.open(img_path).size
            assert max(w, h) == 160
            for line in (tmp_path / "a" / "labels" / split / f"{img_path.stem}.txt").read_text().splitlines():
                c, cx, cy, bw, bh = line.split()
                cx, cy, bw, bh = map(float, (cx, cy, bw, bh))
                assert int(c) in (0, 1, 2)
                # Inside the picture, and at least 12 px on the longer side.
                assert cx - bw / 2 >= 0 and cx + bw / 2 <= 1
                assert cy - bh / 2 >= 0 and cy + bh / 2 <= 1
                assert max(bw * w, bh * h) >= 12
                n_boxes += 1
    assert n_boxes >= 13


def test_synthetic_set_without_backgrounds_and_bad_input(refs, tmp_path):
    yaml = write_dataset(refs[:1], tmp_path / "p", n_train=4, n_val=1, image_size=96, seed=0)
    assert yaml.exists() and len(list((tmp_path / "p" / "images" / "train").glob("*.jpg"))) == 4
    assert class_names(refs[:1]) == ["fedex"]
    with pytest.raises(SynthError, match="at least one brand"):
        write_dataset([], tmp_path / "x", n_train=1, n_val=1)
    with pytest.raises(SynthError, match=r"backgrounds\[0\]"):
        write_dataset(refs, tmp_path / "x", n_train=1, n_val=1, backgrounds=[np.zeros((8, 8), np.uint8)])


# ---- training, storage, inference ------------------------------------------------------------------------

def _need_ultralytics() -> None:
    """Skip when ultralytics is missing; import it the way influvision does (settings kept in a temp dir)."""
    from influvision.logos.trained import TrainedDetectorError, require_ultralytics

    try:
        require_ultralytics()
    except TrainedDetectorError:
        pytest.skip("ultralytics is not installed (influvision[yolo])")


def _tiny_train(refs, backgrounds, seed=0):
    from influvision.logos.trained import train_detector

    torch.manual_seed(0)
    return train_detector(refs, backgrounds=backgrounds, n_images=24, val_fraction=0.15, epochs=1, imgsz=128,
                          batch=8, seed=seed, device="cpu")


@pytest.fixture(scope="module")
def trained(refs, backgrounds):
    _need_ultralytics()
    return _tiny_train(refs, backgrounds)


@pytest.fixture
def gallery(tmp_path, ref_paths):
    gal = Gallery(tmp_path / "g.db", device="cpu")
    for b, p in ref_paths.items():
        assert all(s.ok for s in gal.add_brand(b, [p]))
    yield gal
    gal.close()


def test_training_is_reproducible(trained, refs, backgrounds):
    assert trained.brands == ["bmw", "fedex", "nike"]
    again = _tiny_train(refs, backgrounds)
    # Same seed, same weights up to the order of multi-threaded float sums on the CPU (not bit-exact).
    a, b = trained.blob.state_dict(), again.blob.state_dict()
    assert a.keys() == b.keys()
    worst = max(float((a[k].float() - b[k].float()).abs().max()) for k in a)
    assert worst < 1e-3, worst
    cfg = trained.blob.config()
    assert cfg["nc"] == 3 and cfg["names"] == trained.brands and cfg["imgsz"] == 128
    assert cfg["model"] == "yolov8n.yaml" and "yaml" not in cfg  # rebuilt from the packaged yaml by name
    from influvision.logos.trained import DetectorBlob

    # The same weights and config give the same bytes (the safetensors header's keys are sorted).
    assert {DetectorBlob.build(trained.blob.state_dict(), cfg).sha256 for _ in range(4)} == {trained.blob.sha256}


def test_detect_contract(trained, photo, device):
    from influvision.logos.trained import TrainedLogoDetector

    det = TrainedLogoDetector(trained.blob, device=device, min_score=0.0, max_det=7)
    assert det.brands == ["bmw", "fedex", "nike"]
    out = det.detect([photo, photo[:120, :300].copy()])
    assert out.boxes.device.type == torch.device(device).type
    assert out.boxes.dtype == torch.float32 and out.image_index.dtype == torch.long and out.brand.dtype == torch.long
    assert set(out.columns) == {"inliers", "agreement"}
    assert bool((out.columns["inliers"] == 0).all()) and bool((out.columns["agreement"] == 0).all())
    for i, (h, w) in enumerate([photo.shape[:2], (120, 300)]):
        sel = out.for_image(i)
        assert 0 < len(sel) <= 7
        b = sel.boxes.cpu()
        assert bool((b[:, 0] >= 0).all() and (b[:, 1] >= 0).all() and (b[:, 2] <= w).all() and (b[:, 3] <= h).all())
        assert bool((b[:, 2] >= b[:, 0]).all())
        s = sel.scores.cpu()
        assert bool(((s >= 0) & (s <= 1)).all()) and bool((s[:-1] >= s[1:]).all())
    assert bool((out.brand >= 0).all() and (out.brand < 3).all())
    # A strict threshold drops everything an untrained-for-long model gives; empty input gives M = 0.
    assert len(TrainedLogoDetector(trained.blob, min_score=1.01).detect([photo])) == 0
    empty = det.detect([])
    assert len(empty) == 0 and set(empty.columns) == {"inliers", "agreement"}
    with pytest.raises(ShapeError, match=r"images\[0\]"):
        det.detect([photo[..., 0]])


def test_gallery_round_trip_and_tampering(trained, gallery, photo):
    from influvision.logos.trained import DetectorBlob, TrainedDetectorError, TrainedLogoDetector

    assert gallery.load_detector() is None
    blob = trained.blob
    gallery.save_detector(blob.data, blob.sha256, brands=trained.brands, metrics={"x": 1.0}, use=True)
    stored = Gallery(gallery.path, device="cpu").load_detector()
    assert stored is not None and stored.use and stored.metrics == {"x": 1.0}
    assert stored.brands == trained.brands and stored.sha256 == blob.sha256
    direct = TrainedLogoDetector(blob, min_score=0.01).detect([photo])
    loaded = TrainedLogoDetector(DetectorBlob(stored.data, stored.sha256), min_score=0.01).detect([photo])
    assert torch.equal(direct.boxes, loaded.boxes) and torch.equal(direct.scores, loaded.scores)
    assert torch.equal(direct.brand, loaded.brand)

    bad = bytearray(stored.data)
    bad[-5] ^= 0xFF
    with pytest.raises(TrainedDetectorError, match="fails its checksum"):
        TrainedLogoDetector(DetectorBlob(bytes(bad), stored.sha256))
    # A blob re-hashed after tampering with the weights still has to fit the stored config.
    from safetensors.torch import save

    sd = DetectorBlob(stored.data, stored.sha256).state_dict()
    del sd["model.0.conv.weight"]
    meta = {"format": "influvision-logo-yolo-v1", "config": json.dumps(blob.config())}
    data = save(sd, metadata=meta)
    with pytest.raises(TrainedDetectorError, match="do not fit"):
        TrainedLogoDetector(DetectorBlob(data, hashlib.sha256(data).hexdigest()))
    with pytest.raises(GalleryError, match="sha256"):
        gallery.save_detector(bytes(bad), stored.sha256, brands=trained.brands)
    with pytest.raises(GalleryError, match="retrain"):
        gallery.save_detector(blob.data, blob.sha256, brands=["fedex", "nike"])


def test_a_stored_layout_is_never_built_so_a_crafted_gallery_cannot_run_code(trained, tmp_path, monkeypatch):
    """Ultralytics eval()s a layout's activation and calls any function its module names in a layer: a
    gallery file from elsewhere (with a sha256 recomputed by whoever wrote it) must not reach that."""
    from influvision.logos.trained import DetectorBlob, TrainedDetectorError, TrainedLogoDetector

    marker = tmp_path / "ran"
    cfg = dict(trained.blob.config())
    crafted = {"nc": 3, "activation": f"__import__('pathlib').Path({str(marker)!r}).write_text('x')",
               "backbone": [[-1, 1, "Conv", [16, 3, 2]]], "head": [[-1, 1, "Conv", [16, 3, 2]]],
               "yaml_file": "yolov8n.yaml"}
    for config in ({**cfg, "yaml": crafted}, {**{k: v for k, v in cfg.items() if k != "model"}, "yaml": crafted}):
        blob = DetectorBlob.build(trained.blob.state_dict(), config)
        det = TrainedLogoDetector(blob)  # the packaged yolov8n layout, the stored weights
        assert not marker.exists() and det.brands == trained.brands
    anonymous = {k: v for k, v in crafted.items() if k != "yaml_file"}
    for name in ("../../evil.yaml", "my_model.yaml", None, "yolov8n.yaml; rm"):
        blob = DetectorBlob.build(trained.blob.state_dict(), {**cfg, "model": name, "yaml": anonymous})
        with pytest.raises(TrainedDetectorError, match="ship"):
            TrainedLogoDetector(blob)
    assert not marker.exists()
    # Nor from a yaml of the model's name in the working folder, where ultralytics looks first for a bare name.
    monkeypatch.chdir(tmp_path)
    for name in ("yolov8n.yaml", "yolov8.yaml"):
        (tmp_path / name).write_text(f"nc: 3\nactivation: {crafted['activation']!r}\n"
                                     "backbone: [[-1, 1, Conv, [16, 3, 2]]]\nhead: [[-1, 1, Conv, [16, 3, 2]]]\n")
    assert TrainedLogoDetector(trained.blob).brands == trained.brands and not marker.exists()
    damaged = DetectorBlob.build(trained.blob.state_dict(), {**cfg, "names": 7})
    with pytest.raises(TrainedDetectorError, match="damaged"):
        TrainedLogoDetector(damaged)


def test_a_brand_replaced_while_the_detector_trained_refuses_the_save(trained, gallery, shared_data):
    key = gallery.brand_refs_key()  # when training read the references
    gallery.remove_brand("nike")
    gallery.add_brand("nike", [shared_data / "logos" / "refs" / "puma.png"])  # another mark under the old name
    with pytest.raises(GalleryError, match="changed while the detector was trained"):
        gallery.save_detector(trained.blob.data, trained.blob.sha256, brands=trained.brands, refs_key=key)
    assert gallery.load_detector() is None
    gallery.save_detector(trained.blob.data, trained.blob.sha256, brands=trained.brands,
                          refs_key=gallery.brand_refs_key())
    assert gallery.load_detector() is not None

def test_brand_changes_make_the_detector_stale(trained, gallery, shared_data, caplog):
    blob = trained.blob
    gallery.save_detector(blob.data, blob.sha256, brands=trained.brands, use=False)
    assert gallery.load_detector() is not None
    gallery.add_brand("ford", [shared_data / "logos" / "refs" / "ford.png"])
    with caplog.at_level(logging.WARNING, logger="influvision.gallery"):
        assert gallery.load_detector() is None
    assert "stale" in caplog.text and "logos train" in caplog.text
    gallery.remove_brand("ford")
    assert gallery.load_detector() is not None  # back to the brands it was trained for
    gallery.remove_brand("nike")
    assert gallery.load_detector() is None


def test_cli_train_stores_the_model(tmp_path, ref_paths, shared_data, capsys):
    _need_ultralytics()
    import shutil

    from influvision.cli import main

    db = tmp_path / "cli.db"
    for b in ("fedex", "nike"):
        assert main(["gallery", "add-brand", b, str(ref_paths[b]), "--gallery", str(db)]) == 0
    # Two labelled photos (a FedEx truck, a Nike shirt) as the user's validation set.
    scenes = shared_data / "logos" / "scenes"
    chosen = ("fl27_213783134.jpg", "fl27_3624592154.jpg")
    images = json.loads((scenes / "labels.json").read_text())["images"]
    val = tmp_path / "val"
    val.mkdir()
    for name in chosen:
        shutil.copy(scenes / name, val / name)
    (val / "labels.json").write_text(json.dumps({"images": {n: images[n] for n in chosen}}))
    rc = main(["logos", "train", "--gallery", str(db), "--images", "12", "--epochs", "1", "--imgsz", "96",
               "--device", "cpu", "--backgrounds", str(shared_data / "scenes" / "couple.jpg"),
               "--validation", str(val / "labels.json")])
    out = capsys.readouterr().out
    assert rc == 0
    assert "synthetic validation split" in out and "trained:" in out and "matcher:" in out
    assert "by score threshold" in out and "stored the trained detector" in out
    with Gallery(db, device="cpu") as gal:
        stored = gal.load_detector()
        assert stored is not None and stored.brands == ["fedex", "nike"]
        assert set(stored.metrics["validation"]["synthetic validation split"]) == {
            "trained", "matcher", "matcher+trained", "photos"}
        assert stored.metrics["validation"][f"labelled photos {val / 'labels.json'}"]["photos"] == 2
        # The threshold is the sweep's best F1, recorded with where it was calibrated; a model this small may
        # find no labelled logo at any threshold, and then keeps the default, calibrated on nothing.
        sweep = {float(t): v["f1"] for t, v in stored.metrics["sweep"].items()}
        if max(sweep.values()) > 0:
            assert sweep[stored.metrics["min_score"]] == max(sweep.values())
            assert stored.metrics["calibrated_on"] == str(val / "labels.json")
            assert "best F1 on the labelled photos" in out
        else:
            assert stored.metrics["min_score"] == 0.7 and stored.metrics["calibrated_on"] is None
            assert "found no labelled logo at any threshold" in out
        # Tracking uses the matcher + trained fusion only when that beat the matcher on the labelled photos.
        deciding = stored.metrics["validation"][f"labelled photos {val / 'labels.json'}"]
        assert stored.use == (deciding["matcher+trained"]["f1"] > deciding["matcher"]["f1"])


def test_threshold_sweep_equals_separate_runs_and_prefers_fewer_false_logos():
    from influvision.logos.evaluate import best_min_score, sweep_min_score

    stub = _StubTrained([("fedex", [10.0, 10.0, 110.0, 60.0], 0.9), ("nike", [200.0, 10.0, 260.0, 40.0], 0.55),
                         ("fedex", [300.0, 300.0, 340.0, 320.0], 0.45)])
    stub.min_score = 0.8
    labels = [{"brand": "fedex", "box": [12.0, 10.0, 110.0, 62.0]}, {"brand": "nike", "box": [200, 10, 260, 40]}]
    photo = np.zeros((400, 400, 3), np.uint8)
    sweep = sweep_min_score(stub, [(photo, labels)], (0.4, 0.5, 0.6))
    assert stub.min_score == 0.8  # restored
    assert [(s.tp, s.fp, s.gt) for s in sweep.values()] == [(2, 1, 2), (2, 0, 2), (1, 0, 2)]
    assert best_min_score(sweep) == 0.5
    # Equal F1: the higher threshold wins.
    tied = sweep_min_score(stub, [(photo, labels)], (0.5, 0.52))
    assert best_min_score(tied) == 0.52
    # A model that finds no labelled logo at any threshold calibrates nothing.
    assert best_min_score(sweep_min_score(stub, [(photo, [{"brand": "bmw", "box": [0, 0, 9, 9]}])], (0.4, 0.9))) \
        is None


def test_missing_ultralytics_names_the_extra(monkeypatch, tmp_path, capsys):
    from influvision.cli import main
    from influvision.logos.trained import TrainedDetectorError, require_ultralytics

    monkeypatch.setitem(sys.modules, "ultralytics", None)
    with pytest.raises(TrainedDetectorError, match=r"influvision\[yolo\]"):
        require_ultralytics()
    assert main(["logos", "train", "--gallery", str(tmp_path / "none.db")]) == 2
    assert "influvision[yolo]" in capsys.readouterr().err


def test_track_uses_a_stored_detector_only_when_it_measured_better(trained, gallery, shared_data):
    import influvision as iv

    photo = shared_data / "logos" / "scenes" / "fl27_213783134.jpg"
    gallery.save_detector(trained.blob.data, trained.blob.sha256, brands=trained.brands, use=False)
    off = iv.track(photo, gallery=gallery, device="cpu", progress=False)
    gallery.save_detector(trained.blob.data, trained.blob.sha256, brands=trained.brands, use=True,
                          metrics={"min_score": 0.55})
    on = iv.track(photo, gallery=gallery, device="cpu", progress=False)
    assert off.settings.logo_cues == ["sift", "silhouette"]
    assert on.settings.logo_cues == ["sift", "silhouette", "trained"]
    # The stored (calibrated) threshold is the one used, and the report says so.
    assert off.settings.logo_trained_min_score is None and on.settings.logo_trained_min_score == 0.55
    # The matcher's FedEx on the truck is found either way; the tiny model may only confirm it.
    for report in (off, on):
        assert "fedex" in report.brands and report.brands["fedex"].photo_count == 1
        fedex = [lg for lg in report.media[0].logos if lg.brand == "fedex"]
        assert fedex and all("sift" in lg.cues for lg in fedex)


class _StubTrained:
    """Stands in for a trained model: fixed boxes, to check how its detections are fused."""

    def __init__(self, boxes: list[tuple[str, list[float], float]]) -> None:
        self.brands = sorted({b for b, _, _ in boxes})
        self._boxes = boxes

    def detect(self, images):
        from influvision.types import Logos

        return Logos(image_index=torch.zeros(len(self._boxes), dtype=torch.long),
                     boxes=torch.tensor([b for _, b, _ in self._boxes], dtype=torch.float32),
                     scores=torch.tensor([s for _, _, s in self._boxes], dtype=torch.float32),
                     brand=torch.tensor([self.brands.index(n) for n, _, _ in self._boxes], dtype=torch.long))


def test_trained_boxes_confirm_matcher_boxes_or_stand_alone(refs, photo):
    from influvision.logos.detect import SOURCE_SIFT, SOURCE_TRAINED, LogoDetector

    alone = LogoDetector(refs).detect([photo])
    i = int(torch.argmax(alone.scores))
    sift_box = alone.boxes[i].tolist()
    stub = _StubTrained([("fedex", [v + 3 for v in sift_box], 0.5), ("nike", [10.0, 10.0, 60.0, 40.0], 0.6)])
    fused = LogoDetector(refs, trained=stub).detect([photo])
    names = [r.name for r in refs]
    confirmed = [k for k in range(len(fused)) if names[int(fused.brand[k])] == "fedex"
                 and int(fused.columns["source"][k]) == SOURCE_SIFT | SOURCE_TRAINED]
    assert len(confirmed) == 1 and fused.boxes[confirmed[0]].tolist() == sift_box
    assert float(fused.scores[confirmed[0]]) > float(alone.scores[i])
    nike = [k for k in range(len(fused)) if names[int(fused.brand[k])] == "nike"]
    assert len(nike) == 1 and int(fused.columns["source"][nike[0]]) == SOURCE_TRAINED


def test_loading_ultralytics_leaves_pillow_and_its_errors_alone(tmp_path):
    """ultralytics wraps PIL.Image.open so that an unreadable file triggers a pip install; we undo that, so a
    file that is no image still gets our plain refusal (and nothing is downloaded)."""
    import PIL.Image

    from influvision.decode.images import load_image
    from influvision.errors import MediaError
    from influvision.logos.references import LogoReferenceError

    _need_ultralytics()
    assert PIL.Image.open.__module__ == "PIL.Image"
    with pytest.raises(LogoReferenceError, match="not an image"):
        load_reference("acme", b"this is a text file, not a logo")
    (tmp_path / "notes.jpg").write_text("this is not a photo")
    with pytest.raises(MediaError, match="looks like text"):
        load_image(tmp_path / "notes.jpg")


def test_the_trained_model_is_used_only_when_it_beat_the_matcher_on_labelled_logos():
    from influvision.cli import use_trained

    def scores(pair_f1: float, matcher_f1: float, gt: int) -> dict[str, dict]:
        return {"matcher+trained": {"f1": pair_f1, "gt": gt}, "matcher": {"f1": matcher_f1, "gt": gt}}

    assert use_trained("labelled photos", scores(0.6, 0.4, 10)) == (True, "it measured better than the matcher "
                                                                          "and will be used")
    assert use_trained("labelled photos", scores(0.4, 0.4, 10))[0] is False
    use, why = use_trained("synthetic validation split", scores(0.0, 0.0, 0))
    assert use is False and "holds no labelled logo" in why and "nothing was compared" in why

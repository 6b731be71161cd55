"""The OCR text cue for logos and its fusion with the SIFT matcher, on the shared FlickrLogos photos (CPU)."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from conftest import rgb_of

from influvision.logos import detect as detect_mod
from influvision.logos.detect import SOURCE_SIFT, SOURCE_TEXT, LogoDetector
from influvision.logos.references import LogoReference
from influvision.logos.text import OcrUnavailableError, TextCue, box_iou, edit_distance, normalise, read_text

# Clear wordmarks, large and frontal: the FedEx side of a truck and a FedEx van, the Ford script on a bonnet.
CLEAR = [
    ("fl27_213783134.jpg", "fedex", (202, 124, 394, 199)),
    ("fl27_3103582592.jpg", "fedex", (95, 124, 180, 161)),
    ("fl27_4384704926.jpg", "ford", (77, 144, 378, 264)),
]
# Marks with no text in their reference (simple-icons emblems).
EMBLEMS = ("adidas", "apple", "nike", "puma", "vodafone", "ferrari", "starbucks", "google")


@pytest.fixture(scope="module")
def cue(refs: list[LogoReference]) -> TextCue:
    pytest.importorskip("rapidocr_onnxruntime")
    return TextCue(refs)


@pytest.fixture(scope="module")
def found(cue: TextCue, refs: list[LogoReference], logo_data: Path) -> dict[str, tuple[list, list[dict]]]:
    """Every shared logo photo: (brand, box, score) of each text candidate, and the photo's labels."""
    labels = json.loads((logo_data / "scenes" / "labels.json").read_text())["images"]
    out = {}
    for name in sorted(labels):
        cands = cue.find([rgb_of(logo_data / "scenes" / name)])
        out[name] = ([(refs[c.ref_index].name, c.box, c.score) for c in cands], labels[name]["logos"])
    return out


def test_normalise_and_edit_distance():
    assert normalise("McDonald's") == "mcdonalds"
    assert normalise("=DHL=") == "dhl"
    assert normalise("Coca-Cola®") == "cocacola"
    assert edit_distance("cocall", "cocacola") == 3
    assert edit_distance("fedex", "fedex") == 0


def test_wordmarks_learned_and_emblems_not(cue: TextCue, refs: list[LogoReference]):
    learned = {refs[i].name for i in cue.ref_indices}
    assert {"fedex", "ford", "dhl", "cocacola", "intel"} <= learned
    assert not learned & set(EMBLEMS)
    # The brand texts are the readings plus the brand name; each reading spans most of its mark.
    fedex = [t for t in cue.texts if refs[t.ref_index].name == "fedex"]
    assert {t.text for t in fedex} == {"fedex"}
    x1, _, x2, _ = fedex[0].content_box
    assert np.ptp(fedex[0].quad[:, 0]) > 0.8 * (x2 - x1)


@pytest.mark.parametrize("photo, brand, box", CLEAR)
def test_clear_wordmarks_found_with_box(found, photo: str, brand: str, box):
    dets, _ = found[photo]
    ious = [box_iou(b, box) for name, b, _ in dets if name == brand]
    assert ious and max(ious) >= 0.5, f"{brand} in {photo}: {dets}"


def test_no_brand_reported_where_absent(found):
    """Photo-level precision of the text cue: no distractor, and no brand that the photo does not show."""
    for photo, (dets, labels) in found.items():
        present = {lab["brand"] for lab in labels}
        for name, box, _ in dets:
            assert name not in ("google", "intel"), f"distractor {name} in {photo} at {box}"
            assert name in present, f"{name} reported in {photo} at {box}; labels: {sorted(present)}"


def test_brand_without_text_gets_no_text_detection(found, cue: TextCue, logo_data: Path):
    """The shop window shows the words NIKE, PUMA and adidas, and the cricket ground the word vodafone,
    but those references are emblems (no text): the words must not become detections."""
    words = set()
    for photo in ("fl27_282208842.jpg", "fl27_4122049731.jpg"):
        bgr = cv2.cvtColor(rgb_of(logo_data / "scenes" / photo), cv2.COLOR_RGB2BGR)
        words |= {normalise(t) for t, _, _ in read_text(cue.engine, bgr)}  # the raw OCR reads the words
        assert not [d for d in found[photo][0] if d[0] in EMBLEMS], found[photo][0]
    assert {"adidas", "vodafone"} <= words
    assert not [d for dets, _ in found.values() for d in dets if d[0] in EMBLEMS]


def test_short_texts_need_the_whole_line(cue: TextCue, refs: list[LogoReference]):
    quad = np.array([[0, 0], [100, 0], [100, 20], [0, 20]], np.float32)
    names = lambda line, conf=0.99: {refs[bt.ref_index].name for bt, *_ in cue._matches(line, conf, quad)}  # noqa: E731
    assert names("DHL") == {"dhl"}
    assert names("www.dhl.com") == set()  # a URL is not the logo
    assert names("DHL", conf=0.8) == set()  # 3 letters need more confidence
    assert names("Stanford") == set()  # "ford" inside another word
    assert names("FedEx Express") == {"fedex"}
    assert names("Coca Cola") == {"cocacola"}


def test_fused_detector_keeps_sift_and_adds_text(refs: list[LogoReference], logo_data: Path):
    pytest.importorskip("rapidocr_onnxruntime")
    torch.set_num_threads(2)
    subset = [r for r in refs if r.name in ("fedex", "ford", "google", "intel")]
    sift = LogoDetector(subset, text=False)
    fused = LogoDetector(subset, text=True)
    img = rgb_of(logo_data / "scenes" / "fl27_213783134.jpg")
    a, b = sift.detect([img]), fused.detect([img])
    assert len(a) >= 1 and (a.columns["source"] == SOURCE_SIFT).all()
    for box, brand in zip(a.boxes.tolist(), a.brand.tolist(), strict=True):
        assert any(int(bb) == brand and box_iou(box, fb) >= 0.5
                   for fb, bb in zip(b.boxes.tolist(), b.brand.tolist(), strict=True))
    # Both FedEx marks are found; the big one by both cues, with a higher score than SIFT alone gave it.
    fedex = [i for i, x in enumerate(b.brand.tolist()) if fused.brands[x] == "fedex"]
    assert len(fedex) >= 2
    big = max(fedex, key=lambda i: box_iou(b.boxes[i].tolist(), (202, 124, 394, 199)))
    assert int(b.columns["source"][big]) == SOURCE_SIFT | SOURCE_TEXT
    assert float(b.scores[big]) > float(a.scores.max())
    assert {"inliers", "agreement", "source", "text_score"} <= set(b.columns)


def test_auto_without_rapidocr_falls_back_to_sift(refs: list[LogoReference], monkeypatch, caplog):
    monkeypatch.setattr(detect_mod, "ocr_available", lambda: False)
    monkeypatch.setattr(detect_mod, "_text_off_logged", False)
    subset = [r for r in refs if r.name == "fedex"]
    with caplog.at_level(logging.INFO, logger="influvision.logos.detect"):
        det = LogoDetector(subset, text="auto")
        LogoDetector(subset, text="auto")
    assert det.text_cue is None
    assert sum("text cue off" in r.message for r in caplog.records) == 1
    monkeypatch.setitem(sys.modules, "rapidocr_onnxruntime", None)  # import fails as if not installed
    with pytest.raises(OcrUnavailableError, match="rapidocr-onnxruntime"):
        LogoDetector(subset, text=True)


def test_the_ocr_models_are_checked_before_they_are_loaded(tmp_path, monkeypatch):
    pytest.importorskip("rapidocr_onnxruntime")
    from influvision import weights
    from influvision.errors import WeightsError
    from influvision.logos.text import load_ocr_engine

    junk = tmp_path / "model.onnx"
    junk.write_bytes(b"not the model that was checked")
    monkeypatch.setattr(weights, "package_path", lambda name, file=None: junk)
    monkeypatch.setattr(weights, "cache_dir", lambda: tmp_path / "cache")
    with pytest.raises(WeightsError, match="fails its checksum"):
        load_ocr_engine()

"""Logos in video: brand seconds on screen and seconds together with a person, on a clip made here."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

import influvision as iv

REPO = Path(__file__).resolve().parents[1]


def _clip(photo: Path, path: Path) -> Path:
    """2 s at 10 fps of ``photo``, then 1 s of black."""
    frame = np.asarray(Image.open(photo).convert("RGB"))
    frame = frame[: frame.shape[0] // 2 * 2, : frame.shape[1] // 2 * 2]
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt = frame.shape[1], frame.shape[0], "yuv420p"
        for k in range(30):
            img = frame if k < 20 else np.zeros_like(frame)
            for packet in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


@pytest.fixture(scope="module")
def sponsor_clip(tmp_path_factory) -> Path:
    """The demo's sponsor-board photo (Obama beside a FedEx board) for 2 s, then 1 s of black."""
    return _clip(REPO / "examples" / "event" / "obama_sponsor_board.jpg",
                 tmp_path_factory.mktemp("clip") / "sponsor.mp4")


def test_brand_exposure_and_seconds_with_the_person(sponsor_clip, tmp_path, shared_data):
    gallery = iv.Gallery(tmp_path / "g.db", device="cpu")
    gallery.add_person("barack_obama", [shared_data / "faces" / "barack_obama" / "1.jpg"])
    gallery.add_brand("fedex", [REPO / "examples" / "brands" / "fedex.png"])
    gallery.add_brand("nike", [REPO / "examples" / "brands" / "nike.png"])  # registered, never shown
    report = iv.track(sponsor_clip, gallery=gallery, device="cpu", sample_fps=5, progress=False,
                      annotate_dir=tmp_path / "annotated")
    fedex = report.brands["fedex"]
    assert abs(fedex.exposure_seconds - 2.0) <= 0.25
    assert "nike" not in report.brands
    assert abs(report.people["barack_obama"].exposure_seconds - 2.0) <= 0.25
    (pair,) = report.co_appearance
    assert (pair.a, pair.b) == ("barack_obama", "fedex") and abs(pair.seconds_together - 2.0) <= 0.25
    (video,) = report.media
    counted = [t for t in video.logo_tracks if t.counted]
    assert [t.brand for t in counted] == ["fedex"] and counted[0].frames >= 3
    assert counted[0].intervals == fedex.intervals[video.path]

    # The annotated copy draws the counted logo's box while it is on screen, and nothing once it is gone.
    annotated = next(p for p in video.annotated if p.endswith(".mp4"))
    with av.open(annotated) as container:
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    original = np.asarray(Image.open(REPO / "examples" / "event" / "obama_sponsor_board.jpg").convert("RGB"))
    assert _logo_blue(frames[10]) > _logo_blue(original) + 200  # the FedEx box outline, a few hundred pixels
    assert _logo_blue(frames[25]) == 0


def _logo_blue(rgb: np.ndarray) -> int:
    """Pixels close to the annotation's logo colour (40, 140, 240)."""
    return int((np.abs(rgb.astype(int) - np.array([40, 140, 240])).max(axis=-1) < 30).sum())


def test_a_flat_mark_found_by_its_outline_counts_its_seconds(tmp_path):
    # The demo's group photo with a swoosh on a shirt: SIFT cannot verify the swoosh, the silhouette cue can;
    # its outline fits are not "sure" on one frame, so the track counts from its 2 fps searched frames.
    clip = _clip(REPO / "examples" / "event" / "group2.jpg", tmp_path / "swoosh.mp4")
    gallery = iv.Gallery(tmp_path / "g.db", device="cpu")
    gallery.add_brand("nike", [REPO / "examples" / "brands" / "nike.png"])
    report = iv.track(clip, gallery=gallery, device="cpu", sample_fps=2, progress=False)
    assert abs(report.brands["nike"].exposure_seconds - 2.0) <= 0.5
    (video,) = report.media
    assert [t.brand for t in video.logo_tracks if t.counted] == ["nike"]
    assert "silhouette" in report.settings.logo_cues


def test_a_mark_crossing_the_frame_counts_its_seconds(tmp_path, shared_data):
    """A 60 px FedEx mark crossing at 150 px/s never overlaps itself between frames searched 0.5 s apart, and
    most sightings score under 0.8: its steady path makes it one counted track (1.0 s of 4.0 counted without it)."""
    background = Image.open(shared_data / "scenes" / "couple.jpg").convert("RGB").resize((640, 360))
    logo = Image.open(REPO / "examples" / "brands" / "fedex.png").convert("RGBA")
    logo = logo.resize((60, round(60 * logo.height / logo.width)))
    path = tmp_path / "crossing.mp4"
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt = 640, 360, "yuv420p"
        for k in range(40):
            img = background.copy()
            img.paste(logo, (20 + 15 * k, 60), logo)
            for packet in stream.encode(av.VideoFrame.from_ndarray(np.asarray(img), format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    gallery = iv.Gallery(tmp_path / "g.db", device="cpu")
    gallery.add_brand("fedex", [REPO / "examples" / "brands" / "fedex.png"])
    report = iv.track(path, gallery=gallery, device="cpu", sample_fps=2, progress=False)
    assert 3.5 <= report.brands["fedex"].exposure_seconds <= 4.0
    (video,) = report.media
    counted = [t for t in video.logo_tracks if t.counted]
    assert len(counted) == 1 and "moving steadily" in counted[0].status and counted[0].frames >= 6

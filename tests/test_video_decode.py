"""Video decoding: real timestamps, sampling, rotation, batching, and clear errors for bad files."""

from __future__ import annotations

import logging
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from influvision.decode.video import FrameBatch, iter_frames, open_video, probe_video
from influvision.errors import MediaError


def write_clip(path: Path, pts_ms: list[int], *, size: tuple[int, int] = (96, 64), rotation: int | None = None,
               faststart: bool = False, noise: bool = False, audio_s: float = 0.0) -> Path:
    """An H.264 clip (container by extension) whose frame i has timestamp pts_ms[i] (ms); with ``audio_s``, also
    that many seconds of silent audio."""
    rng = np.random.default_rng(0)
    opts = {"movflags": "faststart"} if faststart else {}
    with av.open(str(path), "w", options=opts) as c:
        s = c.add_stream("libx264", rate=30)
        s.width, s.height, s.pix_fmt = size[0], size[1], "yuv420p"
        s.codec_context.time_base = Fraction(1, 1000)
        if rotation is not None:
            s.set_display_rotation(rotation)
        if audio_s:
            a = c.add_stream("aac", rate=48000)
            a.layout = "mono"
            for k in range(0, int(audio_s * 48000), 1024):
                frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
                frame.sample_rate, frame.pts, frame.time_base = 48000, k, Fraction(1, 48000)
                for pk in a.encode(frame):
                    c.mux(pk)
            for pk in a.encode(None):
                c.mux(pk)
        for p in pts_ms:
            img = (rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8) if noise
                   else np.zeros((size[1], size[0], 3), np.uint8))
            img[:8, :8] = 255  # white top-left corner, to see rotation
            f = av.VideoFrame.from_ndarray(img, format="rgb24")
            f.pts, f.time_base = p, Fraction(1, 1000)
            for pk in s.encode(f):
                c.mux(pk)
        for pk in s.encode():
            c.mux(pk)
    return path


def collect(batches) -> tuple[list[FrameBatch], np.ndarray, np.ndarray, np.ndarray]:
    bs = list(batches)
    return (bs, np.concatenate([b.pts_s for b in bs]), np.concatenate([b.duration_s for b in bs]),
            np.concatenate([b.frame_index for b in bs]))


def test_probe_shared_clip(shared_data):
    info = probe_video(shared_data / "videos" / "nggyup.mp4")
    assert (info.width, info.height, info.rotation, info.codec) == (1280, 720, 0, "h264")
    assert info.fps == pytest.approx(30.0)
    assert info.frame_count == 289
    assert info.duration_s == pytest.approx(9.633, abs=1e-3)


def test_all_frames_and_sampling_on_real_clip(shared_data):
    path = shared_data / "videos" / "nggyup.mp4"
    bs, pts, dur, idx = collect(iter_frames(path, sample_fps=None, batch_size=64))
    assert len(pts) == 289 and all(len(b) <= 64 for b in bs)
    assert bs[0].frames[0].shape == (720, 1280, 3) and bs[0].frames[0].dtype == np.uint8
    np.testing.assert_allclose(pts, np.arange(289) / 30.0, atol=1e-6)
    assert dur.sum() == pytest.approx(289 / 30.0)  # durations tile the stream exactly
    assert bs[-1].error is None

    info, batches = open_video(path, sample_fps=10, batch_size=16)
    bs, pts, dur, idx = collect(batches)
    assert info.frame_count == 289
    assert len(pts) == 97  # frames 0, 3, 6, ... 288
    np.testing.assert_array_equal(idx, np.arange(0, 289, 3))
    np.testing.assert_allclose(np.diff(pts), 0.1, atol=1e-6)
    assert dur[-1] == pytest.approx(9.6333 - 9.6, abs=1e-3)  # the last frame stands for the rest of the clip
    assert dur.sum() == pytest.approx(289 / 30.0)


def test_sampling_on_25fps_clip_keeps_slot_times(shared_data):
    _, pts, dur, _ = collect(iter_frames(shared_data / "videos" / "street_crowd.mp4", sample_fps=5, batch_size=8))
    np.testing.assert_allclose(pts, np.arange(21) * 0.2, atol=1e-6)  # 25 fps / 5: every 5th frame
    assert dur.sum() == pytest.approx(4.2)


def test_variable_frame_rate_uses_pts_not_index(tmp_path):
    pts_ms = [0, 40, 80, 200, 210, 220, 600, 1000]
    path = write_clip(tmp_path / "vfr.mp4", pts_ms)
    bs, pts, dur, idx = collect(iter_frames(path, sample_fps=None, batch_size=3))
    np.testing.assert_allclose(pts, np.array(pts_ms) / 1000, atol=1e-6)
    np.testing.assert_allclose(dur[:-1], np.diff(pts_ms) / 1000, atol=1e-6)
    assert [len(b) for b in bs] == [3, 3, 2]
    # 5 frames a second: keep a frame once its time reaches the next 0.2 s slot.
    _, pts5, dur5, idx5 = collect(iter_frames(path, sample_fps=5, batch_size=16))
    np.testing.assert_allclose(pts5, [0.0, 0.2, 0.6, 1.0], atol=1e-6)
    np.testing.assert_array_equal(idx5, [0, 3, 6, 7])
    np.testing.assert_allclose(dur5[:-1], [0.2, 0.4, 0.4], atol=1e-6)
    # A rate above the clip's keeps every frame.
    _, pts_hi, _, _ = collect(iter_frames(path, sample_fps=200, batch_size=16))
    assert len(pts_hi) == len(pts_ms)


@pytest.mark.parametrize("rotation", [90, -90, 180])
def test_rotation_metadata_is_applied(tmp_path, rotation):
    path = write_clip(tmp_path / "rot.mp4", [0, 33, 66], size=(64, 48), rotation=rotation)
    info = probe_video(path)
    assert info.rotation == rotation % 360
    assert (info.width, info.height) == ((48, 64) if rotation % 180 else (64, 48))
    frame = next(iter(iter_frames(path, sample_fps=None))).frames[0]
    assert frame.shape == (info.height, info.width, 3)
    # The white top-left corner after turning the picture counter-clockwise by `rotation` degrees.
    corner = {90: (-1, 0), 270: (0, -1), 180: (-1, -1)}[rotation % 360]
    assert frame[corner[0], corner[1], 0] > 200
    assert frame[0, 0, 0] < 50


@pytest.mark.parametrize(("name", "matrix", "corner"), [
    ("hflip", (-1, 0, 0, 1), (0, -1)), ("vflip", (1, 0, 0, -1), (-1, 0)), ("transpose", (0, 1, 1, 0), (0, 0))])
def test_a_mirroring_display_matrix_is_shown_as_a_player_shows_it(tmp_path, name, matrix, corner):
    import struct

    path = write_clip(tmp_path / "plain.mp4", [0, 33, 66], size=(64, 48))
    data = bytearray(path.read_bytes())
    at = data.find(b"tkhd")
    at += 8 + (20 if data[at + 4] == 0 else 32) + 16  # the track header's 3 x 3 matrix (16.16 fixed point)
    a, b, c, d = (v << 16 for v in matrix)
    data[at:at + 36] = struct.pack(">9i", a, b, 0, c, d, 0, 0, 0, 1 << 30)
    mirrored = tmp_path / f"{name}.mp4"
    mirrored.write_bytes(bytes(data))
    info = probe_video(mirrored)
    assert info.mirrored and (info.width, info.height) == ((48, 64) if name == "transpose" else (64, 48))
    frame = next(iter(iter_frames(mirrored, sample_fps=None))).frames[0]
    assert frame.shape == (info.height, info.width, 3)
    # Where the white top-left corner of the stored picture is shown.
    assert frame[corner[0], corner[1], 0] > 200 and frame[-1 - corner[0], -1 - corner[1], 0] < 50


def test_truncated_file_yields_frames_before_the_cut_and_an_error(tmp_path, caplog):
    full = write_clip(tmp_path / "full.mp4", [i * 40 for i in range(50)], noise=True, faststart=True)
    data = full.read_bytes()
    cut = tmp_path / "half.mp4"
    cut.write_bytes(data[: len(data) // 2])
    with caplog.at_level(logging.WARNING, logger="influvision.decode.video"):
        bs, pts, dur, _ = collect(iter_frames(cut, sample_fps=None, batch_size=8))
    assert 5 < len(pts) < 50
    np.testing.assert_allclose(pts, np.arange(len(pts)) * 0.04, atol=1e-6)
    assert bs[-1].error is not None and "truncated" in bs[-1].error
    assert all(b.error is None for b in bs[:-1])
    assert any("truncated" in r.getMessage() for r in caplog.records)


def test_a_matroska_videos_length_is_its_video_tracks_own(tmp_path):
    # Matroska declares no stream duration; its container length is an end time and the longest track's.
    late = write_clip(tmp_path / "late.mkv", [10_000 + 33 * i for i in range(60)])  # a cut that kept its times
    long_audio = write_clip(tmp_path / "audio.mkv", [33 * i for i in range(60)], audio_s=3.0)
    for clip in (late, long_audio):
        info, batches = open_video(clip, sample_fps=10)
        assert info.duration_s == pytest.approx(1.98, abs=0.04)
        assert collect(batches)[0][-1].error is None  # complete: not reported as truncated
    cut = tmp_path / "cut.mkv"
    cut.write_bytes(late.read_bytes()[: int(late.stat().st_size * 0.6)])
    _, batches = open_video(cut, sample_fps=10)
    assert "looks truncated" in collect(batches)[0][-1].error


def test_a_video_track_that_starts_after_the_audio_says_by_how_much(tmp_path):
    clip = write_clip(tmp_path / "lead_in.mp4", [1000 + 33 * i for i in range(30)], audio_s=2.0)
    info = probe_video(clip)
    assert info.offset_s == pytest.approx(1.0, abs=0.01)
    assert collect(iter_frames(clip, sample_fps=None))[1][0] == 0.0  # frame times start at the track's first frame
    assert probe_video(write_clip(tmp_path / "plain.mp4", [33 * i for i in range(30)])).offset_s == 0.0


def test_truncated_file_without_index_is_a_media_error(tmp_path):
    # moov at the end (the muxer's default): cutting the file loses the index, nothing can be read.
    full = write_clip(tmp_path / "full.mp4", [i * 40 for i in range(50)], noise=True)
    cut = tmp_path / "half.mp4"
    cut.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    with pytest.raises(MediaError, match="not a readable video"):
        iter_frames(cut)


def test_corrupt_stream_where_nothing_decodes(tmp_path):
    full = write_clip(tmp_path / "full.mp4", [i * 40 for i in range(50)], noise=True, faststart=True)
    data = bytearray(full.read_bytes())
    start = data.find(b"mdat") + 4
    data[start:] = np.random.default_rng(1).integers(0, 255, len(data) - start, dtype=np.uint8).tobytes()
    bad = tmp_path / "junk.mp4"
    bad.write_bytes(bytes(data))
    with pytest.raises(MediaError, match="decoding stopped after 0 frames"):
        list(iter_frames(bad))


def _audio_only(path: Path) -> Path:
    with av.open(str(path), "w") as c:
        s = c.add_stream("aac", rate=16000)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
        frame.sample_rate = 16000
        for i in range(10):
            frame.pts = i * 1024
            for pk in s.encode(frame):
                c.mux(pk)
        for pk in s.encode():
            c.mux(pk)
    return path


def test_bad_files_raise_media_error_with_the_problem(tmp_path, shared_data):
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    text = tmp_path / "notes.mp4"
    text.write_text("not a video " * 100)
    cases = {
        tmp_path / "missing.mp4": "does not exist",
        empty: "empty (0 bytes)",
        text: "not a readable video file",
        _audio_only(tmp_path / "song.m4a"): "no video stream (contains: audio)",
        shared_data / "faces" / "rick_astley" / "1.jpg": "still image",
        tmp_path: "directory",
    }
    for path, problem in cases.items():
        with pytest.raises(MediaError) as err:
            probe_video(path)
        assert problem in err.value.problem and err.value.path == str(path)
        with pytest.raises(MediaError):
            iter_frames(path)  # raised at call time, not at the first frame


def test_argument_errors(shared_data):
    path = shared_data / "videos" / "nggyup.mp4"
    for bad in (0, -1.0, float("nan")):
        with pytest.raises(ValueError, match="sample_fps"):
            iter_frames(path, sample_fps=bad)
    with pytest.raises(ValueError, match="batch_size"):
        iter_frames(path, batch_size=0)
    with pytest.raises(ValueError, match="backend"):
        iter_frames(path, backend="torchcodec")


def test_frames_too_large_to_batch_are_refused_before_decoding(shared_data, monkeypatch):
    import influvision.decode.video as video

    monkeypatch.setattr(video, "MAX_FRAME_PIXELS", 100_000)  # the 640 x 360 clip stands in for a 16K one
    with pytest.raises(MediaError, match=r"frames of \d+ x \d+ px are larger than influvision analyses"):
        probe_video(shared_data / "videos" / "nggyup.mp4")

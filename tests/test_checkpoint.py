"""The checkpoint of resumable runs: what makes a recorded result reusable, and damaged files."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from influvision.api import _checkpoint_settings
from influvision.checkpoint import Checkpoint
from influvision.errors import InfluvisionError
from influvision.match import MatchSettings
from influvision.report import MediaEntry, Settings
from influvision.sources import MediaItem

SETTINGS = Settings(embedder="dlib-resnet-v1", threshold=0.5, margin=0.04, min_face_px=24, device="cpu",
                    version="test", sample_fps=10.0)
PHOTO = MediaItem("a.jpg", Path("/nowhere/a.jpg"), "photo")
VIDEO = MediaItem("v.mp4", Path("/nowhere/v.mp4"), "video")


def _open(path: Path, settings: Settings = SETTINGS, rules: MatchSettings | None = None) -> Checkpoint:
    return Checkpoint(path, _checkpoint_settings(settings, rules or MatchSettings()), "gallery-key")


def test_results_are_reused_only_under_the_rules_they_were_made_with(tmp_path):
    ckpt = _open(tmp_path / "run.ckpt")
    for item in (PHOTO, VIDEO):
        ckpt.put(item, MediaEntry(path=item.path, kind=item.kind), "sha")
    assert ckpt.get(PHOTO, "sha") is not None and ckpt.get(PHOTO, "other content") is None
    stricter = _open(tmp_path / "run.ckpt", rules=MatchSettings(min_sharpness=5.0))  # not in the report once
    assert stricter.get(PHOTO, "sha") is None and stricter.get(VIDEO, "sha") is None
    slower = _open(tmp_path / "run.ckpt", SETTINGS.model_copy(update={"sample_fps": 2.0}))
    assert slower.get(PHOTO, "sha") is not None  # photos do not depend on video sampling
    assert slower.get(VIDEO, "sha") is None


def test_a_damaged_entry_is_analysed_again_and_a_damaged_file_is_refused(tmp_path, caplog):
    path = tmp_path / "run.ckpt"
    ckpt = _open(path)
    ckpt.put(PHOTO, MediaEntry(path="a.jpg", kind="photo"), "sha")
    ckpt._db.execute("UPDATE done SET entry = substr(entry, 1, 20)")  # cut off mid-write by a bad copy
    assert ckpt.get(PHOTO, "sha") is None
    assert "damaged" in caplog.text and "a.jpg" in caplog.text
    ckpt._db.close()
    sqlite3.connect(path).execute("PRAGMA wal_checkpoint(TRUNCATE)").close()
    data = bytearray(path.read_bytes())
    data[100:4096] = bytes(len(data[100:4096]))  # the table's first page overwritten
    path.write_bytes(bytes(data))
    with pytest.raises(InfluvisionError, match="run.ckpt: cannot be opened or written"):
        _open(path)


def test_another_sqlite_database_is_not_taken_for_a_checkpoint(tmp_path):
    from influvision import Gallery

    gallery = tmp_path / "event.db"
    Gallery(gallery).close()
    before = gallery.read_bytes()
    with pytest.raises(InfluvisionError, match="another SQLite database .*not a checkpoint"):
        _open(gallery)
    assert gallery.read_bytes() == before  # nothing written into the gallery


def test_an_entry_recorded_for_another_file_is_not_reused(tmp_path, caplog):
    ckpt = _open(tmp_path / "run.ckpt")
    ckpt.put(PHOTO, MediaEntry(path="b.jpg", kind="photo"), "sha")  # a hand-merged or damaged row
    ckpt.put(VIDEO, MediaEntry(path="v.mp4", kind="photo"), "sha")
    assert ckpt.get(PHOTO, "sha") is None and ckpt.get(VIDEO, "sha") is None
    assert "it records photo 'b.jpg'" in caplog.text


def test_a_folder_given_as_the_checkpoint_is_named_as_one(tmp_path):
    with pytest.raises(InfluvisionError, match="is a folder; give the path of a file"):
        _open(tmp_path)


def test_recorded_video_batches_are_reused_only_for_the_same_frames_and_gallery(tmp_path, caplog):
    import numpy as np

    ckpt = _open(tmp_path / "run.ckpt")
    progress = ckpt.progress(VIDEO, "sha")
    boxes = np.array([[1.0, 2.0, 3.0, 4.0], [5.0, 6.0, 7.0, 8.0]])
    progress.put("faces", 0, {"pts_s": np.array([0.0, 0.2]), "boxes": boxes})
    assert progress.get("faces", 0, np.array([0.0, 0.25])) is None and progress.resumed == 0  # other frames
    assert "recorded for other frames" in caplog.text
    assert progress.get("logos", 0, np.array([0.0, 0.2])) is None  # another stage
    same = progress.get("faces", 0, np.array([0.0, 0.2]))
    assert same is not None and np.array_equal(same["boxes"], boxes) and progress.resumed == 1
    other_gallery = Checkpoint(tmp_path / "run.ckpt", _checkpoint_settings(SETTINGS, MatchSettings()), "changed")
    assert other_gallery.progress(VIDEO, "sha").get("faces", 0, np.array([0.0, 0.2])) is None
    assert other_gallery.get(VIDEO, "sha") is None

"""The influvision command, as a newcomer would use it."""

from __future__ import annotations

import json
import subprocess
import sys

from influvision.cli import main


def test_help_explains_the_commands():
    out = subprocess.run([sys.executable, "-m", "influvision.cli", "--help"], capture_output=True, text=True)
    assert out.returncode == 0
    for word in ("gallery", "track", "weights", "example"):
        assert word in out.stdout


def test_register_list_track_and_exit_codes(tmp_path, shared_data, capsys):
    g = str(tmp_path / "event.db")
    faces = shared_data / "faces"
    assert main(["gallery", "add-person", "barack_obama", str(faces / "barack_obama" / "1.jpg"), "-g", g]) == 0
    assert main(["gallery", "add-person", "joe_biden", str(faces / "joe_biden" / "1.jpg"),
                 str(shared_data / "logos" / "refs" / "nike.png"), "-g", g]) == 1  # one reference refused
    assert main(["gallery", "list", "-g", g]) == 0
    listing = capsys.readouterr().out
    assert "barack_obama" in listing and "joe_biden" in listing and "no_face" in listing

    out = tmp_path / "report.json"
    code = main(["track", str(shared_data / "scenes" / "obama_and_biden.jpg"), "-g", g, "--out", str(out),
                 "--csv", str(tmp_path / "csv"), "--device", "cpu", "-q"])
    assert code == 0
    report = json.loads(out.read_text())
    assert report["people"]["barack_obama"]["photo_count"] == 1
    assert report["people"]["joe_biden"]["photo_count"] == 1
    assert (tmp_path / "csv" / "faces.csv").exists()

    missing = tmp_path / "nope.jpg"
    assert main(["track", str(missing), "-g", g, "--out", str(out), "-q"]) == 1
    assert json.loads(out.read_text())["skipped"][0]["path"].endswith("nope.jpg")


def test_setup_errors_exit_2_with_a_message(tmp_path, capsys):
    assert main(["track", "x.jpg", "-g", str(tmp_path / "missing.db"), "-q"]) == 2
    assert "does not exist" in capsys.readouterr().err
    bad = tmp_path / "bad.db"
    bad.write_text("not a gallery at all" * 100)
    assert main(["gallery", "list", "-g", str(bad)]) == 2
    assert "not an influvision gallery" in capsys.readouterr().err

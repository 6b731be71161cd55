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
                 "--csv", str(tmp_path / "csv"), "--device", "cpu", "--max-side", "2000", "-q"])
    assert code == 0
    report = json.loads(out.read_text())
    assert report["settings"]["detector"]["max_side"] == 2000
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


def test_every_setup_problem_is_said_before_any_work_and_exits_2(tmp_path, shared_data, capsys):
    import pytest

    from influvision import Gallery

    g = tmp_path / "g.db"
    with Gallery(g, device="cpu") as gal:
        gal.add_person("barack_obama", [shared_data / "faces" / "barack_obama" / "1.jpg"])
    photo = str(shared_data / "scenes" / "obama_and_biden.jpg")
    blocker = tmp_path / "a_file"
    blocker.write_text("x")

    def fails(argv: list[str], says: str) -> None:
        assert main(argv) == 2, argv
        assert says in capsys.readouterr().err, argv

    track = ["track", photo, "-g", str(g), "-q"]
    fails([*track, "--device", "bogus"], "unknown device 'bogus'")
    fails([*track, "--device", "cuda:7"], "'cuda:7'")
    fails([*track, "--out", str(tmp_path)], "is a folder")
    fails([*track, "--out", str(blocker / "r.json")], "cannot make its folder")
    fails([*track, "--csv", str(blocker)], "is a file")
    fails([*track, "--annotate", str(blocker)], "is a file")
    fails([*track, "--checkpoint", str(blocker / "c.db")], "cannot make its folder")
    for flag, bad in (("--sample-fps", "-1"), ("--sample-fps", "nan"), ("--sample-fps", "inf"), ("--max-side", "0"),
                      ("--max-side", "2k")):
        with pytest.raises(SystemExit) as stop:  # argparse refuses it
            main([*track, flag, bad])
        assert stop.value.code == 2
    for flag, bad in (("--batch", "0"), ("--workers", "-1"), ("--minutes", "-5"), ("--epochs", "0"),
                      ("--images", "x")):
        with pytest.raises(SystemExit) as stop:
            main(["logos", "train", "-g", str(g), flag, bad])
        assert stop.value.code == 2 and bad in capsys.readouterr().err
    fails(["gallery", "list", "-g", str(tmp_path / "typo.db")], "does not exist")
    assert not (tmp_path / "typo.db").exists()
    empty = tmp_path / "empty.db"
    empty.touch()
    fails(["gallery", "list", "-g", str(empty)], "is an empty file, not a gallery")
    fails(["logos", "train", "-g", str(empty)], "is an empty file, not a gallery")
    assert empty.stat().st_size == 0  # not turned into a gallery
    fails(["gallery", "add-person", "zz", photo, "-g", str(g), "--device", "cuda:7"], "'cuda:7'")
    with Gallery(g, device="cpu") as gal:
        assert gal.people() == ["barack_obama"]  # nothing half-registered
    damaged = tmp_path / "damaged.db"
    data = bytearray(g.read_bytes())
    for page in range(1, len(data) // 4096):  # every page after the header page
        data[page * 4096:page * 4096 + 64] = bytes(range(64))
    damaged.write_bytes(bytes(data))
    fails(["gallery", "list", "-g", str(damaged)], "damaged")


def test_a_terminated_run_exits_143_and_deletes_what_it_extracted(tmp_path, shared_data):
    """SIGTERM (a scheduler's limit, docker stop) ends the run through its finally blocks: the archive members
    it extracted are deleted, as after Ctrl-C."""
    import os
    import signal
    import subprocess
    import sys
    import time
    import zipfile

    from influvision import Gallery

    g = tmp_path / "g.db"
    with Gallery(g, device="cpu") as gal:
        gal.add_person("barack_obama", [shared_data / "faces" / "barack_obama" / "1.jpg"])
    archive = tmp_path / "event.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for k in range(40):
            zf.write(shared_data / "scenes" / "obama_and_biden.jpg", f"p{k:02d}.jpg")
    temp = tmp_path / "tmp"
    temp.mkdir()
    proc = subprocess.Popen([sys.executable, "-m", "influvision.cli", "track", str(archive), "-g", str(g), "-q",
                             "--device", "cpu"], env={**os.environ, "TMPDIR": str(temp)}, stderr=subprocess.PIPE,
                            text=True)
    deadline = time.monotonic() + 120
    while not any(temp.glob("influvision-*/archive*/*.jpg")) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert any(temp.glob("influvision-*/archive*/*.jpg")), "the run never extracted the archive"
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143 and "terminated" in err
    assert not list(temp.glob("influvision-*"))


def test_a_reader_that_goes_away_gives_its_own_exit_code_not_skipped_inputs():
    """``influvision weights list | head -0``: the pipe closes before anything is written; exit 141 (128 +
    SIGPIPE), quietly, not 1 ("finished, some inputs skipped")."""
    proc = subprocess.Popen([sys.executable, "-m", "influvision.cli", "weights", "list"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    proc.stdout.close()  # the reader is gone before the command writes
    assert proc.wait(timeout=120) == 141
    assert b"Traceback" not in proc.stderr.read()

"""Reading inputs without surprises and writing outputs whole."""

from __future__ import annotations

import os
import stat
import tracemalloc

import pytest

from influvision.files import read_regular_file, write_text_atomically, written_atomically


def test_a_bounded_read_reserves_only_what_the_file_holds(tmp_path):
    small = tmp_path / "a.jpg"
    small.write_bytes(b"x" * 1000)
    tracemalloc.start()
    try:
        assert read_regular_file(small, 1 << 30) == b"x" * 1000
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20  # not the 1 GiB allowed: each decoding thread reads photos this way
    with pytest.raises(OSError, match="file too large"):
        read_regular_file(small, 999)


def test_an_output_rewritten_keeps_its_mode_and_its_link(tmp_path):
    target = tmp_path / "shared" / "report.json"
    target.parent.mkdir()
    target.write_text("old")
    os.chmod(target, 0o600)  # a report naming people, kept private
    link = tmp_path / "report.json"
    link.symlink_to(target)
    write_text_atomically(link, "new")
    assert link.is_symlink() and target.read_text() == "new"
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    with pytest.raises(RuntimeError), written_atomically(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("interrupted")
    assert target.read_text() == "new" and sorted(p.name for p in target.parent.iterdir()) == ["report.json"]

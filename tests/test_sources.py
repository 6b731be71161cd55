"""Input collection (files, folders, globs, archives), on real shared media."""

from __future__ import annotations

import io
import os
import shutil
import stat
import tarfile
import zipfile
from pathlib import Path

import pytest

from influvision.decode.images import load_image
from influvision.sources import collect_media

PHOTOS = ("faces/elton_john/2.jpg", "faces/madonna/1.jpg", "faces/kaley_cuoco/1.png")


def _tree(shared_data: Path, root: Path) -> Path:
    """root/{b.jpg, a.jpg, notes.txt, odd.xyz, clip.mp4, sub/c.png, sub/deeper/d.jpg, .hidden/e.jpg}."""
    (root / "sub" / "deeper").mkdir(parents=True)
    (root / ".hidden").mkdir()
    shutil.copyfile(shared_data / PHOTOS[0], root / "b.jpg")
    shutil.copyfile(shared_data / PHOTOS[1], root / "a.jpg")
    shutil.copyfile(shared_data / PHOTOS[2], root / "sub" / "c.png")
    shutil.copyfile(shared_data / PHOTOS[0], root / "sub" / "deeper" / "d.jpg")
    shutil.copyfile(shared_data / PHOTOS[1], root / ".hidden" / "e.jpg")
    shutil.copyfile(shared_data / "videos/nggyup.mp4", root / "clip.mp4")
    (root / "notes.txt").write_text("shot list")
    (root / "odd.xyz").write_bytes(b"\x00\x01")
    return root


def _files_under(root: Path) -> set[Path]:
    return {p for p in root.rglob("*")}


def test_folder_recursive_sorted_with_reasons(shared_data: Path, tmp_path: Path) -> None:
    root = _tree(shared_data, tmp_path / "event")
    with collect_media(root) as media:
        rel = [os.path.relpath(i.path, root) for i in media.items]
        assert rel == ["a.jpg", "b.jpg", "clip.mp4", "sub/c.png", "sub/deeper/d.jpg"]
        assert [i.kind for i in media.items] == ["photo", "photo", "video", "photo", "photo"]
        assert all(i.local_path.is_absolute() and i.local_path.is_file() for i in media.items)
        assert media.items[0].path == str(root / "a.jpg")
        # notes.txt is passed over (only counted); an unknown type is reported.
        assert [(s.path, s.problem) for s in media.skipped] == [
            (str(root / "odd.xyz"), "not a photo or video (unknown file type, '.xyz')")]
        assert media.ignored == 1
        assert media.hidden == 1  # .hidden/e.jpg: counted, not analysed
        assert str(media.skipped[0]) == f"{root / 'odd.xyz'}: not a photo or video (unknown file type, '.xyz')"
        assert media.temp_dir is None  # no archive, no temp folder
    flat = collect_media(root, recursive=False)
    assert [Path(i.path).name for i in flat.items] == ["a.jpg", "b.jpg", "clip.mp4"]


def test_empty_folder_missing_path_and_glob(shared_data: Path, tmp_path: Path) -> None:
    root = _tree(shared_data, tmp_path / "event")
    empty = tmp_path / "empty"
    empty.mkdir()
    only_text = tmp_path / "docs"
    only_text.mkdir()
    (only_text / "readme.txt").write_text("x")
    media = collect_media([empty, only_text, tmp_path / "missing.jpg", str(root / "*.jpg"),
                           str(root / "**" / "*.png"), str(root / "*.gif"), empty, tmp_path / "missing.jpg"])
    assert [Path(i.path).name for i in media.items] == ["a.jpg", "b.jpg", "c.png"]
    # A source given twice is one input, also when it is missing or empty.
    assert [s.problem for s in media.skipped] == [
        "folder contains no photos or videos", "folder contains no photos or videos", "not found",
        "no files match this pattern"]
    assert media.skipped[2].path == str(tmp_path / "missing.jpg")


def test_a_home_relative_path_is_read_and_a_url_is_said_to_be_one(shared_data: Path, tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    root = _tree(shared_data, tmp_path / "home" / "event")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    media = collect_media(["~/event/a.jpg", "https://example.com/b.jpg", "~/event/b.*"])
    assert [(i.path, Path(i.local_path)) for i in media.items] == [("~/event/a.jpg", root / "a.jpg"),
                                                                  (str(root / "b.jpg"), root / "b.jpg")]
    assert [(s.path, s.problem.split(" (")[0]) for s in media.skipped] == [("https://example.com/b.jpg", "not found")]
    assert "URLs are not read" in media.skipped[0].problem


def test_same_file_given_twice_appears_once(shared_data: Path, tmp_path: Path) -> None:
    root = _tree(shared_data, tmp_path / "event")
    (tmp_path / "link.jpg").symlink_to(root / "a.jpg")
    media = collect_media([root / "a.jpg", root, tmp_path / "link.jpg", str(root / "a.*")])
    paths = [i.path for i in media.items]
    assert paths.count(str(root / "a.jpg")) == 1 and len(paths) == 5 and paths[0] == str(root / "a.jpg")
    assert [Path(s.path).name for s in media.skipped] == ["odd.xyz"]
    # The link is another name for a.jpg: not analysed again, but listed (the report shows it as a duplicate).
    assert [(i.path, first) for i, first in media.repeats] == [(str(tmp_path / "link.jpg"), str(root / "a.jpg"))]


def test_folder_links_outside_the_folder_are_not_followed(shared_data: Path, tmp_path: Path) -> None:
    root = _tree(shared_data, tmp_path / "event")
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    shutil.copyfile(shared_data / PHOTOS[1], outside / "x.jpg")
    (root / "out").symlink_to(outside)  # would walk another tree (think /etc) into the report
    (root / "sub" / "back").symlink_to(root / "sub" / "deeper")  # a link inside: walked, each file once
    media = collect_media(root)
    names = sorted(os.path.relpath(i.path, root) for i in media.items)
    assert names == ["a.jpg", "b.jpg", "clip.mp4", "sub/back/d.jpg", "sub/c.png"]
    reasons = {os.path.relpath(s.path, root): s.problem for s in media.skipped}
    assert "outside the folder given: not followed" in reasons["out"]


def test_a_path_that_cannot_be_checked_is_skipped_not_fatal(shared_data: Path, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    root = _tree(shared_data, tmp_path / "event")
    real_is_dir = Path.is_dir

    def is_dir(self: Path) -> bool:  # what a link into a folder without search permission does
        if self.name == "b.jpg":
            raise PermissionError(13, "Permission denied", str(self))
        return real_is_dir(self)

    monkeypatch.setattr(Path, "is_dir", is_dir)
    media = collect_media(root)
    assert "a.jpg" in {Path(i.path).name for i in media.items}
    assert {Path(s.path).name: s.problem for s in media.skipped}["b.jpg"] == "cannot read the file: permission denied"


def test_explicit_files_by_type_and_content(shared_data: Path, tmp_path: Path) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("hello")
    raw = tmp_path / "IMG_1.CR2"
    raw.write_bytes(b"II*\x00" + bytes(60))  # a TIFF-like RAW: refused by name
    renamed = tmp_path / "download"  # a JPEG saved without an extension
    shutil.copyfile(shared_data / PHOTOS[0], renamed)
    media = collect_media([notes, raw, renamed])
    assert [(i.path, i.kind) for i in media.items] == [(str(renamed), "photo")]
    assert load_image(media.items[0].local_path).pixels.shape == (240, 320, 3)
    assert [s.problem for s in media.skipped] == [
        "not a photo or video (unknown file type, '.txt')", "camera RAW photo: not supported; export it as JPEG"]


def _bad_members(shared_data: Path, tmp_path: Path) -> tuple[bytes, bytes, Path]:
    photo = (shared_data / PHOTOS[0]).read_bytes()
    png = (shared_data / PHOTOS[2]).read_bytes()
    outside = tmp_path / "outside" / "abs_evil.jpg"  # where an absolute member name points
    return photo, png, outside


def test_zip_members_cannot_escape(shared_data: Path, tmp_path: Path) -> None:
    photo, png, outside = _bad_members(shared_data, tmp_path)
    work = tmp_path / "work"
    work.mkdir()
    archive = work / "event.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("day2/z.png", png)
        zf.writestr("day1/a.jpg", photo)
        zf.writestr(zipfile.ZipInfo("../evil.jpg"), photo)
        zf.writestr(zipfile.ZipInfo(str(outside)), photo)
        zf.writestr(zipfile.ZipInfo("..\\win_evil.jpg"), photo)
        link = zipfile.ZipInfo("day1/link.jpg")
        link.external_attr = (stat.S_IFLNK | 0o777) << 16
        zf.writestr(link, "/etc/passwd")
        zf.writestr("day1/notes.txt", "ignored")
        zf.writestr("__MACOSX/day1/._a.jpg", b"\x00\x05\x16\x07")
        zf.writestr("inner.zip", b"PK\x05\x06" + bytes(18))
    before = _files_under(tmp_path)
    with collect_media(archive) as media:
        tmp = media.temp_dir
        assert tmp is not None and not tmp.is_relative_to(tmp_path)
        assert [i.path for i in media.items] == [f"{archive}!/day1/a.jpg", f"{archive}!/day2/z.png"]
        for item in media.items:
            assert item.local_path.resolve().is_relative_to(tmp.resolve())
        assert media.items[0].local_path.read_bytes() == photo
        assert load_image(media.items[1].local_path).pixels.shape == (150, 150, 3)
        reasons = {s.path.split("!/")[1]: s.problem for s in media.skipped}
        assert set(reasons) == {"../evil.jpg", str(outside), "..\\win_evil.jpg", "day1/link.jpg", "inner.zip"}
        assert "'..'" in reasons["../evil.jpg"] and "'..'" in reasons["..\\win_evil.jpg"]
        assert "absolute path" in reasons[str(outside)]
        assert "link" in reasons["day1/link.jpg"] and "archive inside an archive" in reasons["inner.zip"]
        assert media.ignored == 2  # day1/notes.txt and the macOS resource fork
        assert sorted(p.suffix for p in tmp.rglob("*") if p.is_file() and p.name != ".lock") == [".jpg", ".png"]  # only the 2 wanted
        assert _files_under(tmp_path) == before  # nothing written beside or above the archive
        assert not outside.exists() and not (tmp_path / "evil.jpg").exists()
    assert not tmp.exists()  # closing deletes the extracted members


def test_archive_members_of_one_name_get_names_no_other_member_has(shared_data: Path, tmp_path: Path) -> None:
    import warnings

    archive = tmp_path / "dup.zip"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile warns about the repeated name
        with zipfile.ZipFile(archive, "w") as zf:
            for name, photo in (("a.jpg", PHOTOS[0]), ("a.jpg", PHOTOS[1]), ("a.jpg#2", PHOTOS[2])):
                zf.writestr(name, (shared_data / photo).read_bytes())
    with collect_media([archive]) as media:
        names = sorted(i.path.rsplit("!/", 1)[1] for i in media.items)
        assert names == ["a.jpg", "a.jpg#2", "a.jpg#3"]


def test_a_gallery_or_checkpoint_kept_beside_the_photos_is_passed_over(shared_data: Path, tmp_path: Path) -> None:
    shutil.copyfile(shared_data / PHOTOS[0], tmp_path / "a.jpg")
    for name in ("event.db", "event.db-wal", "event.db-shm", "run.ckpt", "run.ckpt-wal", "run.ckpt-journal"):
        (tmp_path / name).write_bytes(b"SQLite format 3\x00" + bytes(100))
    with collect_media([tmp_path]) as media:
        assert [Path(i.path).name for i in media.items] == ["a.jpg"]
        assert media.skipped == [] and media.ignored == 6


def test_archive_members_without_media_extension_are_taken_by_content(shared_data: Path, tmp_path: Path) -> None:
    archive = tmp_path / "scans.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("IMG_0001", (shared_data / PHOTOS[0]).read_bytes())
        zf.writestr("README", "shot list")
        zf.writestr("notes.txt", "passed over")
    with collect_media([archive]) as media:
        assert [(i.path, i.kind) for i in media.items] == [(f"{archive}!/IMG_0001", "photo")]
        assert load_image(media.items[0].local_path).width > 0
        assert [(s.path, s.problem) for s in media.skipped] == [
            (f"{archive}!/README", "not a photo or video (unknown file type)")]
        assert media.ignored == 1


def test_tar_members_cannot_escape(shared_data: Path, tmp_path: Path) -> None:
    photo, png, outside = _bad_members(shared_data, tmp_path)
    work = tmp_path / "work"
    work.mkdir()
    archive = work / "event.tar.gz"

    def add(tf: tarfile.TarFile, name: str, data: bytes = b"", kind: bytes = tarfile.REGTYPE,
            target: str = "") -> None:
        info = tarfile.TarInfo(name)
        info.type, info.size, info.linkname = kind, len(data), target
        tf.addfile(info, io.BytesIO(data) if data else None)

    with tarfile.open(archive, "w:gz") as tf:
        add(tf, "day1", kind=tarfile.DIRTYPE)
        add(tf, "day1/b.jpg", photo)
        add(tf, "../evil.jpg", photo)
        add(tf, str(outside), photo)
        add(tf, "day1/sym.jpg", kind=tarfile.SYMTYPE, target="/etc/passwd")
        add(tf, "day1/hard.jpg", kind=tarfile.LNKTYPE, target="../../etc/passwd")
        add(tf, "day1/dev.jpg", kind=tarfile.CHRTYPE)
        add(tf, "day1/a.png", png)
    before = _files_under(tmp_path)
    with collect_media([archive, archive]) as media:  # the same archive twice is opened once
        assert [i.path for i in media.items] == [f"{archive}!/day1/a.png", f"{archive}!/day1/b.jpg"]
        assert media.items[1].local_path.read_bytes() == photo
        assert all(i.local_path.resolve().is_relative_to(media.temp_dir.resolve()) for i in media.items)
        reasons = {s.path.split("!/")[1]: s.problem for s in media.skipped}
        assert set(reasons) == {"../evil.jpg", str(outside), "day1/sym.jpg", "day1/hard.jpg", "day1/dev.jpg"}
        assert "link" in reasons["day1/sym.jpg"] and "link" in reasons["day1/hard.jpg"]
        assert "device or special file" in reasons["day1/dev.jpg"]
        assert _files_under(tmp_path) == before and not outside.exists()


def test_damaged_archives_and_bomb_limits(shared_data: Path, tmp_path: Path) -> None:
    photo = (shared_data / PHOTOS[0]).read_bytes()
    broken_zip = tmp_path / "broken.zip"
    broken_zip.write_bytes(b"PK\x03\x04 not really a zip")
    broken_tar = tmp_path / "broken.tar.gz"
    broken_tar.write_bytes(b"\x1f\x8b\x08\x00garbage")
    bomb = tmp_path / "bomb.zip"
    with zipfile.ZipFile(bomb, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("zeros.jpg", bytes(4 * 2**20))  # 4 MiB of zeros compress ~1000x
        zf.writestr("a.jpg", photo)
        zf.writestr("b.jpg", photo)
    media = collect_media([broken_zip, broken_tar, bomb])
    assert [i.path for i in media.items] == [f"{bomb}!/a.jpg", f"{bomb}!/b.jpg"]
    problems = [s.problem for s in media.skipped]
    assert problems[0].startswith("damaged archive: not a readable ZIP file")
    assert problems[1].startswith("damaged archive")
    assert media.skipped[2].path == f"{bomb}!/zeros.jpg" and "possible zip bomb" in problems[2]
    assert len(problems) == 3
    media.close()
    # The extraction budget is shared by all members: b.jpg no longer fits once a.jpg is out.
    with collect_media(bomb, max_extract_bytes=len(photo) + 10, max_compression_ratio=1e9) as media:
        assert [i.path for i in media.items] == [f"{bomb}!/a.jpg"]
        assert {Path(s.path.split("!/")[1]).name for s in media.skipped} == {"b.jpg", "zeros.jpg"}
        assert all("extraction limit" in s.problem for s in media.skipped)


def test_a_compressed_tar_that_inflates_like_a_bomb_is_refused_unextracted(shared_data: Path, tmp_path: Path) -> None:
    archive = tmp_path / "bomb.tar.gz"
    photo = (shared_data / PHOTOS[0]).read_bytes()
    with tarfile.open(archive, "w:gz") as tf:
        for name, data in (("a.jpg", photo), ("zeros.jpg", bytes(64 << 20))):  # 64 MiB packs into ~64 kB
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    assert archive.stat().st_size < 1 << 20
    with collect_media(archive) as media:
        assert [i.path for i in media.items] == [f"{archive}!/a.jpg"]
        (skip,) = media.skipped
        assert skip.path == f"{archive}!/zeros.jpg" and "possible zip bomb" in skip.problem
        assert sum(f.stat().st_size for f in media.temp_dir.rglob("*") if f.is_file() and f.name != ".lock") == len(photo)


def test_a_folder_and_the_same_tree_zipped_give_the_same_media(shared_data: Path, tmp_path: Path) -> None:
    root = _tree(shared_data, tmp_path / "event")
    (root / "__MACOSX").mkdir()
    (root / "__MACOSX" / "._a.jpg").write_bytes(b"\x00\x05\x16\x07")
    archive = tmp_path / "event.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for f in sorted(root.rglob("*")):
            if f.is_file():
                zf.write(f, f.relative_to(root).as_posix())
    with collect_media(root) as folder, collect_media(archive) as zipped:
        assert [os.path.relpath(i.path, root) for i in folder.items] == [i.path.split("!/")[1] for i in zipped.items]
        assert folder.hidden == zipped.hidden == 1  # .hidden/e.jpg
        assert folder.ignored == zipped.ignored == 2  # notes.txt and the resource fork
    with collect_media(root / ".hidden") as given:  # named as a source, a hidden folder is searched
        assert [Path(i.path).name for i in given.items] == ["e.jpg"] and given.hidden == 0


def test_an_archive_whose_only_member_is_refused_is_reported_once(shared_data: Path, tmp_path: Path) -> None:
    archive = tmp_path / "bad_only.tar"
    with tarfile.open(archive, "w") as tf:
        tf.add(shared_data / PHOTOS[0], arcname="../x.jpg")
    with collect_media(archive) as media:
        assert [(s.path, s.problem) for s in media.skipped] == [
            (f"{archive}!/../x.jpg", "unsafe path in archive ('..' points outside the archive): refused")]


def test_names_that_are_not_utf8_are_shown_escaped(shared_data: Path, tmp_path: Path) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    odd = os.fsdecode(b"caf\xe9.jpg")  # a Latin-1 name on a UTF-8 file system: a surrogate escape in Python
    shutil.copyfile(shared_data / PHOTOS[0], folder / odd)
    archive = tmp_path / "a.tar"
    with tarfile.open(archive, "w", encoding="utf-8", errors="surrogateescape") as tf:
        tf.add(shared_data / PHOTOS[1], arcname=os.fsdecode(b"d\xe9j\xe0.jpg"))
    with collect_media([folder, archive, tmp_path / os.fsdecode(b"gone\xff.jpg")]) as media:
        shown = [i.path for i in media.items] + [s.path for s in media.skipped] + [str(s) for s in media.skipped]
        assert [Path(i.path).name for i in media.items] == ["caf\\xe9.jpg", "d\\xe9j\\xe0.jpg"]
        assert [(Path(s.path).name, s.problem) for s in media.skipped] == [("gone\\xff.jpg", "not found")]
        for name in shown:
            name.encode("utf-8")  # writable as text: no surrogate escapes left
        assert load_image(media.items[0].local_path).sha256  # still read through its real path


def test_a_zip_of_many_small_members_cannot_inflate_past_the_archive_ratio(tmp_path: Path) -> None:
    # Each member is 1 MiB of zeros: under the per-member ratio test's size, so only the archive-wide cap
    # (100 x the zip's size, as for a tar) stops them.
    archive = tmp_path / "many.zip"
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for k in range(60):
            zf.writestr(f"m{k:03d}.jpg", bytes(2**20))
    with collect_media(archive) as media:
        extracted = sum(f.stat().st_size for f in media.temp_dir.rglob("*") if f.is_file() and f.suffix == ".jpg")
        assert extracted <= 100 * archive.stat().st_size + 2**20
        refused = [s for s in media.skipped if "inflate to more than 100 times" in s.problem]
        assert len(refused) >= 50 and len(refused) + len(media.skipped) - len(refused) + len(media.items) >= 60


def test_the_runs_own_outputs_are_not_inputs(shared_data: Path, tmp_path: Path) -> None:
    photos = tmp_path / "event"
    photos.mkdir()
    shutil.copyfile(shared_data / PHOTOS[0], photos / "a.jpg")
    (photos / "annotated").mkdir()
    shutil.copyfile(shared_data / PHOTOS[1], photos / "annotated" / "a_annotated.jpg")
    (photos / "progress").write_bytes(b"SQLite format 3\x00")  # a checkpoint named without an extension
    own = [photos / "annotated", photos / "progress"]
    with collect_media(photos, exclude=own) as media:
        assert [Path(i.path).name for i in media.items] == ["a.jpg"]
        assert media.skipped == [] and media.ignored == 0  # the run's own files are not counted as passed over
    with collect_media(photos / "annotated", exclude=own) as media:  # named as a source: said why not
        assert media.items == [] and "this run's own output" in media.skipped[0].problem
    with collect_media(photos) as media:  # without the exclusion both are inputs
        assert len(media.items) == 2 and len(media.skipped) == 1
    (photos / ".annotated").mkdir()  # an output folder named like a hidden one: neither hidden nor ignored
    shutil.copyfile(shared_data / PHOTOS[1], photos / ".annotated" / "b.jpg")
    with collect_media(photos, exclude=[*own, photos / ".annotated"]) as media:
        assert [Path(i.path).name for i in media.items] == ["a.jpg"] and media.hidden == 0 and media.ignored == 0


def test_inputs_shown_alike_keep_names_of_their_own(shared_data: Path, tmp_path: Path) -> None:
    folder = tmp_path / "ev.zip!"  # a folder whose members are shown like the archive's
    folder.mkdir()
    shutil.copyfile(shared_data / PHOTOS[0], folder / "a.jpg")
    archive = tmp_path / "ev.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.write(shared_data / PHOTOS[1], "a.jpg")
    with collect_media([folder, archive]) as media:
        assert [i.path for i in media.items] == [f"{folder}/a.jpg", f"{archive}!/a.jpg#2"]


def test_content_decides_where_the_name_says_another_kind(shared_data: Path, tmp_path: Path) -> None:
    shutil.copyfile(shared_data / "videos/nggyup.mp4", tmp_path / "clip.jpg")
    shutil.copyfile(shared_data / PHOTOS[0], tmp_path / "photo.mp4")
    zipped = tmp_path / "really_zip.tar.gz"
    with zipfile.ZipFile(zipped, "w") as zf:
        zf.write(shared_data / PHOTOS[1], "b.jpg")
    with collect_media([tmp_path / "clip.jpg", tmp_path / "photo.mp4", zipped]) as media:
        assert [(Path(i.path).name, i.kind) for i in media.items] == [
            ("clip.jpg", "video"), ("photo.mp4", "photo"), ("b.jpg", "photo")]
        assert media.skipped == []


def test_a_zip_member_in_a_method_python_cannot_read_is_not_called_damaged(shared_data: Path, tmp_path: Path) -> None:
    archive = tmp_path / "z.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.write(shared_data / PHOTOS[0], "a.jpg")
    data = bytearray(archive.read_bytes())
    for header in (b"PK\x03\x04", b"PK\x01\x02"):  # the method field in the local and central headers: 93 (zstd)
        at = data.index(header)
        offset = 8 if header == b"PK\x03\x04" else 10
        data[at + offset:at + offset + 2] = (93).to_bytes(2, "little")
    archive.write_bytes(bytes(data))
    with collect_media(archive) as media:
        (skip,) = media.skipped
        assert "not damaged" in skip.problem and "deflate" in skip.problem


def test_a_glob_with_brackets_that_matches_nothing_says_why(tmp_path: Path) -> None:
    with collect_media(str(tmp_path / "Party [2023]" / "*.jpg")) as media:
        assert "write '[[]' for a literal '['" in media.skipped[0].problem


def test_archive_members_of_a_killed_run_are_deleted_by_the_next(shared_data: Path, tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    import subprocess
    import sys

    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    archive = tmp_path / "a.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.write(shared_data / PHOTOS[0], "a.jpg")
    # A run that opens the archive and is killed outright before it can delete its folder.
    code = ("import os, tempfile, signal; tempfile.tempdir = {t!r}\n"
            "from influvision.sources import collect_media\n"
            "m = collect_media({a!r}); print(m.temp_dir, flush=True); os.kill(os.getpid(), signal.SIGKILL)")
    out = subprocess.run([sys.executable, "-c", code.format(t=str(tmp_path), a=str(archive))],
                         capture_output=True, text=True)
    left = Path(out.stdout.strip())
    assert left.is_dir() and any(left.rglob("*.jpg"))
    with collect_media(archive) as media:  # a live run's folder is kept; the dead one's is deleted
        assert media.temp_dir.is_dir() and not left.exists()
        with collect_media(archive) as other:
            assert media.temp_dir.is_dir() and other.temp_dir.is_dir()


def test_a_tar_cut_off_in_a_member_is_one_skipped_entry_for_that_member(shared_data: Path, tmp_path: Path) -> None:
    """The member being extracted when the archive ends, and the archive ending, are one event: one entry
    naming the member and saying nothing after it could be read; the members before it are analysed."""
    archive = tmp_path / "event.tar"
    with tarfile.open(archive, "w") as tf:
        for name, src in (("a.jpg", PHOTOS[0]), ("b.jpg", PHOTOS[1])):
            tf.add(shared_data / src, arcname=name)
    data = archive.read_bytes()
    b_start = data.index((shared_data / PHOTOS[1]).read_bytes()[:64])
    cut = tmp_path / "cut.tar"
    cut.write_bytes(data[: b_start + 100])  # b.jpg's header and its first 100 bytes
    with collect_media(cut) as media:
        assert [Path(i.path).name for i in media.items] == ["a.jpg"]
        (skipped,) = media.skipped
        assert skipped.path == f"{cut}!/b.jpg" and "nothing after this member could be read" in skipped.problem

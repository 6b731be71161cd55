"""The gallery: what a reference photo must be, persistence, and damaged files."""

from __future__ import annotations

import os
import sqlite3

import pytest

from influvision import Gallery
from influvision.errors import GalleryError


@pytest.fixture()
def gallery(tmp_path):
    with Gallery(tmp_path / "g.db", device="cpu") as g:
        yield g


def test_reference_photos_are_checked_one_by_one(gallery, shared_data):
    faces = shared_data / "faces"
    statuses = gallery.add_person("joe_biden", [
        faces / "joe_biden" / "1.jpg",                 # one clear face
        shared_data / "scenes" / "bbt5.jpg",            # five comparable faces: which one?
        shared_data / "logos" / "refs" / "nike.png",    # no face at all
        faces / "joe_biden" / "missing.jpg",            # unreadable
    ])
    assert [s.status for s in statuses] == ["added", "several_faces", "no_face", "error"]
    assert "bbt5.jpg" in statuses[1].message and "missing.jpg" in statuses[3].message
    again = gallery.add_person("joe_biden", [faces / "joe_biden" / "1.jpg"])
    assert again[0].status == "already_registered"
    assert gallery.people() == ["joe_biden"] and len(gallery.references("joe_biden")) == 1


def test_one_face_under_two_names_is_flagged_and_names_differing_in_case_are_refused(gallery, shared_data):
    faces = shared_data / "faces"
    gallery.add_person("elton_john", [faces / "elton_john" / "1.jpg"])
    (same_file,) = gallery.add_person("sir_elton", [faces / "elton_john" / "1.jpg"])  # the very file: a slip
    assert same_file.status == "error" and "already a reference of 'elton_john'" in same_file.message
    (again,) = gallery.add_person("sir_elton", [faces / "elton_john" / "5.jpg"])
    assert again.status == "added" and "elton_john's reference" in again.message and "two names" in again.message
    (other,) = gallery.add_person("madonna", [faces / "madonna" / "1.jpg"])  # someone else: no warning
    assert other.status == "added" and other.message == ""
    with pytest.raises(GalleryError, match="only in letter case"):
        gallery.add_person("Elton_John", [faces / "elton_john" / "2.jpg"])
    assert gallery.people() == ["elton_john", "madonna", "sir_elton"]


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root can write anywhere")
def test_a_gallery_in_a_read_only_folder_is_read(tmp_path, shared_data):
    folder = tmp_path / "shared"
    folder.mkdir()
    with Gallery(folder / "g.db", device="cpu") as g:
        g.add_person("barack_obama", [shared_data / "faces" / "barack_obama" / "1.jpg"])
    (folder / "g.db").chmod(0o444)
    folder.chmod(0o555)
    try:
        with Gallery(folder / "g.db", device="cpu") as g:
            assert g.people() == ["barack_obama"] and g.index().embeddings.shape == (1, 128)
    finally:
        folder.chmod(0o755)


def test_a_reference_far_from_the_persons_others_is_added_with_a_warning(gallery, shared_data):
    faces = shared_data / "faces"
    gallery.add_person("elton_john", [faces / "elton_john" / "1.jpg"])
    (odd,) = gallery.add_person("elton_john", [faces / "madonna" / "1.jpg"])
    assert odd.status == "added" and "from the person's other references" in odd.message


def test_a_closed_gallery_says_so(tmp_path):
    with Gallery(tmp_path / "g.db", device="cpu") as g:
        pass
    assert "closed" in repr(g)
    with pytest.raises(GalleryError, match="is closed"):
        g.people()
    g.close()  # closing twice is harmless


def test_a_person_with_no_usable_reference_is_not_registered(gallery, shared_data):
    statuses = gallery.add_person("nobody", [shared_data / "logos" / "refs" / "nike.png"])
    assert statuses[0].status == "no_face" and gallery.people() == []


def test_gallery_persists_and_index_has_one_row_per_reference(tmp_path, shared_data):
    path = tmp_path / "event.db"
    with Gallery(path, device="cpu") as g:
        g.add_person("barack_obama", sorted((shared_data / "faces" / "barack_obama").iterdir()))
        g.add_person("joe_biden", sorted((shared_data / "faces" / "joe_biden").iterdir()))
        g.remove_person("joe_biden")
    with Gallery(path, device="cpu") as g:
        index = g.index()
        assert g.people() == ["barack_obama"] and index.names == ["barack_obama"]
        assert index.embeddings.shape == (2, 128) and index.owner.tolist() == [0, 0]


def test_embeddings_are_recomputed_when_missing_for_the_embedder(tmp_path, shared_data):
    with Gallery(tmp_path / "g.db", device="cpu") as g:
        g.add_person("barack_obama", [shared_data / "faces" / "barack_obama" / "1.jpg"])
        before = g.index().embeddings.clone()
        g._db.execute("UPDATE embeddings SET embedder='older-' || embedder")
        after = g.index().embeddings
        assert after.shape == before.shape and float((after - before).abs().max()) < 1e-4


@pytest.mark.parametrize("name", ["", "../etc", "a" * 200, "bad/name", None])
def test_invalid_names_are_refused(gallery, shared_data, name):
    with pytest.raises(GalleryError, match="invalid name"):
        gallery.add_person(name, [shared_data / "faces" / "joe_biden" / "1.jpg"])


def test_damaged_and_foreign_files_give_clear_errors(tmp_path):
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"\x00garbage" * 500)
    with pytest.raises(GalleryError, match="not an influvision gallery"):
        Gallery(junk)
    foreign = tmp_path / "foreign.db"
    sqlite3.connect(foreign).execute("CREATE TABLE t (x)")
    with pytest.raises(GalleryError, match="not an influvision gallery"):
        Gallery(foreign)


def test_damaged_contents_of_a_gallery_are_named(tmp_path, shared_data):
    path = tmp_path / "g.db"
    with Gallery(path, device="cpu") as g:
        g.add_person("barack_obama", [shared_data / "faces" / "barack_obama" / "1.jpg"])
        assert g.index().embeddings.shape == (1, 128)
        g._db.execute("UPDATE embeddings SET vector = substr(vector, 1, 100)")  # truncated by a bad copy
        with pytest.raises(GalleryError, match="embedding of barack_obama's reference .*1.jpg is not 128"):
            g.index()
        g._db.execute("UPDATE embeddings SET vector = zeroblob(2048), dim = 512")  # another model's, same name
        with pytest.raises(GalleryError, match="embedding of barack_obama's reference .*1.jpg is not 128"):
            g.index()
        g._db.execute("UPDATE meta SET value = 'abc' WHERE key = 'schema_version'")
    with pytest.raises(GalleryError, match="schema version 'abc'"):
        Gallery(path)
    sqlite3.connect(path).executescript("UPDATE meta SET value = '1' WHERE key = 'schema_version'; "
                                        "DROP TABLE embeddings;")
    with pytest.raises(GalleryError, match="no table embeddings"):
        Gallery(path)


def test_unknown_person_removal_lists_who_is_registered(gallery):
    with pytest.raises(GalleryError, match="no person named 'ghost'"):
        gallery.remove_person("ghost")


def test_a_gallery_from_before_trained_logo_detectors_opens(tmp_path):
    path = tmp_path / "old.db"
    Gallery(path, device="cpu").close()
    with sqlite3.connect(path) as db:
        db.execute("DROP TABLE logo_detector")
    with Gallery(path, device="cpu") as g:
        assert g.load_detector() is None
        assert g._db.execute("SELECT count(*) FROM logo_detector").fetchone() == (0,)


def test_a_pipe_given_as_a_reference_photo_is_refused_not_waited_on(gallery, shared_data, tmp_path):
    fifo = tmp_path / "ref.jpg"
    os.mkfifo(fifo)
    statuses = gallery.add_person("joe_biden", [fifo, shared_data / "faces" / "joe_biden" / "1.jpg"])
    assert [s.status for s in statuses] == ["error", "added"] and "not a regular file" in statuses[0].message


def test_names_are_compared_in_one_unicode_form(gallery, shared_data):
    import unicodedata

    faces = shared_data / "faces"
    decomposed = unicodedata.normalize("NFD", "Zoë Müller")  # accents as separate marks, as macOS stores names
    gallery.add_person(decomposed, [faces / "madonna" / "1.jpg"])
    assert gallery.people() == ["Zoë Müller"]  # stored composed
    (again,) = gallery.add_person("Zoë Müller", [faces / "madonna" / "1.jpg"])
    assert again.status == "already_registered"
    with pytest.raises(GalleryError, match="letter case or width"):
        gallery.add_person("ＺＯË Müller", [faces / "madonna" / "2.jpg"])  # full-width letters: the same name


def test_a_bad_brand_name_is_refused_once_before_any_file_is_read(gallery, shared_data):
    with pytest.raises(GalleryError, match="invalid brand name 'Acme'"):
        gallery.add_brand("Acme", [shared_data / "logos" / "refs" / "nike.png", "/nowhere/missing.png"])
    assert gallery.brands() == []


def test_processes_creating_one_gallery_and_registering_one_name_at_once_agree(tmp_path, shared_data):
    import subprocess
    import sys

    nike = shared_data / "logos" / "refs" / "nike.png"
    script = ("import sys; from influvision import Gallery; g = Gallery(sys.argv[1], device='cpu'); "
              "print(*(s.status for s in g.add_brand(sys.argv[2], [sys.argv[3]])))")
    for trial in range(3):
        path = tmp_path / f"new_{trial}.db"
        runs = [subprocess.Popen([sys.executable, "-c", script, str(path), "acme", str(nike)], text=True,
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE) for _ in range(2)]
        outs = [r.communicate(timeout=300) for r in runs]
        assert [r.returncode for r in runs] == [0, 0], [err[-400:] for _, err in outs]
        assert sorted(out.strip() for out, _ in outs) == ["added", "already_registered"]
        with Gallery(path, device="cpu") as g:
            assert g.brands() == ["acme"]


def test_references_are_paths_a_folder_gives_its_images_and_a_read_only_gallery_refuses_writes(
        tmp_path, shared_data, monkeypatch):
    with Gallery(tmp_path / "g.db", device="cpu") as g:
        for wrong in (b"/a.jpg", None, 5, [b"/a.jpg"]):
            with pytest.raises(TypeError, match="reference image paths"):
                g.add_person("joe_biden", wrong)
        statuses = g.add_person("joe_biden", shared_data / "faces" / "joe_biden")  # a folder: its photos
        assert len(statuses) == len(list((shared_data / "faces" / "joe_biden").iterdir())) >= 2
        assert all(s.ok for s in statuses)
    real_access = os.access
    monkeypatch.setattr("influvision.gallery.os.access",
                        lambda p, mode: False if mode == os.W_OK else real_access(p, mode))
    with Gallery(tmp_path / "g.db", device="cpu") as ro:
        assert ro.read_only and ro.people() == ["joe_biden"]
        with pytest.raises(GalleryError, match="read-only"):
            ro.add_person("barack_obama", [shared_data / "faces" / "barack_obama" / "1.jpg"])
        with pytest.raises(GalleryError, match="read-only"):
            ro.remove_person("joe_biden")


def test_a_name_given_up_by_another_registration_meanwhile_keeps_this_ones_reference(tmp_path, shared_data,
                                                                                     monkeypatch):
    """Two processes register one new name: the first's references all fail, so it deletes the name it created,
    while the second, which found that name, is checking its own reference. The second's reference was lost
    (or the insert failed on the missing name); it now registers the name again."""
    path = tmp_path / "g.db"
    other, mine = Gallery(path, device="cpu"), Gallery(path, device="cpu")
    real = Gallery._check_reference

    def racing(self, subject, ref_path, accept):
        verdict = real(self, subject, ref_path, accept)
        with other._immediate():  # the other registration's clean-up, while this one was checking
            other._db.execute("DELETE FROM subjects WHERE id=?", (subject,))
        return verdict

    monkeypatch.setattr(Gallery, "_check_reference", racing)
    (status,) = mine.add_brand("fedex", [shared_data / "logos" / "refs" / "fedex.png"])
    assert status.status == "added"
    assert other.brands() == ["fedex"] and len(other.brand_images()) == 1
    other.close()
    mine.close()


def test_a_read_only_gallery_changed_by_its_owner_is_not_read_stale(tmp_path, shared_data, monkeypatch):
    """A gallery in a folder this process cannot write is read as a snapshot; once its owner registers or
    removes somebody, using the old snapshot for a run is refused instead of tracking against who was there."""
    import influvision.gallery as gallery_module

    path = tmp_path / "shared.db"
    with Gallery(path, device="cpu") as owner:
        owner.add_person("barack_obama", [shared_data / "faces" / "barack_obama" / "1.jpg"])
    real_access = os.access
    monkeypatch.setattr(gallery_module.os, "access", lambda p, mode: False if mode == os.W_OK else real_access(p, mode))
    reader = Gallery(path, device="cpu")
    monkeypatch.undo()
    assert reader.read_only and reader.people() == ["barack_obama"]
    key = reader.content_key()
    assert reader.content_key() == key  # unchanged file: the same snapshot
    with Gallery(path, device="cpu") as owner:
        owner.add_person("joe_biden", [shared_data / "faces" / "joe_biden" / "1.jpg"])
    with pytest.raises(GalleryError, match="changed on disk since it was opened read-only"):
        reader.content_key()
    reader.close()
    assert Gallery(path, device="cpu").people() == ["barack_obama", "joe_biden"]

"""track() on real photos: the right people, nobody unregistered, bad inputs reported, duplicates once."""

from __future__ import annotations

import json
import shutil
import warnings
import zipfile
from pathlib import Path

import pytest
from PIL import Image

import influvision as iv


@pytest.fixture(scope="module")
def scenes_report(shared_data, full_gallery):
    return iv.track(shared_data / "scenes", gallery=full_gallery, device="cpu", progress=False)


def test_every_scene_is_analysed_and_no_unregistered_person_is_named(scenes_report, shared_data):
    labels = json.loads((shared_data / "scenes" / "labels.json").read_text())["images"]
    by_name = {m.path.split("/")[-1]: m for m in scenes_report.media}
    assert set(by_name) == set(labels)
    for name, label in labels.items():
        named = {f.identity for f in by_name[name].faces if f.identity}
        assert named <= set(label["known"]), f"{name}: named {named - set(label['known'])} who are not there"
    assert not any(f.identity for f in by_name["group2.jpg"].faces)
    assert sum(f.identity is None for f in by_name["group2.jpg"].faces) >= 4


def test_registered_people_in_scenes_are_found(scenes_report, shared_data):
    labels = json.loads((shared_data / "scenes" / "labels.json").read_text())["images"]
    truth = {(n, p) for n, lab in labels.items() for p in lab["known"]}
    found = {(m.path.split("/")[-1], f.identity) for m in scenes_report.media for f in m.faces if f.identity}
    assert len(found & truth) / len(truth) >= 0.85, sorted(truth - found)
    obama = scenes_report.people["barack_obama"]
    assert obama.photo_count == 1 and obama.photos[0].endswith("obama_and_biden.jpg")
    assert ("barack_obama", "joe_biden") in {(p.a, p.b) for p in scenes_report.together}


def test_report_counts_faces_by_outcome(scenes_report):
    c = scenes_report.counts
    assert c.inputs_seen == c.analysed == 7 and c.skipped == 0
    assert c.faces == c.named_faces + c.unknown_faces + c.unidentifiable_faces
    assert c.unknown_faces >= 5  # group2 alone has five strangers
    assert scenes_report.settings.threshold == iv.load_embedder("dlib-resnet-v1", "cpu").threshold


def test_bad_inputs_are_skipped_with_reasons_and_the_rest_counted(tmp_path, shared_data, full_gallery):
    good = shared_data / "scenes" / "obama_and_biden.jpg"
    shutil.copy(good, tmp_path / "good.jpg")
    shutil.copy(good, tmp_path / "copy_of_good.jpg")
    data = good.read_bytes()
    (tmp_path / "truncated.jpg").write_bytes(data[: len(data) // 2])
    (tmp_path / "notes.jpg").write_text("this is not a photo")
    (tmp_path / "empty.jpg").write_bytes(b"")
    (tmp_path / "good.xmp").write_text("<x:xmpmeta/>")  # a sidecar: passed over, only counted
    np = pytest.importorskip("numpy")
    from PIL import Image
    Image.fromarray(np.zeros((1, 300, 3), np.uint8)).save(tmp_path / "line.png")  # no face fits; must not stop the run
    (tmp_path / "link.jpg").symlink_to(tmp_path / "good.jpg")  # another name of one file: listed as a duplicate
    (tmp_path / "zz_cut.jpg").symlink_to(tmp_path / "truncated.jpg")  # ... of a skipped file: skipped too
    report = iv.track([tmp_path, tmp_path / "missing.jpg", tmp_path / "good.jpg"], gallery=full_gallery,
                      device="cpu", progress=False)
    skipped = {s.path.split("/")[-1]: s.error for s in report.skipped}
    assert set(skipped) == {"truncated.jpg", "notes.jpg", "empty.jpg", "missing.jpg", "line.png", "zz_cut.jpg"}
    assert "the same file as" in skipped["zz_cut.jpg"] and skipped["zz_cut.jpg"].endswith("which was skipped")
    assert all(name in err for name, err in skipped.items())
    assert "image too small: 300 x 1" in skipped["line.png"]
    assert report.counts.inputs_seen == 9 and report.counts.skipped == 6 and report.counts.duplicates == 2
    assert {m.path.split("/")[-1]: m.duplicate_of.split("/")[-1] for m in report.media if m.duplicate_of} == {
        "good.jpg": "copy_of_good.jpg", "link.jpg": "good.jpg"}
    assert report.counts.ignored_files == 1 and "non-media files ignored: 1" in report.summary()
    assert report.people["barack_obama"].photo_count == 1  # the byte-identical copy is not counted again


def test_resume_from_checkpoint_does_not_analyse_again(tmp_path, shared_data, full_gallery, monkeypatch):
    src = tmp_path / "photos"
    src.mkdir()
    for name in ("couple.jpg", "group2.jpg"):
        shutil.copy(shared_data / "scenes" / name, src / name)
    first = iv.track(src, gallery=full_gallery, device="cpu", checkpoint=tmp_path / "run.ckpt", progress=False)
    calls = []
    pipeline = full_gallery.pipeline
    monkeypatch.setattr(type(pipeline), "__call__", lambda self, images: calls.append(images))
    second = iv.track(src, gallery=full_gallery, device="cpu", checkpoint=tmp_path / "run.ckpt", progress=False)
    assert calls == [] and second.people == first.people and second.media == first.media



def test_a_rerun_with_its_outputs_inside_the_source_folder_counts_the_same(tmp_path, shared_data, full_gallery):
    src = tmp_path / "photos"
    src.mkdir()
    shutil.copy(shared_data / "scenes" / "obama_and_biden.jpg", src / "a.jpg")
    runs = [iv.track(src, gallery=full_gallery, device="cpu", checkpoint=src / "progress",
                     annotate_dir=src / "annotated", progress=False) for _ in range(2)]
    assert any((src / "annotated").iterdir())
    for report in runs:  # the annotated copy and the checkpoint are never inputs
        assert [Path(m.path).name for m in report.media] == ["a.jpg"] and report.skipped == []
        assert report.people["barack_obama"].photo_count == report.people["joe_biden"].photo_count == 1

def test_archive_members_of_one_name_are_two_photos(tmp_path, shared_data, full_gallery):
    archive = tmp_path / "dup.zip"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile warns about the repeated name
        with zipfile.ZipFile(archive, "w") as zf:
            zf.writestr("p.jpg", (shared_data / "faces" / "joe_biden" / "2.jpg").read_bytes())
            zf.writestr("p.jpg", (shared_data / "faces" / "elton_john" / "2.jpg").read_bytes())
    report = iv.track(archive, gallery=full_gallery, device="cpu", progress=False)
    assert [m.path.rsplit("!/", 1)[1] for m in report.media] == ["p.jpg", "p.jpg#2"]
    assert [{f.identity for f in m.faces} for m in report.media] == [{"joe_biden"}, {"elton_john"}]
    assert report.people["joe_biden"].photo_count == report.people["elton_john"].photo_count == 1


def test_an_empty_source_is_skipped_not_the_working_directory(tmp_path, shared_data, full_gallery, monkeypatch):
    shutil.copy(shared_data / "scenes" / "couple.jpg", tmp_path / "here.jpg")
    monkeypatch.chdir(tmp_path)
    report = iv.track("", gallery=full_gallery, device="cpu", progress=False)
    assert report.media == [] and report.counts.skipped == 1 and "empty path" in report.skipped[0].error


def test_a_checkpoint_folder_is_made_when_missing(tmp_path, shared_data, full_gallery):
    ckpt = tmp_path / "not" / "yet" / "run.ckpt"
    report = iv.track(shared_data / "scenes" / "couple.jpg", gallery=full_gallery, device="cpu", checkpoint=ckpt,
                      progress=False)
    assert report.counts.analysed == 1 and ckpt.is_file()


def test_a_gallery_path_with_no_file_is_an_error_not_an_empty_gallery(tmp_path, shared_data):
    with pytest.raises(iv.GalleryError, match="no gallery file"):
        iv.track(shared_data / "scenes" / "couple.jpg", gallery=tmp_path / "typo.db", device="cpu", progress=False)
    assert not (tmp_path / "typo.db").exists()


def test_a_checkpoint_is_not_reused_after_the_gallery_changes(tmp_path, shared_data):
    """Results recorded against one gallery must not name a person removed since, nor miss one added."""
    gallery = iv.Gallery(tmp_path / "g.db", device="cpu")
    gallery.add_person("barack_obama", [shared_data / "faces" / "barack_obama" / "1.jpg"])
    photo = shared_data / "scenes" / "obama_and_biden.jpg"
    ckpt = tmp_path / "run.ckpt"
    first = iv.track(photo, gallery=gallery, device="cpu", checkpoint=ckpt, progress=False)
    assert first.people["barack_obama"].photo_count == 1
    gallery.remove_person("barack_obama")
    gallery.add_person("joe_biden", [shared_data / "faces" / "joe_biden" / "1.jpg"])
    second = iv.track(photo, gallery=gallery, device="cpu", checkpoint=ckpt, progress=False)
    assert "barack_obama" not in second.people
    assert {f.identity for f in second.media[0].faces} == {"joe_biden", None}
    assert second.people["joe_biden"].photo_count == 1


def _sharpness(pixels, box) -> float:
    """Laplacian variance inside the middle half of a box (clear of the drawn frame and label)."""
    import numpy as np

    x1, y1, x2, y2 = box
    dx, dy = (x2 - x1) / 4, (y2 - y1) / 4
    g = np.asarray(pixels, dtype=np.float32).mean(axis=2)[int(y1 + dy):int(y2 - dy), int(x1 + dx):int(x2 - dx)]
    lap = 4 * g[1:-1, 1:-1] - g[:-2, 1:-1] - g[2:, 1:-1] - g[1:-1, :-2] - g[1:-1, 2:]
    return float(lap.var())


def test_annotated_copies_blur_strangers_get_own_names_and_are_written_on_resume(tmp_path, shared_data,
                                                                                  full_gallery, monkeypatch):
    from PIL import Image

    src = tmp_path / "in"
    src.mkdir()
    shutil.copy(shared_data / "scenes" / "group2.jpg", src / "g.jpg")
    Image.open(shared_data / "scenes" / "obama_and_biden.jpg").save(src / "g.png")  # same name, other photo
    ckpt = tmp_path / "run.ckpt"
    first = iv.track(src, gallery=full_gallery, device="cpu", checkpoint=ckpt, progress=False)
    assert all(m.annotated is None for m in first.media)
    calls = []
    monkeypatch.setattr(type(full_gallery.pipeline), "__call__", lambda self, images: calls.append(images))
    out = tmp_path / "annotated"
    second = iv.track(src, gallery=full_gallery, device="cpu", checkpoint=ckpt, annotate_dir=out,
                      blur_unknown=True, progress=False)
    assert calls == []  # resumed, yet annotated
    files = {m.path: Path(m.annotated[0]) for m in second.media}
    assert len(set(files.values())) == 2 and all(p.parent == out and p.is_file() for p in files.values())
    named = unknown = 0
    for m in second.media:
        original = Image.open(m.path).convert("RGB")
        drawn = Image.open(files[m.path]).convert("RGB")
        for f in m.faces:
            before, after = _sharpness(original, f.box), _sharpness(drawn, f.box)
            if f.identity is None:
                unknown += 1
                assert after < 0.2 * before, (m.path, f.box, before, after)
            else:
                named += 1
                assert after > 0.5 * before, (m.path, f.identity, before, after)
    assert named >= 2 and unknown >= 5



def test_a_stranger_too_small_for_the_analysis_is_still_blurred(tmp_path, shared_data, full_gallery):
    """In a 4000 px photo the analysis searches a 1600 px copy, where a 30 px face is 12 px: below the detector's
    20 px, never found, so never named (nor counted). Blurring searches the photo at full size."""
    from PIL import Image

    def head(path, side):
        im = Image.open(path).convert("RGB")
        w, h = im.size
        return im.crop((w // 4, h // 6, 3 * w // 4, 5 * h // 6)).resize((side, round(side * 4 / 3)))

    canvas = Image.new("RGB", (4000, 3000), (120, 120, 120))
    canvas.paste(head(shared_data / "faces" / "rick_astley" / "1.jpg", 600), (400, 400))
    canvas.paste(head(shared_data / "faces" / "matt_damon" / "1.jpg", 26), (3000, 2000))
    canvas.save(tmp_path / "hall.jpg", quality=95)
    report = iv.track(tmp_path / "hall.jpg", gallery=full_gallery, device="cpu", progress=False,
                      annotate_dir=tmp_path / "out", blur_unknown=True)
    (entry,) = report.media
    assert [f.identity for f in entry.faces] == ["rick_astley"]  # the small stranger was not seen by the analysis
    drawn = Image.open(entry.annotated[0]).convert("RGB")
    original = Image.open(tmp_path / "hall.jpg").convert("RGB")
    face = [3002, 1998, 3024, 2020]  # the face within the pasted head (its chin and collar are not the face)
    assert _sharpness(drawn, face) < 0.2 * _sharpness(original, face)
    import numpy as np

    from influvision.faces.detect import FaceDetector

    search = FaceDetector(max_side=4000)  # the photo at full size: the stranger is found there, then no more
    seen = [[b for b in search.detect([np.asarray(im)]).boxes.tolist() if b[0] > 2900] for im in (original, drawn)]
    assert len(seen[0]) == 1 and seen[1] == []
    rick = entry.faces[0].box
    assert _sharpness(drawn, rick) > 0.5 * _sharpness(original, rick)

def test_logo_search_beside_the_face_work_gives_the_same_report(tmp_path, shared_data, monkeypatch):
    """On CUDA a batch's logo search runs in a thread while its faces are analysed; forced here on the CPU,
    the report is the same as one stage after the other."""
    import influvision.api as api

    repo = Path(__file__).resolve().parents[1]
    gallery = iv.Gallery(tmp_path / "g.db", device="cpu")
    gallery.add_person("barack_obama", [shared_data / "faces" / "barack_obama" / "1.jpg"])
    gallery.add_brand("fedex", [repo / "examples" / "brands" / "fedex.png"])
    photos = [repo / "examples" / "event" / "obama_sponsor_board.jpg", shared_data / "scenes" / "couple.jpg"]
    serial = iv.track(photos, gallery=gallery, device="cpu", progress=False)
    monkeypatch.setattr(api, "OVERLAP_LOGOS_ON", ("cpu", "cuda"))
    overlapped = iv.track(photos, gallery=gallery, device="cpu", progress=False)
    assert [m.model_dump() for m in overlapped.media] == [m.model_dump() for m in serial.media]
    assert serial.brands["fedex"].photo_count == 1 and serial.people["barack_obama"].photo_count == 1


def test_a_logo_in_a_badge_is_reported_with_the_badge_and_the_matched_mark(tmp_path, shared_data):
    from influvision.boxes import box_iou

    gallery = iv.Gallery(tmp_path / "g.db", device="cpu")
    gallery.add_brand("starbucks", [shared_data / "logos" / "refs" / "starbucks.png"])
    report = iv.track(shared_data / "logos" / "scenes" / "fl27_2818828296.jpg", gallery=gallery, device="cpu",
                      progress=False)
    (logo,) = report.media[0].logos
    assert logo.brand == "starbucks" and logo.mark_box is not None
    ring = (187, 69, 388, 280)  # the labelled logo: the siren and the ring of lettering around it
    assert box_iou(logo.box, ring) >= 0.5 and box_iou(logo.mark_box, ring) < 0.5
    assert logo.area_share > 0.2  # the badge's share of the photo, not the siren's
    assert report.brands["starbucks"].photo_count == 1
    assert report.settings.logo_frames


def test_the_logo_detector_is_built_once_for_repeated_calls_and_again_when_brands_change(tmp_path, shared_data):
    """A script calling track() once per photo must not rebuild the logo detector (seconds) every call; a
    brand registered in between, another device or another thread gets a detector of its own."""
    import threading

    import torch

    import influvision.api as api

    repo = Path(__file__).resolve().parents[1]
    photo = repo / "examples" / "event" / "obama_sponsor_board.jpg"
    gallery = iv.Gallery(tmp_path / "g.db", device="cpu")
    gallery.add_person("barack_obama", [shared_data / "faces" / "barack_obama" / "1.jpg"])
    gallery.add_brand("fedex", [repo / "examples" / "brands" / "fedex.png"])
    gallery.close()
    dev = torch.device("cpu")
    built: list[object] = []

    def detector_of(path: Path) -> object:
        g = iv.Gallery(path, device="cpu")
        try:
            return api._logo_detector(g, dev, False)[0]
        finally:
            g.close()

    first = iv.track([photo], gallery=tmp_path / "g.db", device="cpu", progress=False)
    assert first.brands["fedex"].photo_count == 1
    assert detector_of(tmp_path / "g.db") is detector_of(tmp_path / "g.db")
    other_thread = threading.Thread(target=lambda: built.append(detector_of(tmp_path / "g.db")))
    other_thread.start()
    other_thread.join()
    assert built[0] is not detector_of(tmp_path / "g.db")
    before = detector_of(tmp_path / "g.db")
    g = iv.Gallery(tmp_path / "g.db", device="cpu")
    g.add_brand("nike", [repo / "examples" / "brands" / "nike.png"])
    g.close()
    after = detector_of(tmp_path / "g.db")
    assert after is not before and after.brands == ["fedex", "nike"]
    again = iv.track([photo], gallery=tmp_path / "g.db", device="cpu", progress=False)
    assert again.brands["fedex"].photo_count == 1 and "nike" not in again.brands


def test_an_annotated_copy_that_cannot_be_written_does_not_stop_the_run(tmp_path, shared_data, full_gallery,
                                                                         monkeypatch):
    import influvision.annotate as annotate

    long_name = "中" * 200 + "/" + "文" * 100 + ".jpg"  # 900 bytes of UTF-8: over any file system's limit
    name = annotate.output_path(tmp_path, long_name, ".jpg").name
    assert len(name.encode()) <= 255 and name.endswith(".jpg")
    (tmp_path / name).write_bytes(b"")

    def fail(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(annotate, "annotate_photo", fail)
    report = iv.track(shared_data / "scenes" / "obama_and_biden.jpg", gallery=full_gallery, device="cpu",
                      annotate_dir=tmp_path / "out", progress=False)
    assert report.media[0].annotated is None and report.people["barack_obama"].photo_count == 1


def test_a_gallery_changed_while_a_run_starts_stops_it_before_anything_is_recorded(tmp_path, shared_data,
                                                                                   full_gallery, monkeypatch):
    keys = iter(["before", "after another process added someone"])
    monkeypatch.setattr(type(full_gallery), "content_key", lambda self: next(keys))
    with pytest.raises(iv.GalleryError, match="changed while this run was starting"):
        iv.track(shared_data / "scenes" / "couple.jpg", gallery=full_gallery, device="cpu",
                 checkpoint=tmp_path / "run.ckpt", progress=False)
    assert not (tmp_path / "run.ckpt").exists()


def test_small_faces_in_a_large_photo_are_found_with_a_larger_max_side(tmp_path, shared_data, full_gallery):
    # The Obama and Biden scene shrunk until its faces are ~36 px high, on a 4800 x 3200 px canvas: the
    # default search runs on a 1600 px copy (faces ~12 px there) and misses them, max_side=4800 sees them.
    scene = Image.open(shared_data / "scenes" / "obama_and_biden.jpg").convert("RGB")
    first = iv.track([shared_data / "scenes" / "obama_and_biden.jpg"], gallery=full_gallery, device="cpu",
                     progress=False)
    heights = [f.box[3] - f.box[1] for f in first.media[0].faces if f.identity]
    scale = 36 / min(heights)
    small = scene.resize((round(scene.width * scale), round(scene.height * scale)), Image.LANCZOS)
    canvas = Image.new("RGB", (4800, 3200), (118, 120, 125))
    canvas.paste(small, (2000, 1400))
    canvas.save(tmp_path / "hall.jpg", quality=92)

    coarse = iv.track([tmp_path / "hall.jpg"], gallery=full_gallery, device="cpu", progress=False)
    entry = coarse.media[0]
    assert entry.faces == [] and entry.smallest_face_px == 60.0
    assert "small faces may be missed: 1 photo or video longer than 1600 px searched on a 1600 px copy, where faces " \
           "under 60 px" in coarse.summary()
    assert coarse.settings.detector["max_side"] == 1600

    fine = iv.track([tmp_path / "hall.jpg"], gallery=full_gallery, device="cpu", progress=False, max_side=4800)
    entry = fine.media[0]
    assert entry.smallest_face_px == 20.0 and "small faces" not in fine.summary()
    assert len(entry.faces) >= 2 and all(30 <= f.size_px <= 60 for f in entry.faces[:2])
    assert {f.identity for f in entry.faces if f.identity} <= {"barack_obama", "joe_biden"}
    assert fine.people, "at ~36 px at least one of them is named"


def test_a_registered_person_in_a_dim_photo_is_named(tmp_path, shared_data):
    # At 15 % brightness MTCNN sees no face in this photo; the detector's brightened second search finds it, and
    # the face (cut from the dim original) is named from the person's other photos.
    import numpy as np

    from influvision.faces.detect import DIM_MEAN

    gallery = iv.Gallery(tmp_path / "g.db", device="cpu")
    for person in ("jim_parsons", "johnny_galecki", "kaley_cuoco"):
        gallery.add_person(person, [p for p in sorted((shared_data / "faces" / person).iterdir()) if p.name != "1.png"])
    pixels = np.asarray(Image.open(shared_data / "faces" / "jim_parsons" / "1.png").convert("RGB"), dtype=np.float32)
    Image.fromarray((pixels * 0.15).round().astype(np.uint8)).save(tmp_path / "dim.jpg", quality=70)
    report = iv.track([tmp_path / "dim.jpg"], gallery=gallery, device="cpu", progress=False)
    assert [f.identity for f in report.media[0].faces] == ["jim_parsons"]
    assert report.settings.detector["dim_mean"] == DIM_MEAN


def test_a_photo_named_in_a_foreign_encoding_is_counted_resumed_annotated_and_written(tmp_path, shared_data,
                                                                                         full_gallery):
    import os

    src = tmp_path / "in"
    src.mkdir()
    shutil.copy(shared_data / "scenes" / "obama_and_biden.jpg", src / os.fsdecode(b"caf\xe9.jpg"))
    for _ in range(2):  # the second run resumes it from the checkpoint
        report = iv.track(src, gallery=full_gallery, device="cpu", progress=False,
                          checkpoint=tmp_path / "run.ckpt", annotate_dir=tmp_path / "ann")
        assert report.people["barack_obama"].photos == [str(src / "caf\\xe9.jpg")]
        assert len(list((tmp_path / "ann").iterdir())) == 1
        report.to_json(tmp_path / "report.json")
        report.to_csv(tmp_path / "csv")
        assert "caf\\\\xe9.jpg" in (tmp_path / "report.json").read_text()  # JSON escapes the backslash


def test_a_photo_file_of_several_pages_is_reported_as_partly_analysed(tmp_path, shared_data, full_gallery):
    face = Image.open(shared_data / "scenes" / "obama_and_biden.jpg").convert("RGB")
    blank = Image.new("RGB", face.size, "white")
    face.save(tmp_path / "face_first.tiff", save_all=True, append_images=[blank])
    blank.save(tmp_path / "cover_first.tiff", save_all=True, append_images=[face])
    report = iv.track(tmp_path, gallery=full_gallery, device="cpu", progress=False)
    by_name = {m.path.split("/")[-1]: m for m in report.media}
    assert report.counts.analysed == 2 and report.counts.partly_analysed == 2 and not report.skipped
    assert all(m.frames_analysed == 1 and "holds 2 pages" in m.error for m in by_name.values())
    # Only the first page is analysed: the people on the second one are not counted, and the report says so.
    assert report.people["barack_obama"].photos == [str(tmp_path / "face_first.tiff")]
    assert "partly analysed" in report.summary()


def test_a_web_size_copy_met_first_does_not_stand_for_the_full_size_photo(tmp_path, shared_data, full_gallery):
    photo = Image.open(shared_data / "scenes" / "obama_and_biden.jpg").convert("RGB")
    small = photo.resize((240, round(240 * photo.height / photo.width)), Image.Resampling.LANCZOS)
    (tmp_path / "a_web").mkdir()
    (tmp_path / "b_originals").mkdir()
    small.save(tmp_path / "a_web" / "ob.jpg", quality=80)
    photo.save(tmp_path / "b_originals" / "ob.jpg", quality=95)
    photo.resize((photo.width // 2, photo.height // 2)).save(tmp_path / "b_originals" / "ob_half.jpg")
    for resume in (False, True):  # resumed: the same photo is counted, from the checkpoint
        report = iv.track(tmp_path, gallery=full_gallery, device="cpu", progress=False,
                          checkpoint=tmp_path.parent / f"{tmp_path.name}.ckpt")
        original = str(tmp_path / "b_originals" / "ob.jpg")
        assert report.people["barack_obama"].photos == report.people["joe_biden"].photos == [original]
        assert {m.path: m.duplicate_of for m in report.media} == {
            str(tmp_path / "a_web" / "ob.jpg"): original, original: None,
            str(tmp_path / "b_originals" / "ob_half.jpg"): original}
        assert report.counts.analysed == 1 and report.counts.duplicates == 2, resume


def test_bad_arguments_are_refused_by_name_before_anything_is_analysed(tmp_path, shared_data, full_gallery):
    """A bad sample_fps used to surface at the first video, after every photo had been analysed (the work lost);
    sources that are not paths gave raw errors from deep inside; a gallery registering nobody, or an empty
    file, tracked "successfully" and named nobody; a threshold of 0.9 ("strict", read as a similarity) named
    strangers."""
    import numpy as np

    photo = shared_data / "scenes" / "couple.jpg"
    run = dict(device="cpu", progress=False)
    for fps in (-1, float("nan"), "10"):
        with pytest.raises(ValueError, match="sample_fps"):
            iv.track(photo, gallery=full_gallery, sample_fps=fps, **run)
    for wrong in (b"a.jpg", np.zeros((8, 8, 3), np.uint8), None, [["a.jpg"]]):
        with pytest.raises(TypeError, match="sources must be a path"):
            iv.track(wrong, gallery=full_gallery, **run)
    with pytest.raises(ValueError, match="is a distance, where lower is stricter"):
        iv.track(photo, gallery=full_gallery, settings=iv.MatchSettings(threshold=0.9), **run)
    (tmp_path / "a_file").write_text("x")
    with pytest.raises(iv.InfluvisionError, match="annotate_dir .* is a file"):
        iv.track(photo, gallery=full_gallery, annotate_dir=tmp_path / "a_file", **run)
    with pytest.raises(iv.InfluvisionError, match="not supported"):
        iv.track(photo, gallery=full_gallery, device="mps", progress=False)
    (tmp_path / "zero.db").write_bytes(b"")
    with pytest.raises(iv.GalleryError, match="empty file"):
        iv.track(photo, gallery=tmp_path / "zero.db", **run)
    assert (tmp_path / "zero.db").stat().st_size == 0  # not turned into a gallery
    iv.Gallery(tmp_path / "nobody.db").close()
    with pytest.raises(iv.GalleryError, match="registers nobody"):
        iv.track(photo, gallery=tmp_path / "nobody.db", annotate_dir=tmp_path / "not_made", **run)
    assert not (tmp_path / "not_made").exists()  # nothing is written for a run that cannot start
    # What scripts legitimately pass: numpy paths and integers, 0 frames per second meaning every frame.
    report = iv.track(np.array([str(photo)]), gallery=full_gallery, sample_fps=0, workers=np.int64(1),
                      max_side=np.int64(1600), **run)
    assert report.counts.analysed == 1 and report.settings.sample_fps is None


def test_annotated_copies_that_cannot_be_written_are_counted_not_only_logged(tmp_path, shared_data, full_gallery,
                                                                              monkeypatch):
    """With blur_unknown a user counts on blurred copies: one that could not be written (a full disk) was only a
    log line, and the report read as if every copy were there."""
    photos = [shared_data / "scenes" / "couple.jpg", shared_data / "scenes" / "group2.jpg"]
    run = dict(gallery=full_gallery, device="cpu", progress=False, annotate_dir=tmp_path / "ann", blur_unknown=True,
               checkpoint=tmp_path / "run.ckpt")
    report = iv.track(photos, **run)
    assert report.counts.annotation_failures == 0 and all(m.annotated for m in report.media)
    again = iv.track(photos, **run)  # resumed: the copies are there
    assert again.counts.annotation_failures == 0
    import influvision.annotate as annotate

    def full_disk(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(annotate, "annotate_photo", full_disk)
    failed = iv.track(photos, **{**run, "annotate_dir": tmp_path / "ann2", "checkpoint": None})
    assert failed.counts.annotation_failures == 2
    assert "annotated copies not written: 2" in failed.summary()


def test_small_registered_faces_left_unnamed_are_listed_as_near_misses(tmp_path, shared_data):
    """Obama and Biden shrunk to a fifth (faces about 50 px, JPEG quality 50) read 0.52-0.55, over the 0.5
    threshold: counted for nobody, and listed for review instead of hidden among the unknown faces."""
    from PIL import Image

    scene = Image.open(shared_data / "scenes" / "obama_and_biden.jpg").convert("RGB")
    scene.resize((scene.width // 5, scene.height // 5), Image.BILINEAR).save(tmp_path / "small.jpg", quality=50)
    gallery = iv.Gallery(tmp_path / "g.db", device="cpu")
    gallery.add_person("barack_obama", [shared_data / "faces" / "barack_obama" / n for n in ("1.jpg", "2.jpg")])
    gallery.add_person("joe_biden", [shared_data / "faces" / "joe_biden" / "1.jpg"])
    report = iv.track(tmp_path / "small.jpg", gallery=gallery, device="cpu", progress=False)
    assert report.people == {} and report.counts.unknown_faces >= 2
    misses = sorted(report.near_misses, key=lambda n: n.person)
    assert [(n.person, n.kind, Path(n.path).name) for n in misses] == [("barack_obama", "face", "small.jpg"),
                                                                         ("joe_biden", "face", "small.jpg")]
    assert all(0 < n.over_threshold <= 0.05 for n in misses)
    assert "joe_biden: 1 face in 1 photo" in report.summary()
    report.to_csv(tmp_path / "csv")
    assert "joe_biden" in (tmp_path / "csv" / "near_misses.csv").read_text()


def test_photos_say_how_small_a_logo_the_search_can_find_in_them(tmp_path, logo_data, shared_data):
    gallery = iv.Gallery(tmp_path / "brands.db", device="cpu")
    assert all(s.ok for s in gallery.add_brand("fedex", logo_data / "refs" / "fedex.png"))
    photo = Image.open(logo_data / "scenes" / "fl27_213783134.jpg").convert("RGB")  # 500 x 375, FedEx trucks
    photo.resize((4000, 3000), Image.BICUBIC).save(tmp_path / "large.jpg", quality=92)
    report = iv.track([logo_data / "scenes" / "fl27_2938026725.jpg", tmp_path / "large.jpg"], gallery=gallery,
                      device="cpu", progress=False)  # another 500 px photo (the same one would be a duplicate)
    small, large = sorted(report.media, key=lambda m: m.width or 0)
    # The matcher searches a 1000 px copy: a 500 px photo enlarged twice (about 25 px of the copy: 12.5 px),
    # a 4000 px photo shrunk four times (100 px).
    assert (small.smallest_logo_px, large.smallest_logo_px, report.settings.logo_work_side) == (12.5, 100.0, 1000)
    assert {lg.brand for lg in large.logos} == {"fedex"}  # its marks are far larger than that
    assert ("small logos may be missed: 1 photo or video longer than 1000 px searched for logos on a 1000 px copy, "
            "where marks under about 100 px are found only by chance") in report.summary()
    people = iv.Gallery(tmp_path / "people.db", device="cpu")  # no brand registered: no logo search
    people.add_person("barack_obama", [shared_data / "faces" / "barack_obama" / "1.jpg"])
    plain = iv.track([logo_data / "scenes" / "fl27_213783134.jpg"], gallery=people, device="cpu", progress=False)
    assert plain.media[0].smallest_logo_px is None and "small logos" not in plain.summary()

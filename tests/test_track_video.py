"""track() on a video mixed with photos: exposure seconds and intervals in the report."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import influvision as iv
from influvision.video.exposure import interval_iou


def test_rick_astleys_exposure_and_intervals_match_the_labels(shared_data, full_gallery, tmp_path):
    video = shared_data / "videos" / "nggyup.mp4"
    photo = shared_data / "scenes" / "group2.jpg"
    report = iv.track([video, photo], gallery=full_gallery, device="cpu", sample_fps=5, progress=False,
                      annotate_dir=tmp_path / "annotated")
    label = json.loads((shared_data / "videos" / "labels.json").read_text())["videos"]["nggyup.mp4"]
    truth = label["identities"]["rick_astley"]["intervals"]
    rick = report.people["rick_astley"]
    assert abs(rick.exposure_seconds - 9.633) <= 0.05 * 9.633
    (path, measured), = rick.intervals.items()
    assert path.endswith("nggyup.mp4") and interval_iou(measured, truth) >= 0.9
    assert set(report.people) == {"rick_astley"}  # nobody in group2.jpg is registered
    entry = next(m for m in report.media if m.kind == "video")
    assert entry.duration_s == 9.633 and entry.fps == 30.0 and entry.frames_analysed >= 45
    assert entry.tracks and all(t.identity in (None, "rick_astley") for t in entry.tracks)
    assert entry.people["rick_astley"].exposure_seconds == rick.exposure_seconds
    written = {p.split(".")[-1] for p in entry.annotated}
    assert written == {"mp4", "png"}
    assert report.counts.inputs_seen == 2 and report.counts.analysed == 2
    assert report.counts.face_tracks == len(entry.tracks)
    assert report.counts.named_tracks == sum(t.identity == "rick_astley" for t in entry.tracks) >= 1
    assert f"video face tracks: {len(entry.tracks)}" in report.summary()
    per_second = {sec for sec, person, frac in entry.timeline if person == "rick_astley" and frac > 0.5}
    assert per_second == {int(s) for s, people in label["per_second"].items() if "rick_astley" in people}
    report.to_csv(tmp_path / "csv")
    assert "rick_astley" in (tmp_path / "csv" / "timeline.csv").read_text()


def test_a_truncated_video_is_counted_up_to_the_cut_and_reported(shared_data, full_gallery, tmp_path):
    import av

    whole = tmp_path / "whole.mp4"  # the clip remuxed with its index first, so that a cut file still opens
    with av.open(str(shared_data / "videos" / "nggyup.mp4")) as src, \
            av.open(str(whole), "w", options={"movflags": "faststart"}) as dst:
        out = dst.add_stream_from_template(src.streams.video[0])
        for packet in src.demux(src.streams.video[0]):
            if packet.dts is not None:
                packet.stream = out
                dst.mux(packet)
    cut = tmp_path / "cut.mp4"
    data = whole.read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    report = iv.track(cut, gallery=full_gallery, device="cpu", sample_fps=5, progress=False)
    c = report.counts
    assert c.inputs_seen == c.analysed == c.partly_analysed == 1 and c.skipped == 0
    (entry,) = report.media
    assert entry.error.startswith(f"{cut}: ") and "truncated" in entry.error
    assert 1.0 < report.people["rick_astley"].exposure_seconds < 0.75 * 9.633
    assert "1 partly analysed" in report.summary() and f"  {entry.error}" in report.summary()


def test_a_resumed_video_is_analysed_again_only_when_its_annotated_copy_is_missing_or_must_be_blurred(tmp_path):
    from influvision.api import _resumed_video
    from influvision.report import MediaEntry

    out = tmp_path / "annotated"
    out.mkdir()
    drawn = out / "clip.0a1b2c3d.annotated.mp4"
    drawn.write_bytes(b"mp4")

    def entry(files):
        return MediaEntry(path="clip.mp4", kind="video", frames_analysed=5, annotated=[str(f) for f in files])

    assert _resumed_video(entry([drawn]), None, False).annotated is None  # no copy asked for: none reported
    assert _resumed_video(entry([drawn]), out, False).annotated == [str(drawn)]
    assert _resumed_video(entry([drawn]), out, True) is None  # the earlier copy may show strangers
    assert _resumed_video(entry([drawn]), tmp_path / "elsewhere", False) is None
    assert _resumed_video(entry([out / "gone.mp4"]), out, False) is None
    assert _resumed_video(entry([]), out, False) is None


def test_a_byte_identical_copy_of_a_video_is_listed_but_not_counted_again(shared_data, full_gallery, tmp_path):
    import shutil

    video = shared_data / "videos" / "nggyup.mp4"
    copy = tmp_path / "copy_of_clip.mp4"
    shutil.copy(video, copy)
    report = iv.track([video, copy], gallery=full_gallery, device="cpu", sample_fps=2, progress=False)
    original, duplicate = report.media
    assert duplicate.duplicate_of == original.path and duplicate.people is None
    assert list(report.people["rick_astley"].intervals) == [original.path]
    c = report.counts
    assert c.inputs_seen == 2 and c.analysed == 1 and c.duplicates == 1 and c.skipped == 0


def test_copies_of_a_video_that_cannot_be_read_are_each_skipped(full_gallery, tmp_path):
    for name in ("bad1.mp4", "bad2.mp4"):
        (tmp_path / name).write_bytes(b"garbage, not a video")
    report = iv.track(sorted(tmp_path.glob("*.mp4")), gallery=full_gallery, device="cpu", progress=False)
    assert report.counts.skipped == 2 and report.counts.duplicates == 0 and report.media == []


def _reencode(src, dst, *, start_s: float = 0.0, end_s: float = 1e9, width: int | None = None, crf: int = 32,
              paste=None):
    """``src`` from start_s to end_s, re-encoded with libx264 (optionally scaled to ``width``); ``paste``:
    (PIL image, (x, y), from_s, to_s) pasted into the frames of that time span."""
    import av

    with av.open(str(src)) as inp, av.open(str(dst), "w") as out:
        s_in = inp.streams.video[0]
        w = width or s_in.codec_context.width
        h = round(s_in.codec_context.height * w / s_in.codec_context.width / 2) * 2
        s_out = out.add_stream("libx264", rate=round(float(s_in.average_rate)), options={"crf": str(crf)})
        s_out.width, s_out.height, s_out.pix_fmt = w, h, "yuv420p"
        for frame in inp.decode(s_in):
            t = float(frame.pts * s_in.time_base)
            if start_s <= t < end_s:
                img = frame.to_image().resize((w, h))
                if paste is not None and paste[2] <= t < paste[3]:
                    img.paste(paste[0], paste[1])
                out.mux(s_out.encode(av.VideoFrame.from_image(img)))
        out.mux(s_out.encode())


def test_a_re_encoded_copy_is_one_video_and_two_segments_of_one_camera_are_two(shared_data, full_gallery,
                                                                               tmp_path):
    from influvision.decode.video import probe_video
    from influvision.video.duplicates import CopyFinder, same_footage

    video = shared_data / "videos" / "nggyup.mp4"
    smaller = tmp_path / "clip_480p.mp4"
    _reencode(video, smaller, width=854, crf=34)  # other bytes, size and bitrate: the same footage
    crowd = shared_data / "videos" / "street_crowd.mp4"  # one camera on a street; two 2-s segments of it
    first, second = tmp_path / "crowd_a.mp4", tmp_path / "crowd_b.mp4"
    _reencode(crowd, first, end_s=2.0, crf=18)
    _reencode(crowd, second, start_s=2.0, end_s=4.0, crf=18)
    length = {p: probe_video(p).duration_s for p in (video, smaller, first, second)}
    assert abs(length[first] - length[second]) < 0.1  # as long as each other: compared
    assert not same_footage(first, length[first], second, length[second])
    finder = CopyFinder()
    finder.add("a", first, length[first])
    assert finder.original_of(second) is None  # told apart by the opening frames alone
    assert same_footage(video, length[video], smaller, length[smaller])
    # The same copy with a real FedEx mark shown for half a second, between two of eight evenly spread frames:
    # its own video (its brand seconds count), not a copy.
    labels = json.loads((shared_data / "logos" / "scenes" / "labels.json").read_text())["images"]
    name, label = next((n, lab) for n, lab in labels.items() for lab in lab["logos"] if lab["brand"] == "fedex")
    from PIL import Image

    mark = Image.open(shared_data / "logos" / "scenes" / name).convert("RGB").crop(tuple(round(v) for v in label["box"]))
    sponsored = tmp_path / "clip_480p_sponsored.mp4"
    _reencode(video, sponsored, width=854, crf=34, paste=(mark, (40, 40), 6.3, 6.8))
    assert not same_footage(video, length[video], sponsored, probe_video(sponsored).duration_s)
    # A guest's face 20 px high in a corner of every frame: the hashes stay within 2 bits, the pixels tell them
    # apart (frame differences 45-115 against FRAME_MAX_DIFF 30).
    guest = Image.open(shared_data / "faces" / "angelina_jolie" / "1.jpg").convert("RGB")
    guest = guest.resize((round(20 * guest.width / guest.height), 20))
    with_guest = tmp_path / "clip_480p_guest.mp4"
    _reencode(video, with_guest, width=854, crf=34, paste=(guest, (600, 100), 0.0, 1e9))
    assert not same_footage(video, length[video], with_guest, probe_video(with_guest).duration_s)
    report = iv.track([video, smaller], gallery=full_gallery, device="cpu", sample_fps=2, progress=False)
    original, copy = report.media
    assert copy.duplicate_of == original.path and copy.people is None
    assert list(report.people["rick_astley"].intervals) == [original.path]
    assert report.counts.duplicates == 1 and report.counts.analysed == 1


def test_a_black_or_dark_stage_video_is_no_copy_of_another(shared_data, tmp_path):
    """Pixels clipped to black are left out of the comparison, so a black frame left nothing to compare and
    every video of the same length was taken for a copy of a black one (and its people's seconds lost)."""
    import av
    import numpy as np
    from PIL import Image

    from influvision.video.duplicates import same_footage

    face = Image.open(shared_data / "faces" / "rick_astley" / "1.jpg").convert("RGB").resize((120, 150))

    def clip(path, place):
        frame = Image.new("RGB", (640, 360))
        if place is not None:
            frame.paste(face, place)
        with av.open(str(path), "w") as c:
            st = c.add_stream("libx264", rate=15)
            st.width, st.height, st.pix_fmt = 640, 360, "yuv420p"
            for _ in range(30):
                c.mux(st.encode(av.VideoFrame.from_ndarray(np.asarray(frame), format="rgb24")))
            c.mux(st.encode())
        return path

    black, left, right = clip(tmp_path / "black.mp4", None), clip(tmp_path / "l.mp4", (40, 100)), \
        clip(tmp_path / "r.mp4", (480, 100))
    assert not same_footage(black, 2.0, left, 2.0) and not same_footage(left, 2.0, black, 2.0)
    assert not same_footage(left, 2.0, right, 2.0)  # one face on a dark stage, then another place
    assert same_footage(black, 2.0, clip(tmp_path / "black2.mp4", None), 2.0)  # two black clips: nothing to tell

def test_a_video_that_failed_outright_is_tried_again_on_resume(shared_data, full_gallery, tmp_path, monkeypatch):
    import torch

    from influvision.faces.pipeline import FacePipeline

    def out_of_memory(self, *args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory (simulated)")

    video = shared_data / "videos" / "nggyup.mp4"
    with monkeypatch.context() as m:
        m.setattr(FacePipeline, "__call__", out_of_memory)
        failed = iv.track(video, gallery=full_gallery, device="cpu", sample_fps=2, progress=False,
                          checkpoint=tmp_path / "run.ckpt")
    assert [s.path for s in failed.skipped] == [str(video)] and "rick_astley" not in failed.people
    resumed = iv.track(video, gallery=full_gallery, device="cpu", sample_fps=2, progress=False,
                       checkpoint=tmp_path / "run.ckpt")
    assert not resumed.skipped and resumed.people["rick_astley"].exposure_seconds > 8


def test_a_stranger_moving_fast_between_analysed_frames_is_blurred_in_every_frame(shared_data, tmp_path):
    import av
    import numpy as np
    import torch
    from PIL import Image

    from influvision.boxes import box_iou
    from influvision.faces.pipeline import FacePipeline

    pipe = FacePipeline("dlib-resnet-v1", "cpu")

    def head(path, side):  # the face with some hair and neck around it, as a square of `side` px
        src = np.asarray(Image.open(path).convert("RGB"))
        x1, y1, x2, y2 = pipe([src]).boxes[0].tolist()
        cx, cy, s = (x1 + x2) / 2, (y1 + y2) / 2, 1.6 * max(x2 - x1, y2 - y1)
        return Image.fromarray(src).crop((int(cx - s / 2), int(cy - s / 2), int(cx + s / 2), int(cy + s / 2))).resize(
            (side, side))

    stranger = head(sorted((shared_data / "faces" / "matt_damon").iterdir())[0], 190)
    rick = head(sorted((shared_data / "faces" / "rick_astley").iterdir())[0], 190)
    frames = []
    for k in range(60):  # the stranger crosses at 420 px/s: 14 px a frame, 210 px between analysed frames
        im = Image.new("RGB", (1280, 360), (128, 128, 128))
        im.paste(rick, (1070, 80))
        im.paste(stranger, (20 + round(420 * k / 30), 60))
        frames.append(np.asarray(im))
    video = tmp_path / "crossing.mp4"
    with av.open(str(video), "w") as c:
        s = c.add_stream("libx264", rate=30, options={"crf": "18"})
        s.width, s.height, s.pix_fmt = 1280, 360, "yuv420p"
        for f in frames:
            c.mux(s.encode(av.VideoFrame.from_ndarray(f, format="rgb24")))
        c.mux(s.encode())
    g = iv.Gallery(tmp_path / "g.db", device="cpu")
    g.add_person("rick_astley", sorted((shared_data / "faces" / "rick_astley").iterdir()))
    report = iv.track(video, gallery=g, device="cpu", sample_fps=2, progress=False, annotate_dir=tmp_path / "ann",
                      blur_unknown=True)
    written = next(p for p in report.media[0].annotated if p.endswith(".mp4"))
    with av.open(written) as c:
        shown = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    assert len(shown) == len(frames)
    for k, (before, after) in enumerate(zip(frames, shown, strict=True)):
        original, annotated = pipe([before]), pipe([after])
        for j in range(len(original)):
            mine = [i for i in range(len(annotated))
                    if box_iou(annotated.boxes[i].tolist(), original.boxes[j].tolist()) > 0.3]
            dist = [float(torch.linalg.norm(annotated.columns["embedding"][i] - original.columns["embedding"][j]))
                    for i in mine]
            if original.boxes[j][0] > 1000:  # Rick, registered: left as he is
                assert dist and min(dist) < 0.2, k
            else:  # the stranger: not recognisable in any frame
                assert not dist or min(dist) > 0.5, (k, dist)


def _clip(path, shown, *, fps: int = 5, seconds: float = 8.0, size=(640, 360)):
    """An H.264 clip of ``shown`` = [(photo, (x, y), start_s, end_s[, height])], each picture scaled to
    ``height`` (200) px high and pasted at (x, y) on a grey wall for frames with start_s <= t < end_s."""
    import av
    from PIL import Image

    tiles = []
    for photo, xy, t0, t1, *high in shown:
        img = Image.open(photo).convert("RGBA")
        h = high[0] if high else 200
        tiles.append((img.resize((round(img.width * h / img.height), h)), xy, t0, t1))
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = *size, "yuv420p"
        for i in range(round(seconds * fps)):
            frame = Image.new("RGB", size, (150, 150, 150))
            for img, xy, t0, t1 in tiles:
                if t0 <= i / fps < t1:
                    frame.paste(img, xy, img)
            for packet in stream.encode(av.VideoFrame.from_image(frame)):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


def test_one_person_taking_anothers_place_without_a_cut_is_two_people(shared_data, full_gallery, tmp_path):
    """The tracker links boxes by overlap, so the next guest posing where the last one stood continues the
    last one's track: without cutting tracks by appearance all 8 s went to one of the two (4 s each)."""
    faces = shared_data / "faces"
    video = _clip(tmp_path / "wall.mp4", [(faces / "ben_affleck" / "1.jpg", (200, 80), 0.0, 4.0),
                                         (faces / "elton_john" / "1.jpg", (220, 80), 4.0, 8.0)])
    report = iv.track(video, gallery=full_gallery, device="cpu", sample_fps=5, progress=False)
    ben, elton = report.people["ben_affleck"], report.people["elton_john"]
    assert abs(ben.exposure_seconds - 4.0) <= 0.2 and abs(elton.exposure_seconds - 4.0) <= 0.2
    (entry,) = report.media
    assert [t.split_from for t in entry.tracks if t.identity == "elton_john"] == [
        next(t.track_id for t in entry.tracks if t.identity == "ben_affleck")]
    assert sum(p.seconds_together for p in report.together) == 0


def _screen_recording(path, shown, photos):
    """A variable-frame-rate H.264 file: ``shown`` = [(start_s, index into photos or None for the bare wall)],
    each frame on screen until the next one's start (the last for 1/30 s); each photo 200 px high."""
    from fractions import Fraction

    import av
    from PIL import Image

    wall = Image.new("RGB", (640, 360), (150, 150, 150))
    pictures = []
    for photo in photos:
        img = Image.open(photo).convert("RGB")
        frame = wall.copy()
        frame.paste(img.resize((round(img.width * 200 / img.height), 200)), (220, 80))
        pictures.append(frame)
    tb = Fraction(1, 1000)
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", options={"bf": "0"})
        stream.width, stream.height, stream.pix_fmt = 640, 360, "yuv420p"
        stream.time_base = stream.codec_context.time_base = tb
        for t, k in shown:
            frame = av.VideoFrame.from_image(wall if k is None else pictures[k])
            frame.pts, frame.time_base = round(t * 1000), tb
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


def test_stills_held_for_seconds_in_a_variable_frame_rate_file_count_their_seconds(shared_data, full_gallery,
                                                                                      tmp_path):
    """Four frames of a face, each shown 2 s, between 30 fps parts without it (a screen recording writes a frame
    only when the screen changes): 8 s on screen. On the file's clock every track was dropped as lost over each
    2 s frame, so the four frames were four one-frame tracks and counted 0 s. One still of somebody else at the
    same place among them is set aside from the track: it is not the person's 2 s."""
    ben, elton = shared_data / "faces" / "ben_affleck" / "1.jpg", shared_data / "faces" / "elton_john" / "1.jpg"
    blank = [(i / 30, None) for i in range(30)]
    after = [(9 + i / 30, None) for i in range(30)]
    path = _screen_recording(tmp_path / "screen.mp4", blank + [(t, 0) for t in (1, 3, 5, 7)] + after, [ben])
    report = iv.track(path, gallery=full_gallery, device="cpu", sample_fps=4, progress=False,
                      annotate_dir=tmp_path / "annotated")
    person = report.people["ben_affleck"]
    assert person.exposure_seconds == 8.0 and list(person.intervals.values()) == [[[1.0, 9.0]]]
    import av

    def times(video):  # frame times in seconds
        with av.open(str(video)) as c:
            return [round(float(f.pts * f.time_base), 3) for f in c.decode(video=0)]
    copy = next(p for p in report.media[0].annotated if p.endswith(".mp4"))
    assert times(copy) == times(path)  # the annotated copy keeps the held frames' times
    path = _screen_recording(tmp_path / "slides.mp4", blank + [(1, 0), (3, 0), (5, 1), (7, 0)] + after, [ben, elton])
    report = iv.track(path, gallery=full_gallery, device="cpu", sample_fps=4, progress=False)
    person = report.people["ben_affleck"]
    assert person.exposure_seconds == 6.0 and list(person.intervals.values()) == [[[1.0, 5.0], [7.0, 9.0]]]
    assert "elton_john" not in report.people  # one still is too little to name anybody


def test_seconds_next_to_a_logo_count_only_the_person_beside_it(shared_data, tmp_path):
    """Both people are on screen while the FedEx board is (3 s), but only Ben Affleck stands beside it: his
    3 s are "with" the brand, Elton John's, four face heights away, are only together."""
    repo = Path(__file__).resolve().parents[1]
    faces = shared_data / "faces"
    g = iv.Gallery(tmp_path / "g.db", device="cpu")
    g.add_person("ben_affleck", [faces / "ben_affleck" / "2.jpg"])
    g.add_person("elton_john", [faces / "elton_john" / "2.jpg"])
    g.add_brand("fedex", [repo / "examples" / "brands" / "fedex.png"])
    video = _clip(tmp_path / "board.mp4", [(faces / "ben_affleck" / "1.jpg", (20, 60), 0.0, 6.0),
                                          (faces / "elton_john" / "1.jpg", (1000, 60), 0.0, 6.0),
                                          (repo / "examples" / "brands" / "fedex.png", (260, 120), 2.0, 5.0, 90)],
                  seconds=6.0, size=(1280, 400))
    report = iv.track(video, gallery=g, device="cpu", sample_fps=5, progress=False)
    pairs = {(p.a, p.b): p for p in report.co_appearance}
    ben, elton = pairs[("ben_affleck", "fedex")], pairs[("elton_john", "fedex")]
    assert abs(ben.seconds_together - 3.0) <= 0.5 and ben.with_seconds == ben.seconds_together
    assert abs(elton.seconds_together - 3.0) <= 0.5 and elton.with_seconds == 0.0
    assert "s next to the logo" in report.summary()
    video = report.media[0]
    assert report.counts.logos == 0  # boxes in photos; this video's logos are in its logo tracks:
    assert report.counts.logo_tracks == len(video.logo_tracks) >= report.counts.counted_logo_tracks >= 1
    assert f"video logo tracks: {report.counts.logo_tracks}" in report.summary()
    line = next(line for line in report.summary().splitlines() if "ben_affleck + fedex:" in line)
    assert "s on screen together" in line and "photos" not in line  # a video only: no "0 photos"


def test_a_camcorder_transport_stream_whose_clock_restarts_counts_both_halves(shared_data, full_gallery, tmp_path):
    """Two recordings joined into one MPEG-TS file (`cat a.ts a.ts`, as camcorders and joiners write .MTS): the
    clock restarts half-way. The .ts/.mts family was refused by name; read as it was, every frame after the
    restart collapsed onto one instant and the second half counted about 0 s (2.0 of 4.0 s)."""
    part = _clip(tmp_path / "part.ts", [(shared_data / "faces" / "ben_affleck" / "1.jpg", (220, 80), 2.0, 4.0)],
                 seconds=6.0, fps=10)
    joined = tmp_path / "joined.MTS"
    joined.write_bytes(part.read_bytes() * 2)
    report = iv.track(joined, gallery=full_gallery, device="cpu", sample_fps=5, progress=False)
    (entry,) = report.media
    assert entry.error is None and entry.duration_s == 12.0  # not "truncated", and as long as both halves
    ben = report.people["ben_affleck"]
    assert abs(ben.exposure_seconds - 4.0) <= 0.25
    (intervals,) = ben.intervals.values()
    assert [round(s) for s, _ in intervals] == [2, 8]


def test_a_video_stopped_part_way_goes_on_from_where_it_stopped(shared_data, tmp_path, monkeypatch):
    """A long video is recorded batch by batch: a rerun with the checkpoint analyses only the frames (and the
    logo searches) not yet recorded, and gives the report of one uninterrupted run."""
    from influvision.logos.detect import LogoDetector

    repo = Path(__file__).resolve().parents[1]
    g = iv.Gallery(tmp_path / "g.db", device="cpu")
    g.add_person("rick_astley", sorted((shared_data / "faces" / "rick_astley").iterdir()))
    g.add_brand("fedex", [repo / "examples" / "brands" / "fedex.png"])
    video = shared_data / "videos" / "nggyup.mp4"
    whole = iv.track(video, gallery=g, device="cpu", sample_fps=5, progress=False)

    pipeline_call, detect = type(g.pipeline).__call__, LogoDetector.detect
    calls = {"faces": 0, "logos": 0}

    def counted(kind, real, stop_at=None):
        def call(self, *args, **kwargs):
            calls[kind] += 1
            if calls[kind] == stop_at:
                raise KeyboardInterrupt  # the run is stopped here
            return real(self, *args, **kwargs)
        return call

    ckpt = tmp_path / "run.ckpt"
    monkeypatch.setattr(type(g.pipeline), "__call__", counted("faces", pipeline_call, stop_at=3))
    with pytest.raises(KeyboardInterrupt):
        iv.track(video, gallery=g, device="cpu", sample_fps=5, progress=False, checkpoint=ckpt)
    # Stopped again in the logo search: the faces are all recorded by then.
    calls.update(faces=0, logos=0)
    monkeypatch.setattr(type(g.pipeline), "__call__", counted("faces", pipeline_call))
    monkeypatch.setattr(LogoDetector, "detect", counted("logos", detect, stop_at=2))
    with pytest.raises(KeyboardInterrupt):
        iv.track(video, gallery=g, device="cpu", sample_fps=5, progress=False, checkpoint=ckpt)
    first_faces = calls["faces"]
    # Damaged rows are analysed again: a cut-off blob, a row without its arrays, a brand index out of range.
    import io
    import sqlite3

    import numpy as np

    db = sqlite3.connect(ckpt)
    rows = dict(((stage, seq), data) for stage, seq, data in db.execute("SELECT stage, seq, data FROM partial"))
    assert sorted(rows) == [("faces", 0), ("faces", 1), ("faces", 2), ("faces", 3), ("logos", 0)]
    with np.load(io.BytesIO(rows[("faces", 1)])) as npz:
        only_times = io.BytesIO()
        np.savez(only_times, pts_s=npz["pts_s"])
    with np.load(io.BytesIO(rows[("logos", 0)])) as npz:
        logos = {k: npz[k] for k in npz.files}
    logos.update(image_index=np.zeros(1, np.int64), brand=np.array([7]), boxes=np.zeros((1, 4), np.float32),
                 scores=np.ones(1, np.float32))
    wrong_brand = io.BytesIO()
    np.savez(wrong_brand, **logos)
    for (stage, seq), data in (("faces", 0), rows[("faces", 0)][:200]), (("faces", 1), only_times.getvalue()), \
            (("logos", 0), wrong_brand.getvalue()):
        db.execute("UPDATE partial SET data=? WHERE stage=? AND seq=?", (data, stage, seq))
    db.commit()
    db.close()
    calls.update(faces=0, logos=0)
    monkeypatch.setattr(LogoDetector, "detect", counted("logos", detect))
    resumed = iv.track(video, gallery=g, device="cpu", sample_fps=5, progress=False, checkpoint=ckpt)
    assert first_faces == 2  # of 4 batches of 16 frames: the 2 not recorded before the first stop
    assert calls["faces"] == 2 and calls["logos"] == 3  # the two damaged face batches; all 3 logo batches
    assert resumed.people == whole.people and resumed.brands == whole.brands
    assert resumed.media[0].tracks == whole.media[0].tracks
    assert abs(resumed.people["rick_astley"].exposure_seconds - 9.633) < 0.5
    calls.update(faces=0, logos=0)
    again = iv.track(video, gallery=g, device="cpu", sample_fps=5, progress=False, checkpoint=ckpt)
    assert calls == {"faces": 0, "logos": 0} and again.people == whole.people  # finished: taken whole
    g.close()


def test_people_the_camera_pans_past_are_counted_at_two_frames_per_second(shared_data, full_gallery, tmp_path):
    """A 960 x 540 window pans at 225 px/s past Biden and Obama (their shared photo with a logo photo on either
    side), analysed twice a second: each face moves 112 px between analysed frames, more than its width. The
    tracker follows the faces where they stand in the scene (the pan's measured shift), so each is one track and
    counted for the time it is wholly in the window (0 s each before)."""
    import av
    from PIL import Image

    photo = Image.open(shared_data / "scenes" / "obama_and_biden.jpg").convert("RGB")
    photo = photo.resize((round(photo.width * 540 / photo.height), 540))
    side = Image.open(shared_data / "logos" / "scenes" / "fl27_170453766.jpg").convert("RGB").resize((700, 540))
    canvas = Image.new("RGB", (photo.width + 1400, 540))
    canvas.paste(side, (0, 0))
    canvas.paste(photo, (700, 0))
    canvas.paste(side.transpose(Image.Transpose.FLIP_LEFT_RIGHT), (700 + photo.width, 0))
    canvas.save(tmp_path / "canvas.png")
    speed, fps, width = 225.0, 25, 960
    frames = int((canvas.width - width) / speed * fps)
    with av.open(str(tmp_path / "pan.mp4"), "w") as out:
        stream = out.add_stream("libx264", rate=fps, options={"crf": "20"})
        stream.width, stream.height, stream.pix_fmt = width, 540, "yuv420p"
        for i in range(frames):
            x = round(i * speed / fps)
            out.mux(stream.encode(av.VideoFrame.from_image(canvas.crop((x, 0, x + width, 540)))))
        out.mux(stream.encode())
    still = iv.track([tmp_path / "canvas.png"], gallery=full_gallery, device="cpu", progress=False)
    truth = {}
    for f in still.media[0].faces:
        if f.identity:  # wholly in the window from when its right edge enters until its left edge leaves
            truth[f.identity] = min(f.box[0] / speed, frames / fps) - max(0.0, (f.box[2] - width) / speed)
    assert set(truth) == {"barack_obama", "joe_biden"}
    report = iv.track([tmp_path / "pan.mp4"], gallery=full_gallery, device="cpu", progress=False, sample_fps=2)
    got = {p: t.exposure_seconds for p, t in report.people.items() if t.exposure_seconds}
    assert set(got) == set(truth)
    for person, want in truth.items():  # analysed every 0.5 s: up to a step lost at either end
        assert want - 1.0 <= got[person] <= want + 0.5, (person, want, got[person])

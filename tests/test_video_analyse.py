"""analyse_video: tracks, identity per track, exposure.

Two parts: a synthetic clip with a scripted faces_fn (exact expected seconds, conflicts, evidence rules), and
the real pipeline (detector, aligner, quality, dlib embedder) on the labelled shared clips.
"""

from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import torch

from influvision.errors import MediaError
from influvision.match import GalleryIndex, MatchSettings
from influvision.types import Faces
from influvision.video.analyse import VideoAnalysis, analyse_video
from influvision.video.exposure import interval_iou

# --------------------------------------------------------------------------------------------------------
# Synthetic clip: 40 frames at 10 fps, frame i shows its number as the grey level of a block; the scripted
# faces_fn reads it back and returns that frame's scripted faces.

W, H = 160, 120
SETTINGS = MatchSettings(threshold=0.5, margin=0.04, min_face_px=24.0, min_sharpness=0.0)


def _write_numbered_clip(path: Path, n: int, *, faststart: bool = False) -> Path:
    opts = {"movflags": "faststart"} if faststart else {}
    with av.open(str(path), "w", options=opts) as c:
        s = c.add_stream("libx264", rate=10, options={"crf": "0"})
        s.width, s.height, s.pix_fmt = W, H, "yuv420p"
        for i in range(n):
            img = np.full((H, W, 3), 60, np.uint8)
            img[:16, :16] = 4 * i  # the frame number, read back by the scripted detector
            f = av.VideoFrame.from_ndarray(img, format="rgb24")
            f.pts, f.time_base = i, Fraction(1, 10)
            for pk in s.encode(f):
                c.mux(pk)
        for pk in s.encode():
            c.mux(pk)
    return path


def _gallery() -> tuple[GalleryIndex, dict[str, torch.Tensor]]:
    g = torch.Generator().manual_seed(0)
    refs = torch.randn(2, 128, generator=g)
    refs = refs / refs.norm(dim=1, keepdim=True) * 0.8  # the two people are about 1.1 apart
    return GalleryIndex(["ann", "bob"], refs, torch.tensor([0, 1])), {"ann": refs[0], "bob": refs[1]}


def _script() -> dict[str, tuple[list[int], tuple[float, float, float, float], str, float]]:
    """Scripted faces: frames, box, whose face (or 'stranger'), distance to that face."""
    return {
        # ann, missed by the "detector" in frames 15-20 (0.6 s): two pieces of exposure.
        "ann": (list(range(0, 15)) + list(range(21, 40)), (10, 10, 50, 50), "ann", 0.2),
        # A second face at the same time, also closest to ann but less so: cannot be ann too.
        "double": (list(range(10, 20)), (100, 10, 140, 50), "ann", 0.35),
        # Somebody unregistered.
        "stranger": (list(range(5, 26)), (10, 70, 50, 110), "stranger", 0.0),
        # bob, but only two frames: too little evidence to name.
        "brief": (list(range(30, 32)), (100, 70, 140, 110), "bob", 0.1),
    }


def _scripted_faces_fn(people: dict[str, torch.Tensor], script=None):
    g = torch.Generator().manual_seed(1)
    stranger = torch.randn(128, generator=g)
    stranger = stranger / stranger.norm() * 0.8
    script = script or _script()

    def faces_fn(frames: list[np.ndarray]) -> Faces:
        rows = []
        for j, fr in enumerate(frames):
            i = round(float(fr[2:14, 2:14, 0].mean()) / 4)
            for frames_of, box, who, dist in script.values():
                if i in frames_of:
                    base = stranger if who == "stranger" else people[who]
                    direction = torch.randn(128, generator=g)
                    emb = base + direction / direction.norm() * dist
                    rows.append((j, box, emb))
        n = len(rows)
        if n == 0:
            z = torch.zeros(0)
            return Faces.empty().with_columns(embedding=torch.zeros(0, 128), size_px=z, frontalness=z, sharpness=z)
        return Faces(
            image_index=torch.tensor([r[0] for r in rows]), boxes=torch.tensor([r[1] for r in rows]).float(),
            scores=torch.full((n,), 0.99), landmarks=torch.zeros(n, 5, 2),
            columns={"embedding": torch.stack([r[2] for r in rows]), "size_px": torch.full((n,), 40.0),
                     "frontalness": torch.full((n,), 0.9), "sharpness": torch.full((n,), 0.1)})

    return faces_fn


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory) -> tuple[Path, GalleryIndex, object]:
    path = _write_numbered_clip(tmp_path_factory.mktemp("clip") / "numbered.mp4", 40)
    index, people = _gallery()
    return path, index, _scripted_faces_fn(people)


def test_scripted_clip_exposure_identity_and_conflict(synthetic):
    path, index, faces_fn = synthetic
    res = analyse_video(path, faces_fn=faces_fn, index=index, settings=SETTINGS, sample_fps=None, batch_size=7)
    assert res.frames_analysed == 40 and res.error is None and res.cuts_s == []
    assert res.time_resolution_s == pytest.approx(0.1)
    # ann: frames 0-14 and 21-39 = [0, 1.5) and [2.1, 4.0); the 0.6 s miss is not bridged at 0.5 s.
    np.testing.assert_allclose(res.person_intervals["ann"], [[0.0, 1.5], [2.1, 4.0]], atol=1e-6)
    assert res.exposure_s == pytest.approx({"ann": 3.4})
    assert "bob" not in res.exposure_s  # two frames are not enough evidence
    assert res.alone_s == pytest.approx({"ann": 3.4}) and res.together_s == {}
    assert res.face_share["ann"] == pytest.approx(40 * 40 / (W * H), rel=1e-5)

    by_status = {}
    for t in res.tracks:
        by_status.setdefault(t.status, []).append(t)
    named = by_status["named"]
    assert len(named) == 1 and named[0].identity == "ann" and named[0].frames == 34
    assert named[0].similarity == pytest.approx(1 - named[0].distance)
    assert [t.frames for t in by_status["overlap_conflict"]] == [10]  # the second "ann" lost, stays unknown
    assert by_status["overlap_conflict"][0].nearest == "ann"
    assert [t.frames for t in by_status["too_little_evidence"]] == [2]
    assert [t.frames for t in by_status["above_threshold"]] == [21]  # the stranger
    assert all(t.identity is None for t in res.tracks if t.status != "named")

    # Columnar per-detection boxes for annotation: identity follows the track, profiles and all.
    det = res.detections
    assert len(det) == 34 + 10 + 21 + 2
    ann_rows = det.identity == 0
    assert ann_rows.sum() == 34 and set(det.track_id[ann_rows]) == {named[0].track_id}
    np.testing.assert_allclose(np.unique(det.boxes[ann_rows], axis=0), [[10, 10, 50, 50]])

    # Timeline: fraction of each second ann is visible.
    assert [(r.second, r.person, r.fraction) for r in res.timeline] == [
        (0, "ann", 1.0), (1, "ann", 0.5), (2, "ann", 0.9), (3, "ann", 1.0)]
    assert res.timeline_csv().splitlines()[2] == "1,ann,0.5000"


def test_a_face_the_tracker_hands_to_a_refused_track_still_counts_for_its_person(synthetic):
    path, index, _ = synthetic
    _, people = _gallery()
    script = {
        # ann, whose own track has no detection in frames 15-20 (0.6 s: longer than the gaps bridged).
        "ann": (list(range(0, 15)) + list(range(21, 40)), (10, 10, 50, 50), "ann", 0.2),
        # A false box on her hair beside her face in frames 12-14; in frames 15-20 the tracker gives her face,
        # shifted towards that box, to the track it started.
        "hair": (list(range(12, 15)), (30, 0, 70, 40), "ann", 0.45),
        "handed": (list(range(15, 21)), (25, 5, 65, 45), "ann", 0.2),
        # Another face closest to ann at the same time elsewhere in the frame: not hers, never handed over.
        "double": (list(range(22, 32)), (100, 70, 140, 110), "ann", 0.35),
    }
    res = analyse_video(path, faces_fn=_scripted_faces_fn(people, script), index=index, settings=SETTINGS,
                        sample_fps=None, batch_size=7)
    status = sorted((t.status, t.frames) for t in res.tracks)
    assert status == [("handed_over", 9), ("named", 34), ("overlap_conflict", 10)]
    np.testing.assert_allclose(res.person_intervals["ann"], [[0.0, 4.0]], atol=1e-6)  # 3.4 s without the repair
    det = res.detections
    handed = det.track_id == next(t.track_id for t in res.tracks if t.status == "handed_over")
    # Only the frames her own track missed are hers; the hair box beside her face in frames 12-14 is not.
    assert sorted(np.round(det.pts_s[handed & (det.identity == 0)], 1)) == [1.5, 1.6, 1.7, 1.8, 1.9, 2.0]


def test_in_footage_under_two_frames_per_second_one_missed_frame_of_a_track_is_bridged(tmp_path):
    path = tmp_path / "slides.mp4"  # five frames of 2 s each, numbered like the synthetic clip's
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=Fraction(1, 2))
        s.width, s.height, s.pix_fmt = W, H, "yuv420p"
        s.codec_context.time_base = Fraction(1, 1)
        s.options = {"crf": "0"}
        for i in range(5):
            img = np.full((H, W, 3), 60, np.uint8)
            img[:16, :16] = 4 * i
            f = av.VideoFrame.from_ndarray(img, format="rgb24")
            f.pts, f.time_base = 2 * i, Fraction(1, 1)
            for pk in s.encode(f):
                c.mux(pk)
        for pk in s.encode():
            c.mux(pk)
    index, people = _gallery()
    script = {"ann": ([0, 1, 3, 4], (10, 10, 50, 50), "ann", 0.2)}  # missed in the middle frame
    res = analyse_video(path, faces_fn=_scripted_faces_fn(people, script), index=index, settings=SETTINGS,
                        sample_fps=None)
    assert [t.status for t in res.tracks] == ["named"]  # the tracker kept her track over the missed frame
    np.testing.assert_allclose(res.person_intervals["ann"], [[0.0, 10.0]], atol=1e-6)  # not 8 s


def test_gap_bridging_and_sampling(synthetic):
    path, index, faces_fn = synthetic
    res = analyse_video(path, faces_fn=faces_fn, index=index, settings=SETTINGS, sample_fps=None, max_gap_s=0.7)
    assert res.exposure_s == pytest.approx({"ann": 4.0})  # the 0.6 s miss bridged
    res5 = analyse_video(path, faces_fn=faces_fn, index=index, settings=SETTINGS, sample_fps=5)
    assert res5.frames_analysed == 20 and res5.time_resolution_s == pytest.approx(0.2)
    # At 5 fps ann's frames are 0, 2, ... 14 and 22 ... 38: [0, 1.6) and [2.2, 4.0).
    assert res5.exposure_s["ann"] == pytest.approx(3.4)


def test_empty_gallery_names_nobody(synthetic):
    path, _, faces_fn = synthetic
    res = analyse_video(path, faces_fn=faces_fn, index=GalleryIndex.empty(), settings=SETTINGS, sample_fps=None)
    assert res.exposure_s == {} and res.timeline == [] and res.tracks
    assert {t.status for t in res.tracks} == {"no_gallery"}


def test_truncated_video_is_analysed_up_to_the_break(tmp_path, synthetic):
    _, index, faces_fn = synthetic
    full = _write_numbered_clip(tmp_path / "full.mp4", 40, faststart=True)
    cut = tmp_path / "cut.mp4"  # index at the front (faststart), the last 40 % of the frames cut off
    cut.write_bytes(full.read_bytes()[: int(full.stat().st_size * 0.6)])
    res = analyse_video(cut, faces_fn=faces_fn, index=index, settings=SETTINGS, sample_fps=None)
    assert res.error is not None and "truncated" in res.error
    assert 0 < res.frames_analysed < 40
    end = res.frame_pts_s[-1] + res.frame_duration_s[-1]
    assert res.exposure_s.get("ann", 0.0) <= end + 1e-9


def test_not_a_video_raises_media_error(tmp_path, synthetic):
    _, index, faces_fn = synthetic
    bad = tmp_path / "x.mp4"
    bad.write_text("hello")
    with pytest.raises(MediaError):
        analyse_video(bad, faces_fn=faces_fn, index=index, settings=SETTINGS)


# --------------------------------------------------------------------------------------------------------
# Real pipeline on the labelled clips.

E2E_FPS = 5.0


@pytest.fixture(scope="module")
def pipeline():
    from influvision.faces.pipeline import FacePipeline

    # Detection on a copy at most 640 px wide keeps the test fast; alignment samples the full-size frame.
    return FacePipeline(device="cpu", max_side=640)


@pytest.fixture(scope="module")
def gallery_index(full_gallery) -> GalleryIndex:
    """Every identity in faces/, as the shipped gallery stores them (with resolution variants)."""
    return full_gallery.index()


@pytest.fixture(scope="module")
def labels(shared_data) -> dict:
    return json.loads((shared_data / "videos" / "labels.json").read_text())["videos"]


_RESULTS: dict[str, VideoAnalysis] = {}


@pytest.fixture(scope="module")
def analysed(shared_data, pipeline, gallery_index):
    def run(clip: str) -> VideoAnalysis:
        if clip not in _RESULTS:
            _RESULTS[clip] = analyse_video(shared_data / "videos" / clip, faces_fn=pipeline, index=gallery_index,
                                           settings=MatchSettings().resolved(pipeline.embedder.threshold),
                                           sample_fps=E2E_FPS, batch_size=8)
        return _RESULTS[clip]

    return run


@pytest.mark.slow
def test_rick_astley_on_screen_the_whole_clip(analysed, labels):
    res = analysed("nggyup.mp4")
    truth = labels["nggyup.mp4"]["identities"]["rick_astley"]
    assert set(res.exposure_s) == {"rick_astley"}
    assert res.exposure_s["rick_astley"] == pytest.approx(truth["total_visible_s"], rel=0.05)
    assert interval_iou(res.person_intervals["rick_astley"], truth["intervals"]) >= 0.9
    assert res.alone_s["rick_astley"] == pytest.approx(res.exposure_s["rick_astley"])
    # Two cuts in the clip (0.733 s and 3.1 s): seen at the next sampled frames.
    np.testing.assert_allclose(res.cuts_s, [0.8, 3.2], atol=1e-6)
    seconds = {r.second for r in res.timeline if r.person == "rick_astley" and r.fraction > 0.5}
    assert seconds == {int(s) for s, who in labels["nggyup.mp4"]["per_second"].items() if "rick_astley" in who}


@pytest.mark.slow
@pytest.mark.parametrize("clip", ["street_crowd.mp4", "dirtydancing.mp4"])
def test_nobody_registered_is_named_in_negative_clips(analysed, clip):
    res = analysed(clip)
    assert res.exposure_s == {} and res.timeline == []
    assert all(t.identity is None for t in res.tracks)
    assert res.tracks, "faces of unregistered people must still be tracked"
    assert (res.detections.identity == -1).all()


def test_frames_between_analysed_ones_move_the_boxes_and_blur_where_a_stranger_may_be():
    import numpy as np

    from influvision.report import FaceEntry
    from influvision.video.report import _faces_at

    def face(box, name=None):
        return FaceEntry(identity=name, box=box, score=1.0, similarity=0.0)

    shown = {0.0: [(1, face([0.0, 0.0, 10.0, 10.0]), "unknown #1"), (2, face([50.0, 50.0, 60.0, 60.0], "ann"), "ann #2")],
             0.1: [(1, face([20.0, 0.0, 30.0, 10.0]), "unknown #1"), (2, face([50.0, 50.0, 60.0, 60.0], "ann"), "ann #2"),
                   (3, face([80.0, 0.0, 90.0, 10.0]), "unknown #3")]}
    analysed = np.array([0.0, 0.1])
    faces, labels, hide = _faces_at(shown, analysed, 0.05)
    assert labels == ["unknown #1", "ann #2"]
    assert faces[0].box == pytest.approx([10.0, 0.0, 20.0, 10.0])  # half-way along its track
    # The stranger is blurred over the whole span of both positions (blur_box widens it by a tenth), the one who
    # appears in the next analysed frame already now; the registered person is not blurred.
    assert hide == [pytest.approx([0.0, 0.0, 30.0, 10.0]), pytest.approx([80.0, 0.0, 90.0, 10.0])]
    faces, _, hide = _faces_at(shown, analysed, 0.1)  # an analysed frame: its own boxes
    assert [f.box for f in faces][0] == [20.0, 0.0, 30.0, 10.0] and len(hide) == 2

    # A shot cut at the next analysed frame: the cut may come at any frame between, so nobody is drawn and
    # both frames' strangers are blurred; no named box is left to spare a detected face there.
    faces, labels, hide = _faces_at(shown, analysed, 0.05, cuts={0.1})
    assert faces == [] and labels == [] and len(hide) == 3
    # Named at one analysed frame and not at the next: not drawn as the person between them, and blurred.
    shown[0.1][1] = (2, face([50.0, 50.0, 60.0, 60.0]), "unknown #2")
    faces, labels, hide = _faces_at(shown, analysed, 0.05)
    assert labels == ["unknown #1", "unknown #2"] and [f.identity for f in faces] == [None, None]
    assert pytest.approx([50.0, 50.0, 60.0, 60.0]) in hide


def test_a_named_face_spares_one_detected_face_from_blurring_not_all_that_touch_it():
    import numpy as np

    from influvision.annotate import strangers

    named = [[100.0, 100.0, 140.0, 150.0]]
    cheek = [130.0, 100.0, 170.0, 150.0]  # a stranger cheek to cheek: IoU 0.14 with the named box
    close = [108.0, 100.0, 148.0, 150.0]  # overlaps the named box at IoU 0.67 but less than the named face itself
    boxes = np.array([[101.0, 101.0, 141.0, 151.0], close, cheek])
    assert strangers(boxes, named) == [close, cheek]
    assert strangers(boxes[1:], named) == [cheek]  # the best match is spared, whoever it is
    assert strangers(boxes, []) == [list(map(float, b)) for b in boxes]


def test_a_track_of_small_faces_is_not_named_however_close_its_average(synthetic):
    """Averaging many small, noisy faces drifts towards somebody: a 34 px stranger's track came to 0.49999
    of a registered person on a 240p clip. Tracks are named from evidence faces of 40 px or more."""
    from influvision.video.identity import MIN_TRACK_FACE_PX, identify_tracks

    _, index, _ = synthetic
    g = torch.Generator().manual_seed(2)
    n = 8
    emb = index.embeddings[0] + 0.2 * torch.randn(2 * n, 128, generator=g) / 128 ** 0.5
    sizes = torch.tensor([MIN_TRACK_FACE_PX - 6] * n + [MIN_TRACK_FACE_PX + 20] * n)
    faces = Faces(image_index=torch.arange(2 * n), boxes=torch.zeros(2 * n, 4), scores=torch.full((2 * n,), 0.99),
                  landmarks=torch.zeros(2 * n, 5, 2),
                  columns={"embedding": emb, "size_px": sizes, "frontalness": torch.full((2 * n,), 0.9),
                           "sharpness": torch.full((2 * n,), 0.1)})
    track_id = torch.tensor([0] * n + [1] * n)
    small, large = identify_tracks(faces, track_id, {0: (0.0, 1.0), 1: (2.0, 3.0)}, index, SETTINGS)
    assert small.identity is None and small.status == "faces_too_small" and small.nearest == "ann"
    assert small.distance < 0.5  # close enough: only its size keeps it unknown
    assert large.identity == "ann" and large.status == "named"


def test_a_track_is_cut_where_two_successive_faces_are_another_persons():
    """Rule 0 of video/identity.py: two far faces in a row are another person: the track is cut, and the frames
    between the two people's faces that could be either (here a profile) are a piece of their own. A single
    far face (a stranger's still held in a slide show, or one odd frame) is set aside, unnamed, and ends the
    stretch it interrupts; blurred faces decide nothing."""
    from influvision.video.identity import split_tracks

    g = torch.Generator().manual_seed(3)
    a, b = torch.randn(2, 128, generator=g) * (0.5 / 128 ** 0.5)  # two people about 0.7 apart
    jitter = torch.randn(12, 128, generator=g) * (0.1 / 128 ** 0.5)
    who = [a, a, b, a, a, a, b, b, b, b, b, b]  # a single far face at row 2; another person from row 7

    def faces_of(people: list, frontal: torch.Tensor, sharp: torch.Tensor) -> Faces:
        n = len(people)
        return Faces(image_index=torch.arange(n), boxes=torch.zeros(n, 4), scores=torch.full((n,), 0.99),
                     landmarks=torch.zeros(n, 5, 2),
                     columns={"embedding": torch.stack(people) + jitter[:n], "size_px": torch.full((n,), 80.0),
                              "frontalness": frontal, "sharpness": sharp})

    frontal = torch.full((12,), 0.9)
    frontal[6] = 0.1  # a profile, which is no evidence either way
    faces = faces_of(who, frontal, torch.full((12,), 0.1))
    assert (torch.stack(who)[7] - a).norm() > 1.2 * SETTINGS.threshold
    split = split_tracks(faces, np.array([4] * 12), SETTINGS)
    assert split.track_id.tolist() == [4, 4, 7, 4, 4, 4, 5, 6, 6, 6, 6, 6]
    assert split.split_from == {5: 4, 6: 4, 7: 4} and split.stretch.tolist() == [0, 0, 0] + [1] * 9
    blurred = torch.full((12,), 0.1)
    blurred[[2, 7, 8]] = 0.01  # the far faces blurred (a focus pull, not another person): they decide nothing
    kept = split_tracks(faces_of([a, a, b, a, a, a, a, b, b, a, a, a], torch.full((12,), 0.9), blurred),
                        np.array([4] * 12), SETTINGS)
    assert kept.track_id.tolist() == [4] * 12 and kept.split_from == {}
    # A guest whose face has a third of the detail of the one before (another camera, softer skin) is not
    # blurred: the cut holds (the photo wall of the audit, sharpness 0.05 after 0.15).
    soft = torch.full((12,), 0.15)
    soft[7:] = 0.05
    assert split_tracks(faces_of(who, frontal, soft), np.array([4] * 12), SETTINGS).track_id.tolist()[7:] == [6] * 5
    untracked = split_tracks(faces, np.array([-1] * 12), SETTINGS)
    assert untracked.track_id.tolist() == [-1] * 12


def test_pieces_the_tracker_broke_off_a_named_face_continue_its_name():
    """A turned or bobbing head can end its named track and go on as a short new track (or a lone detection)
    at the same place, too short to be named; those seconds were lost (0.5 s of a 2 s appearance). A piece
    joins the named track before or after it only in the same shot, at the same place, within one missed
    frame, and when none of its faces is another person."""
    from influvision.video.analyse import _continuations
    from influvision.video.identity import TrackIdentity

    index, people = _gallery()
    here, there = [10.0, 10.0, 50.0, 50.0], [200.0, 10.0, 240.0, 50.0]
    #          (track, time, box, whose face)
    rows = [(0, 0.0, here, "ann"), (0, 0.1, here, "ann"), (0, 0.2, here, "ann"), (0, 0.3, here, "ann"),
            (1, 0.5, here, "ann"), (1, 0.6, here, "ann"),  # a piece one missed frame after track 0: joins
            (-1, 0.7, here, "ann"),  # a lone detection after that piece: joins through it
            (2, 0.5, there, "ann"), (2, 0.6, there, "ann"),  # elsewhere: another face
            (3, 1.7, here, "ann"), (3, 1.8, here, "ann"),  # before track 4, but a cut lies between
            (4, 2.0, here, "ann"), (4, 2.1, here, "ann"), (4, 2.2, here, "ann"),
            (5, 2.3, here, "bob"), (5, 2.4, here, "bob")]  # right after track 4 at its place: but bob's face
    n = len(rows)
    faces = Faces(image_index=torch.arange(n), boxes=torch.tensor([r[2] for r in rows]), scores=torch.ones(n),
                  landmarks=torch.zeros(n, 5, 2),
                  columns={"embedding": torch.stack([people[r[3]] for r in rows]), "size_px": torch.full((n,), 60.0),
                           "frontalness": torch.full((n,), 0.9), "sharpness": torch.full((n,), 0.1)})
    track_id = np.array([r[0] for r in rows])

    def decision(t: int, named: bool) -> TrackIdentity:
        return TrackIdentity(t, "ann" if named else None, 0 if named else -1, 0.1, 0.9, "ann", 2, 2, 2,
                             "named" if named else "too_little_evidence")

    decisions = [decision(0, True), decision(1, False), decision(2, False), decision(3, False), decision(4, True),
                 decision(5, False)]
    joined = _continuations(decisions, track_id, {}, np.array([r[1] for r in rows]), faces.boxes.numpy(), faces,
                            index, SETTINGS, [1.9], 0.25, 3)
    assert sorted(joined[:, 0].tolist()) == [4, 5, 6] and set(joined[:, 1].tolist()) == {0}
    split_piece = _continuations(decisions, track_id, {1: 0}, np.array([r[1] for r in rows]), faces.boxes.numpy(),
                                 faces, index, SETTINGS, [1.9], 0.25, 3)
    assert split_piece.size == 0  # a piece cut out for showing another person never rejoins


def test_two_far_faces_of_two_other_people_do_not_cut_as_one_and_a_piece_between_two_people_joins_neither():
    """Rule 0 needs the two far faces to be one person (a stranger's single face before a new person is set
    aside, not merged into the new person's piece); rule 6 gives a piece that fits the tracks of two people
    (side by side) to neither unless its face says whose it is."""
    from influvision.video.analyse import _continuations
    from influvision.video.identity import TrackIdentity, split_tracks

    g = torch.Generator().manual_seed(4)
    a, b, c = torch.randn(3, 128, generator=g) * (0.55 / 128 ** 0.5)  # three people about 0.78 apart
    who = [a, a, a, b, c, c, c, c]
    n = len(who)
    faces = Faces(image_index=torch.arange(n), boxes=torch.zeros(n, 4), scores=torch.ones(n),
                  landmarks=torch.zeros(n, 5, 2),
                  columns={"embedding": torch.stack(who), "size_px": torch.full((n,), 80.0),
                           "frontalness": torch.full((n,), 0.9), "sharpness": torch.full((n,), 0.1)})
    split = split_tracks(faces, np.array([0] * n), SETTINGS)
    assert split.track_id.tolist() == [0, 0, 0, 2, 1, 1, 1, 1] and split.split_from == {1: 0, 2: 0}

    index, people = _gallery()
    left, right, both = [10.0, 10.0, 50.0, 50.0], [40.0, 10.0, 80.0, 50.0], [25.0, 10.0, 65.0, 50.0]
    rows = [(0, 0.0, left, "ann"), (0, 0.1, left, "ann"), (0, 0.2, left, "ann"),
            (1, 0.0, right, "bob"), (1, 0.1, right, "bob"), (1, 0.2, right, "bob"),
            (-1, 0.3, both, "ann")]  # a lone detection between them, overlapping both
    n = len(rows)

    def faces_with(frontal_last: float) -> Faces:
        frontal = torch.full((n,), 0.9)
        frontal[-1] = frontal_last
        return Faces(image_index=torch.arange(n), boxes=torch.tensor([r[2] for r in rows]), scores=torch.ones(n),
                     landmarks=torch.zeros(n, 5, 2),
                     columns={"embedding": torch.stack([people[r[3]] for r in rows]),
                              "size_px": torch.full((n,), 60.0), "frontalness": frontal,
                              "sharpness": torch.full((n,), 0.1)})

    decisions = [TrackIdentity(0, "ann", 0, 0.1, 0.9, "ann", 3, 3, 3, "named"),
                 TrackIdentity(1, "bob", 1, 0.1, 0.9, "bob", 3, 3, 3, "named")]
    track_id, pts = np.array([r[0] for r in rows]), np.array([r[1] for r in rows])
    for frontal, expected in ((0.1, []), (0.9, [[6, 0]])):  # a profile: whose? a frontal face of ann: hers
        f = faces_with(frontal)
        joined = _continuations(decisions, track_id, {}, pts, f.boxes.numpy(), f, index, SETTINGS, [], 0.25, 3)
        assert joined.tolist() == expected

"""Face tracks over ByteTrack and shot-cut detection on real and synthetic cuts."""

from __future__ import annotations

import json
from fractions import Fraction

import av
import numpy as np
import pytest

from influvision.decode.video import iter_frames
from influvision.video.tracks import CUT_THRESHOLD, FaceTracker, ShotCutDetector


def _boxes(*centres: tuple[float, float], side: float = 60.0) -> np.ndarray:
    return np.array([[x - side / 2, y - side / 2, x + side / 2, y + side / 2] for x, y in centres], np.float32)


def test_two_moving_faces_keep_their_ids_including_the_first_frame():
    tr = FaceTracker(frame_rate=5.0)
    for k in range(6):
        # Given in alternating order: ids must follow the faces, not the row order.
        a, b = (100 + 8 * k, 100), (400 - 8 * k, 300)
        order = [a, b] if k % 2 == 0 else [b, a]
        tr.update(_boxes(*order), np.array([0.99, 0.98]), pts_s=0.2 * k)
    ids = tr.track_ids.reshape(6, 2)
    left = np.where(np.arange(6) % 2 == 0, ids[:, 0], ids[:, 1])
    right = np.where(np.arange(6) % 2 == 0, ids[:, 1], ids[:, 0])
    # ByteTrack alone returns -1 for the detection that starts a track; the adapter gives it the id.
    assert (left >= 0).all() and (right >= 0).all()
    assert len(set(left)) == 1 and len(set(right)) == 1 and left[0] != right[0]


@pytest.mark.parametrize("rate", [0.25, 0.5, 0.9, 1.0, 30.0])
def test_a_still_face_is_one_track_at_any_sampling_rate(rate):
    """Frames more than the lost-track time apart (under 1 per second) must still continue a track."""
    tr = FaceTracker(frame_rate=rate)
    for k in range(5):
        tr.update(_boxes((200, 150)), np.array([0.99]), pts_s=k / rate)
    ids = tr.track_ids
    assert (ids >= 0).all() and len(set(ids.tolist())) == 1


def test_cut_ends_tracks_and_ids_stay_unique():
    tr = FaceTracker(frame_rate=5.0)
    for k in range(3):
        tr.update(_boxes((100, 100)), np.array([0.99]), pts_s=0.2 * k)
    tr.cut()
    for k in range(3, 6):  # same place after the cut: still a new track
        tr.update(_boxes((100, 100)), np.array([0.99]), pts_s=0.2 * k)
    ids = tr.track_ids
    assert len(set(ids[:3])) == 1 and len(set(ids[3:])) == 1 and ids[0] != ids[3]
    assert tr.cuts == 1


def test_single_frame_detection_and_empty_frames():
    tr = FaceTracker(frame_rate=10.0)
    tr.update(_boxes((50, 50)), np.array([0.99]), pts_s=0.0)  # a face seen once, far from anything later
    tr.update(np.zeros((0, 4)), np.zeros(0), pts_s=0.1)
    for k in range(2, 5):
        tr.update(_boxes((500, 400)), np.array([0.95]), pts_s=0.1 * k)
    ids = tr.track_ids
    assert ids.shape == (4,) and ids.dtype == np.int64
    assert ids[0] == -1  # never confirmed: not a track
    assert (ids[1:] >= 0).all() and len(set(ids[1:])) == 1


def test_low_score_detections_only_continue_tracks():
    tr = FaceTracker(frame_rate=10.0)
    tr.update(_boxes((200, 200)), np.array([0.3]), pts_s=0.0)  # too weak to start a track
    tr.update(_boxes((200, 200)), np.array([0.3]), pts_s=0.1)
    assert (tr.track_ids == -1).all()


def _cut_scores(path, sample_fps):
    det = ShotCutDetector()
    out = []
    for b in iter_frames(path, sample_fps=sample_fps, batch_size=32):
        out += [(float(t), det.score(f)) for f, t in zip(b.frames, b.pts_s, strict=True)]
    return np.array(out)


@pytest.mark.parametrize("clip", ["nggyup.mp4", "dirtydancing.mp4", "street_crowd.mp4"])
def test_labelled_cuts_found_and_nothing_else(shared_data, clip):
    labels = json.loads((shared_data / "videos" / "labels.json").read_text())["videos"][clip]
    cuts = [s[0] for s in labels["shots"][1:]]
    scores = _cut_scores(shared_data / "videos" / clip, sample_fps=5)
    found = scores[scores[:, 1] >= CUT_THRESHOLD, 0]
    # At 5 frames per second a cut shows at the first sampled frame after it.
    assert len(found) == len(cuts)
    for t, c in zip(found, cuts, strict=True):
        assert c <= t + 1e-6 < c + 0.2
    assert scores[scores[:, 1] < CUT_THRESHOLD, 1].max() < CUT_THRESHOLD - 0.1  # some room below


def test_synthetic_cut_between_two_concatenated_clips(shared_data, tmp_path):
    # One file made of 1 s of one clip followed by 1 s of another: exactly one cut, at the junction.
    parts = []
    for clip, t0 in (("nggyup.mp4", 4.0), ("street_crowd.mp4", 1.0)):
        for b in iter_frames(shared_data / "videos" / clip, sample_fps=10, batch_size=8):
            parts += [f[::4, ::4] for f, t in zip(b.frames, b.pts_s, strict=True) if t0 <= t < t0 + 1.0]
            if b.pts_s[-1] >= t0 + 1.0:
                break
    h = min(p.shape[0] for p in parts) // 2 * 2
    w = min(p.shape[1] for p in parts) // 2 * 2
    path = tmp_path / "joined.mp4"
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=10)
        s.width, s.height, s.pix_fmt = w, h, "yuv420p"
        for i, img in enumerate(parts):
            f = av.VideoFrame.from_ndarray(np.ascontiguousarray(img[:h, :w]), format="rgb24")
            f.pts, f.time_base = i, Fraction(1, 10)
            for pk in s.encode(f):
                c.mux(pk)
        for pk in s.encode():
            c.mux(pk)
    scores = _cut_scores(path, sample_fps=None)
    assert len(scores) == 20
    found = scores[scores[:, 1] >= CUT_THRESHOLD, 0]
    np.testing.assert_allclose(found, [1.0], atol=1e-6)


def test_a_fast_camera_pan_sampled_sparsely_is_no_cut_and_real_cuts_stay_cuts(shared_data):
    """A 640 x 360 window panning over a shared scene at 220 px/s, sampled twice a second: most of the picture
    changes between analysed frames (cut scores over the threshold), but the second frame is the first moved
    sideways, so the shot goes on. The labelled cuts at 2 analysed frames per second are still cuts."""
    from PIL import Image

    from influvision.video.tracks import is_pan

    big = np.asarray(Image.open(shared_data / "logos" / "scenes" / "fl27_170453766.jpg").convert("RGB")
                     .resize((1000, 750)))
    frames = [np.ascontiguousarray(big[100:460, round(110 * k):round(110 * k) + 640]) for k in range(5)]
    scorer, det = ShotCutDetector(), ShotCutDetector()
    scores = [scorer.score(f) for f in frames]
    cuts = [det.is_cut(f) for f in frames]
    assert max(scores) >= CUT_THRESHOLD and not any(cuts)
    labels = json.loads((shared_data / "videos" / "labels.json").read_text())["videos"]["dirtydancing.mp4"]
    det, found = ShotCutDetector(), []
    for b in iter_frames(shared_data / "videos" / "dirtydancing.mp4", sample_fps=2, batch_size=32):
        found += [float(t) for f, t in zip(b.frames, b.pts_s, strict=True) if det.is_cut(f)]
    assert len(found) == len(labels["shots"]) - 1
    noise = np.random.default_rng(0).uniform(0, 255, (90, 160)).astype(np.float32)
    assert not is_pan(noise, np.random.default_rng(1).uniform(0, 255, (90, 160)).astype(np.float32))


def test_faces_the_camera_pans_past_stay_one_track_however_far_they_move(shared_data):
    """A 640 x 360 window panning 110 px per analysed frame over a shared scene (220 px/s at 2 frames per
    second): two 60 px faces standing in the scene move 110 px between frames, so no box overlaps its last
    one. Measured by the cut detector, the pan moves the tracker's boxes with it: each face is one track.
    Without the pan's motion each frame's faces start new tracks."""
    from PIL import Image

    big = np.asarray(Image.open(shared_data / "logos" / "scenes" / "fl27_170453766.jpg").convert("RGB")
                     .resize((1200, 900)))
    people = [(620.0, 250.0), (760.0, 330.0)]  # where the two faces stand, in scene pixels
    cutter, tracker, plain = ShotCutDetector(), FaceTracker(frame_rate=2.0), FaceTracker(frame_rate=2.0)
    motions = []
    for k in range(5):
        x0 = round(110 * k)
        frame = np.ascontiguousarray(big[100:460, x0:x0 + 640])
        assert not cutter.is_cut(frame)
        motions.append(cutter.motion)
        boxes = _boxes(*[(x - x0, y - 100) for x, y in people])
        tracker.update(boxes, np.array([0.99, 0.98]), pts_s=0.5 * k, motion=cutter.motion)
        plain.update(boxes, np.array([0.99, 0.98]), pts_s=0.5 * k)
    np.testing.assert_allclose([m[0] for m in motions[1:]], -110, atol=3)  # the picture moves left
    np.testing.assert_allclose([m[1] for m in motions], 0, atol=3)
    ids = tracker.track_ids.reshape(5, 2)
    assert (ids >= 0).all() and (ids == ids[0]).all() and ids[0, 0] != ids[0, 1]
    assert (plain.track_ids == -1).all()  # without it: ten faces seen once each, no track


def test_a_subject_the_camera_follows_stays_one_track_while_the_background_pans(shared_data):
    """The same pan, but the face is one the camera follows (a walk-and-talk): it stays in place in the frame
    while the picture moves 110 px per analysed frame. Its box overlaps its last one where it is, not where the
    pan would have taken it, so the tracker keeps frame coordinates for it: one track."""
    from PIL import Image

    big = np.asarray(Image.open(shared_data / "logos" / "scenes" / "fl27_170453766.jpg").convert("RGB")
                     .resize((1200, 900)))
    cutter, tracker = ShotCutDetector(), FaceTracker(frame_rate=2.0)
    for k in range(5):
        frame = np.ascontiguousarray(big[100:460, round(110 * k):round(110 * k) + 640])
        assert not cutter.is_cut(frame)
        tracker.update(_boxes((320.0, 180.0)), np.array([0.99]), pts_s=0.5 * k, motion=cutter.motion)
        assert k == 0 or cutter.motion[0] < -100
    ids = tracker.track_ids
    assert (ids >= 0).all() and (ids == ids[0]).all()


def test_dancers_the_correlation_locks_on_are_no_pan(shared_data):
    """dirtydancing's dance floor at 10 analysed frames per second: in 5 frame pairs the phase correlation
    follows dancers, shifts of 3 % of the frame or more that leave as much difference as before. They are not
    camera pans (PAN_EXPLAINED), so no motion is followed."""
    cutter, moved = ShotCutDetector(), 0
    for b in iter_frames(shared_data / "videos" / "dirtydancing.mp4", sample_fps=10, batch_size=32):
        for f in b.frames:
            cutter.is_cut(f)
            moved += abs(cutter.motion[0]) > 0.03 * f.shape[1] or abs(cutter.motion[1]) > 0.03 * f.shape[0]
    assert moved == 0


def test_a_still_camera_measures_no_motion(shared_data):
    cutter = ShotCutDetector()
    for b in iter_frames(shared_data / "videos" / "nggyup.mp4", sample_fps=5, batch_size=8):
        for f in b.frames[:4]:
            cutter.is_cut(f)
            assert abs(cutter.motion[0]) < 0.05 * f.shape[1] and abs(cutter.motion[1]) < 0.05 * f.shape[0]
        break

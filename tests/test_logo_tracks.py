"""Linking logo detections over searched video frames into tracks, and which tracks count."""

from __future__ import annotations

from influvision.video.logo_tracks import SURE_SCORE, LogoDetection, link_logo_tracks

STEP = 0.5
BOX = [100.0, 100.0, 200.0, 150.0]


def _det(t: float, brand: str = "fedex", box: list[float] = BOX, score: float = 0.5) -> LogoDetection:
    return LogoDetection(pts_s=t, duration_s=STEP, brand=brand, box=box, score=score, area_share=0.01)


def test_a_logo_seen_in_successive_frames_is_one_counted_track():
    (track,) = link_logo_tracks([_det(t) for t in (0.0, 0.5, 1.0, 1.5)], [], STEP)
    assert track.frames == 4 and track.counted
    assert track.intervals(0.5).tolist() == [[0.0, 2.0]]


def test_a_moving_logo_stays_one_track_and_one_missed_frame_is_tolerated():
    moved = [110.0, 104.0, 214.0, 152.0]
    (track,) = link_logo_tracks([_det(0.0), _det(0.5, box=moved), _det(1.5, box=moved)], [], STEP)
    assert track.frames == 3


def test_a_single_weak_detection_does_not_count_but_a_strong_one_does():
    weak, strong = link_logo_tracks([_det(0.0, score=0.4), _det(5.0, score=SURE_SCORE + 0.05)], [], STEP)
    assert not weak.counted and "not counted" in weak.status
    assert strong.counted


def test_tracks_break_at_cuts_long_gaps_other_places_and_other_brands():
    tracks = link_logo_tracks(
        [_det(0.0), _det(0.5), _det(1.0), _det(1.0, brand="nike"),  # nike at the same place: its own track
         _det(1.5, box=[400.0, 300.0, 500.0, 350.0]),  # elsewhere: its own track
         _det(3.0)],  # two searched frames missed since 1.0: a new track
        [], STEP)
    assert [(t.brand, t.frames) for t in tracks] == [("fedex", 3), ("nike", 1), ("fedex", 1), ("fedex", 1)]
    cut = link_logo_tracks([_det(0.0), _det(0.5), _det(1.0)], [0.9], STEP)
    assert [t.frames for t in cut] == [2, 1]


def test_one_missed_frame_is_tolerated_at_broadcast_frame_rates():
    """Searched frames fall on whole source frames: one missed frame leaves a gap a little over the step."""
    def det(t: float, duration: float) -> LogoDetection:
        return LogoDetection(pts_s=t, duration_s=duration, brand="fedex", box=BOX, score=0.74, area_share=0.01)

    ntsc = link_logo_tracks([det(1.001, 0.5005), det(2.002, 0.5005)], [], STEP)  # 29.97 fps, 1.502 missed
    pal = link_logo_tracks([det(0.52, 0.48), det(1.52, 0.48)], [], STEP)  # 25 fps, 1.00 missed
    assert [t.frames for t in ntsc] == [2] and ntsc[0].counted
    assert [t.frames for t in pal] == [2] and pal[0].counted


def _moved(dx: float, dy: float = 0.0, scale: float = 1.0) -> list[float]:
    x1, y1, x2, y2 = BOX
    w, h = (x2 - x1) * scale, (y2 - y1) * scale
    return [x1 + dx, y1 + dy, x1 + dx + w, y1 + dy + h]


def test_a_mark_crossing_the_frame_faster_than_its_width_is_one_counted_track():
    """A weak mark moving 1.5 widths per searched frame never overlaps itself; its steady path joins it."""
    dets = [_det(0.5 * k, box=_moved(150.0 * k, 20.0 * k), score=0.6) for k in range(6)]
    (track,) = link_logo_tracks(dets, [], STEP)
    assert track.frames == 6 and track.counted and track.moving and "moving steadily" in track.status
    assert track.intervals(0.5).tolist() == [[0.0, 3.0]]
    # One searched frame missed on the way: still one track.
    gappy = [d for k, d in enumerate(dets) if k != 3]
    assert [t.frames for t in link_logo_tracks(gappy, [], STEP)] == [5]


def test_weak_boxes_of_one_brand_that_do_not_move_steadily_stay_single_and_uncounted():
    two = [_det(0.0, box=_moved(0.0), score=0.6), _det(0.5, box=_moved(400.0), score=0.6)]  # two points
    jumpy = [_det(0.0, box=_moved(0.0)), _det(0.5, box=_moved(300.0)), _det(1.0, box=_moved(0.0, 200.0))]
    zooming = [_det(0.5 * k, box=_moved(200.0 * k, scale=2.0 ** k)) for k in range(3)]
    cut = [_det(0.5 * k, box=_moved(150.0 * k)) for k in range(4)]
    other_brands = [_det(0.5 * k, brand=b, box=_moved(150.0 * k)) for k, b in enumerate(("fedex", "nike", "fedex"))]
    for dets, cuts in ((two, []), (jumpy, []), (zooming, []), (cut, [0.7]), (other_brands, [])):
        tracks = link_logo_tracks(dets, cuts, STEP)
        assert all(t.frames == 1 and not t.counted for t in tracks), [t.status for t in tracks]
    # Either side of a cut: a steady run of four joins, three single sightings stay single.
    long_cut = [_det(0.5 * k, box=_moved(150.0 * k)) for k in range(7)]
    assert sorted(t.frames for t in link_logo_tracks(long_cut, [1.2], STEP)) == [1, 1, 1, 4]


def test_a_searched_frame_missed_within_a_track_is_bridged_in_its_seconds():
    """A static mark found at 0, 0.5 and 1.5 s (missed at 1.0): linked into one track, and on screen throughout."""
    (track,) = link_logo_tracks([_det(0.0), _det(0.5), _det(1.5)], [], STEP)
    assert track.intervals(0.5).tolist() == [[0.0, 2.0]]
    # Two frames missed: two tracks, and the gap stays a gap.
    assert [t.intervals(0.5).tolist() for t in link_logo_tracks([_det(0.0), _det(0.5), _det(2.0), _det(2.5)],
                                                                 [], STEP)] == [[[0.0, 1.0]], [[2.0, 3.0]]]


def test_a_mark_on_a_curve_or_speeding_up_is_followed():
    import math

    circle = [_det(0.5 * k, box=_moved(110 * math.cos(math.pi * k / 4), 110 * math.sin(math.pi * k / 4)))
              for k in range(8)]  # once round a 110 px circle in 4 s: 45 degrees per searched frame
    assert [t.frames for t in link_logo_tracks(circle, [], STEP)] == [8]
    # Overlapping while slow (one track by overlap), then two fast sightings past its end: they continue it.
    xs = [0.0, 20.0, 40.0, 100.0, 180.0, 280.0]
    (track,) = link_logo_tracks([_det(0.5 * k, box=_moved(x)) for k, x in enumerate(xs)], [], STEP)
    assert track.frames == 6 and track.moving


def test_weak_boxes_at_random_places_are_seldom_joined_into_counted_tracks():
    """A pathological false-positive stream (a weak box of one brand at a random place in half the searched
    frames of 30 minutes) beside a mark crossing the frame again and again: the crossing is always counted, the
    random boxes almost never (a window proportional to a long jump would take in many of them)."""
    import random

    rng = random.Random(0)
    dets, noise = [], 0
    for k in range(3600):
        if rng.random() < 0.5:
            x, y = rng.uniform(0, 1800), rng.uniform(0, 1000)
            dets.append(LogoDetection(k * 0.5, 0.5, "acme", [x, y, x + 60, y + 30], 0.5, 0.001))
            noise += 1
        x = 100 + (k % 40) * 40
        dets.append(LogoDetection(k * 0.5, 0.5, "acme", [x, 500, x + 30, 515], 0.6, 0.001))
    tracks = link_logo_tracks(dets, [], STEP)
    assert sum(t.frames for t in tracks) == len(dets)  # every detection in exactly one track
    crossing = [t for t in tracks if t.detections[0].box[2] - t.detections[0].box[0] < 45]
    random_counted = sum(t.frames for t in tracks if t.counted and t not in crossing)
    assert all(t.counted for t in crossing) and random_counted <= 0.03 * noise

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

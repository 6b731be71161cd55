"""Exposure arithmetic: unions (never sums), gap bridging, alone/together, per-second timeline."""

from __future__ import annotations

import numpy as np
import pytest

from influvision.errors import ShapeError
from influvision.video.exposure import (
    DEFAULT_MAX_GAP_S,
    TimelineRow,
    alone_seconds,
    exposure_seconds,
    face_area_share,
    intersect_intervals,
    interval_iou,
    subtract_intervals,
    timeline,
    timeline_csv,
    together_seconds,
    total_seconds,
    union_intervals,
)


def test_union_counts_overlap_once_not_sum():
    iv = [(0.0, 2.0), (1.0, 3.0), (2.5, 2.8)]  # lengths sum to 4.3 s, the union is 3 s
    assert total_seconds(iv) == pytest.approx(3.0)
    np.testing.assert_allclose(union_intervals(iv), [[0.0, 3.0]])


def test_union_sorts_and_merges_touching_pieces():
    iv = [(5.0, 6.0), (0.0, 1.0), (1.0, 2.0), (7.0, 7.0)]  # unsorted, touching, one empty
    np.testing.assert_allclose(union_intervals(iv), [[0.0, 2.0], [5.0, 6.0]])


def test_gap_bridging_only_below_max_gap():
    iv = [(0.0, 1.0), (1.3, 2.0), (2.6, 3.0)]  # gaps 0.3 s and 0.6 s
    np.testing.assert_allclose(union_intervals(iv, max_gap_s=0.5), [[0.0, 2.0], [2.6, 3.0]])
    assert exposure_seconds(iv, max_gap_s=0.5) == pytest.approx(2.4)
    assert exposure_seconds(iv, max_gap_s=0.0) == pytest.approx(1.0 + 0.7 + 0.4)
    assert exposure_seconds(iv, max_gap_s=0.7) == pytest.approx(3.0)
    # A gap exactly max_gap_s long is not bridged ("shorter than").
    assert exposure_seconds([(0, 1), (1.5, 2)], max_gap_s=0.5) == pytest.approx(1.5)
    assert pytest.approx(0.5) == DEFAULT_MAX_GAP_S


def test_empty_inputs():
    assert union_intervals([]).shape == (0, 2)
    assert total_seconds(np.zeros((0, 2))) == 0.0
    assert intersect_intervals([], [(0, 1)]).shape == (0, 2)
    np.testing.assert_allclose(subtract_intervals([(0, 1)], []), [[0, 1]])
    assert timeline({}, 10.0) == []
    assert alone_seconds({}) == {} and together_seconds({}) == {}


def test_bad_intervals_raise_shape_error():
    with pytest.raises(ShapeError):
        union_intervals([1.0, 2.0, 3.0])
    with pytest.raises(ShapeError):
        union_intervals([(0.0, float("nan"))])
    with pytest.raises(ValueError):
        union_intervals([(0, 1)], max_gap_s=-1)


def test_intersect_subtract_iou():
    a = [(0.0, 4.0), (6.0, 8.0)]
    b = [(3.0, 7.0)]
    np.testing.assert_allclose(intersect_intervals(a, b), [[3.0, 4.0], [6.0, 7.0]])
    np.testing.assert_allclose(subtract_intervals(a, b), [[0.0, 3.0], [7.0, 8.0]])
    # |a∩b| = 2, |a∪b| = 8
    assert interval_iou(a, b) == pytest.approx(2.0 / 8.0)
    assert interval_iou([(0, 9.633)], [(0, 9.633)]) == pytest.approx(1.0)
    assert interval_iou([], []) == 1.0


def test_alone_and_together():
    people = {"ann": [(0.0, 10.0)], "bob": [(5.0, 15.0)], "cyd": [(20.0, 25.0), (24.0, 26.0)]}
    alone = alone_seconds(people)
    assert alone == pytest.approx({"ann": 5.0, "bob": 5.0, "cyd": 6.0})
    assert together_seconds(people) == pytest.approx({("ann", "bob"): 5.0})
    # Three people at once: each pair is together, nobody is alone there.
    trio = {"a": [(0.0, 2.0)], "b": [(1.0, 3.0)], "c": [(1.5, 2.5)]}
    assert alone_seconds(trio) == pytest.approx({"a": 1.0, "b": 0.5, "c": 0.0})
    assert together_seconds(trio) == pytest.approx({("a", "b"): 1.0, ("a", "c"): 0.5, ("b", "c"): 1.0})


def test_timeline_fractions_and_csv(tmp_path):
    rows = timeline({"zed": [(0.5, 2.25)], "amy": [(1.0, 1.5), (1.25, 1.75)]}, duration_s=2.3)
    assert rows == [
        TimelineRow(0, "zed", 0.5),
        TimelineRow(1, "amy", 0.75),  # union inside the second, not 0.5 + 0.5
        TimelineRow(1, "zed", 1.0),
        TimelineRow(2, "zed", 0.25),
    ]
    text = timeline_csv(rows, tmp_path / "t.csv")
    assert text.splitlines()[0] == "second,person,fraction"
    assert text.splitlines()[2] == "1,amy,0.7500"
    assert (tmp_path / "t.csv").read_text() == text


def test_face_area_share_clips_to_frame():
    boxes = np.array([[0, 0, 64, 36], [-10, -10, 10, 10], [100, 100, 90, 120]], dtype=np.float32)
    share = face_area_share(boxes, width=128, height=72)
    np.testing.assert_allclose(share, [0.25, 100 / (128 * 72), 0.0])
    assert face_area_share(np.zeros((0, 4)), 10, 10).shape == (0,)

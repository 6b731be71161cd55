"""track() on a video mixed with photos: exposure seconds and intervals in the report."""

from __future__ import annotations

import json

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
    per_second = {sec for sec, person, frac in entry.timeline if person == "rick_astley" and frac > 0.5}
    assert per_second == {int(s) for s, people in label["per_second"].items() if "rick_astley" in people}
    report.to_csv(tmp_path / "csv")
    assert "rick_astley" in (tmp_path / "csv" / "timeline.csv").read_text()

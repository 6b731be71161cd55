"""Tallies and the report contract, on hand-made media entries (no models needed)."""

from __future__ import annotations

import csv
import json

import pytest

from influvision.report import FaceEntry, LogoEntry, MediaEntry, Report, Settings, TrackEntry, VideoPresence
from influvision.tally import logo_near_face, near_misses, prominence, tally_photos, union_length

SETTINGS = Settings(embedder="dlib-resnet-v1", threshold=0.5, margin=0.04, min_face_px=24, device="cpu",
                    version="test")


def face(name: str | None, box=(10, 10, 50, 60), sim=0.6) -> FaceEntry:
    return FaceEntry(identity=name, box=list(box), score=0.99, similarity=sim, status="named" if name else "unknown")


def photo(path: str, faces, logos=(), dup=None) -> MediaEntry:
    return MediaEntry(path=path, kind="photo", width=200, height=100, faces=list(faces), logos=list(logos),
                      duplicate_of=dup)


def test_photo_count_is_distinct_photos_and_ignores_duplicates_and_unknowns():
    media = [photo("a.jpg", [face("ann"), face(None)]), photo("b.jpg", [face("ann"), face("bob")]),
             photo("b_copy.jpg", [face("ann")], dup="b.jpg"), photo("c.jpg", [face(None)])]
    people, _, together, _ = tally_photos(media)
    assert people["ann"].photo_count == 2 and people["ann"].photos == ["a.jpg", "b.jpg"]
    assert people["bob"].photo_count == 1
    assert [(p.a, p.b, p.photo_count) for p in together] == [("ann", "bob", 1)]


def test_brand_with_person_counts_near_logos_only():
    near = LogoEntry(brand="acme", box=[20, 65, 40, 80], score=0.9)  # just under the face: on the shirt
    far = LogoEntry(brand="acme", box=[190, 0, 200, 5], score=0.9)
    media = [photo("a.jpg", [face("ann")], [near]), photo("b.jpg", [face("ann", box=(0, 0, 5, 5))], [far])]
    people, brands, _, co = tally_photos(media)
    assert brands["acme"].photo_count == 2
    assert [(p.a, p.b, p.photo_count, p.with_count) for p in co] == [("ann", "acme", 2, 1)]


def test_union_length_counts_overlaps_once():
    assert union_length([[0, 2], [1, 3], [5, 6]]) == 4
    assert union_length([]) == 0


def test_prominence_and_nearness_geometry():
    share, centrality = prominence([50, 25, 150, 75], 200, 100)
    assert share == 0.25 and centrality == 1.0
    assert prominence([0, 0, 1, 1], 200, 100)[1] < 0.02
    assert logo_near_face([0, 30, 10, 40], [0, 0, 10, 10])  # 2 face heights below: on the shirt
    assert not logo_near_face([0, 100, 10, 110], [0, 0, 10, 10])
    assert logo_near_face([0, 40, 10, 50], [0, 0, 10, 10])  # a gap of exactly 3 face heights
    assert not logo_near_face([0, 45, 10, 55], [0, 0, 10, 10])  # 3.5 face heights


def test_report_json_has_the_contract_keys_and_round_trips(tmp_path):
    people, brands, together, co = tally_photos([photo("a.jpg", [face("ann")])])
    report = Report(people=people, brands=brands, together=together, co_appearance=co,
                    media=[photo("a.jpg", [face("ann")])], settings=SETTINGS)
    data = json.loads(report.to_json(tmp_path / "r.json"))
    assert set(data) >= {"people", "brands", "media", "skipped", "settings"}
    assert set(data["people"]["ann"]) >= {"photo_count", "photos", "exposure_seconds", "intervals"}
    assert set(data["media"][0]) >= {"path", "kind", "width", "height", "faces", "logos", "error"}
    assert set(data["media"][0]["faces"][0]) >= {"identity", "box", "score", "similarity"}
    assert set(data["settings"]) >= {"embedder", "threshold", "device", "version"}
    assert Report.from_json(tmp_path / "r.json") == report == Report.from_json(report.to_json())
    with pytest.raises(FileNotFoundError, match="typo.json"):
        Report.from_json(str(tmp_path / "typo.json"))
    files = {p.name for p in report.to_csv(tmp_path / "csv")}
    assert {"people.csv", "faces.csv", "skipped.csv", "co_appearance.csv"} <= files
    rows = list(csv.DictReader((tmp_path / "csv" / "faces.csv").open()))
    assert rows[0]["identity"] == "ann" and rows[0]["path"] == "a.jpg"
    assert "ann" in report.summary()


def test_brand_rows_of_the_csv_carry_what_the_json_says(tmp_path):
    logos = [LogoEntry(brand="acme", box=[0, 0, 20, 20], score=0.9, centrality=0.25, sharpness=0.5),
             LogoEntry(brand="acme", box=[90, 90, 100, 100], score=0.8, centrality=0.75, sharpness=1.5)]
    media = [photo("a.jpg", [face("ann")], logos)]
    people, brands, together, co = tally_photos(media)
    report = Report(people=people, brands=brands, together=together, co_appearance=co, media=media, settings=SETTINGS)
    report.to_csv(tmp_path)
    (row,) = csv.DictReader((tmp_path / "brands.csv").open())
    acme = report.brands["acme"]
    assert (float(row["mean_centrality"]), float(row["mean_sharpness"])) == (acme.mean_centrality, acme.mean_sharpness)
    assert (acme.mean_centrality, acme.mean_sharpness) == (0.5, 1.0) and int(row["photo_count"]) == 1
    assert "mean_centrality" not in next(csv.DictReader((tmp_path / "people.csv").open()))


def test_file_names_cannot_inject_spreadsheet_formulas_or_terminal_codes(tmp_path):
    from influvision.report import Skipped

    evil = '=HYPERLINK("https://evil.example","click").jpg'
    media = [photo(evil, [face("ann")]), photo("@SUM(1+1).jpg", [face(None)])]
    people, brands, together, co = tally_photos(media)
    report = Report(people=people, brands=brands, together=together, co_appearance=co, media=media,
                    skipped=[Skipped(path="a\x1b[2J\nb.jpg", error="a\x1b[2J\nb.jpg: not a photo")],
                    settings=SETTINGS)
    report.to_csv(tmp_path)
    faces = list(csv.DictReader((tmp_path / "faces.csv").open()))
    assert [r["path"] for r in faces] == ["'" + evil, "'@SUM(1+1).jpg"]
    assert list(csv.DictReader((tmp_path / "people.csv").open()))[0]["photos"] == "'" + evil
    text = report.summary()
    assert "\x1b" not in text and "a\\x1b[2J\\nb.jpg: not a photo" in text
    assert not list(tmp_path.glob(".*"))  # no temporary files left beside the tables
    assert json.loads(report.to_json(tmp_path / "r.json"))["media"][0]["path"] == evil  # JSON keeps the name


def test_names_outside_ascii_are_drawn_legibly_whatever_font_the_system_has():
    from PIL import Image, ImageFont

    from influvision.annotate import draw_detections, drawable
    from influvision.report import FaceEntry

    builtin = ImageFont.load_default(size=14)  # the fallback where no DejaVu Sans is installed: ASCII only
    assert drawable("Jöhnny Gäleckï 李", builtin) == "Johnny Galecki ?"
    assert drawable("rick_astley 0.61", builtin) == "rick_astley 0.61"
    face = FaceEntry(identity="zoë", box=[10.0, 30.0, 60.0, 90.0], score=1.0, similarity=0.6)
    drawn = draw_detections(Image.new("RGB", (200, 120)), [face], [], blur_unknown=False)
    assert drawn.getbbox() is not None  # the box and its label are drawn


def test_near_misses_list_what_came_close_to_someone_and_counted_for_nobody():
    def unknown(nearest: str, distance: float, status: str = "unknown") -> FaceEntry:
        return FaceEntry(identity=None, box=[0, 0, 30, 30], score=0.99, similarity=1 - distance, distance=distance,
                         nearest=nearest, status=status)

    def track(tid: int, nearest: str, distance: float, status: str, intervals) -> TrackEntry:
        return TrackEntry(track_id=tid, identity=None, similarity=1 - distance, intervals=intervals, frames=10,
                          distance=distance, nearest=nearest, status=status)

    video = MediaEntry(path="v.mp4", kind="video", people={"ann": VideoPresence(intervals=[[1.0, 2.0]],
                                                                                exposure_seconds=1.0)},
                       tracks=[track(0, "ann", 0.52, "above_threshold", [[0.0, 2.0]]),  # 1 s of it not counted
                               track(1, "ann", 0.53, "overlap_conflict", [[1.2, 1.8]]),  # ann counted meanwhile
                               track(2, "bob", 0.49, "handed_over", [[3.0, 4.0]]),  # counts for a named track
                               track(3, "bob", 0.58, "above_threshold", [[3.0, 4.0]])])  # too far
    media = [photo("a.jpg", [unknown("ann", 0.53), unknown("bob", 0.56), unknown("cy", 0.47, "unidentifiable")]),
             photo("b.jpg", [face("ann"), unknown("ann", 0.51)]),  # ann is counted in b.jpg anyway
             photo("a_copy.jpg", [unknown("ann", 0.53)], dup="a.jpg"), video]
    found = [(n.person, n.path, n.kind, n.status, n.over_threshold, n.seconds) for n in near_misses(media, 0.5)]
    assert found == [("ann", "a.jpg", "face", "unknown", 0.03, 0.0), ("cy", "a.jpg", "face", "unidentifiable", -0.03, 0.0),
                     ("ann", "v.mp4", "track", "above_threshold", 0.02, 1.0)]
    report = Report(media=media, near_misses=near_misses(media, 0.5), settings=SETTINGS)
    assert "near misses (counted for nobody" in report.summary()
    assert "ann: 1 face in 1 photo, 1 video track, 1.00 s (closest distance 0.520)" in report.summary()
    # Two tracks near ann at the same time count their seconds once in the summary.
    video.tracks.append(track(4, "ann", 0.54, "above_threshold", [[0.2, 0.8]]))
    both = Report(media=media, near_misses=near_misses(media, 0.5), settings=SETTINGS)
    assert [n.intervals for n in both.near_misses if n.kind == "track"] == [[[0.0, 1.0]], [[0.2, 0.8]]]
    assert "ann: 1 face in 1 photo, 2 video tracks, 1.00 s" in both.summary()

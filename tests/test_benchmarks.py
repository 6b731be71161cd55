"""What the benchmarks measure depends on these: distinct replicas for the scaling curve, and the F1."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from influvision.decode.images import load_image
from influvision.duplicates import DuplicateIndex

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the benchmarks package sits beside tests/

from benchmarks.run import f1_score  # noqa: E402
from benchmarks.scaling import ReplicaCache, spread_order  # noqa: E402


def test_replicas_are_not_duplicates_and_keep_the_content(shared_data, tmp_path):
    originals = [shared_data / "faces" / "barack_obama" / "1.jpg", shared_data / "faces" / "joe_biden" / "2.jpg"]
    photos = ReplicaCache(tmp_path / "cache", originals).photos(8)
    assert len(photos) == 8 and photos[:2] == originals
    # replica k copies original k mod 2
    assert [p.name.split("_", 1)[1] for p in photos[2:]] == ["1.jpg", "2.jpg"] * 3
    index = DuplicateIndex()
    dups = [p for p in photos if index.add(str(p), load_image(p).pixels, p) is not None]
    assert dups == [], "track() would skip these replicas as duplicates"
    a, b = load_image(originals[0]).pixels.astype(int), load_image(photos[2]).pixels.astype(int)
    assert a.shape == b.shape
    assert np.abs(a - b).mean() < 10  # a faint shading, not another photo
    # Later rounds start from a variant: round 1 is the mirror image, round 2 a crop.
    mirrored = load_image(photos[4]).pixels.astype(int)
    assert mirrored.shape == a.shape and np.abs(a[:, ::-1] - mirrored).mean() < 10
    cropped = load_image(photos[6]).pixels
    assert cropped.shape[0] < a.shape[0] and cropped.shape[1] < a.shape[1]
    # made once: a second cache over the same folder reuses the files
    again = ReplicaCache(tmp_path / "cache", originals)
    assert again.photos(8) == photos


def test_spread_order_puts_the_largest_first_then_spreads(shared_data):
    paths = sorted((shared_data / "faces" / "madonna").iterdir())
    ordered = spread_order(paths)
    assert sorted(ordered) == paths
    size = {p: load_image(p).pixels.size for p in paths}
    assert size[ordered[0]] == max(size.values())
    rest = sorted(size[p] for p in ordered[1:])
    # the next two are the smallest of the rest and one from its upper half, not two neighbours
    assert size[ordered[1]] == rest[0] and size[ordered[2]] >= rest[len(rest) // 2]


def test_f1_counts_photo_person_pairs():
    labels = {"a.jpg": {"known": ["x", "y"]}, "b.jpg": {"known": []}}
    assert f1_score({"a.jpg": {"x", "y"}}, labels) == 1.0
    # one right, one missed, one wrong: tp 1, fn 1, fp 1
    assert f1_score({"a.jpg": {"x"}, "b.jpg": {"z"}}, labels) == 0.5


def test_embed_speed_measures_every_cell(capsys):
    from benchmarks.embed_speed import main

    main(["--device", "cpu", "--batches", "4", "8", "--chips", "8", "--repeat", "1"])
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| fp32 |")]
    # fp32 on the CPU, without and with flip, at both batch sizes (4 cells, printed as measured and again
    # in the table), each a positive rate
    assert len(rows) == 8 and all(float(r.split("|")[4].replace(",", "")) > 0 for r in rows)


def test_resized_sets_keep_every_face_at_the_target_size(shared_data, tmp_path):
    from benchmarks.run import resized_copy, run_row

    src = shared_data / "scenes" / "couple.jpg"
    resized_copy(src, tmp_path / "a.jpg", "1080p")
    resized_copy(src, tmp_path / "b.jpg", "12mp")
    frame, big = load_image(tmp_path / "a.jpg").pixels, load_image(tmp_path / "b.jpg").pixels
    assert frame.shape == (1080, 1920, 3)
    assert abs(big.shape[0] * big.shape[1] - 12e6) < 0.01 * 12e6
    h, w = load_image(src).pixels.shape[:2]
    assert abs(big.shape[1] / big.shape[0] - w / h) < 0.01  # same aspect ratio, nothing cropped
    assert run_row("decode_gpu", "cpu", str(tmp_path / "g.db"))["skip"] == "needs a CUDA device"


def test_logo_conditions_move_the_labels_with_the_pixels():
    """The degraded copies the logo benchmark scores keep each label box on its mark."""
    from benchmarks.logo_accuracy import CONDITIONS

    img = np.zeros((300, 400, 3), np.uint8)
    img[100:160, 150:270] = 255  # the "logo": a white 120 x 60 block
    labels = [{"brand": "x", "box": [150, 100, 270, 160]}]
    for name, degrade in CONDITIONS.items():
        out, moved = degrade(img, labels)
        if name == "busy":  # the photo is one quarter of a mosaic of real scenes, untouched
            dx, dy = (int(v) for v in np.subtract(moved[0]["box"][:2], labels[0]["box"][:2]))
            assert out.shape[:2] == (600, 800) and dx in (0, 400) and dy in (0, 300)
            assert np.array_equal(out[dy:dy + 300, dx:dx + 400], img) and out.std() > 20
            continue
        ys, xs = np.nonzero(out.max(axis=2) > 200)
        mark = [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]
        assert np.allclose(moved[0]["box"], mark, atol=3), name
        assert labels[0]["box"] == [150, 100, 270, 160]  # the caller's labels are not changed
    assert CONDITIONS["half"](img, labels)[0].shape[:2] == (150, 200)
    assert CONDITIONS["dark"](img, labels)[0].mean() < 0.85 * img.mean()


def test_logo_parts_times_every_part_and_restores_the_threads(logo_data):
    import cv2
    import torch

    from benchmarks.profile_stages import logo_parts
    from influvision.logos.detect import LogoDetector
    from influvision.logos.references import load_reference

    detector = LogoDetector([load_reference(b, logo_data / "refs" / f"{b}.png") for b in ("fedex", "nike")])
    threads = torch.get_num_threads(), cv2.getNumThreads()
    workers = detector._matcher.workers, detector.silhouette_cue.workers
    table = logo_parts([logo_data / "scenes" / "fl27_213783134.jpg"], detector)
    rows = {line.split(" | ")[0].strip("| *"): float(line.split(" | ")[1]) for line in table.splitlines()
            if line.startswith("| ") and "CPU ms" not in line}
    assert len(rows) == 5 and all(ms > 0 for ms in rows.values())
    detect = next(ms for name, ms in rows.items() if name.startswith("LogoDetector.detect"))
    assert detect >= rows["SIFT extraction (in the matcher)"]
    assert (torch.get_num_threads(), cv2.getNumThreads()) == threads
    assert (detector._matcher.workers, detector.silhouette_cue.workers) == workers


def test_extra_brands_are_named_apart_and_refusals_are_listed(logo_data, tmp_path):
    from PIL import Image

    from benchmarks.logo_accuracy import extra_references

    (tmp_path / "nike.svg").write_bytes((logo_data / "refs" / "nike.png").read_bytes())  # a registered name
    (tmp_path / "Red.Bull.png").write_bytes((logo_data / "refs" / "puma.png").read_bytes())
    blank = np.zeros((64, 64, 4), np.uint8)
    Image.fromarray(blank).save(tmp_path / "blank.png")
    (tmp_path / "notes.txt").write_text("not a mark")
    refs, refused = extra_references(tmp_path, taken={"nike"})
    assert [r.name for r in refs] == ["x_red_bull"]
    assert len(refused) == 1 and "blank" in refused[0]
    refs, refused = extra_references(tmp_path, taken=set(), count=1)
    assert len(refs) + len(refused) == 1

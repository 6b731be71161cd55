"""The streaming photo engine: batch size, out-of-memory halving, size bucketing, GPU JPEG decode logic.

CUDA is simulated where it cannot run: an out-of-memory error is a monkeypatched ``torch.OutOfMemoryError``,
and the GPU decode path runs with ``device="cpu"`` (libjpeg instead of nvJPEG, the same code otherwise).
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import influvision as iv
from influvision.decode import gpu_jpeg
from influvision.decode.gpu_jpeg import PendingJpeg, decode_pending, gpu_decodable, orient_tensor
from influvision.decode.images import DecodedImage, _orient, load_image
from influvision.decode.loader import iter_decoded, iter_prepared
from influvision.engine import (
    CPU_BATCH_SIZE,
    MAX_AUTO_BATCH_SIZE,
    BatchRunner,
    EngineStats,
    Photo,
    PhotoEngine,
    auto_batch_size,
    photo_cost_bytes,
    resolve_batch_size,
    split_on_oom,
)
from influvision.errors import MediaError
from influvision.faces.pipeline import FacePipeline
from influvision.report import MediaEntry
from influvision.sources import MediaItem

# Named so that input order (sorted names) is not size order; two 150 x 150 chips share a P-Net bucket.
PHOTOS = {
    "a_group2.jpg": "scenes/group2.jpg",  # 640 x 828, progressive
    "b_bbt5.jpg": "scenes/bbt5.jpg",  # 940 x 464
    "c_parsons.png": "faces/jim_parsons/1.png",  # 150 x 150 grey
    "d_bbt2.jpg": "scenes/bbt2.jpg",  # 675 x 469
    "e_elton_cher.jpg": "scenes/elton_john_with_cher.jpg",  # 236 x 355
    "f_cuoco.png": "faces/kaley_cuoco/1.png",  # 150 x 150 grey
    "g_bbt4.jpg": "scenes/bbt4.jpg",  # 710 x 473
}


@pytest.fixture(scope="module")
def small_gallery(shared_data, tmp_path_factory):
    """Four people of the Big Bang Theory scenes plus Elton John, one reference photo each."""
    gallery = iv.Gallery(tmp_path_factory.mktemp("engine") / "small.db", device="cpu")
    for person, photo in (("jim_parsons", "3.png"), ("kaley_cuoco", "3.png"), ("johnny_galecki", "1.png"),
                          ("simon_helberg", "1.png"), ("elton_john", "1.jpg")):
        statuses = gallery.add_person(person, [shared_data / "faces" / person / photo])
        assert all(s.ok for s in statuses), statuses
    return gallery


@pytest.fixture(scope="module")
def photo_dir(shared_data, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("photos")
    for name, rel in PHOTOS.items():
        shutil.copyfile(shared_data / rel, folder / name)
    return folder


def _track(photo_dir: Path, gallery, **kw) -> iv.Report:
    return iv.track(photo_dir, gallery=gallery, device="cpu", progress=False, **kw)


@pytest.fixture(scope="module")
def clean(photo_dir, small_gallery) -> iv.Report:
    return _track(photo_dir, small_gallery, batch_size=4)


@pytest.fixture(scope="module")
def one_by_one(photo_dir, small_gallery) -> iv.Report:
    return _track(photo_dir, small_gallery, batch_size=1)


def _assert_same(a: list[MediaEntry], b: list[MediaEntry]) -> None:
    """Equal decisions and equal numbers up to float rounding: batches of other sizes sum convolutions in
    another order (about 1e-4 px on boxes, 4e-5 on embeddings), which can move a rounded digit."""
    assert [m.path for m in a] == [m.path for m in b]
    for ma, mb in zip(a, b, strict=True):
        assert (ma.width, ma.height, ma.error, ma.duplicate_of) == (mb.width, mb.height, mb.error, mb.duplicate_of)
        assert [(f.identity, f.status, f.nearest) for f in ma.faces] == [(f.identity, f.status, f.nearest)
                                                                         for f in mb.faces], ma.path
        for fa, fb in zip(ma.faces, mb.faces, strict=True):
            assert np.allclose(fa.box, fb.box, atol=0.2) and abs(fa.similarity - fb.similarity) < 2e-3, ma.path


# --- batch size ------------------------------------------------------------------------------------------------

def test_decoding_threads_default_to_half_the_cores_within_bounds() -> None:
    from influvision.engine import default_workers

    assert [default_workers(n) for n in (1, 2, 4, 6, 16, 64)] == [2, 2, 2, 3, 8, 8]


def test_auto_batch_size_is_fixed_on_cpu_and_planned_from_free_memory_on_cuda(monkeypatch) -> None:
    assert auto_batch_size("cpu") == CPU_BATCH_SIZE == resolve_batch_size("auto", "cpu")
    assert resolve_batch_size(3, "cpu") == 3
    for bad in (0, -2, 2.5, "big", True):
        with pytest.raises(ValueError, match="batch_size"):
            resolve_batch_size(bad, "cpu")
    per = photo_cost_bytes(3000, 4000)
    assert 370e6 < per < 410e6  # a 12 MP photo searched at 1600 px, its alignment pyramid included: 392 MB
    assert photo_cost_bytes(150, 150) < photo_cost_bytes(3000, 4000, max_side=4000)
    gib = 1 << 30
    assert auto_batch_size("cuda", free_bytes=80 * gib) == auto_batch_size("cuda", free_bytes=24 * gib) \
        == MAX_AUTO_BATCH_SIZE
    assert auto_batch_size("cuda", free_bytes=4 * gib) == int((0.7 * 4 * gib - 2 * gib) // per) == 2
    assert auto_batch_size("cuda", free_bytes=1 * gib) == 1  # never below one photo
    # Without free_bytes the CUDA size comes from torch.cuda.mem_get_info (simulated: no GPU here).
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (8 * gib, 80 * gib))
    assert auto_batch_size("cuda:0") == int((0.7 * 8 * gib - 2 * gib) // per)


def test_clean_run_records_its_batch_size(clean, shared_data) -> None:
    assert clean.counts.batch_sizes == [4] and clean.counts.oom_retries == 0
    assert clean.settings.precision == "fp32"  # bf16 only by choice, or by default on CUDA
    names = [Path(m.path).name for m in clean.media]
    assert names == sorted(PHOTOS)  # input order, not size order
    labels = json.loads((shared_data / "scenes" / "labels.json").read_text())["images"]
    for name, entry in zip(names, clean.media, strict=True):
        rel = PHOTOS[name]
        allowed = set(labels[Path(rel).name]["known"]) if rel.startswith("scenes/") else {rel.split("/")[1]}
        assert {f.identity for f in entry.faces if f.identity} <= allowed, name
    named = {f.identity for m in clean.media for f in m.faces if f.identity}
    assert {"jim_parsons", "kaley_cuoco"} <= named


# --- out of memory -----------------------------------------------------------------------------------------------

def _oom_when(monkeypatch, too_big) -> list[list[tuple[int, ...]]]:
    """Make the face pipeline raise CUDA's out-of-memory error for batches where ``too_big(shapes)``."""
    real = FacePipeline.__call__
    calls: list[list[tuple[int, ...]]] = []

    def pipeline(self, images, **kw):
        shapes = [tuple(im.shape) for im in images]
        calls.append(shapes)
        if too_big(shapes):
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB (simulated)")
        return real(self, images, **kw)

    monkeypatch.setattr(FacePipeline, "__call__", pipeline)
    return calls


def test_out_of_memory_halves_the_batch_and_gives_identical_entries(clean, one_by_one, photo_dir, small_gallery,
                                                                     monkeypatch) -> None:
    calls = _oom_when(monkeypatch, lambda shapes: len(shapes) > 1)
    report = _track(photo_dir, small_gallery, batch_size=4)
    _assert_same(report.media, clean.media)
    assert report.people.keys() == clean.people.keys() and not report.skipped
    assert report.counts.batch_sizes == [4, 2, 1]
    # Every photo reached the pipeline alone exactly once: none lost, none analysed twice into the report.
    singles = [c[0] for c in calls if len(c) == 1]
    assert len(singles) == len(PHOTOS) and report.counts.oom_retries == len(calls) - len(PHOTOS)
    assert report.media == one_by_one.media  # the same arithmetic as batches of one: identical to the digit


def test_a_photo_too_large_even_alone_is_skipped_with_the_reason(clean, photo_dir, small_gallery,
                                                                 monkeypatch) -> None:
    _oom_when(monkeypatch, lambda shapes: (828, 640, 3) in shapes)  # a_group2.jpg never fits
    report = _track(photo_dir, small_gallery, batch_size=4)
    assert [Path(s.path).name for s in report.skipped] == ["a_group2.jpg"]
    err = report.skipped[0].error
    assert "a_group2.jpg" in err and "memory" in err and "640 x 828" in err
    _assert_same(report.media, [m for m in clean.media if not m.path.endswith("a_group2.jpg")])
    assert report.counts.inputs_seen == len(PHOTOS) and report.counts.skipped == 1


def test_batch_runner_redoes_the_same_photos_in_halves() -> None:
    photos = [Photo(MediaItem(f"p{i}.jpg", Path(f"p{i}.jpg"), "photo"),
                    DecodedImage(f"p{i}.jpg", np.zeros((1, 1, 3), np.uint8), 1, 1, "RGB"))
              for i in range(7)]
    seen: list[list[str]] = []
    failures = iter([True, False, True])  # fail, succeed, fail, then succeed for good

    def analyse(batch: list[Photo]) -> list[MediaEntry]:
        seen.append([p.item.path for p in batch])
        if next(failures, False):
            raise torch.OutOfMemoryError("simulated")
        return [MediaEntry(path=p.item.path, kind="photo") for p in batch]

    stats = EngineStats()
    out = BatchRunner(4, torch.device("cpu"), stats).run(photos, analyse)
    assert [e.path for e in out] == [p.item.path for p in photos]
    assert seen == [["p0.jpg", "p1.jpg", "p2.jpg", "p3.jpg"], ["p0.jpg", "p1.jpg"], ["p2.jpg", "p3.jpg"],
                    ["p2.jpg"], ["p3.jpg"], ["p4.jpg"], ["p5.jpg"], ["p6.jpg"]]
    assert stats.batch_sizes == [4, 2, 1] and stats.oom_retries == 2


# --- size bucketing ----------------------------------------------------------------------------------------------

def test_batches_hold_similar_sizes_and_results_equal_one_photo_at_a_time(clean, one_by_one, photo_dir,
                                                                         small_gallery, monkeypatch) -> None:
    _assert_same(one_by_one.media, clean.media)
    assert one_by_one.people.keys() == clean.people.keys()
    calls = _oom_when(monkeypatch, lambda shapes: False)  # records the shapes of every batch
    bucketed = _track(photo_dir, small_gallery, batch_size=4)
    assert bucketed.media == clean.media  # the same batches: identical
    # One window (8 >= 7 photos), sorted by (height, width), cut into batches of 4.
    flat = [s for call in calls for s in call]
    assert [len(c) for c in calls] == [4, 3]
    assert flat == sorted(flat) and flat[:2] == [(150, 150, 3), (150, 150, 3)]


def test_duplicates_and_resume_are_unchanged_by_bucketing(photo_dir, small_gallery, tmp_path) -> None:
    src = tmp_path / "src"
    shutil.copytree(photo_dir, src)
    shutil.copyfile(src / "g_bbt4.jpg", src / "0_first_copy_of_bbt4.jpg")  # earlier in input order
    first = _track(src, small_gallery, batch_size=4, checkpoint=tmp_path / "run.ckpt")
    dups = {Path(m.path).name: Path(m.duplicate_of).name for m in first.media if m.duplicate_of}
    assert dups == {"g_bbt4.jpg": "0_first_copy_of_bbt4.jpg"}
    again = _track(src, small_gallery, batch_size=2, checkpoint=tmp_path / "run.ckpt")
    assert again.media == first.media


# --- GPU JPEG decode (pure parts, run on the CPU) ----------------------------------------------------------------

@pytest.mark.parametrize("orientation", range(1, 9))
def test_device_orientation_equals_the_cpu_loader(shared_data: Path, tmp_path: Path, orientation: int) -> None:
    im = Image.open(shared_data / "scenes/bbt4.jpg")
    exif = Image.Exif()
    exif[0x0112] = orientation
    path = tmp_path / f"o{orientation}.jpg"
    im.save(path, quality=92, exif=exif)
    pending = gpu_decodable(path.read_bytes(), "o.jpg")
    assert isinstance(pending, PendingJpeg) and pending.orientation == orientation
    [(decoded, on_device)] = decode_pending([pending], device="cpu")
    reference = load_image(path, name="o.jpg")
    assert on_device is not None and np.array_equal(decoded.pixels, reference.pixels)
    assert (decoded.width, decoded.height) == (reference.width, reference.height)
    assert decoded.sha256 == reference.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    raw = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)
    assert np.array_equal(orient_tensor(torch.from_numpy(raw), orientation).numpy(), _orient(raw, orientation))


def test_only_plain_jpegs_are_sent_to_the_gpu(shared_data: Path, tmp_path: Path) -> None:
    baseline = (shared_data / "scenes/bbt4.jpg").read_bytes()
    progressive = (shared_data / "scenes/group2.jpg").read_bytes()
    assert isinstance(gpu_decodable(baseline, "b.jpg"), PendingJpeg)
    assert isinstance(gpu_decodable(progressive, "p.jpg"), PendingJpeg)
    Image.open(shared_data / "scenes/bbt4.jpg").convert("CMYK").save(tmp_path / "cmyk.jpg", quality=95)
    Image.open(shared_data / "scenes/bbt4.jpg").save(tmp_path / "photo.png")
    corrupt = bytearray(baseline)
    corrupt[len(corrupt) // 2: len(corrupt) // 2 + 2048] = np.random.default_rng(0).bytes(2048)
    refused = {
        "cmyk": (tmp_path / "cmyk.jpg").read_bytes(),
        "png": (tmp_path / "photo.png").read_bytes(),
        "truncated": baseline[: len(baseline) // 2],
        "corrupt": bytes(corrupt),
        "too large": baseline,
        "text": b"not a photo at all",
    }
    for why, data in refused.items():
        assert gpu_decodable(data, "x.jpg", max_pixels=1000 if why == "too large" else 10**8) is None, why


def test_a_failed_device_decode_falls_back_to_the_cpu_per_file(shared_data: Path, monkeypatch) -> None:
    names = ("scenes/bbt4.jpg", "scenes/bbt2.jpg", "scenes/group2.jpg")
    pending = [gpu_decodable((shared_data / n).read_bytes(), n) for n in names]
    real = gpu_jpeg._decode
    calls: list[int] = []

    def flaky(data, device):
        calls.append(len(data))
        if len(data) > 1 or data[0] is pending[1].data:  # the batch fails, then bbt2.jpg alone
            raise RuntimeError("nvjpeg: simulated failure")
        return real(data, device)

    monkeypatch.setattr(gpu_jpeg, "_decode", flaky)
    out = decode_pending(pending, device="cpu")
    assert calls == [3, 1, 1, 1]
    assert [on_device is None for _, on_device in out] == [False, True, False]
    for name, (decoded, _) in zip(names, out, strict=True):
        assert np.array_equal(decoded.pixels, load_image(shared_data / name).pixels) and decoded.path == name

    # A decode at another size than the header's is not trusted either.
    monkeypatch.setattr(gpu_jpeg, "_decode", lambda data, device: [torch.zeros(3, 5, 5, dtype=torch.uint8)] * len(data))
    [(decoded, on_device)] = decode_pending(pending[:1], device="cpu")
    assert on_device is None and decoded.pixels.shape == (473, 710, 3)


def test_gpu_decode_route_gives_the_cpu_loaders_results(shared_data: Path, tmp_path: Path) -> None:
    """The engine with the GPU JPEG route (libjpeg here) and without: same pixels, errors and duplicates."""
    src = tmp_path / "mixed"
    src.mkdir()
    data = (shared_data / "scenes/bbt4.jpg").read_bytes()
    (src / "1.jpg").write_bytes(data)
    (src / "2_copy.jpg").write_bytes(data)
    (src / "3_cut.jpg").write_bytes(data[: len(data) // 2])
    Image.open(shared_data / "scenes/bbt2.jpg").convert("CMYK").save(src / "4_cmyk.jpg", quality=95)
    shutil.copyfile(shared_data / "faces/jim_parsons/1.png", src / "5.png")
    shutil.copyfile(shared_data / "faces/scarlett_johansson/3.jpg", src / "6_webp_named_jpg.jpg")
    items = [MediaItem(p.name, p, "photo") for p in sorted(src.iterdir())]

    def run(gpu: bool) -> tuple[list[MediaEntry], dict[str, str]]:
        pixels: dict[str, str] = {}

        def analyse(photos: list[Photo]) -> list[MediaEntry]:
            for p in photos:
                pixels[p.item.path] = hashlib.sha256(np.ascontiguousarray(p.image.pixels).data).hexdigest()
                assert (p.on_device is not None) == (gpu and p.item.path == "1.jpg")
            return [MediaEntry(path=p.item.path, kind="photo", width=p.image.width, height=p.image.height)
                    for p in photos]

        return PhotoEngine(analyse, "cpu", batch_size=2, gpu_jpeg=gpu).run(items), pixels

    (cpu_entries, cpu_pixels), (gpu_entries, gpu_pixels) = run(False), run(True)
    assert gpu_entries == cpu_entries and gpu_pixels == cpu_pixels
    by_name = {e.path: e for e in gpu_entries}
    assert by_name["2_copy.jpg"].duplicate_of == "1.jpg"
    assert "truncated JPEG" in (by_name["3_cut.jpg"].error or "")
    assert set(gpu_pixels) == {"1.jpg", "4_cmyk.jpg", "5.png", "6_webp_named_jpg.jpg"}
    kinds = {i.path: type(r).__name__ for i, r in iter_prepared(items)}
    assert kinds == {"1.jpg": "PendingJpeg", "2_copy.jpg": "PendingJpeg", "3_cut.jpg": "MediaError",
                     "4_cmyk.jpg": "DecodedImage", "5.png": "DecodedImage", "6_webp_named_jpg.jpg": "DecodedImage"}


def test_pinned_loading_falls_back_to_pageable_memory_without_cuda(shared_data: Path) -> None:
    items = [MediaItem("bbt4.jpg", shared_data / "scenes/bbt4.jpg", "photo")]
    [(_, pinned)] = list(iter_decoded(items, pin_memory=True))
    [(_, plain)] = list(iter_decoded(items))
    assert isinstance(pinned, DecodedImage) and np.array_equal(pinned.pixels, plain.pixels)
    assert pinned.pixels.flags.writeable and pinned.pixels.flags.c_contiguous
    if torch.cuda.is_available():
        assert torch.from_numpy(pinned.pixels).is_pinned()


# --- bf16 embedder ------------------------------------------------------------------------------------------------

def test_bf16_embeddings_stay_close_to_fp32(dlib_fixtures: Path) -> None:
    entries = json.loads((dlib_fixtures / "index.json").read_text())["entries"]
    chips = np.stack([np.asarray(Image.open(dlib_fixtures / e["chip"]).convert("RGB")) for e in entries])
    embedder = iv.load_embedder("dlib-resnet-v1", "cpu")
    fp32 = embedder.embed(chips, flip=True)
    bf16 = embedder.embed(chips, flip=True, precision="bf16")
    shift = (fp32 - bf16).norm(dim=1)
    assert bf16.dtype == torch.float32 and 0 < float(shift.max()) < 0.02  # measured: 0.010 (threshold 0.5)
    same = torch.cdist(fp32, fp32) < 0.5
    assert torch.equal(same, torch.cdist(bf16, bf16) < 0.5)
    with pytest.raises(ValueError, match="precision"):
        embedder.embed(chips, precision="fp16")
    assert FacePipeline("dlib-resnet-v1", "cpu").precision == "fp32"
    with pytest.raises(ValueError, match="precision"):
        FacePipeline("dlib-resnet-v1", "cpu", precision="half")  # type: ignore[arg-type]


def test_media_error_for_unreadable_files_names_them(tmp_path: Path) -> None:
    items = [MediaItem("missing.jpg", tmp_path / "missing.jpg", "photo")]
    [(_, err)] = list(iter_prepared(items))
    assert isinstance(err, MediaError) and err.path == "missing.jpg" and err.problem == "file not found"


def test_video_frames_are_split_in_halves_when_memory_runs_out(shared_data):
    """Per-frame face work that runs out of memory on more than one frame gives the same faces, frame by frame."""
    frames = [np.asarray(Image.open(shared_data / "scenes" / f"{name}.jpg").convert("RGB").resize((480, 320)))
              for name in ("bbt2", "couple", "bbt4")]
    pipeline = FacePipeline(device="cpu")
    direct = pipeline(frames)
    calls: list[int] = []

    def tight(fs):
        calls.append(len(fs))
        if len(fs) > 1:
            raise torch.OutOfMemoryError("simulated")
        return pipeline(fs)

    stats = EngineStats()
    split = split_on_oom(tight, torch.device("cpu"), stats)(frames)
    assert calls[0] == 3 and sorted(c for c in calls if c == 1) == [1, 1, 1] and stats.oom_retries == 2
    assert split.image_index.tolist() == direct.image_index.tolist() and len(direct) >= 3
    torch.testing.assert_close(split.boxes, direct.boxes, atol=0.01, rtol=0)

    def never(fs):
        raise torch.OutOfMemoryError("simulated")

    with pytest.raises(MediaError, match="one 480 x 320 frame"):
        split_on_oom(never, torch.device("cpu"))(frames[:1])


@pytest.mark.parametrize(("given", "expected"), [(None, "8"), ("64", "64")])
def test_import_bounds_onednn_primitive_cache_unless_the_user_set_it(given: str | None, expected: str):
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "ONEDNN_PRIMITIVE_CACHE_CAPACITY"}
    if given is not None:
        env["ONEDNN_PRIMITIVE_CACHE_CAPACITY"] = given
    out = subprocess.run([sys.executable, "-c", "import os, influvision; "
                          "print(os.environ['ONEDNN_PRIMITIVE_CACHE_CAPACITY'])"],
                         env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == expected


def test_an_interrupted_run_keeps_every_finished_batch(shared_data: Path, tmp_path: Path) -> None:
    from influvision.checkpoint import Checkpoint

    faces = sorted((shared_data / "faces").glob("*/1.jpg"))[:6]
    items = [MediaItem(p.parent.name + ".jpg", p, "photo") for p in faces]
    analysed: list[str] = []

    def analyse(photos: list[Photo]) -> list[MediaEntry]:
        if len(analysed) == 4:  # the third batch of the window: Ctrl-C
            raise KeyboardInterrupt
        analysed.extend(p.item.path for p in photos)
        return [MediaEntry(path=p.item.path, kind="photo", width=p.image.width, height=p.image.height)
                for p in photos]

    ckpt = Checkpoint(tmp_path / "run.ckpt", {"photo": "s", "video": "s"}, "g")
    engine = PhotoEngine(analyse, "cpu", batch_size=2)
    assert engine.window >= len(items)  # all six photos are one window
    with pytest.raises(KeyboardInterrupt):
        engine.run(items, checkpoint=ckpt)
    assert len(analysed) == 4 and len(ckpt) == 4  # both finished batches were recorded
    analysed.clear()
    entries = PhotoEngine(analyse, "cpu", batch_size=2).run(items, checkpoint=ckpt)
    assert len(analysed) == 2 and [e.path for e in entries] == [i.path for i in items]

"""Photo decoding and the prefetching loader, on real shared photos damaged in tmp_path."""

from __future__ import annotations

import os
import re
import shutil
import struct
import threading
import time
import warnings
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image, ImageOps

from influvision.decode import loader as loader_module
from influvision.decode.images import has_photo_signature, is_image_path, is_video_path, load_image
from influvision.decode.loader import iter_decoded
from influvision.errors import MediaError
from influvision.sources import MediaItem

BASELINE = "scenes/bbt4.jpg"  # baseline JPEG, 710 x 473
PROGRESSIVE = "scenes/group2.jpg"  # progressive JPEG, 640 x 828


def _rgb(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB")).astype(np.int16)


def _copy(shared_data: Path, rel: str, tmp_path: Path, name: str | None = None) -> Path:
    dst = tmp_path / (name or Path(rel).name)
    shutil.copyfile(shared_data / rel, dst)
    return dst


def _problem(path: Path | bytes, **kw) -> MediaError:
    with pytest.raises(MediaError) as info:
        load_image(path, **kw)
    return info.value


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header declares width x height; no pixel data is needed to trigger size checks."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")


# --- good files -----------------------------------------------------------------------------------------------

def test_real_photos_decode_to_rgb_uint8(shared_data: Path) -> None:
    jpg = load_image(shared_data / BASELINE)
    assert jpg.pixels.shape == (473, 710, 3) and jpg.pixels.dtype == np.uint8
    assert (jpg.width, jpg.height, jpg.original_mode, jpg.format) == (710, 473, "RGB", "JPEG")
    assert jpg.pixels.flags.writeable and jpg.pixels.flags.c_contiguous
    assert np.array_equal(jpg.pixels, _rgb(shared_data / BASELINE))
    assert len(jpg.sha256) == 64

    grey = load_image(shared_data / "faces/kaley_cuoco/1.png")  # 150 x 150 greyscale chip
    assert grey.original_mode == "L" and grey.pixels.shape == (150, 150, 3)
    assert np.array_equal(grey.pixels[..., 0], grey.pixels[..., 2])

    # A WebP file named .jpg decodes by its content.
    webp = load_image(shared_data / "faces/scarlett_johansson/3.jpg")
    assert webp.format == "WEBP" and webp.pixels.shape == (1800, 1350, 3)


def test_bytes_source_uses_the_given_name(shared_data: Path) -> None:
    data = (shared_data / BASELINE).read_bytes()
    assert load_image(data, name="event/x.jpg").path == "event/x.jpg"
    err = _problem(data[:100], name="event/y.jpg")
    assert err.path == "event/y.jpg" and str(err).startswith("event/y.jpg: ")


# --- colour modes ---------------------------------------------------------------------------------------------

def test_cmyk_jpeg_matches_rgb_original(shared_data: Path, tmp_path: Path) -> None:
    original = Image.open(shared_data / BASELINE).convert("RGB")
    path = tmp_path / "cmyk.jpg"
    original.convert("CMYK").save(path, quality=95)
    out = load_image(path)
    assert out.original_mode == "CMYK" and out.pixels.shape == (473, 710, 3)
    diff = np.abs(out.pixels.astype(np.int16) - np.asarray(original, dtype=np.int16)).mean()
    assert diff < 4.0, diff  # only JPEG loss; a wrong (non-inverted) CMYK decode is off by ~100


def test_16bit_grey_png_is_scaled_not_clipped(shared_data: Path, tmp_path: Path) -> None:
    grey8 = np.asarray(Image.open(shared_data / BASELINE).convert("L"))
    # Full 16-bit range, off the multiples of 257.
    grey16 = (grey8.astype(np.uint16) * 257 + 100 * (grey8 < 255)).astype(np.uint16)
    path = tmp_path / "grey16.png"
    Image.fromarray(grey16).save(path)
    assert Image.open(path).mode.startswith("I")
    out = load_image(path)
    assert out.pixels.shape == (473, 710, 3)
    assert np.abs(out.pixels[..., 1].astype(np.int16) - grey8).max() <= 1  # clipping would give 255 everywhere


def test_16bit_rgb_png(shared_data: Path, tmp_path: Path) -> None:
    rgb8 = np.asarray(Image.open(shared_data / BASELINE).convert("RGB"))
    path = tmp_path / "rgb16.png"
    cv2.imwrite(str(path), cv2.cvtColor(rgb8, cv2.COLOR_RGB2BGR).astype(np.uint16) * 257)
    out = load_image(path)
    assert out.pixels.dtype == np.uint8 and np.abs(out.pixels.astype(np.int16) - rgb8).max() <= 1


def test_rgba_png_composited_on_white(shared_data: Path, tmp_path: Path) -> None:
    rgb = np.asarray(Image.open(shared_data / BASELINE).convert("RGB"))
    alpha = np.full(rgb.shape[:2], 255, np.uint8)
    alpha[:100, :200] = 0
    alpha[200:300, :] = 128
    path = tmp_path / "rgba.png"
    Image.fromarray(np.dstack([rgb, alpha])).save(path)
    out = load_image(path).pixels.astype(np.int16)
    assert (out[:100, :200] == 255).all()  # transparent -> white
    assert np.array_equal(out[100:200], rgb[100:200])  # opaque -> unchanged
    half = (rgb[200:300].astype(np.int16) + 255) / 2
    assert np.abs(out[200:300] - half).max() <= 1


def test_palette_png_with_transparency(shared_data: Path, tmp_path: Path) -> None:
    original = Image.open(shared_data / BASELINE).convert("RGB")
    pal = original.quantize(colors=256)
    path = tmp_path / "palette.png"
    pal.save(path)
    out = load_image(path)
    assert out.original_mode == "P"
    assert np.abs(out.pixels.astype(np.int16) - np.asarray(original, dtype=np.int16)).mean() < 8

    index = np.asarray(pal)
    transparent = int(index[0, 0])
    pal.save(path, transparency=transparent)
    out = load_image(path).pixels
    assert (out[index == transparent] == 255).all()
    assert not (out[index != transparent] == 255).all()


def test_one_bit_image(shared_data: Path, tmp_path: Path) -> None:
    path = tmp_path / "bw.png"
    Image.open(shared_data / BASELINE).convert("1").save(path)
    out = load_image(path).pixels
    assert set(np.unique(out)) == {0, 255} and np.array_equal(out[..., 0], out[..., 2])


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_matches_pillow(shared_data: Path, tmp_path: Path, orientation: int) -> None:
    im = Image.open(shared_data / "faces/elton_john/2.jpg")  # 320 x 240
    exif = Image.Exif()
    exif[0x0112] = orientation
    path = tmp_path / f"o{orientation}.jpg"
    im.save(path, quality=95, exif=exif)
    out = load_image(path)
    expected = np.asarray(ImageOps.exif_transpose(Image.open(path)).convert("RGB"))
    assert np.array_equal(out.pixels, expected)
    assert (out.width, out.height) == ((240, 320) if orientation >= 5 else (320, 240))


def test_exif_rotated_phone_photo_comes_out_upright(shared_data: Path, tmp_path: Path) -> None:
    original = Image.open(shared_data / BASELINE).convert("RGB")
    exif = Image.Exif()
    exif[0x0112] = 6  # stored sideways; display rotated 90 degrees clockwise
    path = tmp_path / "phone.jpg"
    original.save(path, quality=95, exif=exif)
    out = load_image(path)
    assert out.pixels.shape == (710, 473, 3)
    rotated = np.rot90(np.asarray(original, dtype=np.int16), k=-1)
    assert np.abs(out.pixels.astype(np.int16) - rotated).mean() < 3


# --- bad files ------------------------------------------------------------------------------------------------

def test_truncated_baseline_jpeg_is_refused_with_the_fraction(shared_data: Path, tmp_path: Path) -> None:
    data = (shared_data / BASELINE).read_bytes()
    path = tmp_path / "cut.jpg"
    path.write_bytes(data[: int(len(data) * 0.6)])
    err = _problem(path)
    assert err.path == str(path) and "truncated JPEG" in err.problem and "cut.jpg" in str(err)
    percent = int(re.search(r"about (\d+)%", err.problem).group(1))
    assert 45 <= percent <= 75, err.problem


def test_truncated_progressive_jpeg_is_refused(shared_data: Path, tmp_path: Path) -> None:
    data = (shared_data / PROGRESSIVE).read_bytes()
    path = tmp_path / "cut_progressive.jpg"
    path.write_bytes(data[: int(len(data) * 0.6)])
    err = _problem(path)
    assert "truncated JPEG" in err.problem and "progressive" in err.problem


def test_truncated_png_is_refused(shared_data: Path, tmp_path: Path) -> None:
    path = tmp_path / "cut.png"
    Image.open(shared_data / BASELINE).save(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    assert "truncated PNG" in _problem(path).problem


@pytest.mark.parametrize(("name", "options", "problem"), [
    ("cut.webp", {"lossless": True}, "truncated WebP file: the file ends early"),
    ("cut.webp", {"quality": 80}, "truncated WebP file: the file ends early"),
    ("cut.tiff", {"compression": "tiff_deflate"}, "truncated TIFF file: the file ends before its first image"),
])
def test_a_truncated_webp_or_tiff_is_called_truncated(shared_data: Path, tmp_path: Path, name: str, options: dict,
                                                      problem: str) -> None:
    path = tmp_path / name
    Image.open(shared_data / BASELINE).save(path, **options)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    assert problem in _problem(path).problem


def _overwrite(data: bytes, seed: int, n: int) -> bytes:
    out = bytearray(data)
    middle = len(out) // 2
    out[middle:middle + n] = np.random.default_rng(seed).integers(0, 256, n, dtype=np.uint8).tobytes()
    return bytes(out)


@pytest.mark.parametrize(("seed", "n", "pillow_notices"), [
    (0, 1024, True),  # Pillow fails on its own
    (1, 64, False),  # the marker walk finds a fake marker where none can be
    (4, 64, False),  # only the strict FFmpeg pass notices the corrupt Huffman data
])
def test_corrupt_jpeg_bytes_overwritten(shared_data: Path, tmp_path: Path, seed: int, n: int,
                                        pillow_notices: bool) -> None:
    original = (shared_data / BASELINE).read_bytes()
    path = tmp_path / "corrupt.jpg"
    path.write_bytes(_overwrite(original, seed, n))
    try:
        garbled = np.asarray(Image.open(path).convert("RGB"), dtype=np.int16)
    except OSError:
        assert pillow_notices
    else:  # Pillow decodes a visibly wrong picture without complaint
        assert not pillow_notices
        assert np.abs(garbled - _rgb(shared_data / BASELINE)).mean() > 10
    err = _problem(path)
    assert "corrupt.jpg" in str(err) and "damaged JPEG" in err.problem


def test_marker_walk_finds_a_bogus_marker_in_compressed_data(shared_data: Path, tmp_path: Path) -> None:
    data = bytearray((shared_data / BASELINE).read_bytes())
    middle = len(data) // 2
    data[middle:middle + 2] = b"\xff\x03"  # a reserved marker inside entropy-coded data
    err = _problem(bytes(data), name="bogus.jpg", verify=False)
    assert "damaged JPEG" in err.problem and "marker 0x03" in err.problem


def test_corrupt_header(shared_data: Path, tmp_path: Path) -> None:
    data = bytearray((shared_data / BASELINE).read_bytes())
    data[:64] = bytes(64)
    err = _problem(bytes(data), name="zeroed.jpg")
    assert err.problem.startswith("not an image")


def test_text_file_named_jpg(tmp_path: Path) -> None:
    path = tmp_path / "notes.jpg"
    path.write_text("Guest list for the gala:\nAlice, Bob, Carol\n")
    assert _problem(path).problem == "not an image: looks like text"
    html = tmp_path / "download.jpg"
    html.write_text("<!DOCTYPE html><html><body>404 Not Found</body></html>")
    assert "web page" in _problem(html).problem


def test_video_named_jpg(shared_data: Path, tmp_path: Path) -> None:
    path = tmp_path / "clip.jpg"
    path.write_bytes((shared_data / "videos/nggyup.mp4").read_bytes()[:4096])
    assert "looks like a video" in _problem(path).problem


def test_tar_archive_named_jpg(shared_data: Path, tmp_path: Path) -> None:
    import tarfile

    path = tmp_path / "photos.jpg"
    with tarfile.open(path, "w") as tf:
        tf.add(shared_data / BASELINE, arcname="a.jpg")
    assert _problem(path).problem == "not an image: looks like a TAR archive"


def test_empty_missing_and_folder(tmp_path: Path) -> None:
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    assert _problem(empty).problem == "empty file (0 bytes)"
    assert _problem(tmp_path / "nope.jpg").problem == "file not found"
    assert "folder" in _problem(tmp_path).problem


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root can read any file")
def test_unreadable_file(shared_data: Path, tmp_path: Path) -> None:
    path = _copy(shared_data, BASELINE, tmp_path)
    path.chmod(0)
    assert "permission denied" in _problem(path).problem


def test_image_over_max_pixels(shared_data: Path) -> None:
    err = _problem(shared_data / BASELINE, max_pixels=100_000)
    assert err.problem.startswith("image too large: 710 x 473") and "max_pixels" in err.problem


def test_huge_headers_are_refused_before_decoding() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # Pillow's decompression-bomb warning must not leak
        # 110 megapixels: over the default limit of 100, between Pillow's warning and error thresholds.
        err = _problem(_png_header_only(11_000, 10_000), name="big.png")
        assert err.problem.startswith("image too large: 11000 x 10000 = 110,000,000 pixels")
        # 400 megapixels: Pillow itself refuses while parsing the header.
        err = _problem(_png_header_only(20_000, 20_000), name="bomb.png", max_pixels=10**12)
        assert "image too large" in err.problem and "decompression bomb" in err.problem


def test_extension_checks() -> None:
    assert is_image_path("a/B.JPG") and is_image_path("x.tiff") and is_image_path("x.gif")
    assert not is_image_path("x.mp4") and not is_image_path("x.txt") and not is_image_path("jpg")
    assert is_video_path("clip.MOV") and is_video_path("c.webm") and not is_video_path("c.jpg")


def test_photo_signatures_are_told_from_videos_and_other_files(shared_data: Path) -> None:
    import io

    heads = {}
    for fmt in ("JPEG", "PNG", "TIFF", "GIF", "BMP", "WEBP"):
        buf = io.BytesIO()
        Image.new("RGB", (8, 8), (200, 30, 30)).save(buf, format=fmt)
        heads[fmt] = buf.getvalue()[:64]
    assert all(has_photo_signature(h) for h in heads.values()), {k: h[:12] for k, h in heads.items()}
    assert has_photo_signature(b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00")  # an iPhone photo
    mp4 = (shared_data / "videos" / "nggyup.mp4").read_bytes()[:64]
    assert mp4[4:8] == b"ftyp" and not has_photo_signature(mp4)
    assert not has_photo_signature(b"RIFF\x10\x00\x00\x00AVI LIST")  # RIFF, but an AVI video
    assert not has_photo_signature(b"PK\x03\x04") and not has_photo_signature(b"")


# --- loader ---------------------------------------------------------------------------------------------------

def _items(shared_data: Path, tmp_path: Path) -> list[MediaItem]:
    good = [_copy(shared_data, r, tmp_path) for r in
            ("faces/elton_john/2.jpg", "faces/madonna/1.jpg", "faces/kaley_cuoco/1.png")]
    text = tmp_path / "text.jpg"
    text.write_text("not a photo")
    empty = tmp_path / "zero.jpg"
    empty.write_bytes(b"")
    order = [good[0], text, good[1], empty, good[2]]
    return [MediaItem(f"event/{p.name}", p, "photo") for p in order]


def test_loader_yields_in_order_with_errors_interleaved(shared_data: Path, tmp_path: Path) -> None:
    items = _items(shared_data, tmp_path)
    out = list(iter_decoded(items, workers=2, prefetch=2))
    assert [i.path for i, _ in out] == [i.path for i in items]
    kinds = [type(r).__name__ for _, r in out]
    assert kinds == ["DecodedImage", "MediaError", "DecodedImage", "MediaError", "DecodedImage"]
    assert out[1][1].path == "event/text.jpg" and "looks like text" in out[1][1].problem
    assert out[3][1].problem == "empty file (0 bytes)"
    assert out[0][1].path == "event/2.jpg" and out[0][1].pixels.shape == (240, 320, 3)
    assert list(iter_decoded([])) == []


def test_loader_bounds_work_ahead_and_stops_cleanly(shared_data: Path, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    src = _copy(shared_data, "faces/madonna/1.jpg", tmp_path)
    items = [MediaItem(f"p{i}.jpg", src, "photo") for i in range(200)]
    started: list[str] = []
    real = loader_module.load_image

    def counting(path, **kw):
        started.append(kw["name"])
        return real(path, **kw)

    monkeypatch.setattr(loader_module, "load_image", counting)
    gen = iter_decoded(items, workers=2, prefetch=4)
    for k, (item, res) in enumerate(gen):
        assert item.path == f"p{k}.jpg" and res.path == item.path
        time.sleep(0.002)  # a slow consumer: decoders must not run ahead by more than `prefetch`
        assert len(started) <= k + 1 + 4
        if k == 9:
            break
    gen.close()
    assert len(started) <= 15
    assert not [t for t in threading.enumerate() if t.name.startswith("influvision-decode")]


def test_loader_refuses_videos_and_bad_settings(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="photos only"):
        iter_decoded([MediaItem("a.mp4", tmp_path / "a.mp4", "video")])
    with pytest.raises(ValueError):
        iter_decoded([], workers=0)


def test_plain_jpegs_decode_through_libjpeg_to_pillows_pixels(shared_data: Path, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """The fast route (torchvision's libjpeg) gives Pillow's pixels for every kind of plain JPEG, is taken
    for them (and only them), and a JPEG it refuses still decodes through Pillow."""
    from influvision.decode import images as images_module

    src = Image.open(shared_data / BASELINE).convert("RGB").crop((3, 5, 336, 256))  # odd sizes: 333 x 251
    variants: dict[str, dict] = {f"sub{s}{'-prog' if p else ''}": {"subsampling": s, "progressive": p}
                                 for s in (0, 1, 2) for p in (False, True)}
    for name, kw in variants.items():
        src.save(tmp_path / f"{name}.jpg", quality=85, **kw)
    src.convert("L").save(tmp_path / "grey.jpg", quality=85)
    exif = Image.Exif()
    exif[0x0112] = 6
    src.save(tmp_path / "rotated.jpg", quality=85, exif=exif)
    src.convert("CMYK").save(tmp_path / "cmyk.jpg", quality=85)

    used: list[int] = []
    real = images_module._decode_with_libjpeg
    monkeypatch.setattr(images_module, "_decode_with_libjpeg", lambda data: used.append(1) or real(data))
    for path in sorted(tmp_path.glob("*.jpg")):
        used.clear()
        decoded = load_image(path)
        pillow = np.asarray(ImageOps.exif_transpose(Image.open(path)).convert("RGB"))
        assert np.array_equal(decoded.pixels, pillow), path.name
        assert decoded.pixels.flags.writeable and decoded.pixels.flags.c_contiguous
        assert used == ([] if path.name == "cmyk.jpg" else [1]), path.name
    assert load_image(tmp_path / "rotated.jpg").pixels.shape == (333, 251, 3)
    assert load_image(tmp_path / "grey.jpg").original_mode == "L"

    monkeypatch.setattr(images_module, "_decode_with_libjpeg", lambda data: None)  # refused: Pillow decodes
    assert np.array_equal(load_image(tmp_path / "sub2.jpg").pixels, np.asarray(Image.open(tmp_path / "sub2.jpg")))


def test_a_huge_file_without_an_image_header_is_refused_unread(tmp_path: Path) -> None:
    big = tmp_path / "big.jpg"
    with big.open("wb") as f:
        f.truncate(100 << 20)  # 100 MiB of zeros (sparse): once read whole, times each decoding thread
    with pytest.raises(MediaError, match="not a photo: 100 MiB of data without an image header"):
        load_image(big)

"""Decode one photo into an RGB array, with a clear reason for every file that cannot be used.

:func:`load_image` turns a file (or its bytes) into an ``(H, W, 3)`` uint8 RGB array in display orientation.
Every failure raises :class:`~influvision.errors.MediaError` whose message names the file and says what is
wrong in plain words ("empty file (0 bytes)", "truncated JPEG: ...", "not an image: looks like text").

Conversions, chosen so that detectors see what a person would see:

* transparency (RGBA, LA, PA, palette with a transparent colour) is composited onto **white**, the way
  viewers show transparent PNGs; fully opaque alpha gives exactly the same pixels as dropping it;
* CMYK goes through the embedded ICC profile when there is one (else Pillow's standard inversion);
* 16-bit greyscale is scaled to 8 bits (``round(v / 257)``), never clipped; 16-bit RGB(A) PNGs come from
  Pillow already reduced to their high byte; 32-bit float images in [0, 1] are scaled by 255, other ranges
  are min-max normalised;
* 1-bit, greyscale and palette images become grey/colour RGB;
* the EXIF orientation tag is applied, so phone photos come out upright;
* GIF, multi-page TIFF and animated WebP or PNG: the first frame only; :attr:`DecodedImage.frames` says how
  many the file holds, and the engine reports such a photo as partly analysed.

Plain JPEGs (baseline, extended or progressive Huffman coding, greyscale or YCbCr, with an end marker) are
decoded by libjpeg-turbo through torchvision rather than Pillow: the same library and the same pixels
(compared over every JPEG of the shared data and all subsampling / progressive / greyscale variants), about
2.5x faster for a 12-megapixel photo because the pixels are not copied out of Pillow through Python bytes.
Every other file, or a JPEG torchvision refuses, goes through Pillow.

Pillow silently decodes many damaged JPEGs into garbled or grey pictures, so JPEGs get two more checks: a
walk over the markers (also inside the compressed data), and a strict second decode by FFmpeg
(``verify=True``). A truncated JPEG is refused with the share of rows present, never decoded partially.
Neither check is complete: short runs of overwritten bytes are caught about half the time (see
:func:`_jpeg_entropy_problem` for measured rates) and may still decode into a wrong picture.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image, ImageCms, UnidentifiedImageError

from ..errors import MediaError
from ..files import read_regular_file

if TYPE_CHECKING:
    import torch

logger = logging.getLogger(__name__)

__all__ = [
    "PHOTO_EXTENSIONS",
    "VIDEO_EXTENSIONS",
    "DecodedImage",
    "has_photo_signature",
    "is_image_path",
    "is_video_path",
    "load_image",
]

DEFAULT_MAX_PIXELS = 100_000_000
# Largest photo file read, in bytes; files above _PEEK_ABOVE_BYTES are read whole only when their first
# _PEEK_BYTES parse as an image header (a 1.5 GiB file of zeros named .jpg is refused without reading it).
MAX_PHOTO_BYTES = 1 << 30
_PEEK_ABOVE_BYTES = 64 << 20
# Formats whose files may hold several pictures meant to be seen (pages, animation frames). MPO is left out: a
# camera JPEG's extra pictures are previews and depth maps of the one photo.
_MULTI_FRAME_FORMATS = frozenset({"TIFF", "GIF", "WEBP", "PNG"})
_PEEK_BYTES = 8 << 20
_IMAGE_MAGIC = (b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+", b"GIF87a",
                b"GIF89a", b"BM")
_HEIF_BRANDS = (b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"mif1", b"msf1", b"avif", b"avis")


def has_photo_signature(head: bytes) -> bool:
    """Whether a file's first bytes are those of a photo format (JPEG, PNG, TIFF, GIF, BMP, WebP, HEIF/AVIF)."""
    return (head.startswith(_IMAGE_MAGIC) or (head[:4] == b"RIFF" and head[8:12] == b"WEBP")
            or (head[4:8] == b"ftyp" and head[8:12] in _HEIF_BRANDS))

_BASE_PHOTO_EXTENSIONS = frozenset({".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".webp", ".bmp", ".tif",
                                    ".tiff", ".gif"})
# Formats that depend on how Pillow was built or on optional plugins (pillow-heif).
_OPTIONAL_PHOTO_EXTENSIONS = (".heic", ".heif", ".avif")
VIDEO_EXTENSIONS = frozenset({".mp4", ".mov", ".mkv", ".avi", ".webm", ".m4v", ".ts", ".mts", ".m2ts"})


PHOTO_EXTENSIONS = _BASE_PHOTO_EXTENSIONS | {e for e in _OPTIONAL_PHOTO_EXTENSIONS
                                             if e in Image.registered_extensions()}


def is_image_path(path: str | os.PathLike[str]) -> bool:
    """True if the file name has a photo extension this installation can decode (case-insensitive).

    jpg/jpeg, png, webp, bmp, tif/tiff, gif (first frame), plus heic/heif/avif only where Pillow has a
    plugin for them. Looks at the name only; the content is checked by :func:`load_image`.
    """
    return Path(path).suffix.lower() in PHOTO_EXTENSIONS


def is_video_path(path: str | os.PathLike[str]) -> bool:
    """True if the file name has a video extension: mp4, mov, mkv, avi, webm, m4v (case-insensitive)."""
    return Path(path).suffix.lower() in VIDEO_EXTENSIONS


@dataclass
class DecodedImage:
    """One decoded photo.

    Attributes:
        path: the name shown to users (the ``name`` given to :func:`load_image`, else the file path).
        pixels: (H, W, 3) uint8 RGB on the host, C-contiguous and writable, EXIF orientation applied.
        width: W in pixels, after orientation.
        height: H in pixels, after orientation.
        original_mode: the Pillow mode of the file before conversion ("RGB", "L", "CMYK", "I;16", "P", ...).
        format: the container Pillow recognised from the content ("JPEG", "PNG", "WEBP", ...), which may
            disagree with the file extension.
        sha256: hex SHA-256 of the file's bytes, for exact-duplicate detection.
        frames: pages or animation frames the file holds (multi-page TIFF, animated GIF, WebP or PNG); only
            the first is decoded. A JPEG's extra MPO pictures (previews, depth maps) are not counted.
    """

    path: str
    pixels: np.ndarray
    width: int
    height: int
    original_mode: str
    format: str = ""
    sha256: str = ""
    frames: int = 1


# Image.open parses only the header; it runs under this lock so that the warnings filter that silences
# Pillow's own decompression-bomb warning (we apply max_pixels ourselves) is not raced by our threads.
_OPEN_LOCK = threading.Lock()


# Smallest photo side analysed: the face alignment interpolates between neighbouring pixels.
MIN_SIDE = 2

# Frame types of a plain JPEG: baseline, extended sequential and progressive, all Huffman-coded.
PLAIN_JPEG_SOF = frozenset({0xC0, 0xC1, 0xC2})


def load_image(source: str | os.PathLike[str] | bytes, *, name: str | None = None,
               max_pixels: int = DEFAULT_MAX_PIXELS, verify: bool = True) -> DecodedImage:
    """Decode a photo file (or its bytes) into RGB pixels.

    Args:
        source: a file path, or the file's bytes.
        name: the name used in :attr:`DecodedImage.path` and in error messages; defaults to the path
            (``"<bytes>"`` for bytes).
        max_pixels: refuse images with more than this many pixels (width x height, read from the header
            before anything is decoded). Pillow's own decompression-bomb limit (``PIL.Image.MAX_IMAGE_PIXELS``,
            twice that for a hard error) also applies; a refusal from it is reported the same way.
        verify: also decode Huffman-coded JPEGs with FFmpeg in its strict mode, which notices corrupt
            compressed data that Pillow decodes silently into garbled blocks (adds about 30-50% to the
            decode time of a large JPEG).

    Returns:
        A :class:`DecodedImage` with ``pixels`` (H, W, 3) uint8 RGB, display orientation.

    Raises:
        MediaError: the file is missing, unreadable, empty, not an image, too large, truncated or damaged.
            ``err.path`` is ``name``; ``err.problem`` is the reason in plain words.
    """
    label = name if name is not None else ("<bytes>" if isinstance(source, bytes | bytearray)
                                          else os.fspath(source))
    data = bytes(source) if isinstance(source, bytes | bytearray) else _read_file(Path(source), label)
    if not data:
        raise MediaError(label, "empty file (0 bytes)")

    im = _open(data, label, max_pixels)
    fmt = im.format or "image"
    jpeg = _check_jpeg(data) if fmt in ("JPEG", "MPO") else None
    if jpeg is not None and jpeg.damage:
        raise MediaError(label, f"damaged JPEG: {jpeg.damage}")
    fast = _decode_with_libjpeg(data) if jpeg is not None and plain_jpeg(im, jpeg) else None
    if fast is not None and fast.shape[:2] != (im.height, im.width):
        fast = None
    if fast is None:
        try:
            im.load()
        except MemoryError:
            raise MediaError(label, f"not enough memory to decode a {im.width} x {im.height} image") from None
        except Exception as e:  # Pillow raises OSError, SyntaxError, ValueError, struct.error ... for bad data
            raise MediaError(label, _load_problem(e, data, fmt, jpeg)) from None
    if jpeg is not None:
        if verify and jpeg.sof in PLAIN_JPEG_SOF:
            problem = _jpeg_entropy_problem(data[:jpeg.end] if jpeg.has_eoi else data)
            if problem:
                raise MediaError(label, problem)
        if not jpeg.has_eoi:
            logger.warning("%s: JPEG has no end marker but every row decoded; using it", label)

    mode = im.mode
    if fast is not None:
        pixels = fast
    else:
        try:
            pixels = _to_rgb(im)
        except MemoryError:
            raise MediaError(label, f"not enough memory to decode a {im.width} x {im.height} image") from None
        except Exception as e:
            raise MediaError(label, f"cannot convert colour mode {mode!r} to RGB: {e}") from None
    pixels = np.ascontiguousarray(_orient(pixels, _orientation(im, label)))
    if not pixels.flags.writeable:  # a view of Pillow's read-only buffer; callers may write (torch.from_numpy)
        pixels = pixels.copy()
    return DecodedImage(path=label, pixels=pixels, width=int(pixels.shape[1]), height=int(pixels.shape[0]),
                        original_mode=mode, format=fmt, sha256=hashlib.sha256(data).hexdigest(),
                        frames=_frames(im, fmt))


def _frames(im: Image.Image, fmt: str) -> int:
    """Pages or animation frames of a multi-frame format (1 where the count cannot be read)."""
    if fmt not in _MULTI_FRAME_FORMATS:
        return 1
    try:
        return max(1, int(getattr(im, "n_frames", 1)))
    except Exception:  # a damaged later page: the first one decoded, which is what is analysed
        return 1


def plain_jpeg(im: Image.Image, jpeg: _JpegReport) -> bool:
    """Whether a JPEG (``im`` its opened header, ``jpeg`` its marker walk) is one libjpeg and nvJPEG decode
    alike into the CPU loader's pixels: Huffman-coded, greyscale or YCbCr (no CMYK/YCCK, no Adobe "stored
    as RGB"), whole (an end marker after the last scan) and undamaged."""
    if im.format != "JPEG" or im.mode not in ("RGB", "L"):
        return False
    if im.mode == "RGB" and im.info.get("adobe_transform") == 0:  # stored as RGB, not YCbCr
        return False
    return (not jpeg.damage and jpeg.has_eoi and not jpeg.ends_in_scan
            and jpeg.sof in PLAIN_JPEG_SOF)


# torchvision 0.29 marks its image decoders deprecated (in favour of TorchCodec) on every call. Decoding runs
# in worker threads, where ``warnings.catch_warnings`` is not safe (it swaps the process-wide filter list), so
# that one message is filtered once, here.
warnings.filterwarnings("ignore", message="The image decoding and encoding capabilities of TorchVision",
                        category=DeprecationWarning)


def decode_jpeg_tensors(data: list[torch.Tensor], device: str | torch.device) -> list[torch.Tensor]:
    """torchvision's ``decode_jpeg`` on 1-D uint8 tensors of JPEG files: (3, H, W) uint8 RGB tensors."""
    from torchvision.io import ImageReadMode, decode_jpeg

    out = decode_jpeg(data, mode=ImageReadMode.RGB, device=device)
    return out if isinstance(out, list) else [out]


def _decode_with_libjpeg(data: bytes) -> np.ndarray | None:
    """(H, W, 3) uint8 RGB of a plain JPEG as stored (no orientation), or None when torchvision refuses it
    (Pillow then decodes it and names the problem)."""
    import torch

    try:
        [chw] = decode_jpeg_tensors([torch.frombuffer(bytearray(data), dtype=torch.uint8)], "cpu")
    except Exception as e:
        logger.debug("libjpeg through torchvision refused a JPEG (%s); decoding with Pillow", e)
        return None
    if chw.ndim != 3 or chw.shape[0] != 3:
        return None
    # decode_jpeg's (3, H, W) is a view of (H, W, 3) memory: no copy.
    return chw.permute(1, 2, 0).numpy()


def _read_file(path: Path, label: str) -> bytes:
    """The file's bytes; a large file is read whole only after its first bytes show an image header."""
    try:
        size = path.stat().st_size
        if size > _PEEK_ABOVE_BYTES:
            with open(path, "rb") as f:
                head = f.read(_PEEK_BYTES)
            try:
                _open(head, label, max_pixels=2**62).close()  # the size limits are applied on the whole file
            except MediaError:
                # A TIFF may keep its directory at the end, a HEIF its metadata after the pixels.
                if not has_photo_signature(head):
                    raise MediaError(label, f"not a photo: {size / 2**20:.0f} MiB of data without an image header that "
                                        "Pillow reads") from None
        return read_regular_file(path, MAX_PHOTO_BYTES)
    except FileNotFoundError:
        raise MediaError(label, "file not found") from None
    except IsADirectoryError:
        raise MediaError(label, "is a folder, not a photo") from None
    except PermissionError:
        raise MediaError(label, "cannot read the file: permission denied") from None
    except MemoryError:
        raise MediaError(label, "file too large to read into memory") from None
    except OSError as e:
        raise MediaError(label, f"cannot read the file: {e.strerror or e}") from None


def _open(data: bytes, label: str, max_pixels: int) -> Image.Image:
    """Parse the header (no pixel decoding) and apply the size limits."""
    try:
        # Pillow's own warnings about the file (corrupt EXIF, its bomb warning: the limits are applied below) are
        # logged with the file's name instead of printed without it.
        with _OPEN_LOCK, warnings.catch_warnings(record=True) as said:
            warnings.simplefilter("always")
            try:
                im = Image.open(io.BytesIO(data))
            finally:
                for w in said:
                    if not issubclass(w.category, Image.DecompressionBombWarning):
                        logger.debug("%s: %s", label, w.message)
    except UnidentifiedImageError:
        raise MediaError(label, _short_container(data) or _sniff_problem(data)) from None
    except Image.DecompressionBombError:
        raise MediaError(label, "image too large: its header declares more than "
                                f"{2 * (Image.MAX_IMAGE_PIXELS or 0) / 1e6:.0f} megapixels (Pillow's safety limit); "
                                "it may be a decompression bomb") from None
    except Exception as e:
        raise MediaError(label, _short_container(data) or f"damaged image header: {e}") from None
    w, h = im.size
    if w <= 0 or h <= 0:
        raise MediaError(label, f"damaged image header: size {w} x {h}")
    if min(w, h) < MIN_SIDE:
        raise MediaError(label, f"image too small: {w} x {h} pixels (at least {MIN_SIDE} on each side are needed)")
    if w * h > max_pixels:
        raise MediaError(label, f"image too large: {w} x {h} = {w * h:,} pixels, above the limit of "
                                f"{max_pixels:,} pixels ({max_pixels / 1e6:g} megapixels, max_pixels)")
    return im


_SIGNATURES: tuple[tuple[int, bytes, str], ...] = (
    (0, b"%PDF", "not an image: looks like a PDF document"),
    (0, b"PK\x03\x04", "not an image: looks like a ZIP archive"),
    (0, b"\x1f\x8b", "not an image: looks like a gzip archive"),
    (0, b"Rar!", "not an image: looks like a RAR archive"),
    (0, b"7z\xbc\xaf", "not an image: looks like a 7-Zip archive"),
    (0, b"\x1a\x45\xdf\xa3", "not a photo: looks like a video (MKV/WebM)"),
    (0, b"ID3", "not an image: looks like an MP3 audio file"),
    (0, b"\xff\xd8\xff", "damaged JPEG: the header cannot be read"),
    (0, b"\x89PNG", "damaged PNG: the header cannot be read"),
    (0, b"GIF8", "damaged GIF: the header cannot be read"),
)


def _short_container(data: bytes) -> str | None:
    """Why a WebP or TIFF that Pillow cannot open is unusable, when its own structure shows it was cut short."""
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        declared = int.from_bytes(data[4:8], "little") + 8
        if len(data) < declared:
            return f"truncated WebP file: the file ends early ({len(data)} of the {declared} bytes it declares)"
    elif data[:4] in (b"II*\x00", b"MM\x00*"):
        first_ifd = int.from_bytes(data[4:8], "little" if data[:2] == b"II" else "big")
        if first_ifd + 2 > len(data):
            return "truncated TIFF file: the file ends before its first image directory"
        return "damaged TIFF file: its image directory cannot be read (a truncated or damaged file)"
    return None


def _sniff_problem(data: bytes) -> str:
    """Say what a file Pillow cannot identify looks like instead."""
    head = data[:4096]
    if head[4:8] == b"ftyp":
        brand = head[8:12]
        if brand in (b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"mif1", b"msf1"):
            return "HEIC/HEIF photo: this installation cannot decode it (install pillow-heif) or export as JPEG"
        if brand in (b"avif", b"avis"):
            return "AVIF photo: this installation cannot decode it; export as JPEG"
        return "not a photo: looks like a video (MP4/MOV)"
    if head[:4] == b"RIFF" and head[8:12] == b"AVI ":
        return "not a photo: looks like a video (AVI)"
    if head[257:262] == b"ustar":
        return "not an image: looks like a TAR archive"
    for offset, magic, problem in _SIGNATURES:
        if head[offset:offset + len(magic)] == magic:
            return problem
    text = head.lstrip(b"\xef\xbb\xbf")  # UTF-8 byte-order mark
    if b"\x00" not in text:
        try:
            decoded = text.decode("utf-8")
        except UnicodeDecodeError as e:  # a multi-byte character cut at the 4 KiB boundary is still text
            decoded = text[:e.start].decode("utf-8") if e.start >= len(text) - 3 else ""
        printable = sum(c.isprintable() or c in "\r\n\t" for c in decoded)
        if decoded and printable >= 0.95 * len(decoded):
            low = decoded.lstrip().lower()
            if low.startswith(("<!doctype html", "<html")):
                return "not an image: looks like a web page (HTML), perhaps a failed download"
            return "not an image: looks like text"
    return f"not an image: unrecognised file format (starts with bytes {head[:8].hex(' ')})"


# --- JPEG structure ---------------------------------------------------------------------------------------

_SOF_MARKERS = frozenset({0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF})
_PROGRESSIVE_SOF = frozenset({0xC2, 0xC6, 0xCA, 0xCE})
# Markers that may follow entropy-coded data: another table/scan (progressive, multi-scan), or the end.
_AFTER_SCAN = frozenset({0xC4, 0xCC, 0xDA, 0xDB, 0xDC, 0xDD, 0xD9, 0xFE, *range(0xE0, 0xF0)})


@dataclass
class _JpegReport:
    progressive: bool = False
    scans: int = 0
    has_eoi: bool = False
    end: int = 0  # offset just after the end marker (later bytes are MPF pictures or trailing junk)
    sof: int = 0  # frame marker: 0xC0 baseline, 0xC1 extended, 0xC2 progressive, ...
    ends_in_scan: bool = False
    damage: str = ""  # non-empty: the structure is broken


def _check_jpeg(data: bytes) -> _JpegReport:
    """Walk a JPEG's markers and the 0xFF bytes of its compressed data.

    Inside entropy-coded data every 0xFF must be followed by 0x00 (stuffing), a restart marker RST0-7 (in
    cyclic order) or fill 0xFF; the data may only end with a table, another scan or the end marker. A run of
    overwritten bytes almost always breaks one of these. Cost: one vectorised pass over the file.
    """
    rep = _JpegReport()
    buf = np.frombuffer(data, dtype=np.uint8)
    n = len(data)
    # Every 0xFF with the byte after it, once for the whole file; scans are then located by binary search.
    ff = np.flatnonzero(buf[:-1] == 0xFF)
    follow = buf[ff + 1]
    is_rst = (follow >= 0xD0) & (follow <= 0xD7)
    real_marker = ff[~((follow == 0x00) | is_rst | (follow == 0xFF))]
    pos = 2  # after SOI
    while True:
        if pos >= n:
            return rep
        if data[pos] != 0xFF:
            rep.damage = f"unexpected data at byte {pos} where a marker should be"
            return rep
        while pos < n and data[pos] == 0xFF:  # fill bytes before a marker are allowed
            pos += 1
        if pos >= n:
            return rep
        marker = data[pos]
        pos += 1
        if marker == 0xD9:
            rep.has_eoi, rep.end = True, pos
            return rep
        if marker == 0x01:  # TEM: no length
            continue
        if marker == 0xD8 or 0xD0 <= marker <= 0xD7 or marker == 0x00:
            rep.damage = f"misplaced marker 0x{marker:02X} at byte {pos - 2}"
            return rep
        if pos + 2 > n:
            return rep
        length = (data[pos] << 8) | data[pos + 1]
        if length < 2:
            rep.damage = f"invalid segment length {length} at byte {pos}"
            return rep
        seg_end = pos + length
        if marker in _SOF_MARKERS:
            rep.progressive, rep.sof = marker in _PROGRESSIVE_SOF, marker
        elif 0x02 <= marker <= 0xBF:
            rep.damage = f"reserved marker 0x{marker:02X} at byte {pos - 2}"
            return rep
        if marker != 0xDA:
            pos = seg_end
            continue
        # Start of scan: entropy-coded data follows the header until a real marker.
        rep.scans += 1
        start = min(seg_end, n)
        k = int(np.searchsorted(real_marker, start))
        stop = int(real_marker[k]) if k < len(real_marker) else n
        lo, hi = np.searchsorted(ff, [start, stop])
        rst = follow[lo:hi][is_rst[lo:hi]].astype(np.int64) - 0xD0
        if len(rst) and np.any(rst != np.arange(len(rst)) % 8):
            bad = int(np.flatnonzero(rst != np.arange(len(rst)) % 8)[0])
            rep.damage = f"restart markers out of order (restart {bad}) in scan {rep.scans}"
            return rep
        if stop >= n:
            rep.ends_in_scan = True
            return rep
        nxt = int(buf[stop + 1])
        if nxt not in _AFTER_SCAN:
            rep.damage = (f"unexpected marker 0x{nxt:02X} inside the compressed data at byte {stop} "
                          f"(scan {rep.scans}); the file is corrupt")
            return rep
        pos = stop


def _jpeg_entropy_problem(data: bytes) -> str | None:
    """Strict second decode of a JPEG's compressed data with FFmpeg; a reason if it is corrupt.

    libjpeg (inside Pillow) only warns about bad Huffman codes and desynchronised data, and Pillow drops its
    warnings. FFmpeg with ``err_detect=explode`` fails instead. Measured on shared JPEGs with runs of random
    bytes written into the compressed data (cases Pillow decodes without error into a visibly different
    picture): 16 bytes: 45% caught, 64: 63%, 256: 88%, 1024: 100%, versus 1%, 0%, 19%, 88% by the marker
    walk alone; no false alarm on the 125 real JPEGs of the shared data.
    """
    try:
        import av
    except ImportError:  # optional safety net
        return None
    ctx = av.CodecContext.create("mjpeg", "r")
    ctx.options = {"err_detect": "explode"}
    ctx.thread_count = 1  # the loader already runs one decode per thread
    try:
        ctx.decode(av.Packet(data))
    except av.error.InvalidDataError:
        return "damaged JPEG: the compressed picture data is corrupt (parts would show garbled or grey)"
    except av.error.FFmpegError as e:  # unsupported features are not damage: Pillow decoded the file
        logger.debug("FFmpeg could not check a JPEG: %s", e)
    return None


def _load_problem(err: Exception, data: bytes, fmt: str, jpeg: _JpegReport | None) -> str:
    msg = str(err)
    truncated = "truncated" in msg or "incomplete" in msg or (jpeg is not None and jpeg.ends_in_scan)
    if not truncated:
        return f"damaged {fmt} file: {msg or type(err).__name__}"
    if jpeg is None:
        return f"truncated {fmt} file: the file ends early"
    if jpeg.progressive:
        return (f"truncated JPEG: the file ends early, in scan {jpeg.scans} of a progressive JPEG "
                "(the picture would be blurred or incomplete)")
    fraction = _jpeg_rows_present(data)
    if fraction is None:
        return "truncated JPEG: the file ends early"
    return f"truncated JPEG: the file ends early, only about {fraction:.0%} of the picture is present"


def _jpeg_rows_present(data: bytes) -> float | None:
    """Decode the rows a truncated baseline JPEG still has; return their fraction of the height.

    Drives Pillow's decoder directly (as ``PIL.ImageFile.Parser`` does) instead of flipping the process-wide
    ``ImageFile.LOAD_TRUNCATED_IMAGES``, which would let truncated files through in other threads.
    """
    try:
        im = Image.open(io.BytesIO(data))
        im.load_prepare()
        tile = im.tile[0]
        decoder = Image._getdecoder(im.mode, tile[0], tile[3], im.decoderconfig)
        try:
            decoder.setimage(im.im, tile[1])
            decoder.decode(data[tile[2]:])
        finally:
            decoder.cleanup()
        im.tile = []
        arr = np.asarray(im)
    except Exception:  # the estimate is a courtesy; the file is refused either way
        logger.debug("could not measure the rows present in a truncated JPEG", exc_info=True)
        return None
    # Rows the decoder never reached stay zero (Pillow zero-fills new images).
    rows = np.flatnonzero(arr.reshape(arr.shape[0], -1).any(axis=1))
    return float(rows[-1] + 1) / arr.shape[0] if len(rows) else 0.0


# --- colour conversion --------------------------------------------------------------------------------------

def _to_rgb(im: Image.Image) -> np.ndarray:
    """(H, W, 3) uint8 RGB for any Pillow mode; see the module docstring for the rules."""
    mode = im.mode
    if mode == "RGB":
        return np.asarray(im)
    if mode in ("RGBA", "LA", "PA", "RGBa", "La") or (mode == "P" and "transparency" in im.info):
        return _composite_on_white(np.asarray(im.convert("RGBA")))
    if mode == "CMYK":
        return _cmyk_to_rgb(im)
    if mode.startswith("I;16") or mode in ("I", "F"):
        grey = _high_depth_to_8bit(np.asarray(im), mode)
        return np.repeat(grey[:, :, None], 3, axis=2)
    if mode == "LAB":
        lab = ImageCms.createProfile("LAB")
        srgb = ImageCms.createProfile("sRGB")
        return np.asarray(ImageCms.profileToProfile(im, lab, srgb, outputMode="RGB"))
    return np.asarray(im.convert("RGB"))  # 1, L, P, RGBX, YCbCr, HSV


def _composite_on_white(rgba: np.ndarray) -> np.ndarray:
    rgb, alpha = rgba[..., :3], rgba[..., 3:]
    if alpha.min() == 255:
        return rgb
    a = alpha.astype(np.uint16)
    # rgb*a + 255*(255-a) <= 65025, so uint16 holds it with the rounding term.
    out = (rgb.astype(np.uint16) * a + 255 * (255 - a) + 127) // 255
    return out.astype(np.uint8)


def _cmyk_to_rgb(im: Image.Image) -> np.ndarray:
    icc = im.info.get("icc_profile")
    if icc:
        try:
            src = ImageCms.ImageCmsProfile(io.BytesIO(icc))
            srgb = ImageCms.createProfile("sRGB")
            return np.asarray(ImageCms.profileToProfile(im, src, srgb, outputMode="RGB"))
        except Exception as e:  # a broken profile must not lose the photo
            logger.warning("CMYK ICC profile unusable (%s); using the standard CMYK inversion", e)
    return np.asarray(im.convert("RGB"))


def _high_depth_to_8bit(arr: np.ndarray, mode: str) -> np.ndarray:
    """Scale 16-bit / 32-bit greyscale to uint8 without clipping."""
    if mode.startswith("I;16"):
        return ((arr.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)
    a = arr.astype(np.float64)
    a = np.nan_to_num(a, nan=0.0, posinf=0.0, neginf=0.0)
    lo, hi = float(a.min()), float(a.max())
    if mode == "I" and lo >= 0 and hi <= 255:
        return a.astype(np.uint8)  # 8-bit values stored as 32-bit
    if mode == "I" and lo >= 0 and hi <= 65535:
        return np.rint(a / 257.0).astype(np.uint8)  # 16-bit values stored as 32-bit
    if mode == "F" and lo >= 0 and hi <= 1:
        return np.rint(a * 255.0).astype(np.uint8)
    if hi <= lo:
        return np.zeros(a.shape, np.uint8)
    return np.rint((a - lo) * (255.0 / (hi - lo))).astype(np.uint8)


def _orientation(im: Image.Image, label: str) -> int:
    try:
        value = im.getexif().get(0x0112, 1)
        return int(value) if int(value) in range(1, 9) else 1
    except Exception as e:  # broken EXIF: keep the stored orientation rather than lose the photo
        logger.warning("%s: unreadable EXIF orientation (%s); using the image as stored", label, e)
        return 1


def _orient(a: np.ndarray, orientation: int) -> np.ndarray:
    """Apply EXIF orientation 1-8 to (H, W, 3), same result as ``PIL.ImageOps.exif_transpose``."""
    if orientation == 2:
        return a[:, ::-1]
    if orientation == 3:
        return a[::-1, ::-1]
    if orientation == 4:
        return a[::-1]
    if orientation == 5:
        return a.transpose(1, 0, 2)
    if orientation == 6:
        return np.rot90(a, k=-1)
    if orientation == 7:
        return a[::-1, ::-1].transpose(1, 0, 2)
    if orientation == 8:
        return np.rot90(a, k=1)
    return a

"""Video decoding with the stream's own timestamps, rotation applied, streamed in batches.

Times come from each frame's ``pts × time_base`` (never ``index / fps``), so variable-frame-rate clips keep
their real timing. Frames are decoded with threads and handed on in batches of at most ``batch_size``
sampled frames; only the sampled frames are converted to RGB, and nothing but the current batch (plus one
frame held back to learn its duration) is kept, so memory stays flat for any length.

The decoding itself sits behind :class:`_Backend`; PyAV is the only one today. A torchcodec backend (GPU
decoding straight into CUDA tensors) can be added as another subclass without touching the sampling,
batching and error handling in :func:`iter_frames`.

Bad input never surfaces as a stack trace: files that cannot be analysed at all raise
:class:`~influvision.errors.MediaError`; a stream that breaks part-way yields every frame that decoded and
carries the reason in :attr:`FrameBatch.error` on its last batch.
"""

from __future__ import annotations

import logging
import math
import numbers
import re
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from ..errors import MediaError

log = logging.getLogger(__name__)

# A sampled frame is kept when its time reaches the next sampling slot; this slack absorbs rounding of
# pts × time_base so that e.g. frame 3 of a 30 fps clip (0.1 s) counts as reaching the 0.1 s slot.
_SLOT_EPS_S = 1e-4
# A stream that ends earlier than it declares by more than this many frame periods (and more than
# _TRUNCATION_MIN_S) is reported as truncated.
_TRUNCATION_FRAMES = 2.5
_TRUNCATION_MIN_S = 0.1
# Largest frame analysed (width x height): a batch holds up to batch_size decoded frames.
MAX_FRAME_PIXELS = 40_000_000
# Demuxers that ffmpeg uses for still images; such a file opens as a one-frame "video" but is not one.
_IMAGE_FORMAT_SUFFIX = "_pipe"
_IMAGE_FORMATS = {"image2", "gif", "apng", "webp", "ico"}


@dataclass(frozen=True)
class VideoInfo:
    """What the container declares about its first video stream.

    Attributes:
        path: the file as given.
        duration_s: declared length of the video stream in seconds: the stream's own, else its ``DURATION``
            tag (Matroska, WebM) less its start, else the container's length less its start; 0.0 when nothing
            is declared.
        fps: average frame rate in frames per second (0.0 if unknown); for variable-frame-rate clips this is
            only an average, timestamps come from the frames.
        frame_count: declared number of frames (0 when the container does not say).
        width, height: size of the frames *as displayed*, i.e. after :attr:`rotation` is applied (pixels).
        rotation: degrees (0, 90, 180, 270) by which decoded frames are turned counter-clockwise for display
            (from the stream's display matrix); :func:`iter_frames` applies it.
        mirrored: whether the display matrix also mirrors the picture (flipped left-right after the turn), as
            a player shows it; :func:`iter_frames` applies it.
        codec: ffmpeg's codec name, e.g. ``"h264"``.
        start_s: declared start time of the stream in seconds; frame times are given relative to it.
        offset_s: how much later than the file's start the video track starts (a player's clock reads frame times
            plus this; 0 for most files).
        own_duration: whether ``duration_s`` is the video stream's own length (from the stream, its tag, or a
            container holding nothing else). A container's length may be a longer audio track's, so only an own
            length that the decoded frames fall short of marks the file as truncated.
    """

    path: str
    duration_s: float
    fps: float
    frame_count: int
    width: int
    height: int
    rotation: int
    codec: str
    start_s: float = 0.0
    own_duration: bool = True
    mirrored: bool = False
    offset_s: float = 0.0


@dataclass(frozen=True)
class FrameBatch:
    """B consecutive sampled frames.

    Attributes:
        frames: B arrays (H, W, 3) uint8 RGB on the host, rotation already applied.
        pts_s: (B,) float64, seconds since the stream start, from ``pts × time_base``.
        frame_index: (B,) int64, position of each frame among *all* decoded frames (0-based, decode
            output order), so the analysed frames can be found again in the file.
        duration_s: (B,) float64, the time each sampled frame stands for: until the next sampled frame,
            and for the very last one until the end of the last decoded frame. Always > 0.
        error: ``None``, or on the last batch of a stream that broke off, why it ended early.
        end_s: end of the decoded stream in seconds so far (final on the last batch).
        rejoined: on the last batch, whether the stream's clock restarted or jumped and was rejoined (MPEG-TS):
            then its declared length means nothing and ``end_s`` is its length.
    """

    frames: list[np.ndarray]
    pts_s: np.ndarray
    frame_index: np.ndarray
    duration_s: np.ndarray
    error: str | None = None
    end_s: float = 0.0
    rejoined: bool = False

    def __len__(self) -> int:
        return len(self.frames)


@dataclass
class _RawFrame:
    """One decoded frame before RGB conversion (conversion is paid only for sampled frames)."""

    frame: object
    pts_s: float
    duration_s: float  # the frame's own nominal duration; 0.0 if unknown
    index: int
    rejoined: bool = False  # its timestamps were moved to continue from the frame before (a discontinuity)


class _DecodeStopped(Exception):
    """Raised by a backend when the stream breaks after decoding started; the message says why. ``damaged``:
    FFmpeg failed on the file's data (truncated or corrupt), rather than a frame breaking one of influvision's
    limits."""

    def __init__(self, message: str, *, damaged: bool = False) -> None:
        super().__init__(message)
        self.damaged = damaged


class _Backend:
    """Decoder interface: :meth:`probe` and :meth:`frames`, plus :meth:`to_rgb` for sampled frames."""

    def probe(self, path: str) -> VideoInfo:  # pragma: no cover - interface
        raise NotImplementedError

    def frames(self, path: str) -> Iterator[_RawFrame]:  # pragma: no cover - interface
        raise NotImplementedError

    def to_rgb(self, raw: _RawFrame, rotation: int, mirrored: bool = False) -> np.ndarray:  # pragma: no cover
        raise NotImplementedError


def _ffmpeg_problem(err: Exception) -> str:
    """A one-line reason from an ffmpeg error, without the file name (MediaError adds it)."""
    text = getattr(err, "strerror", None) or str(err)
    return str(text).strip().rstrip(".")


class _PyAVBackend(_Backend):
    def _open(self, path: str) -> tuple[av.container.InputContainer, av.video.stream.VideoStream]:
        p = Path(path)
        if not p.exists():
            raise MediaError(path, "file does not exist")
        if p.is_dir():
            raise MediaError(path, "is a directory, not a video file")
        if p.stat().st_size == 0:
            raise MediaError(path, "file is empty (0 bytes)")
        try:
            container = av.open(path, mode="r")
        except (av.FFmpegError, OSError, UnicodeDecodeError) as err:
            raise MediaError(path, f"not a readable video file ({_ffmpeg_problem(err)})") from None
        fmt = container.format.name or ""
        if fmt in _IMAGE_FORMATS or any(f.endswith(_IMAGE_FORMAT_SUFFIX) for f in fmt.split(",")):
            container.close()
            raise MediaError(path, f"is a still image ({fmt}), not a video")
        if not container.streams.video:
            kinds = sorted({s.type for s in container.streams}) or ["no streams"]
            container.close()
            raise MediaError(path, f"has no video stream (contains: {', '.join(kinds)})")
        stream = container.streams.video[0]
        if stream.codec_context is None:
            container.close()
            raise MediaError(path, "video codec is not supported by this ffmpeg build")
        return container, stream

    def probe(self, path: str) -> VideoInfo:
        container, stream = self._open(path)
        try:
            return self._info(path, container, stream)
        finally:
            container.close()

    @staticmethod
    def _orientation(stream: av.video.stream.VideoStream) -> tuple[int, bool]:
        """(rotation, mirrored) of the display matrix, which recent ffmpeg gives as side data of the frames: read
        from the first frame; (0, False) when the clip carries none."""
        try:
            for frame in stream.container.decode(stream):
                # Looked up by type: iterating side data gives the entries in PyAV 18.1.0 but their types in 18.1.1.
                side = frame.side_data.get(av.sidedata.sidedata.Type.DISPLAYMATRIX)
                if side is not None:
                    return display_orientation(np.frombuffer(bytes(side), dtype="<i4"), frame.rotation or 0)
                break
        except av.FFmpegError:
            pass
        return 0, False

    def _info(self, path: str, container: av.container.InputContainer,
              stream: av.video.stream.VideoStream) -> VideoInfo:
        tb = stream.time_base or Fraction(1, 1)
        start_s = float(stream.start_time * tb) if stream.start_time is not None else 0.0
        tagged = _tag_seconds(stream.metadata.get("DURATION"))  # Matroska's per-track end time
        own = True
        if stream.duration is not None:
            duration_s = float(stream.duration * tb)
        elif tagged is not None:
            duration_s = max(0.0, tagged - start_s)
        elif container.duration is not None:
            duration_s = max(0.0, (container.duration - (container.start_time or 0)) / av.time_base)
            own = len(container.streams) == 1
        else:
            duration_s = 0.0
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
        fps = float(rate) if rate else 0.0
        w, h = stream.codec_context.width, stream.codec_context.height
        if w * h > MAX_FRAME_PIXELS:  # checked before the first frame is decoded (for its rotation)
            raise MediaError(path, f"frames of {w} x {h} px are larger than influvision analyses (at most "
                                   f"{MAX_FRAME_PIXELS // 10**6} megapixels, 8K video is 33)")
        rotation, mirrored = self._orientation(stream)
        if rotation in (90, 270):
            w, h = h, w
        return VideoInfo(path=path, duration_s=duration_s, fps=fps, frame_count=int(stream.frames or 0),
                         width=int(w), height=int(h), rotation=rotation, mirrored=mirrored,
                         codec=stream.codec_context.name or "unknown", start_s=start_s, own_duration=own,
                         offset_s=max(0.0, start_s - (container.start_time or 0) / av.time_base))

    def frames(self, path: str) -> Iterator[_RawFrame]:
        container, stream = self._open(path)
        stream.thread_type = "AUTO"
        tb = stream.time_base or Fraction(1, 1)
        start = stream.start_time or 0
        rate = stream.average_rate or stream.guessed_rate
        nominal = float(1 / rate) if rate else 0.0
        index = 0
        last_pts: float | None = None
        # MPEG-TS (camcorders' .MTS, joined recordings) may restart or jump its clock mid-stream; FFmpeg flags
        # such formats. There a jump back or forward by more than DISCONTINUITY_S is a new clock: later frames are
        # shifted to continue one frame after the last one, so the jump is neither seconds nor lost time. A smaller
        # step back (a repeated or reordered timestamp) is nudged as in any other file.
        jumps = bool(container.format.flags & _AVFMT_TS_DISCONT)
        shift, rejoined = 0.0, False
        try:
            for frame in container.decode(stream):
                if frame.pts is not None:
                    pts_s = float((frame.pts - start) * tb) + shift
                elif last_pts is not None:
                    pts_s = last_pts + nominal  # no pts at all (rare raw streams): step by the nominal rate
                else:
                    pts_s = 0.0
                if jumps and last_pts is not None and abs(pts_s - last_pts) > DISCONTINUITY_S:
                    moved = last_pts + (nominal or 1 / 30) - pts_s
                    log.warning("%s: the timestamps jump by %+.3f s after %.3f s (a joined or restarted recording); "
                                "times continue from the frame before", path, -moved, last_pts)
                    shift += moved
                    pts_s += moved
                    rejoined = True
                if last_pts is not None and pts_s <= last_pts:
                    # Out-of-order or duplicate timestamps would make negative durations; keep time monotone.
                    log.debug("%s: frame %d pts %.6f not after %.6f; nudged", path, index, pts_s, last_pts)
                    pts_s = last_pts + 1e-6
                if frame.width * frame.height > MAX_FRAME_PIXELS:  # the stream changed size after its header
                    raise _DecodeStopped(f"frame {index} is {frame.width} x {frame.height} px, larger than "
                                         f"influvision analyses ({MAX_FRAME_PIXELS // 10**6} megapixels)")
                dur = float(frame.duration * tb) if frame.duration else nominal
                yield _RawFrame(frame=frame, pts_s=pts_s, duration_s=dur, index=index, rejoined=rejoined)
                last_pts = pts_s
                index += 1
        except av.FFmpegError as err:
            raise _DecodeStopped(f"decoding stopped after {index} frames: {_ffmpeg_problem(err)}",
                                 damaged=True) from None
        finally:
            container.close()

    def to_rgb(self, raw: _RawFrame, rotation: int, mirrored: bool = False) -> np.ndarray:
        img = raw.frame.to_ndarray(format="rgb24")  # type: ignore[attr-defined]
        if rotation:
            img = np.rot90(img, k=rotation // 90)
        if mirrored:
            img = img[:, ::-1]
        return np.ascontiguousarray(img)


_BACKENDS: dict[str, _Backend] = {"pyav": _PyAVBackend()}


def _backend(name: str) -> _Backend:
    try:
        return _BACKENDS[name]
    except KeyError:
        raise ValueError(f"unknown video backend {name!r}; choose one of: {', '.join(_BACKENDS)}") from None


def display_orientation(matrix: np.ndarray, rotation_deg: float = 0.0) -> tuple[int, bool]:
    """How to show a frame by its display matrix (9 values, 16.16 fixed point, ffmpeg's layout): (k, mirrored), the
    picture turned ``k`` degrees counter-clockwise and then, when mirrored, flipped left-right.

    The matrix maps a stored pixel (x, y) to the displayed (m0 x + m3 y, m1 x + m4 y) plus a shift. A turn by a
    multiple of 90 degrees, with or without a mirror, has entries of 0 and +-1 there; any other angle is rounded
    to the nearest multiple of 90 degrees (``rotation_deg``, ffmpeg's reading of the matrix), unmirrored.
    """
    a, b, c, d = (float(v) for v in (matrix[0], matrix[1], matrix[3], matrix[4]))
    scale = math.sqrt(abs(a * d - b * c)) or 1.0
    signs = [round(v / scale) for v in (a, b, c, d)]
    if sorted(map(abs, signs)) != [0, 0, 1, 1] or abs(signs[0]) != abs(signs[3]):
        return int(round(rotation_deg / 90.0)) % 4 * 90, False
    a, b, c, d = signs
    probe = np.arange(6).reshape(2, 3)
    shown = probe[::d, ::a] if a else probe.T[::b, ::c]  # x stays a column (y a row), or becomes a row
    for k in range(4):
        turned = np.rot90(probe, k)
        for mirrored in (False, True):
            if np.array_equal(turned[:, ::-1] if mirrored else turned, shown):
                return 90 * k, mirrored
    raise AssertionError("unreachable: a signed permutation matrix is one of the eight turns and mirrors")


def _tag_seconds(tag: str | None) -> float | None:
    """Seconds of a ``HH:MM:SS.fraction`` duration tag, or None."""
    m = re.fullmatch(r"\s*(\d+):(\d{1,2}):(\d{1,2}(?:\.\d*)?)\s*", tag or "")
    return int(m[1]) * 3600 + int(m[2]) * 60 + float(m[3]) if m else None


def probe_video(path: str | Path, *, backend: str = "pyav") -> VideoInfo:
    """Read the container's description of the first video stream (decodes at most one frame).

    Raises:
        MediaError: the file is missing, not a video (text, still image, audio only) or its codec
            cannot be decoded.
    """
    return _backend(backend).probe(str(path))


# FFmpeg's AVFMT_TS_DISCONT: the format allows timestamp discontinuities (MPEG-TS).
_AVFMT_TS_DISCONT = 0x200
#: In such formats a jump (back or forward) of more than this between successive frames is a discontinuity.
DISCONTINUITY_S = 1.0


def sampling_step(sample_fps: float | None) -> tuple[float, bool]:
    """(seconds between analysed frames, whether frames are sampled at all) for ``sample_fps``.

    Raises:
        ValueError: ``sample_fps`` is neither None (every frame) nor a positive, finite number.
    """
    if sample_fps is None:
        return 0.0, False
    if not (isinstance(sample_fps, numbers.Real) and not isinstance(sample_fps, bool) and math.isfinite(sample_fps)
            and sample_fps > 0):
        raise ValueError(f"sample_fps must be a positive number of video frames per second, or None to analyse "
                         f"every frame; got {sample_fps!r}")
    return 1.0 / float(sample_fps), True


def iter_frames(path: str | Path, *, sample_fps: float | None = 10.0, batch_size: int = 16,
                backend: str = "pyav") -> Iterator[FrameBatch]:
    """Decode a video and yield its sampled frames in batches.

    Sampling: with ``sample_fps`` = f, a frame is kept when its time reaches the next slot of a 1/f s grid
    that starts at the first frame; afterwards the next slot is the first grid point after it. A clip whose
    frame rate is at most f therefore keeps every frame; ``None`` keeps every frame.

    Args:
        path: the video file.
        sample_fps: frames per second to analyse, or ``None`` for every frame.
        batch_size: most frames per yielded batch (≥ 1).
        backend: decoder; only ``"pyav"`` exists today.

    Yields:
        :class:`FrameBatch` objects in time order. A video that decodes no frame at all raises instead.
        If the stream breaks off or ends well before its declared length, the last batch's ``error`` says
        so (and a warning is logged); the frames before the break are still yielded.

    Raises:
        MediaError: missing file, not a video, audio only, unsupported codec (at call time), or no frame
            could be decoded (when iterating).
        ValueError: bad ``sample_fps`` or ``batch_size``.
    """
    return open_video(path, sample_fps=sample_fps, batch_size=batch_size, backend=backend)[1]


def open_video(path: str | Path, *, sample_fps: float | None = 10.0, batch_size: int = 16,
               backend: str = "pyav") -> tuple[VideoInfo, Iterator[FrameBatch]]:
    """:func:`probe_video` and :func:`iter_frames` in one: the file's description and its batches.

    Raises:
        MediaError, ValueError: as :func:`iter_frames`.
    """
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    step, sampling = sampling_step(sample_fps)
    dec = _backend(backend)
    spath = str(path)
    info = dec.probe(spath)  # raises MediaError now rather than at the first next()
    return info, _iterate(dec, spath, info, step, sampling, batch_size)


def _iterate(dec: _Backend, path: str, info: VideoInfo, step: float, sampling: bool,
             batch_size: int) -> Iterator[FrameBatch]:
    frames: list[np.ndarray] = []
    pts: list[float] = []
    idx: list[int] = []
    durs: list[float] = []
    held: _RawFrame | None = None  # the last sampled frame, waiting for the next one to learn its duration
    end_s = 0.0
    first_pts: float | None = None
    next_slot = -math.inf
    error: str | None = None
    damaged = False
    decoded = 0

    def take(raw: _RawFrame, duration: float) -> None:
        frames.append(dec.to_rgb(raw, info.rotation, info.mirrored))
        pts.append(raw.pts_s)
        idx.append(raw.index)
        durs.append(max(duration, 1e-6))

    def batch(err: str | None = None, rejoined: bool = False) -> FrameBatch:
        out = FrameBatch(frames=list(frames), pts_s=np.asarray(pts, dtype=np.float64),
                         frame_index=np.asarray(idx, dtype=np.int64),
                         duration_s=np.asarray(durs, dtype=np.float64), error=err, end_s=end_s,
                         rejoined=rejoined)
        frames.clear(), pts.clear(), idx.clear(), durs.clear()
        return out

    raw_iter = dec.frames(path)
    try:
        for raw in raw_iter:
            decoded += 1
            end_s = max(end_s, raw.pts_s + raw.duration_s)
            if first_pts is None:
                first_pts = raw.pts_s
            keep = True
            if sampling:
                keep = raw.pts_s + _SLOT_EPS_S >= next_slot
                if keep:
                    k = math.floor((raw.pts_s - first_pts) / step + _SLOT_EPS_S / step) + 1
                    next_slot = first_pts + k * step
            if not keep:
                continue
            if held is not None:
                take(held, raw.pts_s - held.pts_s)
                if len(frames) >= batch_size:
                    yield batch()
            held = raw
    except _DecodeStopped as stop:
        error, damaged = str(stop), stop.damaged
    if held is None:
        raise MediaError(path, error or "video stream contains no frames")
    # The last sampled frame stands for the time until the end of the last decoded frame.
    take(held, end_s - held.pts_s)
    # A rejoined clock leaves the declared length meaningless (it spans the jumps), so it proves nothing.
    if (error is None or damaged) and info.duration_s > 0 and info.own_duration and not held.rejoined:
        period = 1.0 / info.fps if info.fps > 0 else 0.0
        if info.duration_s - end_s > max(_TRUNCATION_FRAMES * period, _TRUNCATION_MIN_S):
            # FFmpeg either stops quietly at the cut or fails on the partial packet there (which one depends
            # on the PyAV release): both are the same truncated file.
            short = (f"stream ends at {end_s:.3f} s but declares {info.duration_s:.3f} s "
                     f"({decoded} frames decoded); the file looks truncated")
            error = short if error is None else f"{error}; {short}"
    if error is not None:
        log.warning("%s: %s", path, error)
    yield batch(error, held.rejoined)

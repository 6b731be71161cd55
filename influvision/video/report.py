"""From a video analysis to report entries and tallies; annotated MP4 and timeline picture."""

from __future__ import annotations

import logging
import math
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING

import av
import numpy as np
from PIL import Image

from ..annotate import (
    FaceSearch,
    blur_box,
    draw_detections,
    output_path,
    privacy_search,
    strangers,
    timeline_png,
)
from ..decode.video import iter_frames
from ..engine import split_on_oom
from ..errors import MediaError
from ..faces.pipeline import FacePipeline
from ..files import written_atomically
from ..logos.detect import LogoDetector
from ..match import GalleryIndex, MatchSettings
from ..report import (
    FaceEntry,
    LogoEntry,
    LogoTrackEntry,
    MediaEntry,
    PairTally,
    SubjectTally,
    TrackEntry,
    VideoPresence,
)
from ..sources import MediaItem
from ..tally import logo_near_face
from .analyse import VideoAnalysis, analyse_video
from .exposure import intersect_intervals, total_seconds, union_intervals
from .logo_tracks import LogoDetection, LogoTrack, link_logo_tracks

if TYPE_CHECKING:
    from ..checkpoint import VideoProgress

log = logging.getLogger(__name__)


def _r(x: float) -> float:
    return round(float(x), 3)


# Logos are searched in fewer frames than faces: printed logos rarely flash by, and the matcher costs
# about as much per frame as face detection on the CPU. Each searched frame stands for 1/LOGO_FPS s.
LOGO_FPS = 2.0


def analyse_video_entry(item: MediaItem, pipeline: FacePipeline, index: GalleryIndex, settings: MatchSettings,
                        sample_fps: float | None, *, logo_detector: LogoDetector | None = None,
                        brand_names: list[str] | None = None, annotate_dir: str | Path | None = None,
                        blur_unknown: bool = False, progress: bool = False,
                        resume: VideoProgress | None = None) -> MediaEntry:
    """Analyse one video (``progress``: a bar of its frames); a video that cannot be decoded at all becomes an
    entry with ``error`` set. ``resume`` records each analysed batch (faces, logos) and supplies those of an
    interrupted run."""
    try:
        va = analyse_video(item.local_path, faces_fn=split_on_oom(pipeline, pipeline.device), index=index,
                           settings=settings, sample_fps=sample_fps, progress=progress, resume=resume)
    except MediaError as e:
        return MediaEntry(path=item.path, kind="video", error=f"{item.path}: {e.problem}", frames_analysed=0)
    entry = video_entry(item.path, va)
    logo_tracks: list[LogoTrack] = []
    if logo_detector is not None and brand_names:
        logo_tracks = add_video_logos(entry, item, va, logo_detector, brand_names, resume=resume)
    if resume is not None and resume.resumed:
        log.info("%s: %d batches of its analysis taken from the checkpoint, where an earlier run stopped", item.path,
                 resume.resumed)
    if annotate_dir is not None and va.frames_analysed:
        entry.annotated = [str(p) for p in annotate_video(item, va, Path(annotate_dir), blur_unknown=blur_unknown,
                                                          logo_tracks=logo_tracks,
                                                          faces_in=privacy_search(pipeline.detector) if blur_unknown else None)]
    return entry


def video_entry(path: str, va: VideoAnalysis) -> MediaEntry:
    tracks = [TrackEntry(track_id=t.track_id, identity=t.identity, similarity=round(t.similarity, 4),
                         intervals=[[_r(s), _r(e)] for s, e in t.intervals], frames=t.frames,
                         distance=round(t.distance, 4) if math.isfinite(t.distance) else None, nearest=t.nearest,
                         status=t.status, evidence_frames=t.evidence_frames, split_from=t.split_from)
              for t in va.tracks]
    people = {name: VideoPresence(intervals=[[_r(s), _r(e)] for s, e in ivs.tolist()],
                                  exposure_seconds=_r(va.exposure_s.get(name, 0.0)),
                                  alone_seconds=_r(va.alone_s.get(name, 0.0)),
                                  mean_area_share=round(float(va.face_share.get(name, 0.0)), 6))
              for name, ivs in sorted(va.person_intervals.items())}
    together = [PairTally(a=a, b=b, seconds_together=_r(sec)) for (a, b), sec in sorted(va.together_s.items())]
    return MediaEntry(
        path=path, kind="video", width=va.info.width, height=va.info.height,
        error=f"{path}: {va.error}" if va.error else None,
        duration_s=_r(va.length_s), fps=round(float(va.info.fps), 3),
        frames_analysed=va.frames_analysed,
        sample_fps=va.sample_fps, time_resolution_s=_r(va.time_resolution_s), offset_s=_r(va.info.offset_s),
        max_gap_s=va.max_gap_s,
        tracks=tracks, people=people, together=together, cuts_s=[_r(c) for c in va.cuts_s],
        timeline=[(r.second, r.person, round(float(r.fraction), 3)) for r in va.timeline])


def add_video_logos(entry: MediaEntry, item: MediaItem, va: VideoAnalysis, detector: LogoDetector,
                    brand_names: list[str], logo_fps: float = LOGO_FPS,
                    resume: VideoProgress | None = None) -> list[LogoTrack]:
    """Search ``logo_fps`` frames per second for the registered logos and link them into logo tracks; the
    confirmed tracks give brand intervals and person x brand seconds (the intersection of their intervals).
    Returns the tracks (with their boxes, for annotation). ``resume`` records each searched batch's logos
    and supplies those of an interrupted run."""
    found: list[LogoDetection] = []
    frame_area = max(1, va.info.width * va.info.height)
    for seq, batch in enumerate(iter_frames(item.local_path, sample_fps=logo_fps, batch_size=8)):
        stored = resume.get("logos", seq, batch.pts_s) if resume is not None else None
        if stored is not None and not _logo_rows_fit(stored, len(batch), len(brand_names)):
            resume.damaged("logos", seq, ValueError("arrays missing or out of range"))  # type: ignore[union-attr]
            stored = None
        if stored is None:
            logos = detector.detect(batch.frames)
            stored = {"pts_s": np.asarray(batch.pts_s, dtype=np.float64),
                      "image_index": logos.image_index.cpu().numpy(), "brand": logos.brand.cpu().numpy(),
                      "boxes": logos.boxes.float().cpu().numpy(), "scores": logos.scores.float().cpu().numpy()}
            if resume is not None:
                resume.put("logos", seq, stored)
        for k, b, box, score in zip(stored["image_index"].tolist(), stored["brand"].tolist(),
                                    stored["boxes"].tolist(), stored["scores"].tolist(), strict=True):
            found.append(LogoDetection(pts_s=float(batch.pts_s[k]), duration_s=float(batch.duration_s[k]),
                                       brand=brand_names[b], box=box, score=float(score),
                                       area_share=(box[2] - box[0]) * (box[3] - box[1]) / frame_area))
    tracks = link_logo_tracks(found, va.cuts_s, step_s=1.0 / logo_fps)
    entry.logo_sample_fps = logo_fps
    entry.logo_tracks = [
        LogoTrackEntry(track_id=t.track_id, brand=t.brand, intervals=[[_r(s), _r(e)] for s, e in
                                                                      t.intervals(va.max_gap_s).tolist()],
                       frames=t.frames, best_score=round(t.best_score, 4),
                       mean_score=round(float(np.mean([d.score for d in t.detections])), 4),
                       mean_area_share=round(float(np.mean([d.area_share for d in t.detections])), 6),
                       counted=t.counted, status=t.status)
        for t in tracks]
    entry.brands = {}
    entry.with_brands = []
    for brand in sorted({t.brand for t in tracks if t.counted}):
        counted = [t for t in tracks if t.counted and t.brand == brand]
        merged = union_intervals(np.concatenate([t.intervals(va.max_gap_s) for t in counted]), va.max_gap_s)
        shares = [d.area_share for t in counted for d in t.detections]
        entry.brands[brand] = VideoPresence(intervals=[[_r(s), _r(e)] for s, e in merged.tolist()],
                                            exposure_seconds=_r(total_seconds(merged)),
                                            mean_area_share=round(float(np.mean(shares)), 6))
        near = _near_intervals(va, counted)
        for person, p_iv in sorted(va.person_intervals.items()):
            both_iv = intersect_intervals(p_iv, merged)
            both = total_seconds(both_iv)
            if both > 0:
                beside = total_seconds(intersect_intervals(both_iv, union_intervals(near.get(person, []),
                                                                                   va.max_gap_s)))
                entry.with_brands.append(PairTally(a=person, b=brand, seconds_together=_r(both),
                                                   with_seconds=_r(beside)))
    return tracks


def _near_intervals(va: VideoAnalysis, tracks: list[LogoTrack]) -> dict[str, list[tuple[float, float]]]:
    """Per named person, the searched frames' times ``[pts, pts + duration)`` where a logo of ``tracks`` is on or
    near the person's face (:func:`~influvision.tally.logo_near_face`) in the analysed frame nearest to it; two
    successive detections of one track both near the person are joined across a searched frame the track
    missed, as the track's own intervals are."""
    det = va.detections
    named = np.flatnonzero(det.identity >= 0)
    frames = va.frame_pts_s  # every analysed frame, in time order
    if not len(named) or not tracks or not len(frames):
        return {}
    at_frame: dict[float, list[int]] = {}
    for r in named.tolist():
        at_frame.setdefault(float(det.pts_s[r]), []).append(r)

    def near_people(d: LogoDetection) -> set[str]:
        k = int(np.searchsorted(frames, d.pts_s))
        k = min((j for j in (k - 1, k) if 0 <= j < len(frames)), key=lambda j: abs(frames[j] - d.pts_s))
        if abs(frames[k] - d.pts_s) > max(va.time_resolution_s, d.duration_s):
            return set()  # no analysed frame near this searched one
        return {va.names[int(det.identity[r])] for r in at_frame.get(float(frames[k]), [])
                if logo_near_face(d.box, det.boxes[r].tolist())}

    out: dict[str, list[tuple[float, float]]] = {}
    for t in tracks:
        near = [near_people(d) for d in t.detections]
        for i, (d, people) in enumerate(zip(t.detections, near, strict=True)):
            for person in people:
                end = d.pts_s + d.duration_s
                if i + 1 < len(near) and person in near[i + 1] and t.detections[i + 1].pts_s - end <= t.bridge_s:
                    end = t.detections[i + 1].pts_s
                out.setdefault(person, []).append((d.pts_s, end))
    return out


def tally_videos(media: list[MediaEntry], people: dict[str, SubjectTally], brands: dict[str, SubjectTally],
                 together: list[PairTally], co: list[PairTally]) -> None:
    """Add each video's intervals (people and brands) and pair seconds to the tallies, in place."""
    for m in media:
        if m.kind != "video":
            continue
        for group, presences in ((people, m.people or {}), (brands, m.brands or {})):
            for name, presence in presences.items():
                t = group.setdefault(name, SubjectTally())
                if presence.intervals:
                    t.intervals[m.path] = presence.intervals
                t.alone_seconds = round(t.alone_seconds + presence.alone_seconds, 3)
        _add_pair_seconds(together, m.together or [])
        _add_pair_seconds(co, m.with_brands or [])


def _add_pair_seconds(pairs: list[PairTally], found: list[PairTally]) -> None:
    """Add ``found`` pairs' seconds into ``pairs`` (creating missing pairs); keeps ``pairs`` sorted."""
    by_key = {(p.a, p.b): p for p in pairs}
    for pair in found:
        p = by_key.get((pair.a, pair.b))
        if p is None:
            p = by_key[(pair.a, pair.b)] = PairTally(a=pair.a, b=pair.b)
            pairs.append(p)
        p.seconds_together = round(p.seconds_together + pair.seconds_together, 3)
        p.with_seconds = round(p.with_seconds + pair.with_seconds, 3)
    pairs.sort(key=lambda p: (p.a, p.b))


def annotate_video(item: MediaItem, va: VideoAnalysis, directory: Path, *, blur_unknown: bool,
                   logo_tracks: list[LogoTrack] | None = None,
                   faces_in: FaceSearch | None = None) -> list[Path]:
    """Write an MP4 with boxes, names and track ids, and a timeline PNG. Frames between analysed frames
    show each track's box moved linearly from the analysed frame before to the one after (a track in only one
    of them keeps its box); with ``blur_unknown`` they blur, for every unknown face of either frame, the box
    spanning both its positions, and every face ``faces_in`` (face boxes per frame: the detector run on every
    written frame) finds that is not a named face there: a stranger who moves far between two analysed frames,
    is missed in one, or appears after a cut between them stays blurred. Counted logo tracks' boxes show for
    the time their searched frame stands for."""
    out = output_path(directory, item.path, ".annotated.mp4")
    fps = va.info.fps if va.info.fps and va.info.fps > 0 else 25.0
    written = []
    try:
        with written_atomically(out) as tmp, av.open(str(tmp), mode="w") as container:
            stream = container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001))
            stream.codec_context.time_base = _TIME_BASE
            last_tick = -1
            cuts = {round(float(c), 6) for c in va.cuts_s}
            stream.width, stream.height = va.info.width - va.info.width % 2, va.info.height - va.info.height % 2
            stream.pix_fmt = "yuv420p"
            stream.options = {"crf": "23", "preset": "veryfast"}
            shown = _detections_by_frame(va)
            logos_at = _logos_by_frame(logo_tracks or [])
            logo_times = np.array(sorted(logos_at), dtype=np.float64)
            for batch in iter_frames(item.local_path, sample_fps=None, batch_size=16):
                found = faces_in(batch.frames) if blur_unknown and faces_in is not None else [None] * len(batch)
                for frame, pts, boxes in zip(batch.frames, batch.pts_s, found, strict=True):
                    faces, labels, hide = _faces_at(shown, va.frame_pts_s, float(pts), cuts)
                    if boxes is not None:
                        hide += strangers(boxes, [f.box for f in faces if f.identity is not None])
                    j = int(np.searchsorted(logo_times, pts + 1e-6)) - 1
                    logos = []
                    if j >= 0:
                        until, logos = logos_at[float(logo_times[j])]
                        logos = logos if pts < until else []
                    image = Image.fromarray(np.asarray(frame))
                    if blur_unknown:
                        for box in hide:
                            blur_box(image, box)
                    image = draw_detections(image, faces, logos, blur_unknown=False, labels=labels)
                    image = image.crop((0, 0, stream.width, stream.height))
                    video_frame = av.VideoFrame.from_image(image)
                    # The source's own times, so that a variable-rate video keeps them and a report's interval
                    # is found at the same time in the copy.
                    last_tick = max(last_tick + 1, round(float(pts) / _TIME_BASE))
                    video_frame.pts, video_frame.time_base = last_tick, _TIME_BASE
                    for packet in stream.encode(video_frame):
                        container.mux(packet)
            for packet in stream.encode():
                container.mux(packet)
        written.append(out)
    except (av.error.FFmpegError, MediaError, OSError) as e:  # annotation is a by-product: never fail the run
        log.warning("could not write annotated video for %s: %s", item.path, e)
    intervals = {n: [[float(s), float(e)] for s, e in iv.tolist()] for n, iv in va.person_intervals.items()}
    try:
        written.append(timeline_png(intervals, va.length_s,
                                    output_path(directory, item.path, ".timeline.png"),
                                    title=f"{item.path}: on screen (s)"))
    except OSError as e:
        log.warning("could not write the timeline of %s: %s", item.path, e)
    return written


def _logo_rows_fit(arrays: dict[str, np.ndarray], frames: int, brands: int) -> bool:
    """Whether a recorded batch of logo detections is whole: every array there, one row per detection, frame
    and brand indexes in range."""
    try:
        n = len(arrays["image_index"])
        return (arrays["boxes"].shape == (n, 4) and arrays["brand"].shape == (n,) and arrays["scores"].shape == (n,)
                and bool(np.all((arrays["image_index"] >= 0) & (arrays["image_index"] < frames)))
                and bool(np.all((arrays["brand"] >= 0) & (arrays["brand"] < brands))))
    except (KeyError, TypeError, AttributeError, ValueError):
        return False


def _logos_by_frame(tracks: list[LogoTrack]) -> dict[float, tuple[float, list[LogoEntry]]]:
    """Searched frame time -> (time its boxes stop showing, boxes of counted tracks)."""
    out: dict[float, tuple[float, list[LogoEntry]]] = {}
    for t in tracks:
        if not t.counted:
            continue
        for d in t.detections:
            _, boxes = out.setdefault(d.pts_s, (d.pts_s + d.duration_s, []))
            boxes.append(LogoEntry(brand=d.brand, box=d.box, score=round(d.score, 4)))
    return out


# Time base of annotated videos' frame times (MPEG's 90 kHz clock).
_TIME_BASE = Fraction(1, 90_000)
_Shown = dict[float, list[tuple[int, FaceEntry, str]]]


def _detections_by_frame(va: VideoAnalysis) -> _Shown:
    """Analysed frame time -> its faces as (track id, face named by its track's identity, box label)."""
    det = va.detections
    track_name = {t.track_id: t.identity for t in va.tracks}
    out: _Shown = {}
    for j in range(len(det)):
        tid, ident = int(det.track_id[j]), int(det.identity[j])
        name = va.names[ident] if ident >= 0 else track_name.get(tid)
        face = FaceEntry(identity=name, box=[float(v) for v in det.boxes[j]], score=float(det.scores[j]),
                         similarity=0.0)
        out.setdefault(round(float(det.pts_s[j]), 6), []).append(
            (tid, face, f"{name or 'unknown'} #{tid}" if tid >= 0 else (name or "unknown")))
    return out


def _faces_at(shown: _Shown, analysed_pts: np.ndarray, pts: float, cuts: set[float] | frozenset[float] = frozenset(),
              ) -> tuple[list[FaceEntry], list[str], list[list[float]]]:
    """Faces and labels to draw on the frame at ``pts``, and the regions to blur for privacy.

    Between two analysed frames with a shot cut (``cuts``: the first analysed frame of each new shot) nobody
    is drawn: the cut may come at any frame between them, and a named face's box carried over it would mark
    (and spare from blurring) whoever stands there in the next shot. Unknown faces of both are blurred."""
    i = int(np.searchsorted(analysed_pts, pts + 1e-6)) - 1
    before = shown.get(round(float(analysed_pts[i]), 6), []) if i >= 0 else []
    after: list[tuple[int, FaceEntry, str]] = []
    a = 0.0
    if i + 1 < len(analysed_pts) and (i < 0 or pts > analysed_pts[i] + 1e-6):
        t0 = float(analysed_pts[i]) if i >= 0 else pts
        t1 = float(analysed_pts[i + 1])
        after = shown.get(round(t1, 6), [])
        a = (pts - t0) / (t1 - t0) if t1 > t0 else 0.0
        if i >= 0 and round(t1, 6) in cuts:
            return [], [], [f.box for _, f, _ in before + after if f.identity is None]
    later = {tid: f for tid, f, _ in after if tid >= 0}
    faces, labels, hide = [], [], []
    for tid, f, label in before:
        nxt = later.get(tid) if tid >= 0 else None
        box = f.box if nxt is None else [(1 - a) * p + a * q for p, q in zip(f.box, nxt.box, strict=True)]
        if f.identity is not None and nxt is not None and nxt.identity is None:
            # Named here, not at the next analysed frame (a detection that counted for a person, then not):
            # the frames between are not known to show the person.
            f, label = f.model_copy(update={"identity": None}), f"unknown #{tid}"
        faces.append(f.model_copy(update={"box": box}))
        labels.append(label)
        if f.identity is None:
            hide.append(_span(f.box, nxt.box if nxt is not None else f.box))
    seen = {tid for tid, _, _ in before if tid >= 0}
    hide += [_span(f.box, f.box) for tid, f, _ in after if f.identity is None and (tid < 0 or tid not in seen)]
    return faces, labels, hide


def _span(p: list[float], q: list[float]) -> list[float]:
    """The box covering both boxes (:func:`~influvision.annotate.blur_box` widens what it blurs)."""
    return [min(p[0], q[0]), min(p[1], q[1]), max(p[2], q[2]), max(p[3], q[3])]

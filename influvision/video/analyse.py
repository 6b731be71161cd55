"""Video analysis end to end: decode → faces per frame → tracks → identity per track → exposure.

:func:`analyse_video` streams the video in batches (memory stays flat apart from the per-detection columns
kept for the report), runs the caller's per-frame face work on each batch, tracks faces through each shot,
names each track once from its best evidence and turns the named tracks into per-person intervals and
exposure seconds. docs/video.md explains every step for auditing an invoice.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from tqdm.auto import tqdm

from ..boxes import box_iou
from ..decode.video import VideoInfo, open_video
from ..errors import ShapeError
from ..match import GalleryIndex, MatchSettings, person_distances
from ..types import Faces
from .exposure import (
    DEFAULT_MAX_GAP_S,
    TimelineRow,
    alone_seconds,
    face_area_share,
    timeline,
    timeline_csv,
    together_seconds,
    total_seconds,
    union_intervals,
)
from .identity import (
    DEFAULT_MIN_EVIDENCE,
    DEFAULT_TOP_K,
    TrackIdentity,
    identifiable,
    identify_tracks,
    split_tracks,
)
from .tracks import CUT_THRESHOLD, FaceTracker, ShotCutDetector

if TYPE_CHECKING:
    from ..checkpoint import VideoProgress

log = logging.getLogger(__name__)

FacesFn = Callable[[list[np.ndarray]], Faces]
_NEEDED = ("embedding", "size_px", "frontalness")
# How long a face track survives without a detection (seconds; at least two sampled frames).
LOST_TRACK_S = 1.0
# Within one track, gaps up to this many analysed frame steps are bridged (one missed frame), besides max_gap_s.
SLOW_FOOTAGE_GAP = 1.5
# A refused track's box must overlap the named track's box beside the gap it fills this much (_handovers).
HANDOVER_IOU = 0.1
# A piece continues a named track when it starts within this many analysed-frame steps of the track's end (or
# ends that close to its start): the next frame, or the one after a single missed frame (2 steps), with margin.
CONTINUATION_STEPS = 2.5
# Pieces join in chains up to this long (a lone detection before a piece before the named track).
_CONTINUATION_PASSES = 3


@dataclass(frozen=True)
class TrackSummary:
    """One face track and its identity decision.

    Attributes:
        track_id: unique within the video.
        identity: registered name or ``None``.
        distance: track distance to the named (or, if unknown, nearest) person; ``inf`` without evidence.
        similarity: ``settings.similarity(distance)`` in [0, 1].
        nearest: nearest registered person (for audit), even when not named.
        status: why named or not (see :class:`~influvision.video.identity.TrackIdentity`).
        start_s, end_s: the track's span: first detection's time to the last detection's time plus that
            frame's duration.
        intervals: ``[start_s, end_s)`` pieces the track is on screen: its frames' times joined, gaps shorter
            than ``max_gap_s`` (frames where the detector missed the face) bridged; one piece covering the
            span unless the face was missed for ``max_gap_s`` or longer.
        frames: detections in the track; evidence_frames: detections the identity decision used.
        mean_face_share: mean share of the frame area covered by the face box.
        split_from: the tracker's track this one was cut from because its face became another person's, or
            a single face of another person set aside from it (:func:`~influvision.video.identity.split_tracks`);
            ``None`` for the tracker's own tracks.
    """

    track_id: int
    identity: str | None
    distance: float
    similarity: float
    nearest: str | None
    status: str
    start_s: float
    end_s: float
    intervals: list[tuple[float, float]]
    frames: int
    evidence_frames: int
    mean_face_share: float
    split_from: int | None = None


@dataclass(frozen=True)
class FrameDetections:
    """Every detection of the analysed frames, columnar (M rows), on the host: what an annotated video needs.

    Attributes:
        pts_s: (M,) float64 time of the frame; frame_index: (M,) int64 index among all decoded frames.
        boxes: (M, 4) float32 x1, y1, x2, y2 in displayed-frame pixels; scores: (M,) float32.
        track_id: (M,) int64, -1 when the detection is in no track.
        identity: (M,) int64 index into ``VideoAnalysis.names`` from the detection's track, -1 unknown.
    """

    pts_s: np.ndarray
    frame_index: np.ndarray
    boxes: np.ndarray
    scores: np.ndarray
    track_id: np.ndarray
    identity: np.ndarray

    def __len__(self) -> int:
        return int(self.pts_s.shape[0])


@dataclass
class VideoAnalysis:
    """Everything measured on one video; times in seconds from the start of the stream.

    Attributes:
        path: the video file.
        info: what the container declares.
        frames_analysed: sampled frames that went through face analysis.
        sample_fps: the sampling rate asked for (``None``: every frame).
        time_resolution_s: mean time one analysed frame stands for (interval ends are exact to about this).
        max_gap_s: gaps shorter than this within one person's exposure were bridged.
        names: registered people of the gallery used (index i of ``detections.identity``).
        tracks: every track, named or not, sorted by track id.
        person_intervals: person -> (K, 2) float64 ``[start_s, end_s)`` after bridging; only people seen.
        exposure_s: person -> on-screen seconds (length of the union of their intervals).
        alone_s: person -> seconds with no other registered person on screen.
        together_s: (person a, person b), a < b -> seconds both on screen.
        face_share: person -> mean share of the frame area covered by their face.
        timeline: per-second rows (second, person, fraction visible).
        detections: per-detection columns for annotation.
        frame_pts_s, frame_duration_s: (F,) float64 time and duration of every analysed frame.
        cuts_s: times of detected shot cuts (the first frame of each new shot).
        error: ``None``, or why the stream ended early (the results cover the frames before it).
        clock_rejoined: the stream's clock restarted or jumped and was rejoined (MPEG-TS; see :attr:`length_s`).
    """

    path: str
    info: VideoInfo
    frames_analysed: int
    sample_fps: float | None
    time_resolution_s: float
    max_gap_s: float
    names: list[str]
    tracks: list[TrackSummary]
    person_intervals: dict[str, np.ndarray]
    exposure_s: dict[str, float]
    alone_s: dict[str, float]
    together_s: dict[tuple[str, str], float]
    face_share: dict[str, float]
    timeline: list[TimelineRow]
    detections: FrameDetections
    frame_pts_s: np.ndarray
    frame_duration_s: np.ndarray
    cuts_s: list[float] = field(default_factory=list)
    error: str | None = None
    clock_rejoined: bool = False

    @property
    def analysed_s(self) -> float:
        """Seconds of video covered by the analysed frames."""
        return float(self.frame_duration_s.sum())

    @property
    def length_s(self) -> float:
        """The video's length: as declared, or what was decoded when its clock was rejoined (an MPEG-TS clock
        that restarted or jumped makes the declared length meaningless)."""
        if self.clock_rejoined and len(self.frame_pts_s):
            return float(self.frame_pts_s[-1] + self.frame_duration_s[-1])
        return float(self.info.duration_s)

    def timeline_csv(self, path: str | Path | None = None) -> str:
        """The per-second timeline as CSV (``second,person,fraction``), written to ``path`` if given."""
        return timeline_csv(self.timeline, path)


def _check_faces(faces: Faces, n_frames: int) -> None:
    missing = [k for k in _NEEDED if k not in faces.columns]
    if missing:
        raise ShapeError("faces_fn result", f"Faces with columns {list(_NEEDED)}", f"missing {missing}")
    if len(faces) and (int(faces.image_index.min()) < 0 or int(faces.image_index.max()) >= n_frames):
        raise ShapeError("faces_fn image_index", f"values in [0, {n_frames})",
                         f"[{int(faces.image_index.min())}, {int(faces.image_index.max())}]")


def _faces_to_arrays(faces: Faces, pts_s: np.ndarray) -> dict[str, np.ndarray]:
    """A batch's faces as the host arrays a checkpoint keeps (what the analysis reads of them), with the times
    of the batch's frames; embeddings in float32, their dtype recorded."""
    out = {"pts_s": np.asarray(pts_s, dtype=np.float64), "image_index": faces.image_index.cpu().numpy(),
           "boxes": faces.boxes.float().cpu().numpy(), "scores": faces.scores.float().cpu().numpy(),
           "landmarks": faces.landmarks.float().cpu().numpy()}
    for k in (*_NEEDED, "sharpness"):
        if k in faces.columns:
            col = faces.columns[k]
            out[f"col_{k}"] = col.float().cpu().numpy()
            out[f"dtype_{k}"] = np.array(str(col.dtype).removeprefix("torch."))
    return out


def _faces_from_arrays(arrays: dict[str, np.ndarray], device: torch.device) -> Faces:
    """The faces :func:`_faces_to_arrays` recorded, on ``device`` in their own dtypes."""
    cols = {}
    for name in arrays:
        if name.startswith("col_"):
            k = name.removeprefix("col_")
            dtype = getattr(torch, str(arrays[f"dtype_{k}"]))
            cols[k] = torch.from_numpy(arrays[name]).to(device=device, dtype=dtype)
    return Faces(torch.from_numpy(arrays["image_index"]).to(device), torch.from_numpy(arrays["boxes"]).to(device),
                 torch.from_numpy(arrays["scores"]).to(device), torch.from_numpy(arrays["landmarks"]).to(device),
                 cols)


def analyse_video(
    path: str | Path,
    *,
    faces_fn: FacesFn,
    index: GalleryIndex,
    settings: MatchSettings,
    sample_fps: float | None = 10.0,
    batch_size: int = 16,
    max_gap_s: float = DEFAULT_MAX_GAP_S,
    progress: bool = False,
    top_k: int = DEFAULT_TOP_K,
    min_evidence: int = DEFAULT_MIN_EVIDENCE,
    cut_threshold: float = CUT_THRESHOLD,
    identity_method: str = "mean_embedding",
    resume: VideoProgress | None = None,
) -> VideoAnalysis:
    """Find the registered people in a video and measure how long each is on screen.

    Args:
        path: the video file.
        faces_fn: per-frame face work: B frames (H, W, 3) uint8 RGB → :class:`Faces` with ``image_index`` in
            [0, B) and columns ``embedding`` (N, D), ``size_px``, ``frontalness`` and (optional)
            ``sharpness`` (N,), on any one device.
        index: registered people; an empty index leaves every track unknown.
        settings: matching rules (threshold, margin, min_face_px, min_sharpness).
        sample_fps: frames analysed per second (``None``: every frame).
        batch_size: frames per ``faces_fn`` call.
        max_gap_s: bridge gaps shorter than this in a person's exposure.
        progress: show a progress bar (frames).
        top_k, min_evidence, identity_method: identity evidence per track and how it is combined (see
            :func:`influvision.video.identity.identify_tracks`).
        cut_threshold: shot-cut score threshold (see :mod:`influvision.video.tracks`).
        resume: where each batch's faces are recorded as it is analysed, and taken from on a rerun (the
            video is decoded again, for its frames' times and shot cuts, but ``faces_fn`` runs only on the
            batches not recorded); the analysis is the same as in one uninterrupted run.

    Returns:
        :class:`VideoAnalysis`. A stream that breaks part-way still returns the analysis of the frames
        before the break, with ``error`` set.

    Raises:
        MediaError: not a video, no video stream, unsupported codec, or no frame decodes.
    """
    spath = str(path)
    info, batches = open_video(spath, sample_fps=sample_fps, batch_size=batch_size)
    rate = info.fps if info.fps > 0 else 30.0
    if sample_fps is not None:
        rate = min(rate, float(sample_fps))
    tracker = FaceTracker(frame_rate=rate, lost_track_s=LOST_TRACK_S)
    cutter = ShotCutDetector(cut_threshold)
    expected = info.frame_count if sample_fps is None or not info.fps else \
        int(np.ceil(info.duration_s * min(info.fps, float(sample_fps))))
    # Below the run's bar of media; sparse updates, so a log file of a long video stays small.
    bar = tqdm(total=expected or None, unit="frame", disable=not progress, desc=Path(spath).name, position=1,
               leave=False, mininterval=2.0)

    kept: list[Faces] = []
    det_pts: list[np.ndarray] = []
    det_fidx: list[np.ndarray] = []
    det_dur: list[np.ndarray] = []
    frame_pts: list[np.ndarray] = []
    frame_dur: list[np.ndarray] = []
    cuts: list[float] = []
    error: str | None = None
    n_frames = 0
    # The tracker's clock advances by at most one sampling step per analysed frame: a variable-frame-rate file
    # holds a frame on screen for seconds (a still in a screen recording, a freeze), and on the file's clock
    # every track would be dropped as lost over such a frame although the face in it was shown all along.
    # Seconds on screen come from the frames' own times, not from this clock.
    tick, clock, last_pts = 1.0 / rate, 0.0, None
    rejoined = False
    try:
        for seq, batch in enumerate(batches):
            stored = resume.get("faces", seq, batch.pts_s) if resume is not None else None
            faces = None
            if stored is not None:
                try:
                    faces = _faces_from_arrays(stored, index.embeddings.device)
                    _check_faces(faces, len(batch))
                except Exception as e:  # a damaged row that still loads: analysed again, its row replaced
                    resume.damaged("faces", seq, e)  # type: ignore[union-attr]
                    faces = None
            if faces is None:
                faces = faces_fn(batch.frames)
                _check_faces(faces, len(batch))
                if len(faces):
                    faces = faces[torch.argsort(faces.image_index, stable=True)]
                if resume is not None:
                    resume.put("faces", seq, _faces_to_arrays(faces, batch.pts_s))
            # The one host copy per batch: the tracker works on numpy boxes.
            img = faces.image_index.cpu().numpy()
            boxes = faces.boxes.float().cpu().numpy()
            scores = faces.scores.float().cpu().numpy()
            bounds = np.searchsorted(img, np.arange(len(batch) + 1))
            for j, frame in enumerate(batch.frames):
                if cutter.is_cut(frame):
                    tracker.cut()
                    cuts.append(float(batch.pts_s[j]))
                lo, hi = bounds[j], bounds[j + 1]
                pts_j = float(batch.pts_s[j])
                clock += tick if last_pts is None else min(pts_j - last_pts, tick)
                last_pts = pts_j
                tracker.update(boxes[lo:hi], scores[lo:hi], clock, cutter.motion)
            cols = {k: faces.columns[k] for k in (*_NEEDED, "sharpness") if k in faces.columns}
            kept.append(Faces(faces.image_index, faces.boxes, faces.scores, faces.landmarks, cols))
            det_pts.append(batch.pts_s[img])
            det_fidx.append(batch.frame_index[img])
            det_dur.append(batch.duration_s[img])
            frame_pts.append(batch.pts_s)
            frame_dur.append(batch.duration_s)
            n_frames += len(batch)
            bar.update(len(batch))
            if batch.error:
                error = batch.error
            rejoined = rejoined or batch.rejoined
    finally:
        bar.close()

    all_faces = Faces.cat(kept) if kept else Faces.empty()
    split = split_tracks(all_faces, tracker.track_ids, settings)
    track_id, split_from = split.track_id, split.split_from
    pts = np.concatenate(det_pts) if det_pts else np.zeros(0)
    dur = np.concatenate(det_dur) if det_dur else np.zeros(0)
    fpts = np.concatenate(frame_pts) if frame_pts else np.zeros(0)
    fdur = np.concatenate(frame_dur) if frame_dur else np.zeros(0)
    boxes_h = all_faces.boxes.float().cpu().numpy()
    share = face_area_share(boxes_h, info.width, info.height)

    spans, track_share = _track_spans(track_id, pts, dur, share)
    decisions = identify_tracks(all_faces, track_id, spans, index, settings, top_k=top_k,
                                min_evidence=min_evidence, method=identity_method)
    track_iv = _track_intervals(track_id, pts, dur, max_gap_s)

    person_of_track = {d.track_id: d.person_index for d in decisions}
    det_identity = np.array([person_of_track.get(int(t), -1) for t in track_id], dtype=np.int64) \
        if len(track_id) else np.zeros(0, dtype=np.int64)
    handed = _handovers(decisions, track_id, pts, boxes_h, all_faces, index, settings,
                        max(LOST_TRACK_S, 2.0 / rate))
    det_identity[handed[:, 0]] = handed[:, 1]
    handing = {int(t) for t in track_id[handed[:, 0]]}
    step = float(np.median(fdur)) if len(fdur) else 0.0
    joined = _continuations(decisions, track_id, split_from, pts, boxes_h, all_faces, index, settings, cuts,
                            CONTINUATION_STEPS * step, min_evidence)
    det_identity[joined[:, 0]] = joined[:, 1]
    continuing = {int(t) for t in track_id[joined[:, 0]] if t >= 0}
    decisions = [dataclasses.replace(d, status="handed_over") if d.track_id in handing else
                 dataclasses.replace(d, status="continues_named") if d.track_id in continuing else d
                 for d in decisions]
    tracks = [_summary(d, spans[d.track_id], track_iv[d.track_id], track_share[d.track_id],
                       split_from.get(d.track_id)) for d in decisions]
    # Each detection stands for its frame's time [pts, pts + duration); a person's intervals are the union
    # of the frames of their named tracks, gaps shorter than max_gap_s bridged. Within one track, a gap of one
    # missed analysed frame is bridged too (SLOW_FOOTAGE_GAP frame steps): in footage under 2 frames per second
    # a frame is longer than max_gap_s, and the tracker, which kept the track, says the face was there.
    det_iv = np.stack([pts, pts + dur], axis=1) if len(pts) else np.zeros((0, 2))
    within = SLOW_FOOTAGE_GAP * step if step > max_gap_s else max_gap_s
    person_intervals: dict[str, np.ndarray] = {}
    face_share: dict[str, float] = {}
    for p in np.unique(det_identity[det_identity >= 0]).tolist():
        name = index.names[p]
        mine = det_identity == p
        # Within-track bridging reaches across neither a face set aside (split.stretch) nor from one lone,
        # untracked detection to another.
        key = np.where(track_id >= 0, track_id, -2 - np.arange(len(track_id)))
        pieces = [union_intervals(det_iv[mine & (key == t) & (split.stretch == k)], within)
                  for t, k in {(int(t), int(k)) for t, k in zip(key[mine], split.stretch[mine], strict=True)}]
        person_intervals[name] = union_intervals(np.concatenate(pieces), max_gap_s)
        face_share[name] = float(share[mine].mean())
    exposure = {n: total_seconds(iv) for n, iv in person_intervals.items()}
    # The timeline covers what was decoded (the declared length may be wrong or the stream cut short).
    duration = float(fpts[-1] + fdur[-1]) if len(fpts) else 0.0
    for name, secs in exposure.items():
        log.info("%s: %s on screen %.2f s in %d interval(s)", spath, name, secs, len(person_intervals[name]))

    return VideoAnalysis(
        path=spath, info=info, frames_analysed=n_frames, sample_fps=sample_fps,
        time_resolution_s=float(fdur.mean()) if len(fdur) else 0.0, max_gap_s=max_gap_s,
        names=list(index.names), tracks=tracks, person_intervals=person_intervals, exposure_s=exposure,
        alone_s=alone_seconds(person_intervals), together_s=together_seconds(person_intervals),
        face_share=face_share, timeline=timeline(person_intervals, duration),
        detections=FrameDetections(pts_s=pts, frame_index=np.concatenate(det_fidx) if det_fidx else
                                   np.zeros(0, dtype=np.int64), boxes=boxes_h,
                                   scores=all_faces.scores.float().cpu().numpy(), track_id=track_id,
                                   identity=det_identity),
        frame_pts_s=fpts, frame_duration_s=fdur, cuts_s=cuts, error=error, clock_rejoined=rejoined)


def _handovers(decisions: list[TrackIdentity], track_id: np.ndarray, pts: np.ndarray, boxes: np.ndarray,
               faces: Faces, index: GalleryIndex, settings: MatchSettings, budget_s: float) -> np.ndarray:
    """(K, 2) rows and person indices: detections of a track refused a name for overlapping a named track of
    the same person (``overlap_conflict``) that fill a gap of that named track.

    The tracker sometimes hands a named face to a track that began beside it on a false box (hair, a collar):
    that track then overlaps the named one in time and is refused as a whole, and the named track has a hole
    where the face was still on screen. A refused track's detection is given the name only when it lies in a
    gap of the named track no longer than ``budget_s`` (the tracker's lost-track budget), at a frame where the
    named track has no detection, its box overlaps the named track's box before or after the gap
    (IoU >= :data:`HANDOVER_IOU`), and the face alone is within the matching threshold of that person.
    """
    named: dict[int, list[int]] = {}
    for d in decisions:
        if d.status == "named":
            named.setdefault(d.person_index, []).append(d.track_id)
    cand_rows: list[int] = []
    cand_person: list[int] = []
    for d in decisions:
        if d.status != "overlap_conflict" or d.nearest is None:
            continue
        person = index.names.index(d.nearest)
        rows = np.flatnonzero(track_id == d.track_id)
        for winner in named.get(person, []):
            w_rows = np.flatnonzero(track_id == winner)
            w_pts = pts[w_rows]
            for r in rows:
                k = int(np.searchsorted(w_pts, pts[r]))
                if k == 0 or k == len(w_rows) or w_pts[k] == pts[r] or w_pts[k] - w_pts[k - 1] > budget_s:
                    continue
                if max(box_iou(boxes[r], boxes[w_rows[k - 1]]), box_iou(boxes[r], boxes[w_rows[k]])) >= HANDOVER_IOU:
                    cand_rows.append(int(r))
                    cand_person.append(person)
    if not cand_rows:
        return np.zeros((0, 2), dtype=np.int64)
    rows_t = torch.as_tensor(cand_rows, device=faces.device)
    emb = faces.columns["embedding"][rows_t].float()
    dist = person_distances(emb, index.to(faces.device))  # (K, P)
    own = dist[torch.arange(len(cand_rows), device=faces.device), torch.as_tensor(cand_person, device=faces.device)]
    ok = (own <= settings.threshold).cpu().numpy()
    return np.stack([np.asarray(cand_rows)[ok], np.asarray(cand_person)[ok]], axis=1).astype(np.int64)


def _continuations(decisions: list[TrackIdentity], track_id: np.ndarray, split_from: dict[int, int], pts: np.ndarray,
                   boxes: np.ndarray, faces: Faces, index: GalleryIndex, settings: MatchSettings, cuts: list[float],
                   within_s: float, min_evidence: int) -> np.ndarray:
    """(K, 2) rows and person indices: pieces the tracker broke off a named face, given its name.

    ByteTrack's motion prediction overshoots when a head turns or bobs, so a face seen in every analysed frame
    can end its named track and go on as a new track (or a lone untracked detection) at the same place; too
    short or too turned to be named itself, that piece's seconds were lost. A piece (an unnamed track of fewer
    than ``min_evidence`` detections, not cut out by :func:`~influvision.video.identity.split_tracks`, or an
    untracked detection) continues a named track when it starts at most ``within_s`` after the named track's
    last detection (or ends that long before its first), in the same shot, its box there overlaps the named
    track's box (IoU >= :data:`HANDOVER_IOU`), no other track of that person is on screen meanwhile, and the
    mean of its identifiable faces is within the matching threshold of that person (a lookalike stranger 0.57
    away who steps into the spot is not).
    """
    named = [d for d in decisions if d.status == "named"]
    if not named or within_s <= 0:
        return np.zeros((0, 2), dtype=np.int64)
    status = {d.track_id: d.status for d in decisions}
    pieces = [rows for rows in (np.flatnonzero(track_id == t) for t in status
                                if status[t] == "too_little_evidence" and t not in split_from)
              if len(rows) < min_evidence]
    pieces += [np.array([r]) for r in np.flatnonzero(track_id < 0)]
    cut_times = np.asarray(cuts, dtype=np.float64)
    ends = []  # per named track: its first and last row, and its person
    for d in named:
        n_rows = np.flatnonzero(track_id == d.track_id)
        ends.append((d, int(n_rows[0]), int(n_rows[-1])))

    def same_shot(a: float, b: float) -> bool:
        return not ((cut_times > a) & (cut_times <= b)).any()

    ok = identifiable(faces, settings).cpu().numpy()

    def same_person(rows: np.ndarray, person: int) -> bool:  # its faces that can be compared are the person's
        check = rows[ok[rows]]
        if not len(check):
            return True
        emb = faces.columns["embedding"][torch.as_tensor(check, device=faces.device)].float().mean(dim=0)
        return bool(person_distances(emb[None], index.to(faces.device))[0, person] <= settings.threshold)

    out: list[tuple[int, int]] = []
    for _ in range(_CONTINUATION_PASSES):  # a piece joined extends its track, so the next piece can join it
        found = _join_pieces(pieces, ends, pts, boxes, within_s, same_shot, same_person)
        if not found:
            break
        taken = {id(rows) for rows, _ in found}
        pieces = [rows for rows in pieces if id(rows) not in taken]
        for rows, k in found:
            d, n_first, n_last = ends[k]
            first = int(rows[0]) if pts[rows[0]] < pts[n_first] else n_first
            last = int(rows[-1]) if pts[rows[-1]] > pts[n_last] else n_last
            ends[k] = (d, first, last)
            out += [(int(r), d.person_index) for r in rows]
    return np.asarray(out, dtype=np.int64).reshape(-1, 2)


def _join_pieces(pieces: list[np.ndarray], ends: list, pts: np.ndarray, boxes: np.ndarray, within_s: float,
                 same_shot: Callable[[float, float], bool],
                 same_person: Callable[[np.ndarray, int], bool]) -> list[tuple[np.ndarray, int]]:
    """The pieces that continue one of ``ends`` (index into it), by time, place, shot and face (see
    _continuations). A piece that fits named tracks of two different people joins neither."""
    cand: list[tuple[np.ndarray, int]] = []
    starts = np.array([pts[n_first] for _, n_first, _ in ends])
    stops = np.array([pts[n_last] for _, _, n_last in ends])
    for rows in pieces:
        first, last = rows[0], rows[-1]
        # Only the named tracks that end just before the piece or start just after it (a long video has
        # thousands of lone detections and hundreds of tracks).
        after = (pts[first] - stops > 0) & (pts[first] - stops <= within_s)
        before = (starts - pts[last] > 0) & (starts - pts[last] <= within_s)
        fits: list[tuple[float, int]] = []
        for k in np.flatnonzero(after | before).tolist():
            d, n_first, n_last = ends[k]
            overlap = max(box_iou(boxes[n_last], boxes[first]) if after[k] and same_shot(pts[n_last], pts[first])
                          else 0.0,
                          box_iou(boxes[last], boxes[n_first]) if before[k] and same_shot(pts[last], pts[n_first])
                          else 0.0)
            if overlap < HANDOVER_IOU or not same_person(rows, d.person_index):
                continue
            if any(o.person_index == d.person_index and o is not d and pts[o_first] <= pts[last]
                   and pts[first] <= pts[o_last] for o, o_first, o_last in ends):
                continue
            fits.append((overlap, k))
        if len({ends[k][0].person_index for _, k in fits}) == 1:
            cand.append((rows, max(fits)[1]))
    return cand


def _track_spans(track_id: np.ndarray, pts: np.ndarray, dur: np.ndarray,
                 share: np.ndarray) -> tuple[dict[int, tuple[float, float]], dict[int, float]]:
    """Per track: [first detection time, last detection time + its frame's duration) and mean face share."""
    tracked = track_id >= 0
    if not tracked.any():
        return {}, {}
    ids, inv = np.unique(track_id[tracked], return_inverse=True)
    start = np.full(len(ids), np.inf)
    end = np.full(len(ids), -np.inf)
    np.minimum.at(start, inv, pts[tracked])
    np.maximum.at(end, inv, pts[tracked] + dur[tracked])
    share_sum = np.bincount(inv, weights=share[tracked], minlength=len(ids))
    count = np.bincount(inv, minlength=len(ids))
    spans = {int(t): (float(s), float(e)) for t, s, e in zip(ids, start, end, strict=True)}
    return spans, {int(t): float(v) for t, v in zip(ids, share_sum / count, strict=True)}


def _track_intervals(track_id: np.ndarray, pts: np.ndarray, dur: np.ndarray,
                     max_gap_s: float) -> dict[int, np.ndarray]:
    """Per track: union of its frames' [pts, pts + duration), gaps shorter than max_gap_s bridged."""
    out: dict[int, np.ndarray] = {}
    tracked = np.flatnonzero(track_id >= 0)
    if not len(tracked):
        return out
    order = tracked[np.argsort(track_id[tracked], kind="stable")]
    ids, first = np.unique(track_id[order], return_index=True)
    for t, rows in zip(ids.tolist(), np.split(order, first[1:]), strict=True):
        out[int(t)] = union_intervals(np.stack([pts[rows], pts[rows] + dur[rows]], axis=1), max_gap_s)
    return out


def _summary(d: TrackIdentity, span: tuple[float, float], intervals: np.ndarray, share: float,
             split_from: int | None) -> TrackSummary:
    return TrackSummary(track_id=d.track_id, identity=d.identity, distance=d.distance, similarity=d.similarity,
                        nearest=d.nearest, status=d.status, start_s=span[0], end_s=span[1],
                        intervals=[(float(a), float(b)) for a, b in intervals], frames=d.frames,
                        evidence_frames=d.evidence_frames, mean_face_share=share, split_from=split_from)

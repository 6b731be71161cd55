"""Identity per track: decided once from the track's best evidence, then applied to all its frames.

Per-frame identification flickers: a profile drifts towards a lookalike, a blurred frame towards anybody.
A track (one face followed through one shot) is one person, so it is named once:

1. *Evidence*: the track's identifiable detections (big, sharp and frontal enough: ``settings.min_face_px``,
   ``settings.min_sharpness`` and ``min_frontalness``), ranked by quality (frontalness × size × sharpness,
   see :func:`evidence_quality`); the best ``top_k`` are kept.
2. *Distance*: the quality-weighted mean of the evidence embeddings (template pooling, as in set-based
   face verification) is compared with every registered person (``match.person_distances``: nearest
   reference). Averaging removes most per-frame noise, so a track's distance is lower than its typical
   single-face distance, for the right person and for lookalikes alike. Measured on the shared clips at 5
   sampled frames per second, top 10 evidence frames: Rick Astley's three tracks 0.38-0.42 (single faces
   0.39-0.59), the nearest registered person of every track in the two negative clips 0.52 or more. The
   alternative, the mean of the per-frame distances (``method="mean_distance"``), separated them less
   (0.51 vs 0.56) and left the wide shot of Rick Astley above 0.5. See docs/video.md.
3. *Decision*: named when the track has at least ``min_evidence`` identifiable detections whose median height
   is at least ``MIN_TRACK_FACE_PX``, its best person
   is within ``settings.threshold`` and the runner-up is at least ``settings.margin`` further; otherwise
   unknown. Profiles and small frames of a named track carry the name; they never decide it.
0. *One face per track*: the tracker links boxes by overlap alone, so a face that takes another's place
   without a cut (the next guest at a photo wall, a dancer stepping in) would continue its track and the
   track's seconds would all go to one name. :func:`split_tracks` first cuts a track where two successive
   sharp faces of it are further than ``SPLIT_FACTOR`` x the threshold from the mean of the track's faces
   before them, and sets a single such face aside; each piece is then named on its own.
4. *Conflicts*: two tracks that overlap in time show two different faces, so they cannot both be the same
   person. Claims are granted in order of increasing distance; a claim that overlaps in time with an
   already granted claim for the same person is refused and that track stays unknown (it does not fall back
   to its second choice: the margin rule already said that choice was not clear).

All per-detection work is batched tensor ops on the embeddings' device; only the small (T, P) per-track table
and the conflict resolution (T tracks, a few dozen per minute) run on the host.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from ..errors import ShapeError
from ..match import GalleryIndex, MatchSettings, person_distances
from ..types import Faces

log = logging.getLogger(__name__)

#: Detections at least this frontal (≈ cos² yaw × cos² pitch, from the quality stage) can be evidence.
DEFAULT_MIN_FRONTALNESS = 0.3
#: Evidence kept per track: its best detections by quality.
DEFAULT_TOP_K = 10
#: A track is named only when its evidence faces are this tall (median, pixels): averaging many small, noisy
#: embeddings drifts towards whoever sits in the middle of the gallery. On the shared clips re-encoded at 240p
#: a background dancer's 34 px track averaged to 0.49999 from Elton John (single frames: median 0.585), while
#: every correctly named track of Rick Astley had evidence of 84 px or more (benchmarks/RESULTS.md). The
#: same height a reference face needs (gallery.MIN_REFERENCE_FACE_PX).
MIN_TRACK_FACE_PX = 40.0
#: A track needs at least this many identifiable detections to be named (one or two good frames are too
#: easily a lookalike moment; three sampled frames are 0.3 s at 10 frames per second).
DEFAULT_MIN_EVIDENCE = 3
#: A track is cut where ``SPLIT_CONFIRM`` successive identifiable faces at least ``MIN_TRACK_FACE_PX`` high are
#: each further than ``SPLIT_FACTOR`` x the matching threshold (0.6 for dlib-resnet-v1: dlib's own "another
#: person") from the mean of the track's faces since its start or last cut. Measured (benchmarks/RESULTS.md,
#: "Adversarial audit II"): on the shared clips at 5 and 10 sampled frames per second it cuts nothing in nggyup
#: and street_crowd, and 3 tracks of dirtydancing's crowded dance floor at either rate, each where the tracker
#: had passed one dancer's track to another (checked by eye); one person taking another's place at a photo
#: wall measured 0.77-0.97, single faces within a track up to 0.81 (one far face is set aside, cuts nothing).
SPLIT_FACTOR = 1.2
SPLIT_CONFIRM = 2
#: A face decides no cut when it is blurred: sharpness (``faces.quality.chip_sharpness``) under both this share of
#: its track's median and ``SPLIT_MIN_SHARPNESS``. A focus pull moved one person's face 0.76 from their sharp face
#: (an audit clip: sharpness 0.015 against 0.27), as far as another person's; but clean faces of two people differ
#: by up to 4x (shared references: median 0.17, 5th percentile 0.045; a guest at 0.05 after one at 0.15 was not
#: cut from him with a relative rule alone).
SPLIT_SHARPNESS = 0.25
SPLIT_MIN_SHARPNESS = 0.03
# Faces this tall (pixels) or taller count as full size in the quality ranking.
_FULL_SIZE_PX = 100.0


@dataclass(frozen=True)
class TrackIdentity:
    """The identity decision for one track.

    Attributes:
        track_id: the track.
        identity: registered person's name, or ``None`` (unknown).
        person_index: index into the gallery's names, -1 when unknown.
        distance: track distance (from its pooled evidence) to the named person, or to the nearest person
            when unknown; ``inf`` when no evidence or nobody registered.
        similarity: ``settings.similarity(distance)``, in [0, 1].
        nearest: the nearest person's name even when not named (for audit), ``None`` without evidence.
        frames: detections in the track.
        evidence_frames: detections the decision used (≤ top_k).
        identifiable_frames: detections in the track that passed the quality gate.
        status: ``"named"``, ``"too_little_evidence"``, ``"faces_too_small"`` (evidence under
            ``MIN_TRACK_FACE_PX``), ``"above_threshold"``, ``"ambiguous"`` (margin), ``"overlap_conflict"`` or
            ``"no_gallery"`` (the video analysis may then mark unnamed tracks ``"handed_over"`` or
            ``"continues_named"``).
    """

    track_id: int
    identity: str | None
    person_index: int
    distance: float
    similarity: float
    nearest: str | None
    frames: int
    evidence_frames: int
    identifiable_frames: int
    status: str


def evidence_quality(faces: Faces) -> Tensor:
    """A per-detection quality score in [0, 1] used to rank a track's evidence.

    ``frontalness × min(size_px / 100, 1) × sharpness / (sharpness + median sharpness of the batch)``: the
    sharpness term is relative so that its (chip-dependent) scale does not matter.

    Returns:
        (N,) float32 on the faces' device; (0,) for no faces.
    """
    cols = faces.columns
    for key in ("size_px", "frontalness"):
        if key not in cols:
            raise ShapeError("faces", f"a batch with a {key!r} column (from face_quality)", sorted(cols))
    q = cols["frontalness"].float().clamp(0, 1) * (cols["size_px"].float() / _FULL_SIZE_PX).clamp(0, 1)
    if "sharpness" in cols and len(faces):
        s = cols["sharpness"].float().clamp_min(0)
        q = q * s / (s + s.median().clamp_min(1e-6))
    return q


def identifiable(faces: Faces, settings: MatchSettings, min_frontalness: float = DEFAULT_MIN_FRONTALNESS) -> Tensor:
    """(N,) bool: the detection may serve as identity evidence (size, sharpness, frontalness gates)."""
    cols = faces.columns
    ok = cols["size_px"] >= settings.min_face_px
    ok &= cols["frontalness"] >= min_frontalness
    if "sharpness" in cols:
        ok &= cols["sharpness"] >= settings.min_sharpness
    return ok


def _overlaps(a: tuple[float, float], b: tuple[float, float]) -> bool:
    return a[0] < b[1] and b[0] < a[1]


@dataclass(frozen=True)
class TrackSplit:
    """What :func:`split_tracks` did.

    Attributes:
        track_id: (M,) int64 track ids after the cuts; every new piece has a new id above all existing ones.
        split_from: ``{new id: the tracker's id}`` for those pieces.
        stretch: (M,) int64 index of a detection's stretch within its track: faces set aside as another
            person's end a stretch, and gaps in a track are bridged only within a stretch (the face at the place
            in between was somebody else's).
    """

    track_id: np.ndarray
    split_from: dict[int, int]
    stretch: np.ndarray


def split_tracks(faces: Faces, track_id: np.ndarray, settings: MatchSettings,
                 min_frontalness: float = DEFAULT_MIN_FRONTALNESS) -> TrackSplit:
    """Cut tracks where their face becomes another person's, and set aside single faces of another person
    (rule 0 of the module docstring).

    Only evidence-grade faces that are not blurred decide (identifiable, at least ``MIN_TRACK_FACE_PX`` high, and
    not under both ``SPLIT_SHARPNESS`` x the track's median sharpness and ``SPLIT_MIN_SHARPNESS``: a blurred
    stretch of one person embeds far from their sharp face). ``SPLIT_CONFIRM`` successive faces further than ``SPLIT_FACTOR`` x the threshold from the mean of
    the track's faces since its start or last cut cut the track there; the detections between the last face of
    the earlier person and the first of the later one (profiles, small or blurred frames, which could be either)
    form a piece of their own, which has no evidence and is never named. Fewer far faces in a row (a single
    frame, perhaps held on screen for seconds in a slide show) become pieces of their own, never named, and end
    the stretch they interrupt.

    Args:
        faces: M detections in time order with ``embedding``, ``size_px``, ``frontalness`` (and optionally
            ``sharpness``) columns.
        track_id: (M,) int64 from the tracker, -1 for untracked detections.
        settings: resolved match settings (``threshold`` set).
        min_frontalness: the evidence gate's frontalness.
    """
    track_id = np.asarray(track_id, dtype=np.int64)
    if settings.threshold is None:
        raise ValueError("split_tracks needs resolved settings (threshold set)")
    out, stretch, parent = track_id.copy(), np.zeros(len(track_id), dtype=np.int64), {}
    if not len(track_id) or (track_id < 0).all():
        return TrackSplit(out, parent, stretch)
    cols = faces.columns
    grade = ((identifiable(faces, settings, min_frontalness) & (cols["size_px"].float() >= MIN_TRACK_FACE_PX))
             .cpu().numpy() & (track_id >= 0))
    sharp = cols["sharpness"].float().cpu().numpy() if "sharpness" in cols else np.ones(len(track_id))
    rows = np.flatnonzero(grade)
    emb = cols["embedding"][torch.as_tensor(rows, device=faces.device)].float().cpu().numpy()
    limit = SPLIT_FACTOR * settings.threshold
    next_id = int(track_id.max()) + 1
    for t in np.unique(track_id[rows]).tolist():
        mine = np.flatnonzero(track_id[rows] == t)  # indices into rows / emb, in time order
        mine = mine[sharp[rows[mine]] >= min(SPLIT_MIN_SHARPNESS, SPLIT_SHARPNESS * np.median(sharp[rows[mine]]))]
        cuts: list[tuple[int, int]] = []  # (row of the earlier person's last face, row of the later's first)
        aside: list[int] = []  # rows of single faces of somebody else
        total, count, pending = emb[mine[0]].copy(), 1, []
        for k in range(1, len(mine)):
            e = emb[mine[k]]
            if np.linalg.norm(e - total / count) > limit:
                if pending and np.linalg.norm(e - emb[mine[pending]].mean(axis=0)) > limit:
                    aside += [int(rows[mine[j]]) for j in pending]  # far faces of two other people: set aside
                    pending = []
                pending.append(k)
                if len(pending) == SPLIT_CONFIRM:
                    cuts.append((rows[mine[pending[0] - 1]], rows[mine[pending[0]]]))
                    total, count, pending = emb[mine[pending]].sum(axis=0), len(pending), []
                continue
            aside += [int(rows[mine[j]]) for j in pending]
            total, count, pending = total + e, count + 1, []
        aside += [int(rows[mine[j]]) for j in pending]
        if not cuts and not aside:
            continue
        all_rows = np.flatnonzero(track_id == t)
        for last, first in cuts:
            between = all_rows[(all_rows > last) & (all_rows < first)]
            if between.size:
                out[between] = next_id
                parent[next_id] = t
                next_id += 1
            out[all_rows[all_rows >= first]] = next_id
            parent[next_id] = t
            next_id += 1
        for r in aside:
            out[r] = next_id
            parent[next_id] = t
            next_id += 1
            stretch[all_rows[all_rows > r]] += 1
        log.info("track %d: %d cut(s) where its face became another person's, %d single face(s) set aside", t,
                 len(cuts), len(aside))
    return TrackSplit(out, parent, stretch)


def identify_tracks(
    faces: Faces,
    track_id: Tensor | np.ndarray,
    spans: dict[int, tuple[float, float]],
    index: GalleryIndex,
    settings: MatchSettings,
    *,
    top_k: int = DEFAULT_TOP_K,
    min_evidence: int = DEFAULT_MIN_EVIDENCE,
    min_frontalness: float = DEFAULT_MIN_FRONTALNESS,
    method: str = "mean_embedding",
) -> list[TrackIdentity]:
    """Name each track from its best evidence (see the module docstring for the rules).

    Args:
        faces: M detections over the whole video with columns ``embedding`` (M, D), ``size_px``,
            ``frontalness`` and optionally ``sharpness`` (M,), on one device.
        track_id: (M,) int64 track of each detection, -1 for untracked detections (ignored).
        spans: track id -> (start_s, end_s) time the track covers, for the overlap rule.
        index: registered people (may be empty: every track is unknown).
        settings: threshold, margin, min_face_px, min_sharpness.
        top_k: most evidence detections per track.
        min_evidence: identifiable detections a track needs to be named.
        min_frontalness: frontalness gate for evidence.
        method: ``"mean_embedding"`` (distance of the quality-weighted mean embedding) or
            ``"mean_distance"`` (quality-weighted mean of the evidence's per-person distances).

    Returns:
        One :class:`TrackIdentity` per track id present (ids ≥ 0), sorted by track id; empty if none.
    """
    if top_k < 1 or min_evidence < 1:
        raise ValueError(f"top_k and min_evidence must be >= 1, got {top_k}, {min_evidence}")
    device = faces.device
    tid = torch.as_tensor(np.asarray(track_id) if not isinstance(track_id, Tensor) else track_id,
                          dtype=torch.long).to(device)
    if tid.shape != (len(faces),):
        raise ShapeError("track_id", f"({len(faces)},) like the faces", tuple(tid.shape))
    if "embedding" not in faces.columns:
        raise ShapeError("faces", "a batch with an 'embedding' column", sorted(faces.columns))
    tracked = tid >= 0
    track_ids, inv = torch.unique(tid[tracked], return_inverse=True)  # (T,), (M',)
    n_tracks = int(track_ids.numel())
    if n_tracks == 0:
        return []
    sub = faces[tracked]
    frames = torch.bincount(inv, minlength=n_tracks)
    ok = identifiable(sub, settings, min_frontalness)
    n_ok = torch.bincount(inv[ok], minlength=n_tracks)
    quality = evidence_quality(sub)

    # Rank each track's identifiable detections by quality: sort by quality, then (stably) by track, so
    # rows of one track are contiguous and best first; the rank is the position within the track's run.
    rows = torch.nonzero(ok).squeeze(1)
    order = rows[torch.argsort(quality[rows], descending=True, stable=True)]
    order = order[torch.argsort(inv[order], stable=True)]
    run_start = torch.cumsum(torch.bincount(inv[order], minlength=n_tracks), 0) - torch.bincount(
        inv[order], minlength=n_tracks)
    rank = torch.arange(order.numel(), device=device) - run_start[inv[order]]
    evidence = order[rank < top_k]
    n_evidence = torch.bincount(inv[evidence], minlength=n_tracks)

    n_people = index.size
    names = index.names
    ids_host = track_ids.cpu().tolist()
    frames_h, n_ok_h, n_ev_h = frames.cpu().tolist(), n_ok.cpu().tolist(), n_evidence.cpu().tolist()
    if n_people == 0 or evidence.numel() == 0:
        status = "no_gallery" if n_people == 0 else "too_little_evidence"
        return [TrackIdentity(t, None, -1, float("inf"), 0.0, None, frames_h[i], n_ev_h[i], n_ok_h[i], status)
                for i, t in enumerate(ids_host)]

    # Quality weights; a floor keeps a track whose evidence all scores 0 from dividing by zero.
    w = quality[evidence].float().clamp_min(1e-3)
    den = torch.zeros(n_tracks, device=device).index_add_(0, inv[evidence], w).clamp_min(1e-9)
    emb = sub.columns["embedding"][evidence].float()
    size = sub.columns["size_px"].float()
    if method == "mean_distance":
        dist = person_distances(emb, index.to(device), size[evidence] if settings.resolution_match else None)
        num = torch.zeros(n_tracks, n_people, device=device).index_add_(0, inv[evidence], dist * w[:, None])
        track_dist = num / den[:, None]  # (T, P); rows of tracks without evidence are 0 (never claimed)
    elif method == "mean_embedding":
        mean = torch.zeros(n_tracks, emb.shape[1], device=device).index_add_(0, inv[evidence], emb * w[:, None])
        # The track's face size (quality-weighted like its embedding) picks resolution-matched references.
        track_size = torch.zeros(n_tracks, device=device).index_add_(0, inv[evidence], size[evidence] * w) / den
        track_dist = person_distances(mean / den[:, None], index.to(device),
                                      track_size if settings.resolution_match else None)
    else:
        raise ValueError(f"unknown method {method!r}; choose 'mean_distance' or 'mean_embedding'")
    best = track_dist.topk(min(2, n_people), dim=1, largest=False)
    nearest_d = best.values[:, 0]
    second_d = best.values[:, 1] if n_people > 1 else torch.full_like(nearest_d, float("inf"))
    nearest_p = best.indices[:, 0]
    # Median evidence face height per track (a few dozen tracks: a host loop over sorted rows is enough).
    ev_size = size[evidence].cpu().numpy()
    ev_track = inv[evidence].cpu().numpy()
    median_size = np.zeros(n_tracks)
    for i in range(n_tracks):
        rows_i = ev_size[ev_track == i]
        median_size[i] = float(np.median(rows_i)) if rows_i.size else 0.0
    large = torch.as_tensor(median_size >= MIN_TRACK_FACE_PX, device=device)
    enough = n_ok >= min_evidence
    within = nearest_d <= settings.threshold
    clear = (second_d - nearest_d) >= settings.margin
    claim = enough & large & within & clear

    nd, sd_ok, np_h = nearest_d.cpu().tolist(), clear.cpu().tolist(), nearest_p.cpu().tolist()
    claim_h, enough_h, within_h = claim.cpu().tolist(), enough.cpu().tolist(), within.cpu().tolist()
    large_h = large.cpu().tolist()
    has_ev = (n_evidence > 0).cpu().tolist()

    granted: dict[int, list[tuple[float, float]]] = {}
    named = [False] * n_tracks
    status = [""] * n_tracks
    for i in sorted((i for i in range(n_tracks) if claim_h[i]), key=lambda i: (nd[i], ids_host[i])):
        span = spans.get(ids_host[i], (0.0, 0.0))
        taken = granted.setdefault(np_h[i], [])
        if any(_overlaps(span, s) for s in taken):
            status[i] = "overlap_conflict"
            log.info("track %d: %s already on another track at the same time; left unknown",
                     ids_host[i], names[np_h[i]])
            continue
        taken.append(span)
        named[i] = True
        status[i] = "named"

    out: list[TrackIdentity] = []
    for i, t in enumerate(ids_host):
        if not status[i]:
            status[i] = ("too_little_evidence" if not enough_h[i] else "faces_too_small" if not large_h[i] else
                         "above_threshold" if not within_h[i] else "ambiguous" if not sd_ok[i] else "")
        d = nd[i] if has_ev[i] else float("inf")
        sim = float(settings.similarity(torch.tensor(d)).item()) if np.isfinite(d) else 0.0
        out.append(TrackIdentity(
            track_id=int(t), identity=names[np_h[i]] if named[i] else None,
            person_index=np_h[i] if named[i] else -1, distance=float(d), similarity=sim,
            nearest=names[np_h[i]] if has_ev[i] else None, frames=frames_h[i], evidence_frames=n_ev_h[i],
            identifiable_frames=n_ok_h[i], status=status[i]))
    return out

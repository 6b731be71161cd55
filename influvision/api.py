"""``track()``: sources -> decode -> faces -> match -> logos -> tally -> Report.

The one place that wires the stages together (the CLI calls this too).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import numbers
import os
import threading
from collections import OrderedDict
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from tqdm.auto import tqdm

from ._version import __version__
from .annotate import privacy_search
from .checkpoint import Checkpoint
from .decode.video import sampling_step
from .engine import BatchSize, EngineStats, Photo, PhotoEngine
from .errors import GalleryError
from .faces.detect import smallest_face_searched
from .faces.embed import resolve_device
from .faces.pipeline import FacePipeline
from .files import writable_folder
from .gallery import Gallery, StoredDetector
from .hashing import sha256_file
from .logos.cues import SOURCE_SIFT, cue_names, smallest_mark_searched
from .match import UNKNOWN, GalleryIndex, MatchSettings, assign_identities, person_distances
from .report import Counts, FaceEntry, LogoEntry, MediaEntry, Report, Settings, Skipped
from .sources import MediaItem, collect_media, path_list
from .tally import logo_near_face, near_misses, prominence, region_sharpness, tally_photos, union_length
from .types import Faces
from .video.exposure import DEFAULT_MAX_GAP_S

if TYPE_CHECKING:
    from .logos.detect import LogoDetector
    from .logos.trained import TrainedLogoDetector

log = logging.getLogger(__name__)

DEFAULT_SETTINGS = MatchSettings()  # threshold from the embedder (see docs/accuracy.md)


# Devices on which the logo search (the SIFT matcher, on CPU threads) overlaps the face stages: on a GPU
# the face work leaves the CPU cores mostly idle. On the CPU both would compete for the same cores.
OVERLAP_LOGOS_ON = ("cuda",)


@dataclass
class _Engine:
    pipeline: FacePipeline
    index: GalleryIndex
    settings: MatchSettings
    logo_detector: LogoDetector | None
    brand_names: list[str]
    stats: EngineStats = field(default_factory=EngineStats)  # photo batches: sizes, out-of-memory retries

    @property
    def overlap_logos(self) -> bool:
        """Whether a batch's logo search runs in a thread while its faces are analysed (see
        :data:`OVERLAP_LOGOS_ON`)."""
        return self.logo_detector is not None and self.pipeline.device.type in OVERLAP_LOGOS_ON


def track(
    sources: str | Path | Sequence[str | Path],
    gallery: Gallery | str | Path,
    *,
    device: str = "auto",
    settings: MatchSettings | None = None,
    batch_size: BatchSize = "auto",
    workers: int | None = None,
    sample_fps: float | None = 10.0,
    annotate_dir: str | Path | None = None,
    blur_unknown: bool = False,
    checkpoint: str | Path | None = None,
    progress: bool = True,
    logo_text: bool = False,
    max_side: int = 1600,
) -> Report:
    """Find registered people (and brands) in photos and videos and tally them.

    Args:
        sources: files, folders (recursive), glob patterns, zip/tar archives, or a list of them.
        gallery: a :class:`Gallery` or the path of its file.
        device: ``"auto"`` (CUDA when present), ``"cpu"``, ``"cuda"``...
        settings: matching rules (threshold, margin, minimum face size); defaults are calibrated on
            labelled data (see docs/accuracy.md).
        batch_size: photos analysed together on the device; ``"auto"``: planned from free CUDA memory
            (8 on the CPU), halved whenever CUDA runs out of memory (see docs/performance.md).
        workers: decoding threads; None: half the CPU cores, 2 to 8.
        sample_fps: video frames analysed per second (None or 0: every frame, as ``--sample-fps 0``).
        annotate_dir: write copies of the media with boxes and names here.
        blur_unknown: in annotated copies, blur faces that are not registered people.
        checkpoint: a file recording finished media; a rerun with the same file skips them (resume).
        progress: show a progress bar.
        logo_text: also read brand names with OCR (needs ``influvision[ocr]``; see docs/logos.md: on the
            shared photos it finds nothing the matcher misses and doubles logo time, so it is off by default).
        max_side: photos and video frames longer than this are searched for faces on a copy downscaled to it,
            so the smallest face found grows with the photo (20 px up to this size, 60 px in a 4800 px photo;
            each entry's ``smallest_face_px`` says it). A larger value finds smaller faces in large photos at a
            cost that grows with the pixels searched.
    Returns:
        the :class:`Report`; nothing is dropped silently: every input is analysed, a duplicate or skipped.

    Raises:
        GalleryError: ``gallery`` is a path with no file or an empty one (a misspelt path would otherwise track
            against an empty gallery and name nobody), or the gallery registers nobody and no brand.
        TypeError, ValueError: an argument of the wrong type or out of range (``sources`` that are not paths,
            ``sample_fps``, ``workers``, a threshold far above the calibrated one), before anything is read.
        InfluvisionError: ``annotate_dir`` cannot be created or written to.
    """
    sources = path_list(sources)  # every argument is checked before models load or media are read
    settings = settings or DEFAULT_SETTINGS
    if not isinstance(settings, MatchSettings):
        raise TypeError(f"settings must be a MatchSettings, not {type(settings).__name__}")
    if isinstance(sample_fps, numbers.Real) and not isinstance(sample_fps, bool) and sample_fps == 0:
        sample_fps = None  # every frame, as on the command line
    sampling_step(sample_fps)
    workers = _whole(workers, "workers", 1) if workers is not None else None
    max_side = _whole(max_side, "max_side", 1)
    own_gallery = not isinstance(gallery, Gallery)
    if own_gallery:
        if not isinstance(gallery, str | os.PathLike):
            raise TypeError(f"gallery must be a Gallery or the path of its file, not {type(gallery).__name__}")
        gallery = Path(gallery).expanduser()
        if not gallery.is_file():
            raise GalleryError(f"no gallery file at {gallery}: create one with Gallery(path).add_person(...)")
        if gallery.stat().st_size == 0:
            raise GalleryError(f"{gallery} is an empty file, not a gallery: create one with Gallery(path).add_person(...)")
    dev = resolve_device(device)
    g = Gallery(gallery, device=str(dev)) if own_gallery else gallery
    ckpt: Checkpoint | None = None
    try:
        if not g.people() and not g.brands():
            raise GalleryError(f"{g.path} registers nobody and no brand: nothing could be found; add people or brands "
                               "first (Gallery.add_person, Gallery.add_brand)")
        # Reuse the gallery's loaded models when they sit on the requested device; load them there otherwise.
        loaded = g.loaded_pipeline
        pipeline = loaded if loaded is not None and loaded.device == dev and loaded.detector.max_side == max_side \
            else FacePipeline(g.embedder_name, dev, max_side=max_side)
        g.use_pipeline(pipeline)
        settings = settings.resolved(pipeline.embedder.threshold)
        if annotate_dir is not None:  # made only once the run can start
            annotate_dir = writable_folder(annotate_dir, "annotate_dir")
        gallery_key = g.content_key()
        engine = _Engine(pipeline, g.index(dev), settings, *_logo_detector(g, dev, logo_text))
        if g.content_key() != gallery_key:  # results would be recorded under the wrong gallery's key
            raise GalleryError(f"{g.path} changed while this run was starting (someone was registered or removed "
                               "by another process); run again")
        report_settings = Settings(
            embedder=pipeline.embedder.name, threshold=float(settings.threshold or 0.0), margin=settings.margin,
            min_face_px=settings.min_face_px, min_sharpness=settings.min_sharpness, min_score=settings.min_score,
            resolution_match=settings.resolution_match, device=str(dev), max_gap_s=DEFAULT_MAX_GAP_S,
            precision=pipeline.precision, version=__version__, sample_fps=sample_fps,
            detector={"min_face_size": float(pipeline.detector.min_face_size),
                      "max_side": float(pipeline.detector.max_side),
                      **({"dim_mean": pipeline.detector.dim_mean} if pipeline.detector.dim_mean is not None else {})},
            logo_cues=engine.logo_detector.cues if engine.logo_detector else [],
            logo_work_side=engine.logo_detector.work_side if engine.logo_detector else None,
            logo_trained_min_score=_trained_min_score(engine.logo_detector),
            logo_frames=bool(engine.logo_detector is not None and engine.logo_detector.frames))
        ckpt = Checkpoint(checkpoint, _checkpoint_settings(report_settings, settings), gallery_key) \
            if checkpoint else None
        media: list[MediaEntry] = []
        skipped: list[Skipped] = []
        # The run's own outputs are never its inputs: annotated copies inside a source folder would be counted
        # again on a rerun, and a checkpoint there would be listed as an unknown file.
        own = [annotate_dir] if annotate_dir is not None else []
        if checkpoint:
            own += [f"{os.fspath(Path(checkpoint).expanduser())}{end}" for end in ("", "-wal", "-shm", "-journal")]
        with collect_media(sources, exclude=own) as media_set:
            skipped += [Skipped(path=s.path, error=s.error) for s in media_set.skipped]
            ignored, hidden = media_set.ignored, media_set.hidden
            if hidden:
                log.warning("%d photos, videos or archives inside hidden folders were not analysed (give such a "
                            "folder as a source of its own to include it)", hidden)
            photos = [i for i in media_set.items if i.kind == "photo"]
            videos = [i for i in media_set.items if i.kind == "video"]
            bar = tqdm(total=len(photos) + len(videos), unit="media", disable=not progress, desc="influvision")
            media += _track_photos(photos, engine, batch_size, workers, ckpt, bar, annotate_dir, blur_unknown)
            media += _track_videos(videos, engine, sample_fps, ckpt, bar, annotate_dir, blur_unknown, progress)
            bar.close()
        # Entries with an error and analysed frames are partly analysed (a video that stops early, a photo's
        # first page), the rest are skipped.
        failed = [m for m in media if m.error and not m.frames_analysed]
        skipped += [Skipped(path=m.path, error=m.error or "") for m in failed]
        media = [m for m in media if m not in failed]
        # A file reached again under another name repeats what became of it under its first name.
        unusable = {s.path for s in skipped}
        for item, first in media_set.repeats:
            if first in unusable:
                skipped.append(Skipped(path=item.path, error=f"{item.path}: the same file as {first}, which was "
                                                            "skipped"))
            else:
                media.append(MediaEntry(path=item.path, kind=item.kind, duplicate_of=first))
        inputs_seen = len(media) + len(skipped)
        report = _build_report(media, skipped, inputs_seen, report_settings, annotated=annotate_dir is not None)
        report.counts.batch_sizes, report.counts.oom_retries = engine.stats.batch_sizes, engine.stats.oom_retries
        report.counts.ignored_files = ignored
        report.counts.hidden_files = hidden
        return report
    finally:
        if ckpt is not None:
            ckpt.close()
        if own_gallery:
            g.close()


def _checkpoint_settings(report_settings: Settings, settings: MatchSettings) -> dict[str, str]:
    """Per media kind, everything its results depend on: a recorded result is reused only when all of it is
    the same (video sampling does not concern photos)."""
    rules = json.dumps(dataclasses.asdict(settings), sort_keys=True)
    return {"photo": report_settings.model_dump_json(exclude={"sample_fps", "max_gap_s"}) + rules,
            "video": report_settings.model_dump_json() + rules}


def _annotation_missing(m: MediaEntry) -> bool:
    """Whether an analysed photo or video lacks its annotated copy (a video's is its MP4, not the timeline)."""
    written = m.annotated or []
    if m.kind == "video":
        return bool(m.frames_analysed) and not any(p.endswith(".mp4") for p in written)
    return not written


def _whole(value: object, name: str, least: int) -> int:
    """``value`` as an int (numpy integers and whole floats welcome), at least ``least``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value) \
            or value != int(value) or value < least:
        raise ValueError(f"{name} must be a whole number >= {least}, got {value!r}")
    return int(value)


# Logo detectors built by track(), by what they depend on (see _logo_detector); building one takes seconds
# (every reference's SIFT views and outline rasters), so a script calling track() once per photo pays it once.
_LOGO_DETECTORS: OrderedDict[tuple, LogoDetector] = OrderedDict()
_LOGO_DETECTORS_KEPT = 4
_LOGO_DETECTORS_LOCK = threading.Lock()


def _logo_detector(g: Gallery, dev: torch.device, text: bool) -> tuple[LogoDetector | None, list[str]]:
    """The gallery's brands as one detector: the SIFT matcher and the silhouette cue, the text cue when asked
    for, and the stored trained model when ``influvision logos train`` measured it better than the matcher.

    Detectors are reused across track() calls of one thread when the brand references (their bytes), the
    stored trained model, the device and ``text`` are the same: the cues' state is read-only, but the OCR and
    YOLO models are not known to be safe across threads, so each thread gets its own."""
    images = g.brand_images()
    if not images:
        return None, []
    stored = g.load_detector()  # None when absent or stale (it warns)
    key = (tuple((name, hashlib.sha256(data).hexdigest()) for name, _, data in images), str(dev), bool(text),
           None if stored is None else (stored.sha256, stored.use, stored.metrics.get("min_score")),
           threading.get_ident())
    with _LOGO_DETECTORS_LOCK:
        detector = _LOGO_DETECTORS.get(key)
        if detector is not None:
            _LOGO_DETECTORS.move_to_end(key)
            return detector, detector.brands
    from .logos.detect import LogoDetector

    detector = LogoDetector(g.brand_references(), device=str(dev), text=text,
                            trained=_trained_logo_detector(stored, dev))
    with _LOGO_DETECTORS_LOCK:
        _LOGO_DETECTORS[key] = detector
        while len(_LOGO_DETECTORS) > _LOGO_DETECTORS_KEPT:
            _LOGO_DETECTORS.popitem(last=False)
    return detector, detector.brands


def _trained_min_score(detector: LogoDetector | None) -> float | None:
    return None if detector is None or detector.trained is None else float(detector.trained.min_score)


def _trained_logo_detector(stored: StoredDetector | None, dev: torch.device) -> TrainedLogoDetector | None:
    """The gallery's stored trained detector (``Gallery.load_detector()``), loaded when it is to be used."""
    if stored is None:
        return None
    if not stored.use:
        log.info("the stored logo detector measured worse than the matcher when trained: not used")
        return None
    from .logos.trained import DEFAULT_MIN_SCORE, DetectorBlob, TrainedDetectorError, TrainedLogoDetector

    try:
        return TrainedLogoDetector(DetectorBlob(stored.data, stored.sha256), device=dev,
                                   min_score=float(stored.metrics.get("min_score", DEFAULT_MIN_SCORE)))
    except (TrainedDetectorError, TypeError, ValueError) as e:
        log.warning("stored logo detector not used: %s", e)
        return None


def _track_photos(items: list[MediaItem], engine: _Engine, batch_size: BatchSize, workers: int | None,
                  ckpt: Checkpoint | None, bar: tqdm, annotate_dir: str | Path | None,
                  blur_unknown: bool) -> list[MediaEntry]:
    """Photos through the streaming engine (influvision/engine.py); its batch statistics go to ``engine``."""
    def analyse(photos: list[Photo]) -> list[MediaEntry]:
        return analyse_photos([p.image.pixels for p in photos], [p.item.path for p in photos], engine,
                              device_images=[p.on_device for p in photos])

    pipeline = engine.pipeline
    photo_engine = PhotoEngine(analyse, pipeline.device, batch_size=batch_size, workers=workers,
                               max_side=pipeline.detector.max_side)  # checks batch_size
    if not items:
        return []
    engine.stats = photo_engine.stats
    faces_in = privacy_search(pipeline.detector) if blur_unknown and annotate_dir is not None else None
    return photo_engine.run(items, checkpoint=ckpt, annotate_dir=annotate_dir, blur_unknown=blur_unknown,
                            faces_in=faces_in, progress=bar.update)


def analyse_photos(images: list[np.ndarray], paths: list[str], engine: _Engine,
                   device_images: Sequence[torch.Tensor | None] | None = None) -> list[MediaEntry]:
    """Faces (and logos) in a batch of decoded photos -> one media entry per photo.

    Args:
        images: (H, W, 3) uint8 RGB host pixels.
        paths: the photos' names.
        engine: models, gallery index and settings.
        device_images: the same pixels already on the device (GPU-decoded JPEGs), None where not; the
            face pipeline then skips their host-to-device copy.
    """
    on_device = device_images or [None] * len(images)
    with ThreadPoolExecutor(1) as pool:
        pending = pool.submit(engine.logo_detector.detect, images) if engine.overlap_logos else None
        faces = engine.pipeline([d if d is not None else im for im, d in zip(images, on_device, strict=True)])
        faces = identify(faces, engine.index, engine.settings)
        host = faces.to("cpu")  # the one host copy per batch
        entries = []
        for i, (pixels, path) in enumerate(zip(images, paths, strict=True)):
            h, w = pixels.shape[:2]
            entries.append(MediaEntry(path=path, kind="photo", width=w, height=h,
                                      faces=face_entries(host.for_image(i), engine.index, w, h)))
        logos = pending.result() if pending is not None else None
    if engine.logo_detector is not None:
        if logos is None:
            logos = engine.logo_detector.detect(images)
        for i, entry in enumerate(entries):
            li = logos.for_image(i)
            sources = li.columns["source"].tolist() if "source" in li.columns else [SOURCE_SIFT] * len(li)
            marks = li.columns["mark_boxes"].tolist() if "mark_boxes" in li.columns else li.boxes.tolist()
            for box, score, b, src, mark in zip(li.boxes.tolist(), li.scores.tolist(), li.brand.tolist(), sources,
                                                marks, strict=True):
                share, cen = prominence(box, entry.width, entry.height)
                near = sorted({f.identity for f in entry.faces if f.identity and logo_near_face(box, f.box)})
                entry.logos.append(LogoEntry(brand=engine.brand_names[b], box=[round(v, 1) for v in box],
                                             score=round(score, 4), area_share=share, centrality=cen,
                                             sharpness=region_sharpness(images[i], box), near=near,
                                             cues=cue_names(src),
                                             mark_box=[round(v, 1) for v in mark] if mark != box else None))
    return entries


def identify(faces: Faces, index: GalleryIndex, settings: MatchSettings) -> Faces:
    """Add ``identity`` (person index or -1), ``distance``, ``nearest`` and ``eligible`` columns."""
    eligible = (faces.columns["size_px"] >= settings.min_face_px) & \
               (faces.columns["sharpness"] >= settings.min_sharpness) & (faces.scores >= settings.min_score)
    dist = person_distances(faces.columns["embedding"], index,
                            faces.columns["size_px"] if settings.resolution_match else None)
    identity, distance = assign_identities(dist, faces.image_index, eligible, settings)
    nearest = dist.argmin(dim=1) if index.size else torch.full_like(identity, UNKNOWN)
    return faces.with_columns(identity=identity, distance=distance, nearest=nearest, eligible=eligible)


def face_entries(faces: Faces, index: GalleryIndex, width: int, height: int) -> list[FaceEntry]:
    """Host-side conversion of one image's identified faces to report entries."""
    c = faces.columns
    out = []
    for k in range(len(faces)):
        box = [round(float(v), 1) for v in faces.boxes[k]]
        ident = int(c["identity"][k])
        dist = float(c["distance"][k])
        share, cen = prominence(box, width, height)
        nearest = int(c["nearest"][k])
        status = "named" if ident >= 0 else ("unknown" if bool(c["eligible"][k]) else "unidentifiable")
        out.append(FaceEntry(
            identity=index.names[ident] if ident >= 0 else None, box=box, score=round(float(faces.scores[k]), 4),
            similarity=round(max(0.0, min(1.0, 1.0 - dist)), 4) if np.isfinite(dist) else 0.0,
            distance=round(dist, 4) if np.isfinite(dist) else None,
            nearest=index.names[nearest] if nearest >= 0 and index.size else None,
            size_px=round(float(c["size_px"][k]), 1), sharpness=round(float(c["sharpness"][k]), 4),
            frontalness=round(float(c["frontalness"][k]), 3), status=status, area_share=share, centrality=cen))
    return out


def _track_videos(items: list[MediaItem], engine: _Engine, sample_fps: float | None, ckpt: Checkpoint | None,
                  bar: tqdm, annotate_dir: str | Path | None, blur_unknown: bool,
                  progress: bool = False) -> list[MediaEntry]:
    from .video.duplicates import CopyFinder

    out = []
    first: dict[str, str] = {}  # content hash -> the first video with it
    copies = CopyFinder()  # analysed videos, for re-encoded copies
    for item in items:
        sha = sha256_file(item.local_path)
        original = first.get(sha) or copies.original_of(item.local_path)
        if original is not None:  # a copy of an analysed video: listed, its seconds not counted again
            out.append(MediaEntry(path=item.path, kind="video", duplicate_of=original))
            bar.update(1)
            continue
        done = ckpt.get(item, sha) if ckpt is not None else None
        if done is not None:
            done = _resumed_video(done, annotate_dir, blur_unknown)
        if done is None:
            from .video.report import analyse_video_entry

            done = analyse_video_entry(item, engine.pipeline, engine.index, engine.settings, sample_fps,
                                       logo_detector=engine.logo_detector, brand_names=engine.brand_names,
                                       annotate_dir=annotate_dir, blur_unknown=blur_unknown, progress=progress,
                                       resume=ckpt.progress(item, sha) if ckpt is not None else None)
            # A video nothing of which was analysed (unreadable, or out of device memory) is not recorded: the
            # next run tries it again, as it does a photo that failed.
            if ckpt is not None and done.frames_analysed:
                ckpt.put(item, done, sha)
        if done.frames_analysed:  # a copy of a video that could not be read is skipped in its own right
            first[sha] = item.path
            copies.add(item.path, item.local_path, done.duration_s or 0.0)
        out.append(done)
        bar.update(1)
    return out


def _resumed_video(done: MediaEntry, annotate_dir: str | Path | None, blur_unknown: bool) -> MediaEntry | None:
    """A video's recorded entry, or None when it must be analysed again to write the annotated copy asked for.

    Drawing a video needs every analysed frame's boxes, which the checkpoint does not keep. Its earlier copy is
    kept when it is in ``annotate_dir``; with ``blur_unknown`` it is made again, as nothing says the earlier
    one was blurred.
    """
    if annotate_dir is None:
        done.annotated = None
        return done
    folder = Path(annotate_dir).resolve()
    written = [Path(p) for p in done.annotated or []]
    if blur_unknown or not written or not all(p.is_file() and p.resolve().parent == folder for p in written):
        return None
    return done


def _build_report(media: list[MediaEntry], skipped: list[Skipped], inputs_seen: int,
                  settings: Settings, *, annotated: bool = False) -> Report:
    people, brands, together, co = tally_photos(media)
    from .video.report import tally_videos

    tally_videos(media, people, brands, together, co)
    for t in [*people.values(), *brands.values()]:
        t.exposure_seconds = round(sum(union_length(iv) for iv in t.intervals.values()), 3)
    for m in media:
        if m.width and m.height and not m.duplicate_of and "max_side" in settings.detector:
            m.smallest_face_px = round(smallest_face_searched(
                m.width, m.height, min_face_size=settings.detector["min_face_size"],
                max_side=int(settings.detector["max_side"])), 1)
        if m.width and m.height and not m.duplicate_of and settings.logo_work_side:
            m.smallest_logo_px = round(smallest_mark_searched(m.width, m.height, work_side=settings.logo_work_side), 1)
    faces = [f for m in media for f in m.faces]
    counts = Counts(
        inputs_seen=inputs_seen, analysed=sum(1 for m in media if not m.duplicate_of),
        partly_analysed=sum(1 for m in media if m.error),
        skipped=len(skipped), duplicates=sum(1 for m in media if m.duplicate_of), faces=len(faces),
        named_faces=sum(f.status == "named" for f in faces), unknown_faces=sum(f.status == "unknown" for f in faces),
        unidentifiable_faces=sum(f.status == "unidentifiable" for f in faces),
        logos=sum(len(m.logos) for m in media),
        face_tracks=sum(len(m.tracks or []) for m in media),
        named_tracks=sum(1 for m in media for t in m.tracks or [] if t.identity),
        logo_tracks=sum(len(m.logo_tracks or []) for m in media),
        counted_logo_tracks=sum(1 for m in media for t in m.logo_tracks or [] if t.counted),
        annotation_failures=sum(1 for m in media if annotated and not m.duplicate_of and _annotation_missing(m)))
    return Report(people=dict(sorted(people.items())), brands=dict(sorted(brands.items())), together=together,
                  co_appearance=co, near_misses=near_misses(media, settings.threshold), media=media,
                  skipped=skipped, counts=counts, settings=settings)

"""The report a user gets from :func:`influvision.track`: pydantic models, JSON, CSV and a summary table.

Every count is traceable: a person's ``photos`` are the media entries where a face box carries their name,
and ``intervals`` come from the video tracks listed in that video's media entry.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field

from .files import write_text_atomically, written_atomically
from .video.exposure import total_seconds

Box = list[float]


class FaceEntry(BaseModel):
    identity: str | None = Field(description="Registered person's name, or null when not identified")
    box: Box = Field(description="x1, y1, x2, y2 in the photo's pixels (EXIF orientation applied)")
    score: float = Field(description="Face detector confidence, 0-1")
    similarity: float = Field(description="1 - distance to the named (or, if unknown, nearest) person; 0-1")
    distance: float | None = Field(None, description="Euclidean embedding distance behind `similarity`")
    nearest: str | None = Field(None, description="Closest registered person even when not named (for audit)")
    size_px: float = Field(0.0, description="Face height in pixels")
    sharpness: float = Field(0.0, description="Focus measure of the aligned face (higher is sharper)")
    frontalness: float = Field(0.0, description="1 = frontal, 0 = profile, from the landmarks")
    status: Literal["named", "unknown", "unidentifiable"] = Field(
        "unknown", description=("unidentifiable: under min_face_px or min_score (or blurrier than min_sharpness, "
                                "when set); never named"))
    area_share: float = Field(0.0, description="Face box area / photo area")
    centrality: float = Field(0.0, description="1 at the photo centre, 0 at a corner")


class LogoEntry(BaseModel):
    brand: str
    box: Box
    score: float
    area_share: float = 0.0
    centrality: float = 0.0
    sharpness: float | None = Field(None, description="var(Laplacian) / max(var(grey), 25) of the box's pixels "
                                    "(the face chips' measure) times the box's longer side / 256: low means blurred or "
                                    "upscaled")
    near: list[str] = Field(default_factory=list, description="Named people this logo is on or near")
    cues: list[str] = Field(default_factory=list, description="Logo cues that found it: sift, silhouette, text, trained")
    mark_box: Box | None = Field(None, description="The matched mark's own box where `box` is the printed frame "
                                 "around it (a badge, seal or ring: docs/logos.md)")


class TrackEntry(BaseModel):
    track_id: int
    identity: str | None
    similarity: float
    intervals: list[list[float]]
    frames: int
    distance: float | None = None
    nearest: str | None = Field(None, description="Closest registered person even when not named (for audit)")
    status: str = Field("", description="Why the track was named or left unknown")
    evidence_frames: int = Field(0, description="Detections the identity decision used")
    split_from: int | None = Field(None, description="The tracker's track this one was cut from where its face "
                                   "became another person's (docs/video.md)")


class LogoTrackEntry(BaseModel):
    track_id: int
    brand: str
    intervals: list[list[float]]
    frames: int = Field(description="Searched frames the logo was found in")
    best_score: float
    mean_score: float
    mean_area_share: float
    counted: bool = Field(description="Whether the track counts towards the brand's seconds")
    status: str = Field("", description="Why it counts or not")


class NearMiss(BaseModel):
    """A photo face or video track counted for nobody whose nearest registered person is within
    ``NEAR_MISS_BAND`` over the threshold (or within it, but refused by another rule): for a person to look at
    before invoicing. Never a count: strangers and lookalikes land here too."""

    person: str = Field(description="The registered person it came close to")
    path: str
    kind: Literal["face", "track"]
    box: Box | None = Field(None, description="Photo faces: the face box")
    track_id: int | None = Field(None, description="Video tracks: the track in the media entry's `tracks`")
    distance: float
    over_threshold: float = Field(description="distance - threshold (negative: refused by another rule)")
    status: str = Field(description="Why it was not named: the face's or track's status")
    seconds: float = Field(0.0, description="Video tracks: seconds of the track when the person was not already "
                           "counted on screen")
    intervals: list[list[float]] = Field(default_factory=list, description=(
        "Video tracks: those seconds as [start_s, end_s) pieces"))


class PairTally(BaseModel):
    a: str
    b: str
    photo_count: int = 0
    photos: list[str] = Field(default_factory=list)
    seconds_together: float = 0.0
    with_count: int = Field(0, description="Photos where the logo is on or near the person (brand pairs)")
    with_seconds: float = Field(0.0, description="Video seconds both on screen with the logo on or near the "
                                "person's face (brand pairs)")


class VideoPresence(BaseModel):
    """One person's (or brand's) presence in one video."""

    intervals: list[list[float]] = Field(description="[start_s, end_s) on screen, short gaps bridged")
    exposure_seconds: float = Field(description="Length of the union of `intervals`")
    alone_seconds: float = Field(0.0, description="Seconds with no other registered person on screen")
    mean_area_share: float = Field(0.0, description="Mean share of the frame area covered by the face")


class MediaEntry(BaseModel):
    path: str
    kind: Literal["photo", "video"]
    width: int = 0
    height: int = 0
    faces: list[FaceEntry] = Field(default_factory=list)
    logos: list[LogoEntry] = Field(default_factory=list)
    error: str | None = None
    duplicate_of: str | None = Field(None, description=(
        "The photo this one repeats, which is counted instead: the first of the group, or a later copy with at "
        "least twice its pixels"))
    smallest_face_px: float | None = Field(None, description=(
        "Smallest face side (this media's pixels) the detector is set to find; smaller faces are found only by "
        "chance. Photos and frames longer than the detector's max_side are searched on a copy of that size, "
        "which raises it above the detector's min_face_size"))
    smallest_logo_px: float | None = Field(None, description=(
        "Where brands were searched: the smallest mark side (this media's pixels) the logo matcher finds other than "
        "by chance. Photos and frames are searched on a 1000 px copy, so it grows with photos longer than that"))
    duration_s: float | None = None
    fps: float | None = None
    frames_analysed: int | None = None
    sample_fps: float | None = None
    time_resolution_s: float | None = Field(None, description="Time one analysed frame stands for")
    offset_s: float | None = Field(None, description=(
        "Video times are measured from the video track's first frame; a player's clock reads them plus this "
        "(the track starts this late in the file, e.g. after an audio lead-in; 0 for most files)"))
    max_gap_s: float | None = None
    tracks: list[TrackEntry] | None = None
    people: dict[str, VideoPresence] | None = Field(None, description="Per person in this video")
    brands: dict[str, VideoPresence] | None = Field(None, description="Per brand in this video")
    logo_sample_fps: float | None = Field(None, description="Frames per second searched for logos")
    logo_tracks: list[LogoTrackEntry] | None = Field(None, description="Brand detections linked over frames")
    with_brands: list[PairTally] | None = Field(None, description="Person x brand seconds on screen together")
    together: list[PairTally] | None = Field(None, description="Seconds two people are on screen together")
    cuts_s: list[float] | None = None
    timeline: list[tuple[int, str, float]] | None = Field(
        None, description="Per whole second: (second, person, fraction of that second on screen)")
    annotated: list[str] | None = Field(
        None, description="Annotated copies written: the photo, or the video and its timeline")


class SubjectTally(BaseModel):
    photo_count: int = Field(0, ge=0, description="Distinct photos (duplicates excluded) where identified")
    photos: list[str] = Field(default_factory=list)
    exposure_seconds: float = Field(0.0, ge=0, description="Union of on-screen intervals over all videos, seconds")
    intervals: dict[str, list[list[float]]] = Field(default_factory=dict,
                                                    description="Per video: [start_s, end_s) on screen")
    mean_similarity: float | None = None
    best_similarity: float | None = None
    mean_area_share: float | None = Field(None, description="Mean share of the photo area per appearance")
    mean_centrality: float | None = Field(None, description="Brands: mean centrality per appearance (1 centre, 0 corner)")
    mean_sharpness: float | None = Field(None, description="Brands: mean sharpness per appearance")
    alone_seconds: float = Field(0.0, description="Seconds on screen with no other registered person")


class Counts(BaseModel):
    inputs_seen: int = 0
    ignored_files: int = Field(0, description=(
        "Files in folders and archives passed over as clearly not media (sidecars, documents); not inputs"))
    hidden_files: int = Field(0, description=(
        "Photos, videos and archives inside hidden folders (name starting with '.': thumbnails, trash) of the "
        "folders and archives given: not analysed and not inputs; give such a folder as a source to include it"))
    analysed: int = 0
    partly_analysed: int = Field(0, description=(
        "Of the analysed: videos that stop early (truncated or damaged), counted up to where they stop, and "
        "photos whose file holds more pages or animation frames than the first, which alone was analysed; the "
        "media entry's `error` says which"))
    skipped: int = 0
    duplicates: int = 0
    faces: int = 0
    named_faces: int = 0
    unknown_faces: int = Field(0, description="Faces compared but not close enough to anyone registered")
    unidentifiable_faces: int = Field(0, description=(
        "Faces under min_face_px or min_score (or blurrier than min_sharpness, when set)"))
    face_tracks: int = Field(0, description="Faces followed through videos (one per track, see video.md)")
    named_tracks: int = Field(0, description="Of the face tracks: named after a registered person")
    logos: int = Field(0, description="Logo boxes in photos (logos in videos are in logo_tracks)")
    logo_tracks: int = Field(0, description="Logos followed through videos (one per track, see video.md)")
    counted_logo_tracks: int = Field(0, description="Of the logo tracks: confirmed, counted in brand seconds")
    batch_sizes: list[int] = Field(default_factory=list, description=(
        "Photos per device batch: the starting size, then each size after the device ran out of memory"))
    oom_retries: int = Field(0, description="Photo batches analysed again in halves after running out of memory")
    annotation_failures: int = Field(0, description=(
        "Analysed media whose annotated copy (asked for with annotate_dir) could not be written; the log says why"))


def _media_and_span(limits: list[float]) -> tuple[str, str]:
    """"N photos or videos" and "a" or "a-b" px for the summary's small-faces and small-logos lines."""
    media = "1 photo or video" if len(limits) == 1 else f"{len(limits)} photos or videos"
    lo, hi = min(limits), max(limits)
    return media, f"{lo:.0f}" if lo == hi else f"{lo:.0f}-{hi:.0f}"


# A spreadsheet runs a cell starting with one of these as a formula (a file named "=HYPERLINK(...).jpg").
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _cell(value: object) -> object:
    """A CSV cell that a spreadsheet shows as text: a string that would start a formula gets a leading '."""
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return value


def _printable(text: str) -> str:
    """``text`` with control and other invisible characters escaped: a file name cannot drive the terminal
    or forge a line of the summary."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


class Skipped(BaseModel):
    path: str
    error: str


class Settings(BaseModel):
    embedder: str
    threshold: float
    margin: float
    min_face_px: float
    min_sharpness: float = Field(0.0, description="Sharpness a face needs to be named")
    min_score: float = Field(0.0, description="Detector score a face in a photo needs to be named")
    resolution_match: bool = Field(False, description="Small faces compared with resolution-matched references")
    device: str
    precision: str = Field("fp32", description="Embedder arithmetic for faces in media: fp32 or bf16")
    logo_cues: list[str] = Field(default_factory=list, description="Logo cues used: sift, silhouette, text, trained")
    logo_work_side: int | None = Field(None, description="Longer side of the copy the logo matcher searches (px)")
    logo_trained_min_score: float | None = Field(
        None, description="Score a trained-detector box needs (calibrated on labelled photos when it was trained)")
    logo_frames: bool = Field(False, description="Logo boxes widened to the printed frame around the mark (badge, "
                              "seal, ring) where one was found; each logo's mark_box keeps the mark's own")
    version: str
    sample_fps: float | None = None
    max_gap_s: float | None = None
    detector: dict[str, float] = Field(default_factory=dict, description=(
        "Face detector settings: min_face_size, max_side and dim_mean (media darker than this mean grey level are "
        "also searched brightened)"))


class Report(BaseModel):
    people: dict[str, SubjectTally] = Field(default_factory=dict)
    brands: dict[str, SubjectTally] = Field(default_factory=dict)
    together: list[PairTally] = Field(default_factory=list, description="People photographed together")
    co_appearance: list[PairTally] = Field(default_factory=list, description="Person x brand")
    near_misses: list[NearMiss] = Field(default_factory=list, description=(
        "Faces and tracks counted for nobody that came close to a registered person, for review (not counts)"))
    media: list[MediaEntry] = Field(default_factory=list)
    skipped: list[Skipped] = Field(default_factory=list)
    counts: Counts = Field(default_factory=Counts)
    settings: Settings

    def to_json(self, path: str | Path | None = None, *, indent: int = 2) -> str:
        text = self.model_dump_json(indent=indent)
        if path is not None:
            write_text_atomically(path, text)
        return text

    @classmethod
    def from_json(cls, text_or_path: str | Path) -> Report:
        """A report from its JSON text or the path of a file holding it.

        Raises:
            FileNotFoundError: a ``Path``, or a string that is not JSON text, naming no file.
        """
        is_text = isinstance(text_or_path, str) and text_or_path.lstrip().startswith("{")
        if is_text:
            return cls.model_validate(json.loads(text_or_path))
        p = Path(text_or_path)
        if not p.is_file():
            raise FileNotFoundError(f"no report file at {text_or_path}")
        return cls.model_validate(json.loads(p.read_text()))

    def to_csv(self, directory: str | Path) -> list[Path]:
        """Write ``people.csv``, ``brands.csv``, ``together.csv``, ``co_appearance.csv``, ``near_misses.csv``,
        ``faces.csv`` (one row per face in photos), ``logos.csv``, ``logo_tracks.csv``, ``tracks.csv``,
        ``intervals.csv``, ``timeline.csv`` (per video second), ``skipped.csv``, ``partly_analysed.csv``."""
        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        tables: dict[str, tuple[list[str], list[list[object]]]] = {}
        common = ["name", "photo_count", "exposure_seconds", "alone_seconds", "mean_similarity", "best_similarity",
                  "mean_area_share"]

        def row(k: str, t: SubjectTally) -> list[object]:
            return [k, t.photo_count, round(t.exposure_seconds, 3), round(t.alone_seconds, 3), t.mean_similarity,
                    t.best_similarity, t.mean_area_share]

        tables["people"] = ([*common, "photos"], [[*row(k, t), ";".join(t.photos)] for k, t in self.people.items()])
        tables["brands"] = ([*common, "mean_centrality", "mean_sharpness", "photos"],
                            [[*row(k, t), t.mean_centrality, t.mean_sharpness, ";".join(t.photos)]
                             for k, t in self.brands.items()])
        for name, pairs in (("together", self.together), ("co_appearance", self.co_appearance)):
            tables[name] = (["a", "b", "photo_count", "with_count", "seconds_together", "photos", "with_seconds"],
                            [[p.a, p.b, p.photo_count, p.with_count, round(p.seconds_together, 3),
                              ";".join(p.photos), round(p.with_seconds, 3)] for p in pairs])
        tables["near_misses"] = (["person", "path", "kind", "x1", "y1", "x2", "y2", "track_id", "distance",
                                  "over_threshold", "status", "seconds", "intervals"],
                                 [[n.person, n.path, n.kind, *(n.box or ["", "", "", ""]),
                                   "" if n.track_id is None else n.track_id, n.distance, n.over_threshold, n.status,
                                   n.seconds, json.dumps(n.intervals) if n.kind == "track" else ""]
                                  for n in self.near_misses])
        tables["faces"] = (["path", "identity", "status", "similarity", "nearest", "score", "x1", "y1", "x2", "y2",
                            "size_px", "sharpness", "frontalness", "area_share", "centrality", "distance"],
                           [[m.path, f.identity or "", f.status, f.similarity, f.nearest or "", f.score, *f.box,
                             f.size_px, f.sharpness, f.frontalness, f.area_share, f.centrality,
                             "" if f.distance is None else f.distance]
                            for m in self.media for f in m.faces])
        tables["logos"] = (["path", "brand", "score", "x1", "y1", "x2", "y2", "area_share", "centrality", "sharpness",
                            "near", "cues", "mark_x1", "mark_y1", "mark_x2", "mark_y2"],
                           [[m.path, lg.brand, lg.score, *lg.box, lg.area_share, lg.centrality,
                             "" if lg.sharpness is None else lg.sharpness, ";".join(lg.near), ";".join(lg.cues),
                             *(lg.mark_box or ["", "", "", ""])]
                            for m in self.media for lg in m.logos])
        tables["logo_tracks"] = (["path", "track_id", "brand", "counted", "frames", "best_score", "mean_score",
                                  "mean_area_share", "intervals", "status"],
                                 [[m.path, t.track_id, t.brand, t.counted, t.frames, t.best_score, t.mean_score,
                                   t.mean_area_share, json.dumps(t.intervals), t.status]
                                  for m in self.media for t in (m.logo_tracks or [])])
        tables["tracks"] = (["path", "track_id", "identity", "similarity", "frames", "intervals", "status",
                             "nearest", "distance", "evidence_frames", "split_from"],
                            [[m.path, t.track_id, t.identity or "", t.similarity, t.frames, json.dumps(t.intervals),
                              t.status, t.nearest or "", "" if t.distance is None else t.distance,
                              t.evidence_frames, "" if t.split_from is None else t.split_from]
                             for m in self.media for t in (m.tracks or [])])
        tables["intervals"] = (["kind", "name", "video", "start_s", "end_s"],
                               [[kind, name, video, s, e]
                                for kind, group in (("person", self.people), ("brand", self.brands))
                                for name, t in group.items() for video, ivs in t.intervals.items() for s, e in ivs])
        tables["timeline"] = (["video", "second", "person", "fraction"],
                              [[m.path, sec, person, frac] for m in self.media for sec, person, frac in (m.timeline or [])])
        tables["skipped"] = (["path", "error"], [[s.path, s.error] for s in self.skipped])
        tables["partly_analysed"] = (["path", "error"], [[m.path, m.error] for m in self.media if m.error])
        written = []
        for name, (header, rows) in tables.items():
            path = out / f"{name}.csv"
            with written_atomically(path) as tmp, tmp.open("w", newline="", encoding="utf-8") as fh:
                w = csv.writer(fh)
                w.writerow(header)
                w.writerows([[_cell(v) for v in row] for row in rows])
            written.append(path)
        return written

    def summary(self) -> str:
        """A readable table: per person and brand, photos and seconds; then what was skipped."""
        c = self.counts
        lines = [f"influvision report: {c.analysed} analysed of {c.inputs_seen} inputs "
                 f"({c.skipped} skipped, {c.duplicates} duplicates"
                 + (f", {c.partly_analysed} partly analysed" if c.partly_analysed else "")
                 + (f"; non-media files ignored: {c.ignored_files}" if c.ignored_files else "")
                 + (f"; media in hidden folders not analysed: {c.hidden_files}" if c.hidden_files else "")
                 + f"); faces: {c.faces} "
                 f"({c.named_faces} named, {c.unknown_faces} unknown, "
                 f"{c.unidentifiable_faces} too small or unsure to compare)"
                 + (f"; video face tracks: {c.face_tracks} ({c.named_tracks} named)" if c.face_tracks else "")
                 + (f"; video logo tracks: {c.logo_tracks} ({c.counted_logo_tracks} counted)" if c.logo_tracks
                    else ""),
                 f"settings: {self.settings.embedder}, distance <= {self.settings.threshold}, "
                 f"margin {self.settings.margin}, device {self.settings.device}"]
        coarse = [m.smallest_face_px for m in self.media
                  if m.smallest_face_px is not None and m.smallest_face_px > self.settings.min_face_px]
        if coarse:
            side = self.settings.detector.get("max_side")
            media, span = _media_and_span(coarse)
            lines.append(f"small faces may be missed: {media} longer than {side:.0f} px searched on a {side:.0f} px "
                         f"copy, where faces under {span} px are found only by chance (a larger max_side finds them, "
                         "slower)")
        side = self.settings.logo_work_side
        small_logos = [m.smallest_logo_px for m in self.media if m.smallest_logo_px is not None and side
                       and max(m.width or 0, m.height or 0) > side]
        if small_logos:
            media, span = _media_and_span(small_logos)
            lines.append(f"small logos may be missed: {media} longer than {side} px searched for logos on a {side} px "
                         f"copy, where marks under about {span} px are found only by chance")
        if c.annotation_failures:
            lines.append(f"annotated copies not written: {c.annotation_failures} (a full disk or a folder gone? the log "
                         "names each file and the problem)")
        lines.append("")
        width = max([len(n) for n in [*self.people, *self.brands]] + [12])
        lines.append(f"{'name':<{width}}  {'photos':>6}  {'seconds':>8}  {'alone s':>8}  {'mean sim':>8}")
        for kind, group in (("person", self.people), ("brand", self.brands)):
            for name, t in sorted(group.items(), key=lambda kv: (-kv[1].photo_count, -kv[1].exposure_seconds)):
                sim = f"{t.mean_similarity:.3f}" if t.mean_similarity is not None else "-"
                lines.append(f"{name:<{width}}  {t.photo_count:>6}  {t.exposure_seconds:>8.2f}  "
                             f"{t.alone_seconds:>8.2f}  {sim:>8}" + ("  (brand)" if kind == "brand" else ""))
        if not self.people and not self.brands:
            lines.append("(nobody registered was found)")
        for title, pairs in (("together", self.together), ("with brands", self.co_appearance)):
            if pairs:
                lines += ["", f"{title}:"]
                lines += [f"  {p.a} + {p.b}: " + ", ".join(
                    part for part in (
                        (f"{p.photo_count} photos" + (f" ({p.with_count} next to the logo)" if title == "with brands"
                                                      else "")) if p.photo_count or not p.seconds_together else "",
                        (f"{p.seconds_together:.2f} s on screen together"
                         + (f" ({p.with_seconds:.2f} s next to the logo)" if title == "with brands" else ""))
                        if p.seconds_together else "") if part)
                    for p in pairs]
        if self.near_misses:
            lines += ["", "near misses (counted for nobody; look at them before invoicing):"]
            for person in sorted({n.person for n in self.near_misses}):
                faces = [n for n in self.near_misses if n.person == person and n.kind == "face"]
                tracks = [n for n in self.near_misses if n.person == person and n.kind == "track"]
                parts = []
                if faces:
                    photos = len({n.path for n in faces})
                    parts.append(f"{len(faces)} face{'s' * (len(faces) > 1)} in {photos} photo{'s' * (photos > 1)}")
                if tracks:  # tracks at the same time (two faces near the person) count their seconds once
                    seconds = sum(total_seconds([iv for n in tracks if n.path == path for iv in n.intervals])
                                  for path in {n.path for n in tracks})
                    parts.append(f"{len(tracks)} video track{'s' * (len(tracks) > 1)}, {seconds:.2f} s")
                closest = min(n.distance for n in [*faces, *tracks])
                lines.append(f"  {person}: {', '.join(parts)} (closest distance {closest:.3f})")
        partial = [m for m in self.media if m.error]
        if partial:
            lines += ["", f"partly analysed ({len(partial)}; counted up to where they stop):"]
            lines += [f"  {m.error}" for m in partial]
        if self.skipped:
            lines += ["", f"skipped ({len(self.skipped)}):"] + [f"  {s.error}" for s in self.skipped]
        return "\n".join(_printable(line) for line in lines)

"""Where a photo's time goes: each stage of track() timed on its own, per photo, with its share.

    python -m benchmarks.profile_stages [--photos scenes|all|12mp] [--repeat 3] [--device auto] [--ops]
                                        [--logo-parts] [--write]

Photos: the 7 labelled scenes (``--photos all``: the 112 photos of scenes/ and faces/; ``--photos 12mp``: the
7 scenes as 12-megapixel JPEGs from ``benchmarks.run``'s ``12mp`` set), in batches of 8 as
track() makes them. The gallery holds every identity of shared/faces and the 17 brand references of
shared/logos/refs, so logo detection runs as it does for a user who registered brands.

Stages, in order, each timed with the device synchronised before the clock is read:
  decode     load_image (Pillow + the strict JPEG check), one photo at a time as a decode thread does
  transfer   host pixels -> device tensors
  detect     batched MTCNN (FaceDetector.detect)
  align      5-point warp to 150 x 150 chips
  quality    size, frontalness, sharpness
  embed      dlib ResNet with the test-time flip
  match      distances to the gallery and the open-set assignment (api.identify)
  logos      LogoDetector.detect (SIFT + RANSAC against every reference view)
  report     one host copy, report entries for faces and logos, the photo tallies
The logo detector's construction (once per track() call) is printed apart. Each stage's time is the
median over ``--repeat`` passes (after one warm-up pass). ``--logo-parts`` adds the CPU time of each part
of the logo search, each run on one thread (the parts' sum is what the cores spend, whatever their overlap
in ``LogoDetector.detect``). ``--ops`` adds torch.profiler's table of the
operators that take the face stages' time (one pass), which shows what limits them: convolutions, or
the Python around them.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

import influvision as iv
from benchmarks.common import (
    SHARED,
    cuda_skip_reason,
    machine,
    publish,
    register_shared_brands,
    register_shared_faces,
    shared_photos,
    synchronizer,
)
from influvision.api import face_entries, identify
from influvision.decode.images import load_image
from influvision.faces.align import align_to_chip
from influvision.faces.quality import face_quality
from influvision.logos.detect import LogoDetector
from influvision.logos.references import load_reference
from influvision.match import MatchSettings
from influvision.report import LogoEntry, MediaEntry
from influvision.tally import logo_near_face, prominence, tally_photos

STAGES = ("decode", "transfer", "detect", "align", "quality", "embed", "match", "logos", "report")
FACE_STAGES = ("transfer", "detect", "align", "quality", "embed", "match")


class Timer:
    """Adds the synchronised wall time of each ``with timer("stage"):`` block to ``seconds[stage]``."""

    def __init__(self, sync: Callable[[], None]):
        self.sync = sync
        self.seconds: dict[str, float] = defaultdict(float)
        self._stage = ""
        self._t = 0.0

    def __call__(self, stage: str) -> Timer:
        self._stage = stage
        return self

    def __enter__(self) -> None:
        self.sync()
        self._t = time.perf_counter()

    def __exit__(self, *exc: object) -> None:
        self.sync()
        self.seconds[self._stage] += time.perf_counter() - self._t


def logo_entries(entry: MediaEntry, logos: Any, brands: list[str]) -> None:
    """Append the report's logo entries of one photo to ``entry`` (as api.analyse_photos does)."""
    for box, score, b in zip(logos.boxes.tolist(), logos.scores.tolist(), logos.brand.tolist(), strict=True):
        share, cen = prominence(box, entry.width, entry.height)
        near = sorted({f.identity for f in entry.faces if f.identity and logo_near_face(box, f.box)})
        entry.logos.append(LogoEntry(brand=brands[b], box=[round(v, 1) for v in box], score=round(score, 4),
                                     area_share=share, centrality=cen, near=near))


def one_pass(paths: list[Path], gallery: iv.Gallery, detector: LogoDetector, timer: Timer,
             batch_size: int = 8) -> list[MediaEntry]:
    """Run every stage over ``paths`` in batches, timing each stage; returns the report entries."""
    pipe = gallery.pipeline
    index = gallery.index(pipe.device)
    settings = MatchSettings().resolved(pipe.embedder.threshold)
    media: list[MediaEntry] = []
    for start in range(0, len(paths), batch_size):
        batch = paths[start:start + batch_size]
        with timer("decode"):
            pixels = [load_image(p).pixels for p in batch]
        with timer("transfer"):
            on_device = [torch.from_numpy(px).to(pipe.device, non_blocking=True) for px in pixels]
        with timer("detect"):
            faces = pipe.detector.detect(on_device)
        with timer("align"):
            chips = align_to_chip(on_device, faces.image_index, faces.landmarks, size=pipe.embedder.input_size)
        with timer("quality"):
            quality = face_quality(faces, chips=chips)
            quality.pop("score", None)
        with timer("embed"):
            embedding = pipe.embedder.embed(chips, flip=pipe.flip)
        with timer("match"):
            faces = identify(faces.with_columns(embedding=embedding, **quality), index, settings)
        with timer("logos"):
            logos = detector.detect(pixels)
        with timer("report"):
            host = faces.to("cpu")
            for i, (px, path) in enumerate(zip(pixels, batch, strict=True)):
                h, w = px.shape[:2]
                entry = MediaEntry(path=str(path), kind="photo", width=w, height=h,
                                   faces=face_entries(host.for_image(i), index, w, h))
                logo_entries(entry, logos.for_image(i), detector.brands)
                media.append(entry)
            tally_photos(media)
    return media


def op_table(paths: list[Path], gallery: iv.Gallery, rows: int = 15) -> str:
    """torch.profiler's operators over one pass of the face stages, by self CPU time."""
    from torch.profiler import ProfilerActivity, profile

    pipe = gallery.pipeline
    pixels = [load_image(p).pixels for p in paths]
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if pipe.device.type == "cuda" else [])
    sync = synchronizer(pipe.device)
    with profile(activities=activities) as prof:
        t = time.perf_counter()
        for start in range(0, len(pixels), 8):
            pipe(pixels[start:start + 8])
        sync()
        wall = time.perf_counter() - t
    events = prof.key_averages()
    op_total = sum(e.self_cpu_time_total for e in events) / 1e6
    sort = "self_cuda_time_total" if pipe.device.type == "cuda" else "self_cpu_time_total"
    return (events.table(sort_by=sort, row_limit=rows)
            + f"\nface stages: {wall:.2f} s wall (profiled), {op_total:.2f} s inside torch operators "
              f"({100 * op_total / wall:.0f} %); the rest is Python and waiting\n")


def logo_parts(paths: list[Path], detector: LogoDetector) -> str:
    """Markdown table of the CPU ms/photo of each part of the logo search, every part on one thread (torch,
    OpenCV and the cues' photo threads set to one for the measurement): SIFT extraction, the descriptor
    product and ratio test, the whole matcher, the silhouette cue, and ``LogoDetector.detect``."""
    import cv2

    from influvision.logos.matcher import _rootsift

    matcher, cue = detector._matcher, detector.silhouette_cue
    threads = torch.get_num_threads(), cv2.getNumThreads()
    workers = [(obj, obj.workers) for obj in (matcher, cue) if obj is not None]
    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    for obj, _ in workers:
        obj.workers = 1
    cpu: dict[str, float] = defaultdict(float)

    def timed(part: str, fn: Callable[..., Any], *args: Any) -> Any:
        t = time.process_time()
        out = fn(*args)
        cpu[part] += time.process_time() - t
        return out

    try:
        for path in paths:
            px = load_image(path).pixels
            if matcher is not None:
                _, work, _ = matcher.working_copy(px)
                _, desc = timed("SIFT extraction", matcher._features, work)
                if len(desc):
                    timed("descriptor product and ratio test", matcher._ratio_matches,
                          torch.from_numpy(_rootsift(desc)).to(matcher.device))
                timed("matcher", matcher.match, [px])
            if cue is not None:
                timed("silhouette cue", cue.find, [px])
            timed("detect", detector.detect, [px])
    finally:
        torch.set_num_threads(threads[0])
        cv2.setNumThreads(threads[1])
        for obj, n in workers:
            obj.workers = n
    n = len(paths)
    rows = [("SIFT extraction (in the matcher)", cpu["SIFT extraction"]),
            ("descriptor product and ratio test (in the matcher)", cpu["descriptor product and ratio test"]),
            ("SIFT matcher, all of it (with RANSAC and its checks)", cpu["matcher"]),
            ("silhouette cue", cpu["silhouette cue"]),
            ("**LogoDetector.detect** (both cues in two threads, fusion, printed frames, wordmark check)", cpu["detect"])]
    lines = ["| part of the logo search | CPU ms/photo | share of detect |", "|---|---|---|"]
    lines += [f"| {k} | {1000 * v / n:.0f} | {100 * v / cpu['detect']:.0f} % |" for k, v in rows]
    rest = cpu["detect"] - cpu["matcher"] - cpu["silhouette cue"]
    lines.append(f"\ndetect minus the two cues timed alone: {1000 * rest / n:.0f} ms/photo (fusion, frames and the "
                 "wordmark check where logos are found, and the two cues' threads slowing each other)")
    return "\n".join(lines)


def build(device: str, gallery_path: str) -> tuple[iv.Gallery, LogoDetector, float]:
    """Open the gallery (faces and brands registered), load the models, build the logo detector (timed)."""
    Path(gallery_path).parent.mkdir(parents=True, exist_ok=True)
    gallery = iv.Gallery(gallery_path, device=device)
    register_shared_faces(gallery)
    register_shared_brands(gallery)
    _ = gallery.pipeline  # model loading is not a per-photo cost
    t = time.perf_counter()
    detector = LogoDetector([load_reference(name, data) for name, _, data in gallery.brand_images()], device=device)
    return gallery, detector, time.perf_counter() - t


def summary(per_stage: dict[str, list[float]], n: int) -> tuple[str, dict[str, float]]:
    """Markdown table of median ms/photo and share per stage; also returns the ms/photo."""
    ms = {s: 1000 * statistics.median(per_stage[s]) / n for s in STAGES}
    total = sum(ms.values())
    lines = ["| stage | ms/photo | share |", "|---|---|---|"]
    lines += [f"| {s} | {ms[s]:.1f} | {100 * ms[s] / total:.1f} % |" for s in STAGES]
    lines.append(f"| **all** | {total:.1f} | 100 % |")
    return "\n".join(lines), ms


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--photos", choices=("scenes", "all", "12mp"), default="scenes")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--gallery", default="out/bench_profile_gallery.db")
    ap.add_argument("--ops", action="store_true", help="also print torch.profiler's operator table")
    ap.add_argument("--logo-parts", action="store_true",
                    help="also time each part of the logo search on one thread (CPU ms/photo)")
    ap.add_argument("--write", action="store_true", help="append the result to benchmarks/RESULTS.md")
    args = ap.parse_args()
    skip = cuda_skip_reason(args.device)
    if skip:
        print(f"stage profile on the GPU skipped: {skip}")
        return
    device = str(iv.faces.embed.resolve_device(args.device))
    if args.photos == "12mp":
        from benchmarks.run import photo_set

        paths = [p for p in photo_set("12mp") if p.parent.name == "scenes"]
    else:
        paths = sorted((SHARED / "scenes").glob("*.jpg")) if args.photos == "scenes" else shared_photos()
    gallery, detector, build_s = build(device, args.gallery)
    sync = synchronizer(device)
    one_pass(paths, gallery, detector, Timer(sync))  # warm-up
    per_stage: dict[str, list[float]] = {s: [] for s in STAGES}
    for _ in range(args.repeat):
        timer = Timer(sync)
        media = one_pass(paths, gallery, detector, timer)
        for s in STAGES:
            per_stage[s].append(timer.seconds[s])
    table, ms = summary(per_stage, len(paths))
    faces = sum(len(m.faces) for m in media)
    logos = sum(len(m.logos) for m in media)
    face_ms = sum(ms[s] for s in FACE_STAGES)
    logo_line = (f"logo detection {ms['logos']:.0f} ms/photo = {ms['logos'] / ms['detect']:.2f}x face detection "
                 f"({ms['detect']:.0f} ms/photo) and {ms['logos'] / face_ms:.2f}x all the face stages together "
                 f"({face_ms:.0f} ms/photo); {100 * ms['logos'] / sum(ms.values()):.0f} % of the per-photo time. "
                 f"Logo detector construction (once per track() call, {len(detector.brands)} references): "
                 f"{build_s:.1f} s")
    flag = ("" if args.photos == "scenes" else f" --photos {args.photos}") + (" --logo-parts" if args.logo_parts else "")
    text = (f"\n### Stage profile ({time.strftime('%Y-%m-%d')}, {machine(device)}, {len(paths)} photos of "
            f"{args.photos}, median of {args.repeat})\n\n"
            f"Command: `python -m benchmarks.profile_stages{flag} --write`; {faces} faces and {logos} logos found "
            f"per pass; gallery: {len(gallery.people())} people, {len(gallery.brands())} brands\n\n"
            f"{table}\n\n{logo_line}\n")
    if args.logo_parts:
        text += f"\nParts of the logo search, each on one thread (`--logo-parts`):\n\n{logo_parts(paths, detector)}\n"
    publish(text, args.write)
    if args.ops:
        print(op_table(paths, gallery))
    gallery.close()


if __name__ == "__main__":
    main()

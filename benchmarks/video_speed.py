"""Video: analysed frames/s next to decode-only frames/s on the same file, and memory vs video length.

    python -m benchmarks.video_speed [--video PATH] [--device auto] [--write]

Decoding is the ceiling. Memory: the clip is looped 1x and 4x into longer files and analysed; peak RSS
must not grow with the length (frames stream in batches, only per-detection columns are kept).
"""

from __future__ import annotations

import argparse
import platform
import resource
import subprocess
import sys
import time
from fractions import Fraction
from pathlib import Path

import av
import torch

from benchmarks.common import SHARED, cuda_skip_reason, publish


def loop_video(src: Path, dst: Path, times: int) -> Path:
    """Re-encode ``src`` ``times`` times back to back (timestamps continue) into ``dst``."""
    if dst.exists():
        return dst
    dst.parent.mkdir(parents=True, exist_ok=True)
    n = 0
    with av.open(str(dst), "w") as out:
        stream = None
        for _ in range(times):
            with av.open(str(src)) as inp:
                vin = inp.streams.video[0]
                for frame in inp.decode(vin):
                    if stream is None:
                        stream = out.add_stream("libx264", rate=round(float(vin.average_rate or 30)))
                        stream.time_base = Fraction(1, round(float(vin.average_rate or 30)))
                        stream.width, stream.height, stream.pix_fmt = frame.width, frame.height, "yuv420p"
                        stream.options = {"preset": "ultrafast", "crf": "28"}
                    frame = av.VideoFrame.from_ndarray(frame.to_ndarray(format="rgb24"), format="rgb24")
                    frame.pts = n
                    n += 1
                    for packet in stream.encode(frame):
                        out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return dst


def decode_only(path: Path, sample_fps: float | None) -> float:
    from influvision.decode.video import iter_frames

    t, n = time.perf_counter(), 0
    for batch in iter_frames(path, sample_fps=sample_fps, batch_size=16):
        n += len(batch)
    return n / (time.perf_counter() - t)


def analysed(path: Path, device: str, sample_fps: float | None) -> tuple[float, int]:
    import influvision as iv
    from influvision.faces.pipeline import FacePipeline
    from influvision.video.analyse import analyse_video

    gallery = iv.Gallery(Path("out") / "bench_video_gallery.db", device=device)
    if not gallery.people():
        gallery.add_person("rick_astley", sorted((SHARED / "faces" / "rick_astley").iterdir()))
    pipe = FacePipeline(device=device)
    gallery.use_pipeline(pipe)
    index = gallery.index(pipe.device)
    settings = iv.MatchSettings().resolved(pipe.embedder.threshold)
    t = time.perf_counter()
    va = analyse_video(path, faces_fn=pipe, index=index, settings=settings, sample_fps=sample_fps)
    return va.frames_analysed / (time.perf_counter() - t), va.frames_analysed


def _child(path: str, device: str, sample_fps: float) -> None:
    """Runs in a fresh process so that peak RSS belongs to one analysis only."""
    rate, frames = analysed(Path(path), device, sample_fps)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"{rate:.3f} {frames} {peak:.0f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--video", default=str(SHARED / "videos" / "nggyup.mp4"))
    ap.add_argument("--device", default="auto")
    ap.add_argument("--sample-fps", type=float, default=10.0)
    ap.add_argument("--write", action="store_true")
    ap.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        _child(args.child[0], args.child[1], float(args.child[2]))
        return
    if reason := cuda_skip_reason(args.device):
        print(f"skipped: {reason}")
        return
    video = Path(args.video)
    rows = []
    for label, fps in (("every frame", None), (f"sampled at {args.sample_fps:g} fps", args.sample_fps)):
        dec = decode_only(video, fps)
        rate, frames = analysed(video, args.device, fps)
        rows.append(f"| {video.name}, {label} | {dec:.1f} | {rate:.2f} | {rate / dec:.3f} | {frames} |")
    mem = []
    for times in (1, 4):
        path = loop_video(video, Path("out") / f"loop{times}_{video.stem}.mp4", times)
        out = subprocess.run([sys.executable, "-m", "benchmarks.video_speed", "--child", str(path), args.device,
                              str(args.sample_fps)], capture_output=True, text=True, check=True).stdout.split()
        mem.append(f"| {times}x ({path.name}) | {out[1]} | {out[2]} MiB |")
    device = torch.cuda.get_device_name() if torch.cuda.is_available() and args.device != "cpu" else \
        f"CPU ({platform.machine()}, {torch.get_num_threads()} threads)"
    text = (f"\n### Video speed and memory ({time.strftime('%Y-%m-%d')}, {device})\n\n"
            f"Command: `python -m benchmarks.video_speed --write`\n\n"
            "| input | decode-only frames/s | analysed frames/s | ratio | frames analysed |\n|---|---|---|---|---|\n"
            + "\n".join(rows) + "\n\n| video length | frames analysed | peak RSS |\n|---|---|---|\n" + "\n".join(mem) + "\n")
    publish(text, args.write)


if __name__ == "__main__":
    main()

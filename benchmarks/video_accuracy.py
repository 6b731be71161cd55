"""Exposure accuracy on the labelled videos: per person, labelled vs measured seconds and interval IoU.

    python -m benchmarks.video_accuracy [--sample-fps 10] [--device auto] [--write]

Every identity of ../shared/data/faces is registered; every video of ../shared/data/videos is tracked.
A person measured in a video whose labels do not list them is a false name (the expensive error).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import influvision as iv
from benchmarks.common import SHARED, cuda_skip_reason, publish, register_shared_faces
from influvision.video.exposure import interval_iou


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sample-fps", type=float, default=10.0)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--gallery", default="out/bench_gallery.db")
    ap.add_argument("--write", action="store_true")
    args = ap.parse_args()
    if reason := cuda_skip_reason(args.device):
        print(f"skipped: {reason}")
        return
    labels = json.loads((SHARED / "videos" / "labels.json").read_text())["videos"]
    Path(args.gallery).parent.mkdir(parents=True, exist_ok=True)
    gallery = iv.Gallery(args.gallery, device=args.device)
    register_shared_faces(gallery)
    rows = []
    t0 = time.perf_counter()
    for name, lab in sorted(labels.items()):
        report = iv.track(SHARED / "videos" / name, gallery=gallery, device=args.device, sample_fps=args.sample_fps,
                          progress=False)
        people = set(lab["identities"]) | {p for p, t in report.people.items() if t.exposure_seconds > 0}
        if not people:
            rows.append(f"| {name} | (nobody registered) | 0.000 | 0.000 | - | none named |")
        for person in sorted(people):
            truth = lab["identities"].get(person, {}).get("intervals", [])
            measured = next(iter(report.people[person].intervals.values()), []) if person in report.people else []
            want = sum(e - s for s, e in truth)
            got = report.people[person].exposure_seconds if person in report.people else 0.0
            verdict = "FALSE NAME" if not truth else ("ok" if abs(got - want) <= 0.05 * want else "off by > 5 %")
            rows.append(f"| {name} | {person} | {want:.3f} | {got:.3f} | {interval_iou(measured, truth):.3f} | {verdict} |")
    table = "\n".join(["| video | person | labelled s | measured s | interval IoU | |", "|---|---|---|---|---|---|", *rows])
    text = (f"\n### Video exposure accuracy ({time.strftime('%Y-%m-%d')}, sample_fps {args.sample_fps:g}, "
            f"device {args.device}, {time.perf_counter() - t0:.0f} s)\n\n"
            f"Command: `python -m benchmarks.video_accuracy --write`\n\n{table}\n")
    publish(text, args.write)


if __name__ == "__main__":
    main()

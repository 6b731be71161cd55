"""Embedder throughput alone: aligned chips per second through the dlib ResNet port.

    python -m benchmarks.embed_speed [--device auto] [--batches 64 256 1024] [--chips 4096] [--write]

Chips: the 12 real 150 x 150 chips of shared/fixtures/dlib_resnet, repeated to ``--chips`` chips and
copied to the device once, so that the table measures the network, not decoding, alignment or transfer.
Each (batch size, precision, flip) cell: one untimed pass, then the median of ``--repeat`` timed passes
over all chips (the device synchronised before each clock read). Issue #7's GPU target is 20,000
chips/s; bf16 is what ``FacePipeline`` uses on CUDA, fp32 what it uses on the CPU; flip (the mean of a
chip's and its mirror's descriptors, used for every face) doubles the work.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch
from PIL import Image

from benchmarks.common import SHARED, cuda_skip_reason, machine, publish, synchronizer
from influvision.faces.embed import load_embedder, resolve_device

CHIPS = SHARED.parent / "fixtures" / "dlib_resnet" / "chips"


def load_chips(n: int) -> np.ndarray:
    """(n, 150, 150, 3) uint8: the fixture chips, repeated."""
    real = np.stack([np.asarray(Image.open(p).convert("RGB")) for p in sorted(CHIPS.glob("*.png"))])
    return np.resize(real, (n, *real.shape[1:]))


def chips_per_second(embedder, chips: torch.Tensor, batch: int, precision: str, flip: bool, repeat: int) -> float:
    sync = synchronizer(chips.device)
    embedder.embed(chips[:batch], batch_size=batch, precision=precision, flip=flip)  # warm-up at this shape
    times = []
    for _ in range(repeat):
        sync()
        t = time.perf_counter()
        embedder.embed(chips, batch_size=batch, precision=precision, flip=flip)
        sync()
        times.append(time.perf_counter() - t)
    return len(chips) / statistics.median(times)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="auto")
    ap.add_argument("--batches", type=int, nargs="+", default=[64, 256, 1024])
    ap.add_argument("--chips", type=int, default=4096)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--precisions", nargs="+", default=None, help="default: fp32 and bf16 on CUDA, fp32 on the CPU")
    ap.add_argument("--write", action="store_true", help="append the table to benchmarks/RESULTS.md")
    args = ap.parse_args(argv)
    if reason := cuda_skip_reason(args.device):
        print(f"skipped: {reason}")
        return
    device = str(resolve_device(args.device))
    precisions = args.precisions or (["fp32", "bf16"] if device.startswith("cuda") else ["fp32"])
    embedder = load_embedder("dlib-resnet-v1", device=device)
    chips = torch.from_numpy(load_chips(args.chips)).to(device)
    rows = []
    for precision in precisions:
        for flip in (False, True):
            for batch in args.batches:
                rate = chips_per_second(embedder, chips, batch, precision, flip, args.repeat)
                rows.append(f"| {precision} | {'yes' if flip else 'no'} | {batch} | {rate:,.0f} |")
                print(rows[-1], flush=True)
    text = (f"\n### Embedder throughput ({time.strftime('%Y-%m-%d')}, {machine(device)}, {args.chips} chips)\n\n"
            f"Command: `python -m benchmarks.embed_speed --device {device}{' --write' if args.write else ''}`; "
            f"dlib ResNet port, chips already on the device, median of {args.repeat}\n\n"
            "| precision | flip | batch | chips/s |\n|---|---|---|---|\n" + "\n".join(rows) + "\n")
    publish(text, args.write)


if __name__ == "__main__":
    main()

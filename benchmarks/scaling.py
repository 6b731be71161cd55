"""Scaling curve: track() time and peak memory for 10, 100, 1,000 and 10,000 photos.

    python -m benchmarks.scaling [--sizes 10 100 1000 10000] [--max N] [--device auto] [--write]

The photo sets are the 112 shared photos (scenes/ and faces/) followed by distinct replicas of them. A plain
copy would be reported as a duplicate of its original (same SHA-256, or a pHash within 8 bits) and skip the
face work, so every replica is a variant of the original (the first round as it is, later rounds mirrored
and/or cropped by up to 6 % per side: one pHash neighbourhood holds only about a dozen distinct shadings)
with a faint low-frequency shading (2 to 6 grey levels on average, built in the pHash's own 8 x 8 DCT
basis) that moves its pHash more than 8 bits from every other photo of the set, re-encoded as a JPEG. Replicas are made once and cached in ``--cache``
(under the git-ignored ``out/``); every run checks that track() reports no duplicate.

Photos are ordered so that every set holds the largest original (3061 x 4600 px) and otherwise spreads over
the originals' sizes (the 10-photo set is not 10 large scenes). Each N runs in a fresh process (the
gallery's models loaded and warmed up on two other photos first), so the peak RSS printed is that N's
alone; on CUDA the peak allocated GPU memory is printed too. The gallery holds the faces of shared/faces
only (no brands), as in ``benchmarks.run``.

Linear cost: every N >= 100 takes within +-20 % of the largest N's CPU seconds per photo (CPU time of the
measuring process, all threads: other jobs on a shared machine disturb it far less than wall time, which is
printed too). Flat memory: the largest peak RSS over N >= 100 is within 15 % of the smallest. N = 10 is
printed but judged for neither: per-run fixed costs and a 10-photo sample dominate its time, and its peak
memory is lower because fewer large photos are in flight at once (the decode prefetch holds up to 16).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import scipy.fft
from PIL import Image

from benchmarks.common import (
    cpu_seconds,
    cuda_skip_reason,
    machine,
    peak_rss_mib,
    publish,
    register_shared_faces,
    shared_photos,
)
from influvision.decode.images import load_image
from influvision.duplicates import NEAR_DUPLICATE_MAX_DISTANCE, phash

SIZES = (10, 100, 1000, 10000)
# Replicas stay this many pHash bits from every other photo: more than the duplicate rule's 8.
MIN_DISTANCE = NEAR_DUPLICATE_MAX_DISTANCE + 2
# Bump when the way replicas are made changes: a cache made otherwise is rebuilt.
REPLICA_VERSION = 3


def spread_order(paths: list[Path]) -> list[Path]:
    """``paths`` ordered so that every prefix spans their sizes: the largest photo first (it sets the peak
    memory, so every set holds it), then the rest sorted by pixel count and taken in van der Corput
    (bit-reversed) order.

    Args:
        paths: image files.
    Returns:
        The same paths, reordered.
    """
    by_size = sorted(paths, key=lambda p: (_pixels(p), p.name))
    largest, rest = by_size[-1:], by_size[:-1]
    bits = max(1, (len(rest) - 1).bit_length())
    order = sorted(range(2 ** bits), key=lambda i: int(f"{i:0{bits}b}"[::-1], 2))
    return largest + [rest[i] for i in order if i < len(rest)]


def _pixels(path: Path) -> int:
    with Image.open(path) as im:
        return im.width * im.height


def _dct_low(pixels: np.ndarray) -> np.ndarray:
    """The 64 low DCT coefficients that :func:`influvision.duplicates.phash` compares (row-major)."""
    grey = cv2.cvtColor(np.ascontiguousarray(pixels), cv2.COLOR_RGB2GRAY)
    small = cv2.resize(grey, (32, 32), interpolation=cv2.INTER_AREA).astype(np.float64)
    return scipy.fft.dctn(small, type=2, norm="ortho")[:8, :8].ravel()


def shaded(pixels: np.ndarray, rng: np.random.Generator, flips: int = 12, margin: float = 12.0) -> np.ndarray:
    """A copy of ``pixels`` whose pHash differs in about ``flips`` bits: a smooth shading that pushes that
    many of the cheapest low DCT coefficients across the median they are compared with.

    Args:
        pixels: (H, W, 3) uint8 RGB.
        rng: picks which of the 32 cheapest coefficients to move.
        flips: coefficients moved.
        margin: how far past the median each is pushed (DCT units of the 32 x 32 grey thumbnail;
            12 is about 0.75 grey levels of amplitude per coefficient).
    Returns:
        (H, W, 3) uint8 RGB, same size; the shading is the same on R, G and B.
    """
    low = _dct_low(pixels)
    median = np.median(low[1:])
    cheapest = 1 + np.argsort(np.abs(low[1:] - median))[:32]
    chosen = rng.choice(cheapest, size=flips, replace=False)
    delta = np.zeros((32, 32))
    for j in chosen:
        side = 1.0 if low[j] <= median else -1.0  # the side it is not on
        delta[j // 8, j % 8] = (median - low[j]) + side * margin
    thumb = scipy.fft.idctn(delta, type=2, norm="ortho").astype(np.float32)
    h, w = pixels.shape[:2]
    # INTER_LINEAR upscaling area-averages back to (nearly) the same 32 x 32 thumbnail.
    shade = cv2.resize(thumb, (w, h), interpolation=cv2.INTER_LINEAR)
    return np.clip(pixels.astype(np.float32) + shade[:, :, None], 0, 255).round().astype(np.uint8)


def variant(pixels: np.ndarray, round_: int) -> np.ndarray:
    """The base of a replica round: round 0 the photo itself, later ones mirrored and/or cropped.

    Rounds 1 to 17 are the mirror, 8 crops (3 % or 6 % off two adjacent sides) and the mirrored crops; then
    the cycle repeats. Each round starts from a picture whose pHash differs from the earlier rounds' more
    than shading alone can move it.
    """
    if round_ == 0:
        return pixels
    r = round_ - 1
    out = pixels[:, ::-1] if r % 2 == 0 else pixels
    crop = ((r + 1) // 2) % 9  # round 1: mirrored; 2: cropped; 3: both; ... 18: the photo again
    if crop:
        h, w = out.shape[:2]
        frac = 0.03 * (1 + (crop - 1) // 4)
        side = (crop - 1) % 4
        dy, dx = int(h * frac), int(w * frac)
        top, left = (dy, dx) if side == 0 else (dy, 0) if side == 1 else (0, dx) if side == 2 else (0, 0)
        bottom, right = (h, w) if side == 0 else (h, w - dx) if side == 1 else (h - dy, w) if side == 2 else (h - dy, w - dx)
        out = out[top:bottom, left:right]
    return np.ascontiguousarray(out)


class ReplicaCache:
    """Distinct replicas of the shared photos, made once under ``root`` (``manifest.json`` lists them).

    Args:
        root: the cache folder (created).
        originals: the photos to replicate, in the order replicas cycle through them.
    """

    def __init__(self, root: Path, originals: list[Path]):
        self.root = root
        self.originals = originals
        self.manifest = root / "manifest.json"
        root.mkdir(parents=True, exist_ok=True)
        state = json.loads(self.manifest.read_text()) if self.manifest.exists() else {}
        same = state.get("version") == REPLICA_VERSION and state.get("originals") == [str(p) for p in originals]
        self.files: list[str] = state.get("files", []) if same else []
        self.hashes: list[int] = state.get("hashes", []) if same else []

    def photos(self, n: int) -> list[Path]:
        """The first ``n`` photos: the originals, then replicas cycling through them, made as needed.

        Raises:
            RuntimeError: a replica could not be made distinct (names the original).
        """
        if not self.hashes:
            self.hashes = [phash(load_image(p, verify=False).pixels) for p in self.originals]
        if len(self.originals) + len(self.files) < n:
            self._extend(n)
        self._save()
        return (self.originals + [self.root / f for f in self.files])[:n]

    def _extend(self, n: int) -> None:
        """Make replicas up to ``n`` photos; replica k copies original k mod len(originals)."""
        have, need, m = len(self.files), n - len(self.originals), len(self.originals)
        made: dict[int, tuple[str, int]] = {}
        for b, base in enumerate(self.originals):
            ks = [k for k in range(have, need) if k % m == b]
            if not ks:
                continue
            pixels = load_image(base, verify=False).pixels  # once per original
            for k in ks:
                made[k] = self._distinct_replica(base, pixels, k)
                self.hashes.append(made[k][1])  # later replicas keep their distance from this one too
        del self.hashes[len(self.hashes) - len(made):]
        for k in sorted(made):
            self.files.append(made[k][0])
            self.hashes.append(made[k][1])

    def _distinct_replica(self, base: Path, pixels: np.ndarray, copy: int) -> tuple[str, int]:
        known = np.array(self.hashes, dtype=np.uint64)
        rng = np.random.default_rng(copy)
        start = variant(pixels, copy // len(self.originals))
        for attempt in range(20):
            out = shaded(start, rng, margin=12.0 + 6.0 * attempt)
            name = f"r{copy:05d}_{base.stem}.jpg"
            Image.fromarray(out).save(self.root / name, quality=92)
            h = phash(load_image(self.root / name, verify=False).pixels)  # as track() will see it
            if int(np.bitwise_count(known ^ np.uint64(h)).min()) >= MIN_DISTANCE:
                return name, h
        raise RuntimeError(f"{base}: no replica {MIN_DISTANCE}+ pHash bits from the {len(known)} photos "
                           f"made so far after 20 attempts")

    def _save(self) -> None:
        self.manifest.write_text(json.dumps({"version": REPLICA_VERSION, "originals": [str(p) for p in self.originals],
                                             "files": self.files, "hashes": self.hashes}))


def run_child(listing: Path, gallery_path: str, device: str) -> dict:
    """Track the photos listed in ``listing`` once, in this process; return the measurements."""
    import torch

    import influvision as iv

    paths = listing.read_text().split("\n")
    gallery = iv.Gallery(gallery_path, device=device)
    dev = str(gallery.pipeline.device)  # loads the models before the clock starts
    iv.track(shared_photos()[-2:], gallery=gallery, device=dev, progress=False)  # first-call costs, untimed
    if dev.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    t, cpu = time.perf_counter(), cpu_seconds()
    report = iv.track(paths, gallery=gallery, device=dev, progress=False)
    seconds = time.perf_counter() - t
    return {"n": len(paths), "seconds": seconds, "cpu_seconds": cpu_seconds() - cpu, "analysed": report.counts.analysed,
            "duplicates": report.counts.duplicates, "skipped": report.counts.skipped, "faces": report.counts.faces,
            "peak_rss_mib": peak_rss_mib(),
            "peak_cuda_mib": torch.cuda.max_memory_allocated() / 2**20 if dev.startswith("cuda") else None}


def measure(n: int, photos: list[Path], gallery: str, device: str, work: Path) -> dict:
    """Run one N in a fresh process. Raises RuntimeError naming N when the child fails."""
    listing = work / f"photos_{n}.txt"
    listing.write_text("\n".join(str(p) for p in photos))
    proc = subprocess.run([sys.executable, "-m", "benchmarks.scaling", "--child", str(listing), gallery, device],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"N={n}: the measuring process failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _spread(rows: list[dict], key: str) -> float:
    """Largest relative deviation of ``key`` per photo from the largest N's, over N >= 100."""
    ref = rows[-1][key] / rows[-1]["n"]
    judged = [r for r in rows if r["n"] >= 100] or rows
    return max(abs(r[key] / r["n"] / ref - 1) for r in judged)


def verdict(rows: list[dict]) -> tuple[str, str]:
    """(linear cost, flat memory) verdict lines for rows sorted by N.

    Cost is judged on CPU seconds per photo (all threads of the measuring process), which other jobs on a
    shared machine disturb far less than wall time; the wall-time spread is printed beside it.
    """
    cpu, wall = _spread(rows, "cpu_seconds"), _spread(rows, "seconds")
    linear = (f"CPU time per photo within {100 * cpu:.0f} % of N={rows[-1]['n']}'s over N >= 100 "
              f"(wall time: {100 * wall:.0f} %): "
              + ("linear (within +-20 %)" if cpu <= 0.20 else "NOT linear (more than +-20 %)"))
    rss = [r["peak_rss_mib"] for r in rows if r["n"] >= 100] or [r["peak_rss_mib"] for r in rows]
    growth = max(rss) / min(rss) - 1
    flat = (f"peak RSS {min(rss):.0f} to {max(rss):.0f} MiB over N >= 100 (+{100 * growth:.0f} %): "
            + ("flat (within 15 %)" if growth <= 0.15 else "GROWS (more than 15 %)"))
    return linear, flat


def table(rows: list[dict]) -> str:
    """Markdown table, one row per N."""
    ref = rows[-1]["cpu_seconds"] / rows[-1]["n"]
    lines = ["| photos | wall s | photos/s | CPU s/photo | CPU s/photo vs largest N | duplicates | faces "
             "| peak RSS | peak CUDA |", "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        cuda = "-" if r["peak_cuda_mib"] is None else f"{r['peak_cuda_mib']:.0f} MiB"
        per = r["cpu_seconds"] / r["n"]
        lines.append(f"| {r['n']} | {r['seconds']:.1f} | {r['n'] / r['seconds']:.2f} | {per:.3f} | {per / ref:.2f} | "
                     f"{r['duplicates']} | {r['faces']} | {r['peak_rss_mib']:.0f} MiB | {cuda} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=list(SIZES))
    ap.add_argument("--max", type=int, default=None, help="leave out sizes above this (slow machines)")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--gallery", default="out/bench_gallery.db")
    ap.add_argument("--cache", default="out/scaling_photos", help="where replicas are made once and kept")
    ap.add_argument("--write", action="store_true", help="append the table to benchmarks/RESULTS.md")
    ap.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(run_child(Path(args.child[0]), args.child[1], args.child[2])))
        return
    skip = cuda_skip_reason(args.device)
    if skip:
        print(f"scaling on the GPU skipped: {skip}")
        return
    import influvision as iv

    device = str(iv.faces.embed.resolve_device(args.device))
    sizes = sorted(n for n in args.sizes if args.max is None or n <= args.max)
    if not sizes:
        ap.error(f"no size in {args.sizes} is <= --max {args.max}")
    Path(args.gallery).parent.mkdir(parents=True, exist_ok=True)
    with iv.Gallery(args.gallery, device="cpu") as gallery:
        register_shared_faces(gallery)
    cache = ReplicaCache(Path(args.cache), spread_order(shared_photos()))
    t = time.perf_counter()
    all_photos = cache.photos(max(sizes))
    print(f"{len(all_photos)} photos ready in {time.perf_counter() - t:.0f} s ({args.cache})", flush=True)
    rows = []
    for n in sizes:
        rows.append(measure(n, all_photos[:n], args.gallery, device, Path(args.cache)))
        r = rows[-1]
        print(f"N={n}: {r['seconds']:.1f} s, {n / r['seconds']:.2f} photos/s, {r['cpu_seconds'] / n:.3f} CPU s/photo, peak RSS {r['peak_rss_mib']:.0f} MiB, "
              f"{r['duplicates']} duplicates", flush=True)
    linear, flat = verdict(rows)
    left_out = [n for n in args.sizes if n not in sizes]
    cmd = "python -m benchmarks.scaling" + (f" --max {args.max}" if args.max else "") + " --write"
    note = f" Left out: N = {', '.join(map(str, left_out))} (`--max {args.max}`)." if left_out else ""
    text = (f"\n### Scaling curve ({time.strftime('%Y-%m-%d')}, {machine(device)})\n\n"
            f"Command: `{cmd}`. track() on replicated shared photos (distinct pHashes; faces gallery, no brands), "
            f"each N in a fresh process.{note}\n\n{table(rows)}\n\n- {linear}\n- {flat}\n")
    publish(text, args.write)


if __name__ == "__main__":
    main()

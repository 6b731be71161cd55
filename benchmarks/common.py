"""What the benchmark scripts share: where the data is, the registered gallery, the machine, appending to RESULTS.md."""

from __future__ import annotations

import json
import os
import platform
import resource
from collections.abc import Callable
from pathlib import Path

import torch

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
RESULTS = Path(__file__).resolve().parent / "RESULTS.md"


def shared_photos() -> list[Path]:
    """The 112 labelled photos the speed benchmarks share: scenes/*.jpg, then every photo of faces/."""
    return sorted((SHARED / "scenes").glob("*.jpg")) + sorted((SHARED / "faces").glob("*/*"))


def register_shared_faces(gallery) -> None:
    """Register every identity of shared/data/faces with all its photos (a no-op for ones already there)."""
    for d in sorted((SHARED / "faces").iterdir()):
        gallery.add_person(d.name, sorted(d.iterdir()))


def register_shared_brands(gallery) -> None:
    """Register the 17 brand references of shared/data/logos/refs (a no-op for ones already there).

    Raises:
        RuntimeError: a reference is refused, naming the brand and the reason.
    """
    refs = SHARED / "logos" / "refs"
    for name, meta in sorted(json.loads((refs / "brands.json").read_text()).items()):
        for status in gallery.add_brand(name, refs / meta["file"]):
            if status.status == "error":
                raise RuntimeError(f"brand {name!r}: reference {meta['file']} refused: {status.message}")


def cuda_skip_reason(device: str) -> str | None:
    """Why a run asked for ``device`` cannot happen here (a CUDA device asked for and none present), else None."""
    if device.startswith("cuda") and not torch.cuda.is_available():
        return f"--device {device} asked for, but this machine has no CUDA device (torch {torch.__version__})"
    return None


def synchronizer(device: str | torch.device) -> Callable[[], None]:
    """A function that waits for the device's queued work (a no-op on the CPU): call it before reading a timer."""
    dev = torch.device(device)
    if dev.type == "cuda":
        return lambda: torch.cuda.synchronize(dev)
    return lambda: None


def machine(device: str | torch.device) -> str:
    """One line naming the machine: CPU architecture and cores, torch threads, the 1-minute load average
    now (other jobs' share of the cores), and the GPU when used."""
    dev = torch.device(device)
    text = (f"{platform.machine()}, {os.cpu_count()} cores, {torch.get_num_threads()} torch threads, "
            f"load {os.getloadavg()[0]:.1f}")
    if dev.type == "cuda":
        return f"{text}, {torch.cuda.get_device_name(dev)}"
    return f"{text}, CPU"


def peak_rss_mib() -> float:
    """Peak resident memory of this process so far, MiB (Linux reports ru_maxrss in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def cpu_seconds() -> float:
    """User + system CPU time of this process so far, all threads (less sensitive to other load than wall time)."""
    use = resource.getrusage(resource.RUSAGE_SELF)
    return use.ru_utime + use.ru_stime


def publish(text: str, write: bool) -> None:
    """Print a result section; with ``write`` also append it to benchmarks/RESULTS.md (older rows stay)."""
    print(text)
    if write:
        with RESULTS.open("a") as fh:
            fh.write(text)

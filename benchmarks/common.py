"""What the benchmark scripts share: where the data is, the registered gallery, appending to RESULTS.md."""

from __future__ import annotations

from pathlib import Path

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
RESULTS = Path(__file__).resolve().parent / "RESULTS.md"


def register_shared_faces(gallery) -> None:
    """Register every identity of shared/data/faces with all its photos (a no-op for ones already there)."""
    for d in sorted((SHARED / "faces").iterdir()):
        gallery.add_person(d.name, sorted(d.iterdir()))


def publish(text: str, write: bool) -> None:
    """Print a result section; with ``write`` also append it to benchmarks/RESULTS.md (older rows stay)."""
    print(text)
    if write:
        with RESULTS.open("a") as fh:
            fh.write(text)

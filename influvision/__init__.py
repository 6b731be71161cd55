"""influvision: find registered influencers' faces and brand logos in event photos and video.

    import influvision as iv
    gallery = iv.Gallery("event.db")
    gallery.add_person("rick_astley", ["a.jpg", "b.jpg"])
    report = iv.track(["photos/", "clip.mp4"], gallery=gallery)
    print(report.summary())
"""

from __future__ import annotations

import os

# oneDNN (torch's CPU convolutions) keeps up to 1024 compiled primitives, one per layer and input shape.
# Photos of many sizes give the detector a new shape at every pyramid scale, so that cache grows to about
# 0.6 GB of host memory over the first thousand photos; eight primitives run as fast (benchmarks/RESULTS.md,
# "Host memory"). It takes effect when set before torch builds its first CPU convolution; a value set by the
# user wins.
os.environ.setdefault("ONEDNN_PRIMITIVE_CACHE_CAPACITY", "8")

from ._version import __version__  # noqa: E402
from .api import track  # noqa: E402
from .errors import GalleryError, InfluvisionError, MediaError  # noqa: E402
from .faces.embed import load_embedder  # noqa: E402
from .gallery import Gallery, ReferenceStatus  # noqa: E402
from .match import MatchSettings  # noqa: E402
from .report import Report  # noqa: E402

__all__ = [
    "Gallery",
    "GalleryError",
    "InfluvisionError",
    "MatchSettings",
    "MediaError",
    "ReferenceStatus",
    "Report",
    "load_embedder",
    "track",
    "__version__",
]

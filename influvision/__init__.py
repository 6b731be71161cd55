"""influvision: find registered influencers' faces and brand logos in event photos and video.

    import influvision as iv
    gallery = iv.Gallery("event.db")
    gallery.add_person("rick_astley", ["a.jpg", "b.jpg"])
    report = iv.track(["photos/", "clip.mp4"], gallery=gallery)
    print(report.summary())
"""

from __future__ import annotations

from ._version import __version__
from .api import track
from .errors import InfluvisionError, MediaError
from .faces.embed import load_embedder
from .gallery import Gallery, ReferenceStatus
from .match import MatchSettings
from .report import Report

__all__ = [
    "Gallery",
    "InfluvisionError",
    "MatchSettings",
    "MediaError",
    "ReferenceStatus",
    "Report",
    "load_embedder",
    "track",
    "__version__",
]

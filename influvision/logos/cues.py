"""The logo cues and the ``source`` bits that say which of them found a detection."""

from __future__ import annotations

SOURCE_SIFT = 1
SOURCE_TEXT = 2
SOURCE_TRAINED = 4
SOURCE_SILHOUETTE = 8
CUES = {SOURCE_SIFT: "sift", SOURCE_SILHOUETTE: "silhouette", SOURCE_TEXT: "text", SOURCE_TRAINED: "trained"}


def cue_names(source: int) -> list[str]:
    """The names of the cues set in a ``source`` bit field, in a fixed order."""
    return [name for bit, name in CUES.items() if source & bit]

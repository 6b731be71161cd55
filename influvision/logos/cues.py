"""The logo cues, the ``source`` bits that say which of them found a detection, and what a cue reports."""

from __future__ import annotations

from dataclasses import dataclass

from ..resample import work_scale

SOURCE_SIFT = 1
SOURCE_TEXT = 2
SOURCE_TRAINED = 4
SOURCE_SILHOUETTE = 8
CUES = {SOURCE_SIFT: "sift", SOURCE_SILHOUETTE: "silhouette", SOURCE_TEXT: "text", SOURCE_TRAINED: "trained"}
# A photo darker than this mean grey level is searched by the SIFT matcher and the silhouette cue twice, as it
# is and brightened (influvision.tone.lifted): both count contrast in grey levels, which darkness squeezes.
DARK_MEAN = 100.0


def cue_names(source: int) -> list[str]:
    """The names of the cues set in a ``source`` bit field, in a fixed order."""
    return [name for bit, name in CUES.items() if source & bit]


@dataclass(frozen=True)
class CueCandidate:
    """One mark a cue found in a photo.

    Attributes:
        image_index: which image of the batch.
        ref_index: index of the matched reference.
        box: x1, y1, x2, y2 of the whole mark in source pixels.
        score: the cue's confidence in [0, 1] (each cue's own measure, see its module).
    """

    image_index: int
    ref_index: int
    box: tuple[float, float, float, float]
    score: float


# The smallest mark, in pixels of the SIFT matcher's working copy, that gives it enough keypoints to verify
# (docs/logos.md, Limitations; the silhouette cue goes to about half of it for marks with a clean outline).
SMALLEST_MARK_WORK_PX = 25.0


def smallest_mark_searched(width: int, height: int, *, work_side: int = 1000, max_upscale: float = 2.0) -> float:
    """Smallest mark side, in source pixels, that the SIFT matcher finds other than by chance in an image of this
    size: it searches a copy whose longer side is ``work_side`` (small images enlarged at most ``max_upscale``
    times), so in a large photo the limit grows with the photo (100 px in a 4000 px photo)."""
    return SMALLEST_MARK_WORK_PX / work_scale(width, height, work_side, max_upscale)

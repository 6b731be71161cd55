"""Resolution-matched references: compare a small face with references seen at a similar resolution.

A 30 px face in a recompressed event photo and a sharp 300 px portrait of the same person land far apart
in embedding space, mostly because the small face has lost detail, not because it is someone else. The
gallery therefore also keeps, for every reference, embeddings of its chip re-rendered as if the face were
only 32, 48 or 64 px high (downscaled with antialiasing, then upscaled back to the chip size), and a probe
face is compared with the references at the level nearest above its own size.

Opt-in (``MatchSettings(resolution_match=True)``): on shared/data with faces degraded to ~30 px
(benchmarks/face_id_accuracy.py, protocol "hard") recall rose 0.15 -> 0.54 at the same threshold with no
stranger named, but in street_crowd.mp4 a real 34 px stranger came to 0.44 of a registered person (0.51
without it) and was named. Small faces look alike at low resolution for strangers too; until the
threshold per resolution is calibrated on many more unregistered faces, the default stays off.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from .align import DLIB_MTCNN_TEMPLATE

# Face heights (quality.size_px units) at which references are re-rendered; larger faces use the
# full-resolution reference.
RESOLUTION_LEVELS: tuple[float, ...] = (32.0, 48.0, 64.0)

# size_px of a face filling a 150 px dlib chip: quality.face_size_px is about 2.82 x the eye-to-mouth
# distance, which is ~58.9 px in the template.
_T = DLIB_MTCNN_TEMPLATE.double()
CHIP_FACE_PX = 2.82 * float(((_T[3] + _T[4]) / 2 - (_T[0] + _T[1]) / 2).norm())


def at_resolution(chips: Tensor, face_px: float) -> Tensor:
    """Re-render uint8 (N, S, S, 3) chips as if their face were ``face_px`` high (same size out)."""
    n, s = chips.shape[0], chips.shape[1]
    if n == 0:
        return chips
    side = max(8, round(s * face_px / CHIP_FACE_PX))
    x = chips.permute(0, 3, 1, 2).float()
    x = F.interpolate(x, size=(side, side), mode="bilinear", antialias=True, align_corners=False)
    x = F.interpolate(x, size=(s, s), mode="bilinear", align_corners=False)
    return x.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).contiguous()


def resolution_level(size_px: Tensor, levels: tuple[float, ...] = RESOLUTION_LEVELS) -> Tensor:
    """Index of the reference level to compare each face with: the first level >= its size, or
    ``len(levels)`` (full resolution) for faces larger than every level. (N,) int64, same device."""
    edges = torch.tensor(levels, dtype=size_px.dtype, device=size_px.device)
    return torch.bucketize(size_px, edges, right=False)

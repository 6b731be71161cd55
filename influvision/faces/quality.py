"""Per-face quality measures: how much a detected face can be trusted for identification.

All measures are batched tensor ops on the faces' device (no loop over faces, no host round-trip):

- ``size_px``: the face's height in source pixels, from landmark geometry (robust to roll, yaw and pitch);
- ``frontalness``: in [0, 1], about cos²(yaw) x cos²(pitch) estimated from the 5 landmarks (1 = frontal);
- ``sharpness``: high-frequency energy of the aligned chip (Laplacian variance over grey variance);
- ``score``: the detector's confidence, passed through.

Which faces may be named is decided later, from these columns: photos by ``MatchSettings`` (``min_face_px``,
``min_sharpness``) in ``api.identify``, video tracks by ``video.identity.identifiable`` (frontalness too).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from ..errors import ShapeError
from ..tone import LUMA
from ..types import Faces
from .align import DLIB_MTCNN_TEMPLATE, align_to_chip

logger = logging.getLogger(__name__)

__all__ = [
    "chip_sharpness",
    "face_quality",
    "face_size_px",
    "frontalness",
]

# Reference geometry of a frontal face: the MTCNN template in dlib's chip (eyes ~54.6 px apart, eye midpoint
# to mouth midpoint ~58.9 px, nose tip ~0.556 of the way from eyes to mouth).
_T = DLIB_MTCNN_TEMPLATE.double()
_EYE_DIST = float((_T[1] - _T[0]).norm())
_EYE_MOUTH = float(((_T[3] + _T[4]) / 2 - (_T[0] + _T[1]) / 2).norm())
_NOSE_T = float((_T[2, 1] - (_T[0, 1] + _T[1, 1]) / 2) / _EYE_MOUTH)
_EYE_RATIO = _EYE_DIST / _EYE_MOUTH

# Depth of the nose tip in front of the eye/mouth plane, in eye-to-mouth distances: turning the head by yaw
# θ shifts the nose sideways by ≈ depth · sin θ while the eye-to-mouth distance stays. Anthropometric
# (nose tip ~3 cm before the eye centres, eyes to mouth ~6.5 cm), not fitted.
_NOSE_DEPTH = 0.45

# size_px = the face's height as a detector box spans it, estimated as the larger of two landmark distances
# scaled to it: the eye-mouth distance (shrinks with pitch only) and the eye distance (shrinks with yaw only).
# The factors are the median MTCNN box height over each distance on the 115 confident (p > 0.95, box > 40 px)
# faces MTCNN finds in shared faces/ and scenes/ (box/eye-mouth: median 2.82, IQR 2.68-3.00; box/eye
# distance: median 2.91, IQR 2.81-3.08).
_HEIGHT_PER_EYE_MOUTH = 2.82
_HEIGHT_PER_EYE_DIST = 2.91

# What size and blur do to a descriptor, measured on the 105 photos of shared faces/ (MTCNN landmarks, dlib port):
# each photo's face was shrunk (INTER_AREA) to a given size_px, or Gaussian-blurred with sigma 2 % of its
# size, re-aligned with the landmarks scaled along, and embedded. "dist" is the Euclidean distance to the same
# photo's full-quality descriptor (dlib's same-person threshold is 0.6), over every second photo (53):
#
#   face as           dist median / p90   sharpness median
#   size_px 24           0.53 / 0.58          0.0061
#   size_px 32           0.40 / 0.51          0.0101
#   size_px 40           0.34 / 0.37          0.0154
#   size_px 48           0.28 / 0.33          0.0208
#   size_px 64           0.19 / 0.24          0.0323
#   size_px 80           0.15 / 0.17          0.0453
#   blurred (2 %)        0.43 / 0.50          0.0028
#   original             0                    0.174 (5th percentile 0.045)
#
# - size: below 40 px the degradation alone eats more than half of dlib's 0.6 budget (the photo rule,
#   MatchSettings.min_face_px = 24, was chosen on whole-pipeline accuracy instead: docs/accuracy.md).
# - sharpness: of the 530 degraded versions of those 53 photos, 21 % of those at >= 0.015 moved > 0.3,
#   against 96 % of those under it; only 1 of the 105 originals (ben_affleck/5.jpg, a soft 64 px face,
#   0.009) is under it.
# - frontalness: the 115 confident faces have median 0.93, 5th percentile 0.67, minimum 0.31: the one real
#   near-profile (ben_affleck/4.jpg, about 60° yaw).

# Sharpness is measured on the central part of the chip (the face itself, not hair or background).
_CENTRAL_FRACTION = (0.2, 0.85, 0.2, 0.8)  # top, bottom, left, right as fractions of the chip side
_GREY_FLOOR = 25.0  # grey variance floor (std 5 levels): flat chips do not get a huge ratio


def _check_landmarks(landmarks: Tensor) -> None:
    if landmarks.ndim != 3 or landmarks.shape[1:] != (5, 2):
        raise ShapeError("landmarks", "(N, 5, 2)", tuple(landmarks.shape))


def _face_frame(landmarks: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Eye distance e, eye-mouth distance m (both (N,) float64) and the points (N, 5, 2) in a face frame:
    origin at the eye midpoint, x along the eye-to-mouth axis's normal (image-left to image-right), y along
    the eye-to-mouth axis (down). Using the eye-mouth axis, not the eye line, keeps x meaningful when a turned
    head brings the eyes together."""
    p = landmarks.double()
    eye_mid = (p[:, 0] + p[:, 1]) / 2
    mouth_mid = (p[:, 3] + p[:, 4]) / 2
    down = mouth_mid - eye_mid
    m = down.norm(dim=-1)
    down = down / m.clamp_min(1e-9).unsqueeze(-1)
    right = torch.stack([down[:, 1], -down[:, 0]], dim=-1)  # down rotated by -90°: image-right when upright
    rel = p - eye_mid.unsqueeze(1)
    local = torch.stack([(rel * right.unsqueeze(1)).sum(-1), (rel * down.unsqueeze(1)).sum(-1)], dim=-1)
    e = (p[:, 1] - p[:, 0]).norm(dim=-1)
    return e, m, local


def face_size_px(landmarks: Tensor, boxes: Tensor | None = None) -> Tensor:
    """Face height in source pixels from the 5 landmarks.

    max(eye-mouth distance x k1, eye distance x k2), with k1, k2 making both equal to the detector box height
    on frontal faces: a turned head shortens only the eye distance, a tilted one only the eye-mouth distance,
    and roll changes neither. Where the landmarks are degenerate (< 1 px apart, e.g. a face given only as a
    box) and ``boxes`` are given, the box height is used.

    Args:
        landmarks: (N, 5, 2) float, source pixels.
        boxes: optional (N, 4) x1, y1, x2, y2 source pixels.

    Returns:
        (N,) float32 on the landmarks' device; N = 0 gives (0,).
    """
    _check_landmarks(landmarks)
    e, m, _ = _face_frame(landmarks)
    size = torch.maximum(m * _HEIGHT_PER_EYE_MOUTH, e * _HEIGHT_PER_EYE_DIST)
    if boxes is not None:
        box_h = (boxes[:, 3] - boxes[:, 1]).double().to(size.device)
        size = torch.where(torch.maximum(e, m) < 1.0, box_h, size)
    return size.float()


def frontalness(landmarks: Tensor) -> Tensor:
    """How frontal each face is, in [0, 1], from the 5 landmarks: ≈ cos²(yaw) · cos²(pitch).

    Squared so that the scale spreads where it matters: frontal 1, 30° ≈ 0.75, 45° ≈ 0.5, 60° ≈ 0.25,
    profile 0.

    Yaw is estimated twice and the two are averaged (geometric mean):
    - the nose tip's sideways offset from the eye-mouth midline, sin(yaw) ≈ offset / (depth · eye-mouth
      distance) (sensitive, saturates at profile, where the nose passes the eyes);
    - the eye distance over the eye-mouth distance relative to a frontal face's, ≈ cos(yaw).
    Pitch from the nose tip's height between eyes and mouth relative to a frontal face's.
    Degenerate landmarks (eyes and mouth on one point) give 0.

    Args:
        landmarks: (N, 5, 2) float, source pixels (any scale, any roll).

    Returns:
        (N,) float32 in [0, 1] on the landmarks' device; N = 0 gives (0,).
    """
    _check_landmarks(landmarks)
    e, m, local = _face_frame(landmarks)
    m_safe = m.clamp_min(1e-9)
    nose = local[:, 2]
    # Offset of the nose from the midline between the eye midpoint (x = 0) and the mouth midpoint.
    mouth_x = (local[:, 3, 0] + local[:, 4, 0]) / 2
    midline_x = mouth_x * (nose[:, 1] / m_safe)
    sin_yaw = ((nose[:, 0] - midline_x).abs() / (_NOSE_DEPTH * m_safe)).clamp(max=1.0)
    cos_yaw_nose = (1 - sin_yaw**2).sqrt()
    cos_yaw_eyes = (e / m_safe / _EYE_RATIO).clamp(max=1.0)
    cos_yaw = (cos_yaw_nose * cos_yaw_eyes).sqrt()
    tan_pitch = (nose[:, 1] / m_safe - _NOSE_T) / _NOSE_DEPTH
    cos_pitch = torch.rsqrt(1 + tan_pitch**2)
    out = (cos_yaw * cos_pitch).square().clamp(0.0, 1.0)
    return torch.where(m > 1e-6, out, torch.zeros_like(out)).float()


def chip_sharpness(chips: Tensor) -> Tensor:
    """Sharpness of aligned face chips: var(Laplacian) / max(var(grey), 25) over the chip's central face region.

    The chips are aligned (same framing for every face), so the ratio compares like with like across faces:
    dividing by the grey variance removes contrast and exposure, leaving the share of the face's detail at the
    finest scale. A face upscaled from few source pixels or blurred by motion or focus scores low. Values are
    comparable between chips of the same side (150 px for the dlib embedder); the reference photos of shared
    faces/ measure median 0.17 (5th percentile 0.045), the same faces shrunk to 24 px 0.006 (the table above
    ``face_quality`` in this module's source).

    Args:
        chips: (N, S, S, 3) uint8 RGB chips (any device), e.g. from :func:`~influvision.faces.align.align_to_chip`.

    Returns:
        (N,) float32 on the chips' device; N = 0 gives (0,).
    """
    if chips.ndim != 4 or chips.shape[-1] != 3 or chips.shape[1] < 8 or chips.shape[2] < 8:
        raise ShapeError("chips", "(N, S, S, 3) uint8 with S >= 8", tuple(chips.shape))
    n, h, w = chips.shape[0], chips.shape[1], chips.shape[2]
    if n == 0:
        return torch.zeros(0, device=chips.device)
    rgb = torch.tensor(LUMA, device=chips.device)
    grey = (chips.float() @ rgb).unsqueeze(1)  # (N, 1, H, W)
    t, b = int(h * _CENTRAL_FRACTION[0]), int(h * _CENTRAL_FRACTION[1])
    left, right = int(w * _CENTRAL_FRACTION[2]), int(w * _CENTRAL_FRACTION[3])
    lap_kernel = torch.tensor([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]], device=chips.device)
    window = grey[:, :, t - 1:b + 1, left - 1:right + 1]
    lap = F.conv2d(window, lap_kernel.view(1, 1, 3, 3))
    centre = grey[:, :, t:b, left:right]
    # Chip pixels outside the source image are exactly black (0, 0, 0); their edge with the image would read
    # as strong detail (tight crops, faces at the border), so pixels within 1 px of them are left out.
    outside = (chips[:, t - 1:b + 1, left - 1:right + 1] == 0).all(dim=-1).unsqueeze(1).float()
    keep = (F.max_pool2d(outside, 3, stride=1) == 0).flatten(1).float()  # (N, (b-t)*(right-left))
    count = keep.sum(dim=1).clamp_min(2.0)

    def masked_var(x: Tensor) -> Tensor:
        x = x.flatten(1)
        mean = (x * keep).sum(dim=1) / count
        return (((x - mean.unsqueeze(1)) ** 2) * keep).sum(dim=1) / (count - 1)

    var_lap, var_grey = masked_var(lap), masked_var(centre)
    return var_lap / var_grey.clamp_min(_GREY_FLOOR)


def face_quality(
    faces: Faces,
    images: Sequence[Tensor | np.ndarray] | None = None,
    chips: Tensor | None = None,
) -> dict[str, Tensor]:
    """Quality columns for every face of a batch, ready for ``faces.with_columns(**face_quality(...))``.

    Args:
        faces: N faces (landmarks in source pixels).
        images: the batch's images, used to align chips when ``chips`` is not given.
        chips: (N, S, S, 3) uint8 aligned chips of these faces (e.g. the embedder's input).

    Returns:
        ``size_px`` (N,) float32 source pixels, ``frontalness`` (N,) float32 in [0, 1], ``score`` (N,) the
        detector confidence, and ``sharpness`` (N,) float32 when chips or images are given (without either,
        the key is absent). All on the faces' device.
    """
    out = {
        "size_px": face_size_px(faces.landmarks, faces.boxes),
        "frontalness": frontalness(faces.landmarks),
        "score": faces.scores,
    }
    if chips is None and images is not None:
        chips = align_to_chip(images, faces.image_index, faces.landmarks)
    if chips is not None:
        if chips.shape[0] != len(faces):
            raise ShapeError("chips", f"{len(faces)} chips, one per face", chips.shape[0])
        out["sharpness"] = chip_sharpness(chips).to(faces.device)
    return out

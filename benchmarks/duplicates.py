"""Near-duplicate photos: copies that must merge against other shots of one scene that must not.

For every labelled scene and logo photo of ../shared/data, the pHash distance and the pixel
``shot_difference`` (influvision/sources.py) between the photo and
  copies (must be duplicates):   JPEG quality 40; half size at quality 50; gamma 0.8; x1.15 + 10 brighter (clips
                                 highlights); warmer white balance; saturation x1.3; each re-encoded
  other shots (must not be):     the photo with one face (from faces/) pasted in, 30 px high at 1080p scale
                                 (at least 20 px), darkened to 45 % like a dim venue, at quality 50; the photo
                                 with a yellow bar (a mark) of the grey level of the wall it is on
Prints the largest difference per kind of copy, the smallest per kind of other shot, and how many of each the
shipped rule (pHash <= NEAR_DUPLICATE_MAX_DISTANCE and shot_difference <= SAME_SHOT_MAX_DIFF) merges.

    python -m benchmarks.duplicates
"""

from __future__ import annotations

import io
import platform
from collections import defaultdict

import cv2
import numpy as np
from PIL import Image

from influvision.decode.images import load_image
from influvision.duplicates import (
    NEAR_DUPLICATE_MAX_DISTANCE,
    SAME_SHOT_MAX_DIFF,
    hamming,
    phash,
    shot_difference,
)

from .common import SHARED


def _jpeg(a: np.ndarray, quality: int) -> np.ndarray:
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, "JPEG", quality=quality)
    return load_image(buf.getvalue()).pixels


def _saturated(a: np.ndarray, factor: float) -> np.ndarray:
    hsv = cv2.cvtColor(a, cv2.COLOR_RGB2HSV).astype(np.float32)
    hsv[..., 1] = np.clip(hsv[..., 1] * factor, 0, 255)
    return cv2.cvtColor(hsv.astype(np.uint8), cv2.COLOR_HSV2RGB)


def main() -> None:
    rng = np.random.default_rng(0)
    photos = sorted((SHARED / "scenes").glob("*.jpg")) + sorted((SHARED / "logos" / "scenes").glob("*.jpg"))
    faces = sorted((SHARED / "faces").glob("*/1.jpg"))
    rows: dict[str, list[tuple[int, float]]] = defaultdict(list)
    for path in photos:
        a = load_image(path).pixels
        h, w = a.shape[:2]
        copies = {
            "copy: quality 40": _jpeg(a, 40),
            "copy: half size, quality 50": _jpeg(cv2.resize(a, (w // 2, h // 2), interpolation=cv2.INTER_AREA), 50),
            "copy: gamma 0.8": _jpeg((255 * (a / 255.0) ** 0.8).astype(np.uint8), 80),
            "copy: x1.15 + 10": _jpeg(np.clip(a.astype(np.int16) * 1.15 + 10, 0, 255).astype(np.uint8), 80),
            "copy: warmer (red x1.08, blue x0.9)": _jpeg(np.clip(a * np.array([1.08, 1.0, 0.9]), 0, 255)
                                                         .astype(np.uint8), 80),
            "copy: saturation x1.3": _jpeg(_saturated(a, 1.3), 80),
        }
        face = load_image(faces[int(rng.integers(len(faces)))]).pixels
        fh = max(20, 30 * max(h, w) // 1920)
        small = cv2.resize(face, (max(1, fh * face.shape[1] // face.shape[0]), fh), interpolation=cv2.INTER_AREA)
        shot = a.copy()
        y, x = int(rng.integers(0, h - fh)), int(rng.integers(0, w - small.shape[1]))
        shot[y:y + fh, x:x + small.shape[1]] = (small * 0.45).astype(np.uint8)
        copies["other shot: one more dim face"] = _jpeg(shot, 50)
        # A sponsor's mark added in a colour of the wall's own grey level: only its hue tells it apart.
        mark = a.copy()
        mh, mw = max(16, h // 12), max(32, w // 6)
        y, x = int(rng.integers(0, h - mh)), int(rng.integers(0, w - mw))
        patch = mark[y:y + mh, x:x + mw].astype(np.float32)
        level = float(patch.mean())
        yellow = np.array([255.0, 204.0, 0.0])
        yellow *= level / float(yellow @ np.array([0.299, 0.587, 0.114]))  # the same grey level as the patch
        mark[y + mh // 4:y + 3 * mh // 4, x + mw // 8:x + 7 * mw // 8] = np.clip(yellow, 0, 255).astype(np.uint8)
        copies["other shot: a mark of the wall's grey level"] = _jpeg(mark, 80)
        for kind, b in copies.items():
            rows[kind].append((hamming(phash(a), phash(b)), shot_difference(a, b)))
    print(f"# {len(photos)} photos, {platform.machine()}; rule: pHash <= {NEAR_DUPLICATE_MAX_DISTANCE} and "
          f"shot_difference <= {SAME_SHOT_MAX_DIFF}")
    print("| pair | photos | pHash distance (max) | shot_difference min / median / max | merged by the rule |")
    print("|---|---|---|---|---|")
    for kind, vals in rows.items():
        d = np.array([v[1] for v in vals])
        merged = sum(1 for hd, diff in vals if hd <= NEAR_DUPLICATE_MAX_DISTANCE and diff <= SAME_SHOT_MAX_DIFF)
        print(f"| {kind} | {len(vals)} | {max(v[0] for v in vals)} | {d.min():.1f} / {np.median(d):.1f} / "
              f"{d.max():.1f} | {merged} |")


if __name__ == "__main__":
    main()

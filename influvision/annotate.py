"""Annotated copies of the media: boxes and names, unknown faces optionally blurred, and timelines."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

from .files import written_atomically
from .report import FaceEntry, LogoEntry, MediaEntry

NAMED = (40, 200, 80)
UNKNOWN = (230, 60, 60)
LOGO = (40, 140, 240)


def output_path(directory: Path, media_path: str, suffix: str) -> Path:
    """A file under ``directory`` for a media path (archive members included), never outside it.

    The name is the media path made safe (``photos/a b.jpg`` -> ``photos_a_b``), its last 120 bytes (file
    systems limit a name to 255 bytes, and a letter may take 4), then 8 hex digits of the path's SHA-256, then
    ``suffix``: media whose safe names coincide (``a/b.jpg``, ``a_b.jpg``, ``b.jpg`` beside ``b.png``) still
    get files of their own, and a rerun writes the same file.
    """
    stem = media_path.replace("!/", "__")
    stem = stem[: -len(Path(stem).suffix)] if Path(stem).suffix else stem
    safe = re.sub(r"[^\w.\-]+", "_", stem).strip("._")
    safe = safe.encode()[-120:].decode(errors="ignore").strip("._") or "media"
    tag = hashlib.sha256(media_path.encode()).hexdigest()[:8]
    return directory / f"{safe}.{tag}{suffix}"


# A blurred face box is widened by this share of its size on every side (a detector's box leaves the chin,
# ears and hairline out), and blurred with a radius of this share of its width (at least _BLUR_MIN_RADIUS px).
BLUR_MARGIN = 0.1
_BLUR_RADIUS = 0.25
_BLUR_MIN_RADIUS = 6


def blur_box(image: Image.Image, box: list[float]) -> None:
    """Blur a face box, widened by :data:`BLUR_MARGIN`, in place, strongly enough that the person cannot be
    recognised (on the shared photos and clips, no blurred face is found again by the detector, and none
    embeds within the matching threshold of its sharp self)."""
    dx, dy = BLUR_MARGIN * (box[2] - box[0]), BLUR_MARGIN * (box[3] - box[1])
    x1, y1, x2, y2 = (int(round(v)) for v in (box[0] - dx, box[1] - dy, box[2] + dx, box[3] + dy))
    x1, y1 = max(0, x1), max(0, y1)
    x2, y2 = min(image.width, x2), min(image.height, y2)
    if x2 <= x1 or y2 <= y1:
        return
    region = image.crop((x1, y1, x2, y2))
    radius = max(_BLUR_MIN_RADIUS, round(_BLUR_RADIUS * (x2 - x1)))
    image.paste(region.filter(ImageFilter.GaussianBlur(radius)), (x1, y1))


def draw_detections(image: Image.Image, faces: list[FaceEntry], logos: list[LogoEntry], *,
                    blur_unknown: bool, labels: list[str] | None = None) -> Image.Image:
    """Draw boxes (green: named, red: unknown, blue: logos) with names and similarities on a copy."""
    image = image.convert("RGB").copy()
    if blur_unknown:
        for f in faces:
            if f.identity is None:
                blur_box(image, f.box)
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default(size=max(12, image.height // 60))
    line = max(2, image.height // 400)
    for k, f in enumerate(faces):
        colour = NAMED if f.identity else UNKNOWN
        text = f"{f.identity} {f.similarity:.2f}" if f.identity else ("unknown" if f.status == "unknown" else "?")
        if labels is not None:
            text = labels[k]
        draw.rectangle(f.box, outline=colour, width=line)
        draw.text((f.box[0], max(0, f.box[1] - font.size - 2)), text, fill=colour, font=font)
    for lg in logos:
        draw.rectangle(lg.box, outline=LOGO, width=line)
        draw.text((lg.box[0], lg.box[3] + 2), f"{lg.brand} {lg.score:.2f}", fill=LOGO, font=font)
    return image


def annotate_photo(pixels: np.ndarray, entry: MediaEntry, directory: Path, *, blur_unknown: bool = False) -> Path:
    """Write ``directory/<photo name>.jpg`` with the entry's boxes drawn."""
    directory.mkdir(parents=True, exist_ok=True)
    out = output_path(directory, entry.path, ".jpg")
    drawn = draw_detections(Image.fromarray(pixels), entry.faces, entry.logos, blur_unknown=blur_unknown)
    with written_atomically(out) as tmp:
        drawn.save(tmp, quality=90)
    return out


def timeline_png(intervals: dict[str, list[list[float]]], duration_s: float, path: Path, *,
                 title: str = "") -> Path:
    """One bar per person (or brand) over the video's duration: when they are on screen."""
    names = sorted(intervals)
    width, left, row, top = 1000, 180, 28, 40
    height = top + row * max(1, len(names)) + 30
    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default(size=14)
    draw.text((10, 10), title or "on screen", fill="black", font=font)
    span = max(duration_s, 1e-6)
    scale = (width - left - 20) / span
    for k, name in enumerate(names):
        y = top + k * row
        draw.text((10, y + 6), name[:22], fill="black", font=font)
        draw.rectangle((left, y + 4, width - 20, y + row - 4), fill=(235, 235, 235))
        for s, e in intervals[name]:
            draw.rectangle((left + s * scale, y + 4, left + max(e * scale, s * scale + 1), y + row - 4), fill=NAMED)
    axis_y = top + row * max(1, len(names)) + 5
    step = max(1.0, round(span / 10))
    t = 0.0
    while t <= span + 1e-9:
        x = left + t * scale
        draw.line((x, axis_y, x, axis_y + 5), fill="black")
        draw.text((x - 6, axis_y + 7), f"{t:g}s", fill="black", font=font)
        t += step
    with written_atomically(path) as tmp:
        image.save(tmp)
    return path

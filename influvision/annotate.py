"""Annotated copies of the media: boxes and names, unknown faces optionally blurred, and timelines."""

from __future__ import annotations

import copy
import functools
import hashlib
import re
import unicodedata
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

from .boxes import box_iou
from .files import written_atomically
from .report import FaceEntry, LogoEntry, MediaEntry

if TYPE_CHECKING:
    from .faces.detect import FaceDetector

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


@functools.lru_cache(maxsize=16)
def label_font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    """DejaVu Sans where the system has it (Latin, Greek and Cyrillic names), else Pillow's built-in font."""
    try:
        return ImageFont.truetype("DejaVuSans.ttf", size)
    except OSError:
        return ImageFont.load_default(size=size)


def drawable(text: str, font: ImageFont.FreeTypeFont | ImageFont.ImageFont) -> str:
    """``text`` as ``font`` can draw it: Pillow's built-in font has ASCII letters only, so other letters are
    drawn without their accents (ö as o) and the rest as ``?`` rather than as empty boxes. The report keeps
    every name as it was registered."""
    path = getattr(font, "path", None)
    if (isinstance(path, str) and path.endswith("DejaVuSans.ttf")) or text.isascii():
        return text
    out = []
    for ch in text:
        base = unicodedata.normalize("NFKD", ch).encode("ascii", "ignore").decode()
        out.append(ch if ch.isascii() else base or "?")
    return "".join(out)


# Face boxes (K, 4) per image, for a list of images: what blurring searches with (see privacy_search).
FaceSearch = Callable[[list[np.ndarray]], list[np.ndarray]]
# Strangers are searched for blurring in the media at up to this size, whatever the analysis searched
# (``max_side``, 1600 px by default): a 30 px face in a 4000 px photo is too small to name but not to recognise.
PRIVACY_MAX_SIDE = 4800
# A face the privacy search finds is the named face when it overlaps the named box this much (and most).
NAMED_IOU = 0.3


def privacy_search(detector: FaceDetector) -> FaceSearch:
    """Face boxes (K, 4) of each image, by ``detector``'s networks searching at up to :data:`PRIVACY_MAX_SIDE`
    px, for blurring: faces too small for the analysis to find are still blurred."""
    from .engine import split_on_oom

    search = copy.copy(detector)  # the same networks on a larger canvas
    search.max_side = max(detector.max_side, PRIVACY_MAX_SIDE)
    detect = split_on_oom(search.detect, search.device)

    def boxes(images: list[np.ndarray]) -> list[np.ndarray]:
        faces = detect(images)
        index = faces.image_index.cpu().numpy()
        found = faces.boxes.float().cpu().numpy()
        return [found[index == k] for k in range(len(images))]
    return boxes


def strangers(boxes: np.ndarray, named: list[list[float]]) -> list[list[float]]:
    """The detected boxes that are not a named face: each named box spares at most one detected box, the one
    overlapping it most (IoU at least :data:`NAMED_IOU`), so a stranger cheek to cheek with a named person is
    still blurred."""
    found = [list(map(float, b)) for b in boxes]
    spared: set[int] = set()
    for n in named:
        overlaps = [(box_iou(b, n), k) for k, b in enumerate(found) if k not in spared]
        best = max(overlaps, default=(0.0, -1))
        if best[0] >= NAMED_IOU:
            spared.add(best[1])
    return [b for k, b in enumerate(found) if k not in spared]


def draw_detections(image: Image.Image, faces: list[FaceEntry], logos: list[LogoEntry], *,
                    blur_unknown: bool, labels: list[str] | None = None) -> Image.Image:
    """Draw boxes (green: named, red: unknown, blue: logos) with names and similarities on a copy."""
    image = image.convert("RGB").copy()
    if blur_unknown:
        for f in faces:
            if f.identity is None:
                blur_box(image, f.box)
    draw = ImageDraw.Draw(image)
    font = label_font(max(12, image.height // 60))
    line = max(2, image.height // 400)
    for k, f in enumerate(faces):
        colour = NAMED if f.identity else UNKNOWN
        text = f"{f.identity} {f.similarity:.2f}" if f.identity else ("unknown" if f.status == "unknown" else "?")
        if labels is not None:
            text = labels[k]
        draw.rectangle(f.box, outline=colour, width=line)
        draw.text((f.box[0], max(0, f.box[1] - font.size - 2)), drawable(text, font), fill=colour, font=font)
    for lg in logos:
        draw.rectangle(lg.box, outline=LOGO, width=line)
        draw.text((lg.box[0], lg.box[3] + 2), drawable(f"{lg.brand} {lg.score:.2f}", font), fill=LOGO, font=font)
    return image


def annotate_photo(pixels: np.ndarray, entry: MediaEntry, directory: Path, *, blur_unknown: bool = False,
                   faces_in: FaceSearch | None = None) -> Path:
    """Write ``directory/<photo name>.jpg`` with the entry's boxes drawn. With ``blur_unknown`` the entry's
    unknown faces are blurred, and so is every face ``faces_in`` (:func:`privacy_search`) finds that is not a
    named face."""
    directory.mkdir(parents=True, exist_ok=True)
    out = output_path(directory, entry.path, ".jpg")
    image = Image.fromarray(pixels)
    if blur_unknown and faces_in is not None:
        image = image.convert("RGB").copy()
        for box in strangers(faces_in([pixels])[0], [f.box for f in entry.faces if f.identity is not None]):
            blur_box(image, box)
    drawn = draw_detections(image, entry.faces, entry.logos, blur_unknown=blur_unknown)
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
    font = label_font(14)
    draw.text((10, 10), drawable(title or "on screen", font), fill="black", font=font)
    span = max(duration_s, 1e-6)
    scale = (width - left - 20) / span
    for k, name in enumerate(names):
        y = top + k * row
        draw.text((10, y + 6), drawable(name[:22], font), fill="black", font=font)
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

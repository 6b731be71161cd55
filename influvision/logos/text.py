"""The text cue: read brand names in photos with OCR and place the whole mark from where its text sits.

At construction every reference is read by the OCR itself (its shape drawn dark on a white canvas). That
gives the words the mark contains (``FedEx``, ``DHL``) and where each sits inside the mark's content box.
A reference with no readable word (an emblem: the apple, the swoosh) gets no text cue. The brand name is
looked for too, with the layout of the reference word it resembles, so a mark the OCR reads slightly wrong
in the flat reference is still searched under its proper spelling.

In a photo, every recognised line is split into words; runs of up to :data:`MAX_SPAN` consecutive words are
compared with the brand texts by edit distance (short texts must match exactly, and the whole line). A
match maps the reference word's quad onto the photo word's quad with an affine fit and carries the mark's
content box through it: for a pure wordmark that is nearly the word box, for a mark with text beside an
emblem it extends over the emblem.

The OCR is ``rapidocr-onnxruntime`` (PP-OCRv4 ONNX models shipped in its wheel, CPU, no download), the
optional extra ``ocr``. :func:`ocr_available` says whether it is installed.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from ..boxes import box_iou
from ..errors import InfluvisionError
from ..types import check_rgb_images
from .cues import CueCandidate
from .references import LogoReference

log = logging.getLogger(__name__)

# Most consecutive OCR words joined into one candidate ("Coca Cola" -> "cocacola").
MAX_SPAN = 3
# Fewest characters of a word learned from a reference; shorter readings are usually an emblem misread
# as a letter (the McDonald's arches as "m", the BMW roundel as "M").
MIN_WORD_CHARS = 3
# A learned word must span this fraction of the mark's width or height: a tiny word inside an emblem
# ("STUTTGART" in the Porsche crest) would place the mark box with a tenfold magnified error.
MIN_WORD_EXTENT = 0.35
# White border around the reference canvas when it is read, as a fraction of its longer side.
_READ_BORDER = 0.12
# Longer side, in pixels, the reference canvas is drawn at for reading. Larger read the same words on the
# shared references and cost more (the detector's time grows with the area).
_READ_SIDE = 512


class OcrUnavailableError(InfluvisionError, ImportError):
    """The text cue was asked for but ``rapidocr-onnxruntime`` is not installed."""


def ocr_available() -> bool:
    """Whether ``rapidocr_onnxruntime`` can be imported (without importing it)."""
    return importlib.util.find_spec("rapidocr_onnxruntime") is not None


def normalise(text: str) -> str:
    """Lowercase ASCII letters and digits only: ``"McDonald's"`` -> ``"mcdonalds"``."""
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    return re.sub(r"[^a-z0-9]", "", ascii_text.lower())


def edit_distance(a: str, b: str) -> int:
    """Levenshtein distance (insertions, deletions, substitutions each cost 1)."""
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return prev[-1]


def allowed_edits(word: str) -> int:
    """Edits tolerated when matching ``word``: none up to 4 characters ("dhl", "ford"), 1 up to 7, then 2."""
    n = len(word)
    return 0 if n <= 4 else 1 if n <= 7 else 2


@dataclass(frozen=True)
class BrandText:
    """One text to look for and where it sits in its reference.

    Attributes:
        ref_index: index of the reference (into the detector's references).
        text: normalised text to match (lowercase letters and digits).
        quad: (4, 2) float32, the word's quad on the reference canvas (clockwise from top left).
        content_box: x1, y1, x2, y2 of the mark on the reference canvas.
        learned: the OCR's reading of the reference this layout came from (for logs and reports).
    """

    ref_index: int
    text: str
    quad: np.ndarray
    content_box: tuple[float, float, float, float]
    learned: str


@dataclass(frozen=True)
class TextCandidate(CueCandidate):
    """One brand text found in a photo; ``score`` is the OCR confidence times the match quality
    (1 - edits / length).

    Attributes:
        text: the OCR's words that matched.
        confidence: the OCR's own confidence for the line.
    """

    text: str
    confidence: float


# The manifest of the OCR's model files (weights/).
OCR_MODELS = "rapidocr-ppocrv4"


def load_ocr_engine(threads: int | None = None) -> Any:
    """A RapidOCR engine on the CPU that reads images at the size they are given.

    Args:
        threads: onnxruntime intra-op threads; default: the CPU count, at most 4.

    Returns:
        A ``rapidocr_onnxruntime.RapidOCR`` instance.

    Raises:
        OcrUnavailableError: ``rapidocr-onnxruntime`` is not installed.
    """
    try:
        from rapidocr_onnxruntime import RapidOCR
    except ImportError as err:
        raise OcrUnavailableError(
            "the logo text cue needs rapidocr-onnxruntime: pip install --no-deps 'rapidocr-onnxruntime>=1.4,<1.5' "
            "&& pip install onnxruntime pyclipper shapely six") from err
    from ..weights import resolve_weights

    n = threads if threads is not None else min(4, os.cpu_count() or 1)
    # The package's own ONNX files, each checked against its sha256 (weights/rapidocr-ppocrv4.json) before
    # onnxruntime reads it.
    models = {f"{part}_model_path": str(resolve_weights(OCR_MODELS, file, download=False))
              for part, file in (("det", "ch_PP-OCRv4_det_infer.onnx"), ("rec", "ch_PP-OCRv4_rec_infer.onnx"),
                                 ("cls", "ch_ppocr_mobile_v2.0_cls_infer.onnx"))}
    # "max" with the photo already resized by us: the detector keeps our size instead of upscaling every
    # photo's shorter side to 736 px, so the cost per photo is bounded by ``work_side``.
    return RapidOCR(intra_op_num_threads=n, inter_op_num_threads=1, det_limit_type="max",
                    det_limit_side_len=4096, text_score=0.5, **models)


def read_text(engine: Any, bgr: np.ndarray) -> list[tuple[str, float, np.ndarray]]:
    """Run the OCR on one BGR uint8 image.

    Returns:
        One (text, confidence, quad) per recognised line; quad is (4, 2) float32 in the image's pixels,
        clockwise from the top left.
    """
    result, _ = engine(np.ascontiguousarray(bgr), use_cls=False)
    out = []
    for quad, text, conf in result or []:
        out.append((str(text), float(conf), np.asarray(quad, dtype=np.float32).reshape(4, 2)))
    return out


class TextCue:
    """Finds registered wordmarks in photos by reading them.

    Args:
        references: the detector's references; a candidate's ``ref_index`` indexes this list.
        engine: a RapidOCR engine (default: :func:`load_ocr_engine`); one engine can serve several cues.
        work_side: photos are resampled so their longer side is this many pixels before reading (small
            photos are upscaled, at most 3x; large ones downscaled), which bounds the time per photo.
        min_confidence: the OCR's own line confidence a match needs.
        short_confidence: the confidence a text of 3 characters or fewer needs ("dhl", "bmw").

    Raises:
        OcrUnavailableError: no engine given and ``rapidocr-onnxruntime`` is not installed.
    """

    def __init__(self, references: Sequence[LogoReference], *, engine: Any = None, work_side: int = 1024,
                 min_confidence: float = 0.75, short_confidence: float = 0.9) -> None:
        self.engine = engine if engine is not None else load_ocr_engine()
        self.work_side = work_side
        self.min_confidence = min_confidence
        self.short_confidence = short_confidence
        self.texts: list[BrandText] = []
        for i, ref in enumerate(references):
            learned = learn_texts(self.engine, ref, i)
            if not learned:
                log.debug("logo text cue: reference %d (%s) has no readable text; no text cue for it", i, ref.name)
            self.texts.extend(learned)

    @property
    def ref_indices(self) -> set[int]:
        """References that have a text cue."""
        return {t.ref_index for t in self.texts}

    def find(self, images: Sequence[np.ndarray]) -> list[TextCandidate]:
        """Read each photo and return the brand texts found in it, one candidate per mark.

        Args:
            images: K arrays (H, W, 3) uint8 RGB.

        Returns:
            Candidates over all images; per image and reference, overlapping candidates (IoU >= 0.5) are
            reduced to the best one.

        Raises:
            ShapeError: an image is not an (H, W, 3) uint8 array.
        """
        out: list[TextCandidate] = []
        if not self.texts:
            return out
        check_rgb_images(images)
        for k, img in enumerate(images):
            out.extend(self._find_one(k, img))
        return out

    def _find_one(self, k: int, rgb: np.ndarray) -> list[TextCandidate]:
        h, w = rgb.shape[:2]
        scale = min(3.0, self.work_side / max(h, w))
        bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
        if abs(scale - 1.0) > 1e-3:
            interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC
            bgr = cv2.resize(bgr, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=interp)
        cands: list[TextCandidate] = []
        for line, conf, quad in read_text(self.engine, bgr):
            for bt, span_text, sub_quad, edits in self._matches(line, conf, quad):
                box = _place(bt, sub_quad / scale, w, h)
                if box is None:
                    continue
                score = conf * (1.0 - edits / max(1, len(bt.text)))
                cands.append(TextCandidate(k, bt.ref_index, box, float(score), span_text, conf))
                log.debug("text cue: image %d %r (conf %.2f) -> ref %d %r", k, span_text, conf, bt.ref_index,
                          bt.text)
        return _best_per_place(cands)

    def _matches(self, line: str, conf: float,
                 quad: np.ndarray) -> list[tuple[BrandText, str, np.ndarray, int]]:
        """(brand text, matched words, their quad, edits) for every brand text this line contains."""
        if conf < self.min_confidence:
            return []
        words = _words(line)
        whole = "".join(normalise(t) for t, _, _ in words)
        found = []
        for bt in self.texts:
            best: tuple[int, int, int] | None = None  # edits, first word, last word
            for i in range(len(words)):
                for j in range(i, min(len(words), i + MAX_SPAN)):
                    span = "".join(normalise(t) for t, _, _ in words[i:j + 1])
                    if abs(len(span) - len(bt.text)) > allowed_edits(bt.text):
                        continue
                    d = edit_distance(span, bt.text)
                    if d <= allowed_edits(bt.text) and (best is None or d < best[0]):
                        best = (d, i, j)
            if best is None:
                continue
            d, i, j = best
            short = len(bt.text) <= 3
            # Short texts are common inside other words and in URLs: they must be the whole line, and read
            # with more confidence.
            if short and (normalise("".join(t for t, _, _ in words[i:j + 1])) != whole
                          or conf < self.short_confidence):
                continue
            start, end = words[i][1], words[j][2]
            found.append((bt, line[start:end], _sub_quad(quad, start / len(line), end / len(line)), d))
        return found


def learn_texts(engine: Any, ref: LogoReference, ref_index: int, min_confidence: float = 0.75) -> list[BrandText]:
    """Read one reference and return the texts to look for with their layout on its canvas.

    The shape is drawn dark on white with an extra white border and read (text detection, then
    recognition). A reading counts when it has at least :data:`MIN_WORD_CHARS` letters or digits, the
    OCR's confidence is at least ``min_confidence``, and it spans at least :data:`MIN_WORD_EXTENT` of the
    mark's width or height. When the detector finds no text at all (stripes through a wordmark, as in
    DHL's, confuse it), the mark's content is recognised as one line instead; that reading counts only if
    it also resembles the brand name, since recognition alone turns any emblem into some letters. The
    brand name (normalised) is added with the layout of the reading it is closest to, when that reading is
    close (at most a third of its letters differ).

    Returns:
        The reference's brand texts; empty when it has no readable text.
    """
    brand = normalise(ref.name)
    texts = _read_detected(engine, ref, ref_index, min_confidence)
    if not texts:
        texts = _read_whole(engine, ref, ref_index, min_confidence, brand)
    if texts and all(t.text != brand for t in texts):
        near = min(texts, key=lambda t: edit_distance(t.text, brand))
        if _resembles(near.text, brand):
            texts.append(BrandText(ref_index, brand, near.quad, ref.content_box, near.learned))
    log.debug("reference %s: text cue %s", ref.name, [t.text for t in texts] or "none")
    return texts


def _resembles(word: str, brand: str) -> bool:
    return edit_distance(word, brand) <= max(1, len(brand) // 3)


def _read_detected(engine: Any, ref: LogoReference, ref_index: int, min_confidence: float) -> list[BrandText]:
    """Texts found by the OCR's detector on the reference canvas, with their quads."""
    border = int(round(_READ_BORDER * max(ref.size)))
    zoom = _READ_SIDE / (max(ref.size) + 2 * border)
    grey = (255.0 - 255.0 * ref.shape).clip(0, 255).astype(np.uint8)
    canvas = cv2.copyMakeBorder(grey, border, border, border, border, cv2.BORDER_CONSTANT, value=255)
    canvas = cv2.resize(canvas, None, fx=zoom, fy=zoom, interpolation=cv2.INTER_CUBIC)
    cx1, cy1, cx2, cy2 = ref.content_box
    cw, ch = cx2 - cx1, cy2 - cy1
    texts: list[BrandText] = []
    for line, conf, quad in read_text(engine, cv2.cvtColor(canvas, cv2.COLOR_GRAY2BGR)):
        word = normalise(line)
        quad = quad / zoom - border
        qw, qh = np.ptp(quad[:, 0]), np.ptp(quad[:, 1])
        if len(word) < MIN_WORD_CHARS or conf < min_confidence:
            continue
        if qw < MIN_WORD_EXTENT * cw and qh < MIN_WORD_EXTENT * ch:
            log.debug("reference %s: reading %r is too small a part of the mark to place it", ref.name, line)
            continue
        texts.append(BrandText(ref_index, word, quad.astype(np.float32), ref.content_box, line))
    return texts


def _read_whole(engine: Any, ref: LogoReference, ref_index: int, min_confidence: float,
                brand: str) -> list[BrandText]:
    """The mark's content recognised as one line; its quad is the content box (a pure wordmark)."""
    x1, y1, x2, y2 = ref.content_box
    pad = int(round(0.03 * max(ref.size)))
    grey = (255.0 - 255.0 * ref.shape).clip(0, 255).astype(np.uint8)
    crop = grey[max(0, int(y1) - pad):int(y2) + pad, max(0, int(x1) - pad):int(x2) + pad]
    result, _ = engine(cv2.cvtColor(crop, cv2.COLOR_GRAY2BGR), use_det=False, use_cls=False)
    if not result:
        return []
    line, conf = str(result[0][0]), float(result[0][1])
    word = normalise(line)
    if len(word) < MIN_WORD_CHARS or conf < min_confidence or not _resembles(word, brand):
        return []
    quad = np.array([[x1, y1], [x2, y1], [x2, y2], [x1, y2]], np.float32)
    return [BrandText(ref_index, word, quad, ref.content_box, line)]


def _words(line: str) -> list[tuple[str, int, int]]:
    """Words of an OCR line with their character offsets; apostrophes do not split ("McDonald's")."""
    return [(m.group(0), m.start(), m.end()) for m in re.finditer(r"[^\W_]+(?:['’][^\W_]+)*", line)]


def _sub_quad(quad: np.ndarray, f0: float, f1: float) -> np.ndarray:
    """The part of a line's quad between fractions ``f0`` and ``f1`` of its length (characters as equal
    widths, a fair approximation for one word inside a longer line)."""
    tl, tr, br, bl = quad
    return np.stack([tl + f0 * (tr - tl), tl + f1 * (tr - tl), bl + f1 * (br - bl), bl + f0 * (br - bl)])


def _place(bt: BrandText, quad: np.ndarray, w: int, h: int) -> tuple[float, float, float, float] | None:
    """The mark's box in the photo: the affine map from the reference word's quad to the photo word's quad,
    applied to the reference content box. None when the word's shape disagrees with the reference word's
    (aspect more than 2x off) or the box falls outside the photo."""
    ref_aspect = _aspect(bt.quad)
    got_aspect = _aspect(quad)
    if not (0.5 <= got_aspect / ref_aspect <= 2.0):
        return None
    src = np.hstack([bt.quad, np.ones((4, 1), np.float32)])
    affine, *_ = np.linalg.lstsq(src, quad, rcond=None)  # (3, 2)
    x1, y1, x2, y2 = bt.content_box
    corners = np.array([[x1, y1, 1], [x2, y1, 1], [x2, y2, 1], [x1, y2, 1]], np.float32) @ affine
    bx1, by1 = np.clip(corners.min(0), 0, [w, h])
    bx2, by2 = np.clip(corners.max(0), 0, [w, h])
    if bx2 - bx1 < 4 or by2 - by1 < 4:
        return None
    return float(bx1), float(by1), float(bx2), float(by2)


def _aspect(quad: np.ndarray) -> float:
    """Width over height of a quad (mean of opposite sides)."""
    tl, tr, br, bl = quad
    width = (np.linalg.norm(tr - tl) + np.linalg.norm(br - bl)) / 2
    height = (np.linalg.norm(bl - tl) + np.linalg.norm(br - tr)) / 2
    return float(width / max(height, 1e-6))


def _best_per_place(cands: list[TextCandidate], iou: float = 0.5) -> list[TextCandidate]:
    """Per image and reference, keep the best of overlapping candidates (a line matched by both the
    reading and the brand name, or read twice)."""
    kept: list[TextCandidate] = []
    for c in sorted(cands, key=lambda c: -c.score):
        if all(k.image_index != c.image_index or k.ref_index != c.ref_index or box_iou(k.box, c.box) < iou
               for k in kept):
            kept.append(c)
    return kept



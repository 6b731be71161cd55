"""The logo detector front: validates input, runs the cues, scores, fuses and de-duplicates their candidates.

Cues, each reporting only verified evidence:

- the SIFT matcher (:mod:`influvision.logos.matcher`): every box comes from a RANSAC homography between a
  registered reference and the photo;
- the silhouette cue (:mod:`influvision.logos.silhouette`): flat marks with too few corners for SIFT (the
  swoosh, the leaping cat), found as photo regions whose outline fits the mark's under a plausible affine
  view;
- the text cue (:mod:`influvision.logos.text`, optional extra ``ocr``): the brand's own words read by OCR,
  the box placed from where those words sit in the reference.

Detections of the same brand by several cues that overlap are one detection. A brand that no cue finds
is simply absent; there is no fallback that guesses.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np
import torch

from ..boxes import box_iou
from ..errors import InfluvisionError
from ..types import Logos, check_rgb_images
from .cues import SOURCE_SIFT, SOURCE_SILHOUETTE, SOURCE_TEXT, SOURCE_TRAINED, CueCandidate
from .frame import printed_frame
from .matcher import VIEWS, Candidate, SiftMatcher
from .references import LogoReference
from .silhouette import SilhouetteCue, letter_height, letters_beside
from .text import TextCue, ocr_available

if TYPE_CHECKING:
    from .trained import TrainedLogoDetector

log = logging.getLogger(__name__)

# Inliers at which the inlier part of the score reaches one half.
_INLIER_HALF = 10.0
# A text and a SIFT detection of one brand are the same mark when their boxes overlap this much.
_FUSE_IOU = 0.3
# Detection score of the weakest silhouette fit the cue reports (refined IoU = its ``min_iou``); a perfect fit
# scores 1. Raw IoUs start at ``min_iou`` (0.8), level with a matcher detection of about 30 inliers.
_OUTLINE_FLOOR = 0.5
_text_off_logged = False


class LogoDetector:
    """Finds registered brand marks in photos.

    Args:
        references: the brands to look for, from :func:`~influvision.logos.references.load_reference`;
            ``Logos.brand`` indexes this list. Names must be unique.
        device: torch device for descriptor matching and for the returned :class:`~influvision.types.Logos`
            (feature extraction and RANSAC run on the CPU).
        min_inliers: RANSAC inliers (at distinct reference points) a detection needs. Lower finds more
            and risks more false brands.
        ratio: Lowe ratio threshold; the runner-up is the best match of another brand or another place.
        min_score: detections scoring below this are dropped (scores are in [0, 1]).
        work_side: photos are resampled so their longer side is this many pixels (at most 2x upscaling)
            before feature extraction; it bounds the time per photo.
        max_features: SIFT features kept per photo.
        views: (tilt, longitude in degrees) affine simulations of each reference; more views match
            stronger perspective at the cost of construction time and matching work.
        text: the OCR text cue (:class:`~influvision.logos.text.TextCue`), off by default (on the shared
            photos it finds no box SIFT misses and doubles the time): ``"auto"`` uses it when
            ``rapidocr-onnxruntime`` is installed (and logs once when it is not), ``True`` requires it. A :class:`TextCue` built on the same references may be passed to share it.
        sift: run the SIFT matcher; ``False`` leaves the other cues alone (for measuring them).
        silhouette: run the silhouette cue (:class:`~influvision.logos.silhouette.SilhouetteCue`) for the
            marks that have a distinctive outline; ``False`` turns it off.
        trained: a trained detector (:class:`~influvision.logos.trained.TrainedLogoDetector`, from
            ``influvision logos train``) run beside the other cues; a box it shares with another cue
            confirms that detection, any other box is a detection of its own.
        frames: box a found mark with the printed frame around it when it has one (a badge, seal or ring:
            :func:`~influvision.logos.frame.printed_frame`); the mark's own box is kept in ``mark_boxes``.

    Raises:
        InfluvisionError: no references; every cue off.
        OcrUnavailableError: ``text=True`` and ``rapidocr-onnxruntime`` is not installed.
    """

    def __init__(self, references: Sequence[LogoReference], *, device: str | torch.device = "cpu",
                 min_inliers: int = 8, ratio: float = 0.8, min_score: float = 0.0, work_side: int = 1000,
                 max_features: int = 3000, views: Sequence[tuple[float, float]] = VIEWS,
                 text: bool | str | TextCue = False, sift: bool = True, silhouette: bool = True,
                 trained: TrainedLogoDetector | None = None, frames: bool = True) -> None:
        if not references:
            raise InfluvisionError("LogoDetector needs at least one registered brand reference")
        # Several references may share a brand name (e.g. a wordmark and an emblem): each is matched on
        # its own and ``brands[i]`` maps a detection back to its brand.
        self.references = list(references)
        self.device = torch.device(device)
        self.min_score = min_score
        self.frames = frames
        self.text_cue = _text_cue(text, self.references)
        self.trained = trained
        if trained is not None and not set(trained.brands) <= set(self.brands):
            raise InfluvisionError(f"the trained logo detector knows brands {sorted(set(trained.brands) - set(self.brands))} "
                                   "that are not registered; retrain it")
        self.silhouette_cue = SilhouetteCue(self.references) if silhouette else None
        if not sift and self.text_cue is None and self.silhouette_cue is None and trained is None:
            raise InfluvisionError("LogoDetector needs at least one cue: sift=False needs the text or silhouette cue "
                                   "or a trained one")
        self._matcher = SiftMatcher(self.references, device=self.device, min_inliers=min_inliers, ratio=ratio,
                                    work_side=work_side, max_features=max_features, views=views) if sift else None
        self._letter_height = [letter_height(r) for r in self.references]

    def _inside_text(self, images: Sequence[np.ndarray], d: _Det) -> bool:
        """Whether a detection of a plain wordmark (Intel's) has more letters of its height beside it: the
        mark's letters inside a longer word or a line of text, which every cue can mistake for the mark
        (docs/logos.md, "Wordmarks inside text")."""
        share = self._letter_height[d.brand]
        if share is None:
            return False
        return letters_beside(images[d.image_index], d.box, share * (d.box[3] - d.box[1]))

    @property
    def cues(self) -> list[str]:
        """The cues this detector runs, of ``sift``, ``silhouette``, ``text`` and ``trained``."""
        on = [("sift", self._matcher is not None), ("silhouette", self.silhouette_cue is not None),
              ("text", self.text_cue is not None), ("trained", self.trained is not None)]
        return [name for name, used in on if used]

    @property
    def work_side(self) -> int | None:
        """Longer side of the copy the SIFT matcher searches (None without the matcher)."""
        return self._matcher.work_side if self._matcher is not None else None

    @property
    def brands(self) -> list[str]:
        """Brand name of each reference, in index order (``Logos.brand`` values index this list)."""
        return [r.name for r in self.references]

    def detect(self, images: Sequence[np.ndarray]) -> Logos:
        """Detect registered logos in a batch of photos.

        Args:
            images: K arrays of shape (H, W, 3), dtype uint8, RGB. Any size; large photos are downscaled
                internally and boxes are returned in the source pixels.

        Returns:
            :class:`~influvision.types.Logos` with M rows on ``device``: ``image_index`` (M,) int64,
            ``boxes`` (M, 4) float32 x1, y1, x2, y2 in source pixels, ``scores`` (M,) float32 in [0, 1],
            ``brand`` (M,) int64, and columns ``inliers`` (M,) int64 (RANSAC inliers, 0 for a text-only
            detection), ``agreement`` (M,) float32 (|correlation| of the photo with the reference shape
            inside the box, in [0, 1]; 0 for text only), ``source`` (M,) int64 (bits :data:`SOURCE_SIFT`,
            :data:`SOURCE_TEXT`, :data:`SOURCE_TRAINED` and :data:`SOURCE_SILHOUETTE`: which cues found it),
            ``text_score`` (M,) float32 (the text cue's score, 0 where it did not find it) and ``mark_boxes``
            (M, 4) float32 (the mark's own box: ``boxes`` is its printed frame where one was found, else the
            same). Several instances per photo and brand are possible.
            An empty ``images`` or photos with no registered logo give M = 0.

        Raises:
            ShapeError: an image is not an (H, W, 3) uint8 array.
        """
        check_rgb_images(images)
        if len(images) == 0:
            return _with_columns(Logos.empty(self.device))
        # The silhouette cue searches in a thread of its own while the matcher runs: with fewer photos than
        # worker threads (one photo per track() call) each cue alone would leave cores idle.
        with ThreadPoolExecutor(1) as pool:
            pending = pool.submit(self.silhouette_cue.find, images) if self.silhouette_cue is not None else None
            cands = self._matcher.match(list(images)) if self._matcher is not None else []
            found_outlines = pending.result() if pending is not None else []
        dets = [_Det(c.image_index, c.brand, tuple(c.box), _score(c), c.inliers, abs(c.agreement), SOURCE_SIFT, 0.0)
                for c in cands]
        dets = [d for d in dets if d.score >= self.min_score]
        dets = _suppress(dets)
        n_sift = len(dets)
        texts = self.text_cue.find(images) if self.text_cue is not None else []
        dets = _suppress(_fuse(dets, texts, self.brands, SOURCE_TEXT))
        outlines = [_outline_score(c, self.silhouette_cue.min_iou) for c in found_outlines]
        dets = _suppress(_fuse(dets, outlines, self.brands, SOURCE_SILHOUETTE))
        if self.trained is not None:
            dets = _suppress(_fuse_trained(dets, self.trained.detect(images), self.trained.brands, self.brands))
        dets = [d for d in dets if d.score >= self.min_score and not self._inside_text(images, d)]
        if self.frames:
            dets = _suppress([_framed(images, d) for d in dets])
        log.debug("logo detection: %d images, %d SIFT candidates (%d kept), %d text and %d silhouette candidates, "
                  "%d kept", len(images), len(cands), n_sift, len(texts), len(outlines), len(dets))
        if not dets:
            return _with_columns(Logos.empty(self.device))
        dev = self.device
        return Logos(
            image_index=torch.tensor([d.image_index for d in dets], dtype=torch.long, device=dev),
            boxes=torch.tensor([d.box for d in dets], dtype=torch.float32, device=dev),
            scores=torch.tensor([d.score for d in dets], dtype=torch.float32, device=dev),
            brand=torch.tensor([d.brand for d in dets], dtype=torch.long, device=dev),
            columns={
                "inliers": torch.tensor([d.inliers for d in dets], dtype=torch.long, device=dev),
                "agreement": torch.tensor([d.agreement for d in dets], dtype=torch.float32, device=dev),
                "source": torch.tensor([d.source for d in dets], dtype=torch.long, device=dev),
                "text_score": torch.tensor([d.text_score for d in dets], dtype=torch.float32, device=dev),
                "mark_boxes": torch.tensor([d.mark_box or d.box for d in dets], dtype=torch.float32, device=dev),
            },
        )


@dataclass
class _Det:
    """One detection while the cues are fused (host side)."""

    image_index: int
    brand: int
    box: tuple[float, float, float, float]
    score: float
    inliers: int
    agreement: float
    source: int
    text_score: float
    mark_box: tuple[float, float, float, float] | None = None  # the mark's own box when ``box`` is its frame


def _text_cue(text: bool | str | TextCue, references: list[LogoReference]) -> TextCue | None:
    """The text cue the ``text`` argument asks for, or None."""
    global _text_off_logged
    if isinstance(text, TextCue):
        return text
    if text == "auto":
        if ocr_available():
            return TextCue(references)
        if not _text_off_logged:
            log.info("logo text cue off: rapidocr-onnxruntime is not installed (see docs/logos.md, the text cue)")
            _text_off_logged = True
        return None
    if text is True:
        return TextCue(references)
    if text is False:
        return None
    raise InfluvisionError(f"LogoDetector text must be 'auto', True, False or a TextCue, got {text!r}")


def _with_columns(empty: Logos) -> Logos:
    dev = empty.boxes.device
    return Logos(empty.image_index, empty.boxes, empty.scores, empty.brand,
                 {"inliers": torch.zeros(0, dtype=torch.long, device=dev),
                  "agreement": torch.zeros(0, dtype=torch.float32, device=dev),
                  "source": torch.zeros(0, dtype=torch.long, device=dev),
                  "text_score": torch.zeros(0, dtype=torch.float32, device=dev),
                  "mark_boxes": torch.zeros((0, 4), dtype=torch.float32, device=dev)})


def _framed(images: Sequence[np.ndarray], d: _Det) -> _Det:
    """The detection boxed with the printed frame around its mark, when the photo shows one."""
    frame = printed_frame(images[d.image_index], d.box)
    return d if frame is None else replace(d, box=frame, mark_box=d.box)


def _confirmed(dets: list[_Det], image_index: int, brand: str, box: tuple[float, float, float, float],
               source: int, brands: list[str]) -> _Det | None:
    """The detection a ``source`` candidate confirms: same photo and brand name, not yet found by that
    source, overlapping by IoU >= ``_FUSE_IOU`` (the most overlapping one), or None."""
    same = [d for d in dets if d.image_index == image_index and brands[d.brand] == brand
            and not d.source & source and box_iou(d.box, box) >= _FUSE_IOU]
    return max(same, key=lambda d: box_iou(d.box, box), default=None)


def _fuse(dets: list[_Det], found: Sequence[CueCandidate], brands: list[str],
          source: int) -> list[_Det]:
    """Add one cue's candidates (``source``: :data:`SOURCE_TEXT` or :data:`SOURCE_SILHOUETTE`) to the detections.

    A candidate overlapping (IoU >= ``_FUSE_IOU``) a detection of the same brand name confirms it: the two
    become one detection whose score is the noisy-or of both (independent cues agreeing), with the box of
    the more confident cue. Any other candidate is a detection of its own.
    """
    out = list(dets)
    text_score = source == SOURCE_TEXT
    for t in sorted(found, key=lambda t: -t.score):
        d = _confirmed(out, t.image_index, brands[t.ref_index], t.box, source, brands)
        if d is None:
            out.append(_Det(t.image_index, t.ref_index, t.box, t.score, 0, 0.0, source,
                            t.score if text_score else 0.0))
            continue
        if t.score > d.score and not (source == SOURCE_SILHOUETTE and d.source & SOURCE_SIFT):
            d.box = t.box  # an outline's affine box does not replace the matcher's verified one
        d.score = 1.0 - (1.0 - d.score) * (1.0 - t.score)
        d.source |= source
        if text_score:
            d.text_score = t.score
    return out


def _outline_score(c: CueCandidate, min_iou: float) -> CueCandidate:
    """The candidate with its refined IoU in [``min_iou``, 1] rescaled to a detection score in
    [:data:`_OUTLINE_FLOOR`, 1]."""
    fit = max(0.0, c.score - min_iou) / max(1.0 - min_iou, 1e-6)
    return replace(c, score=_OUTLINE_FLOOR + (1.0 - _OUTLINE_FLOOR) * fit)


def _fuse_trained(dets: list[_Det], found: Logos, trained_brands: list[str], brands: list[str]) -> list[_Det]:
    """Add a trained detector's boxes: one overlapping (IoU >= ``_FUSE_IOU``) a detection of the same brand
    confirms it (noisy-or of the scores; the geometrically verified box is kept), any other is its own."""
    out = list(dets)
    first_ref = {name: brands.index(name) for name in trained_brands}
    rows = zip(found.image_index.tolist(), found.brand.tolist(), found.boxes.tolist(), found.scores.tolist(),
               strict=True)
    for i, b, box, score in sorted(rows, key=lambda r: -r[3]):
        name = trained_brands[b]
        d = _confirmed(out, i, name, tuple(box), SOURCE_TRAINED, brands)
        if d is None:
            out.append(_Det(i, first_ref[name], tuple(box), float(score), 0, 0.0, SOURCE_TRAINED, 0.0))
            continue
        d.score = 1.0 - (1.0 - d.score) * (1.0 - float(score))
        d.source |= SOURCE_TRAINED
    return out


def _score(c: Candidate) -> float:
    """Confidence in [0, 1] from the inlier count and the shape agreement.

    Inliers carry most of the weight (0.5 at ``_INLIER_HALF``, towards 1 beyond); the agreement of the
    photo with the reference's silhouette inside the fitted quad adds up to 30 %.
    """
    inl = c.inliers / (c.inliers + _INLIER_HALF)
    return float(np.clip(0.7 * inl + 0.3 * min(1.0, abs(c.agreement) / 0.6), 0.0, 1.0))


def _suppress(dets: list[_Det], iou: float = 0.5) -> list[_Det]:
    """Greedy NMS per image over all brands: two brands cannot own one place; the stronger one stays."""
    kept: list[_Det] = []
    for d in sorted(dets, key=lambda d: -d.score):
        if all(k.image_index != d.image_index or box_iou(k.box, d.box) < iou for k in kept):
            kept.append(d)
    return kept

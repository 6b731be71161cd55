"""A logo detector trained on synthetic composites of the registered references (ultralytics YOLO).

Training (:func:`train_detector`) writes a synthetic data set (:mod:`influvision.logos.synth`), builds a
YOLO model from its yaml (no pretrained weights: nothing is downloaded) and trains it with ultralytics,
seeded and deterministic. Ultralytics is an optional dependency (``pip install influvision[yolo]``,
AGPL-3.0) needed only to train; running a trained model needs its model definitions too, since the
network is rebuilt from the model yaml ultralytics ships under the stored name (``yolov8n.yaml``), never
from a layout read from the gallery (ultralytics evaluates parts of a layout as Python).

Storage never uses pickle: a trained model is one safetensors blob (:class:`DetectorBlob`) holding the
model's ``state_dict`` and, in the safetensors header's metadata, its config (model name, class names,
image size) and validation metrics, with the header's keys sorted so that the same weights give the same
bytes. Its sha256 is kept beside it and checked before it is parsed.

:class:`TrainedLogoDetector` has the same ``detect(images) -> Logos`` contract as
:class:`~influvision.logos.detect.LogoDetector`, so the two are interchangeable.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import struct
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from ..errors import InfluvisionError
from ..types import Logos, check_rgb_images
from .references import LogoReference
from .synth import class_names, write_dataset

log = logging.getLogger(__name__)

BLOB_FORMAT = "influvision-logo-yolo-v1"
DEFAULT_MODEL = "yolov8n.yaml"
# Stand-alone score threshold when none was calibrated on labelled photos. A wrong logo count is a wrong
# invoice: on real photos the synthetic-trained model's precision climbs from about 0.4 at a score of 0.35
# to about 0.7 at 0.7 while recall drops little (benchmarks/RESULTS.md, threshold sweep).
DEFAULT_MIN_SCORE = 0.7
# Thresholds tried when calibrating on labelled photos (``influvision logos train --validation``).
CALIBRATION_SCORES = (0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
# Letterbox padding value (ultralytics trains with grey 114 borders).
_PAD = 114.0 / 255.0
_STRIDE = 32


class TrainedDetectorError(InfluvisionError):
    """A trained logo detector cannot be trained, loaded or used; the message says why."""


def require_ultralytics() -> Any:
    """Import ultralytics with its downloads and telemetry switched off, or say which extra to install.

    Its settings file goes to a private temp folder (``YOLO_CONFIG_DIR``) unless the caller chose one.

    Raises:
        TrainedDetectorError: ultralytics is not installed.
    """
    os.environ.setdefault("YOLO_CONFIG_DIR", str(Path(tempfile.gettempdir()) / "influvision-ultralytics"))
    os.environ.setdefault("YOLO_OFFLINE", "1")
    cv_threads = cv2.getNumThreads()
    try:
        import ultralytics
        from ultralytics.utils import SETTINGS
    except ImportError as e:
        raise TrainedDetectorError(
            "the trained logo detector needs ultralytics (AGPL-3.0), which is not installed: "
            "pip install 'influvision[yolo]' and then pip install --no-deps ultralytics "
            f"(the --no-deps keeps the headless OpenCV); import failed with: {e}") from e
    finally:
        cv2.setNumThreads(cv_threads)  # importing ultralytics makes OpenCV single-threaded for everyone
        _undo_pillow_patch()
    if SETTINGS.get("sync"):
        SETTINGS.update(sync=False)
    return ultralytics


def _undo_pillow_patch() -> None:
    """Give ``PIL.Image.open`` back to Pillow.

    Importing ultralytics replaces it, for every caller in the process, with a wrapper that, on the first file
    Pillow cannot identify, tries to pip-install a HEIF plugin: a download at run time, and offline a
    ``ModuleNotFoundError`` in place of Pillow's error, which turned "not an image" into a confusing message.
    """
    from PIL import Image

    patches = sys.modules.get("ultralytics.utils.patches")
    original = getattr(patches, "_image_open", None)
    if original is not None and Image.open is getattr(patches, "image_open", None):
        Image.open = original


# ---- the stored form -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class DetectorBlob:
    """A trained detector as bytes: safetensors weights with the config in the header's metadata.

    Attributes:
        data: the safetensors file's bytes.
        sha256: hex digest of ``data``; checked before ``data`` is parsed.
    """

    data: bytes
    sha256: str

    @staticmethod
    def build(state_dict: dict[str, torch.Tensor], config: dict[str, Any]) -> DetectorBlob:
        """Serialise a state_dict and its config (JSON-able dict) into a blob."""
        from safetensors.torch import save

        tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in state_dict.items()}
        data = _canonical(save(tensors, metadata={"format": BLOB_FORMAT,
                                                  "config": json.dumps(config, sort_keys=True)}))
        return DetectorBlob(data, hashlib.sha256(data).hexdigest())

    def verify(self) -> None:
        """Raise TrainedDetectorError unless ``data`` hashes to ``sha256``."""
        actual = hashlib.sha256(self.data).hexdigest()
        if actual != self.sha256:
            raise TrainedDetectorError(f"the stored logo detector fails its checksum: sha256 is {actual}, "
                                       f"expected {self.sha256}; retrain it with 'influvision logos train'")

    def config(self) -> dict[str, Any]:
        """The config stored in the header (after :meth:`verify`)."""
        self.verify()
        try:
            (n,) = struct.unpack("<Q", self.data[:8])
            header = json.loads(self.data[8:8 + n])
            meta = header["__metadata__"]
        except (struct.error, ValueError, KeyError, TypeError) as e:
            raise TrainedDetectorError(f"the stored logo detector is not a safetensors blob ({e})") from e
        if meta.get("format") != BLOB_FORMAT:
            raise TrainedDetectorError(f"the stored logo detector has format {meta.get('format')!r}, "
                                       f"expected {BLOB_FORMAT!r}")
        return json.loads(meta["config"])

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The weights (after :meth:`verify`)."""
        from safetensors.torch import load

        self.verify()
        return load(self.data)


def _canonical(data: bytes) -> bytes:
    """Safetensors bytes with their JSON header's keys sorted: the library writes its metadata in an arbitrary
    order, so the same weights gave different bytes (and checksums) from run to run."""
    (n,) = struct.unpack("<Q", data[:8])
    header = json.dumps(json.loads(data[8:8 + n]), sort_keys=True, separators=(",", ":")).encode()
    header += b" " * (-len(header) % 8)  # the tensors' data stays 8-byte aligned
    return struct.pack("<Q", len(header)) + header + data[8 + n:]


# ---- training --------------------------------------------------------------------------------------------

@dataclass
class TrainResult:
    """What :func:`train_detector` produced.

    Attributes:
        blob: the trained model, ready to store (:meth:`Gallery.save_detector`).
        brands: class names, in class order.
        metrics: ultralytics validation metrics on the synthetic validation split at the best epoch
            (``metrics/precision(B)``, ``metrics/recall(B)``, ``metrics/mAP50(B)``, ...).
        train_s: seconds spent training (the synthetic set's writing excluded).
        synth_s: seconds spent writing the synthetic set.
        data_yaml: the synthetic set's ``data.yaml`` (deleted with its folder unless ``work_dir`` was given).
    """

    blob: DetectorBlob
    brands: list[str]
    metrics: dict[str, float] = field(default_factory=dict)
    train_s: float = 0.0
    synth_s: float = 0.0
    data_yaml: Path | None = None


def _ultralytics_device(device: str | torch.device) -> str:
    """torch device name -> ultralytics' ('cpu', '0', '1', ...)."""
    d = torch.device(device)
    if d.type == "cuda":
        return str(d.index or 0)
    return d.type


@contextlib.contextmanager
def _no_font_downloads() -> Iterator[None]:
    """Ultralytics checks for (and downloads) Arial.ttf when it reads a data set; plots are off, skip it."""
    import ultralytics.data.utils as data_utils

    saved = data_utils.check_font
    data_utils.check_font = lambda *a, **k: None
    try:
        yield
    finally:
        data_utils.check_font = saved


@contextlib.contextmanager
def _process_state() -> Iterator[None]:
    """Undo what ultralytics' training changes process-wide: threads, determinism flags, RNG states, env."""
    import random

    threads = torch.get_num_threads()
    det, warn_only = torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled()
    cudnn_det, fill = torch.backends.cudnn.deterministic, torch.utils.deterministic.fill_uninitialized_memory
    rng = (random.getstate(), np.random.get_state(), torch.get_rng_state())
    env = {k: os.environ.get(k) for k in ("CUBLAS_WORKSPACE_CONFIG", "PYTHONHASHSEED")}
    try:
        yield
    finally:
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(det, warn_only=warn_only)
        torch.backends.cudnn.deterministic = cudnn_det
        torch.utils.deterministic.fill_uninitialized_memory = fill
        random.setstate(rng[0])
        np.random.set_state(rng[1])
        torch.set_rng_state(rng[2])
        for k, v in env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _trainer_class() -> type:
    """A DetectionTrainer that keeps its best EMA weights in memory and never writes or reads a pickle."""
    from ultralytics.models.yolo.detect import DetectionTrainer

    class _InMemoryTrainer(DetectionTrainer):
        best_state: dict[str, torch.Tensor] | None = None
        best_metrics: dict[str, float] | None = None

        def save_model(self) -> bool:
            if self.best_state is None or self.fitness is None or self.fitness >= (self.best_fitness or 0):
                self.best_state = {k: v.detach().float().cpu().clone() for k, v in self.ema.ema.state_dict().items()}
                self.best_metrics = {k: float(v) for k, v in (self.metrics or {}).items()}
            return False

        def final_eval(self) -> None:
            return None

    return _InMemoryTrainer


def train_detector(references: Sequence[LogoReference], *, backgrounds: Sequence[np.ndarray] = (),
                   n_images: int = 600, val_fraction: float = 0.1, epochs: int = 10, imgsz: int = 320,
                   batch: int = 16, seed: int = 0, device: str | torch.device = "cpu",
                   model: str = DEFAULT_MODEL, work_dir: str | Path | None = None, workers: int = 0,
                   max_minutes: float | None = None, progress: Callable[[str], None] | None = None) -> TrainResult:
    """Train a YOLO logo detector on synthetic composites of the registered references.

    Args:
        references: registered brand references (several per brand allowed: one class per brand).
        backgrounds: real photos (H, W, 3) uint8 RGB to composite onto; empty: procedural backgrounds.
            Never pass the photos you validate on.
        n_images: synthetic pictures in all (training + validation split).
        val_fraction: share of ``n_images`` used as the synthetic validation split (at least 1 picture).
        epochs: training epochs.
        imgsz: training image size (longer side of the synthetic pictures), a multiple of 32.
        batch: batch size.
        seed: seeds the synthetic set and ultralytics' training (``deterministic=True``).
        device: ``"cpu"``, ``"cuda"``, ``"cuda:1"``...
        model: ultralytics model yaml, built from scratch (``yolov8n.yaml``: YOLOv8 at scale n).
        work_dir: an empty or new folder for the synthetic set and the run; None: a temp folder removed
            afterwards.
        workers: processes that render the synthetic set and, on a GPU, load training batches
            (0: one per CPU core, at most 16 loaders). The trained model does not depend on it.
        max_minutes: train for this long instead of ``epochs`` (the epoch count and learning-rate schedule
            are fitted to the time after the first epoch); the model then depends on the machine's speed.
        progress: called with a line of text at each stage (e.g. ``print``).

    Returns:
        :class:`TrainResult` with the blob to store.

    Raises:
        TrainedDetectorError: ultralytics missing, bad arguments (a ``work_dir`` that is not empty), or
            training produced no model.
    """
    require_ultralytics()
    if imgsz % _STRIDE or imgsz < 64:
        raise TrainedDetectorError(f"imgsz must be a multiple of {_STRIDE} and at least 64, got {imgsz}")
    if n_images < 2 or epochs < 1:
        raise TrainedDetectorError(f"need n_images >= 2 and epochs >= 1, got {n_images} and {epochs}")
    if work_dir is not None and Path(work_dir).is_dir() and any(Path(work_dir).iterdir()):
        # Ultralytics would train on an earlier run's pictures there, and read its label caches (pickles).
        raise TrainedDetectorError(f"work_dir {work_dir} is not empty: give an empty or new folder")
    say = progress or (lambda _m: None)
    n_val = max(1, round(n_images * val_fraction))
    with contextlib.ExitStack() as stack:
        root = Path(work_dir) if work_dir else Path(stack.enter_context(
            tempfile.TemporaryDirectory(prefix="influvision-logo-train-")))
        t0 = time.perf_counter()
        say(f"writing {n_images - n_val} + {n_val} synthetic pictures ({len(backgrounds)} backgrounds)")
        data_yaml = write_dataset(references, root / "synth", n_train=n_images - n_val, n_val=n_val,
                                  backgrounds=backgrounds, image_size=imgsz, seed=seed, workers=workers)
        synth_s = time.perf_counter() - t0
        say(f"training {model} for {epochs} epochs at {imgsz} px on {device}")
        trainer = _train(data_yaml, root / "runs", model=model, epochs=epochs, imgsz=imgsz, batch=batch,
                         seed=seed, device=device, workers=workers, max_minutes=max_minutes)
        train_s = time.perf_counter() - t0 - synth_s
        if trainer.best_state is None:
            raise TrainedDetectorError("training finished without a model (no epoch completed)")
        names = class_names(references)
        config = {"model": model, "nc": len(names), "names": names, "imgsz": imgsz,
                  "metrics": trainer.best_metrics or {}, "seed": seed, "epochs": int(trainer.epochs), "max_minutes": max_minutes,
                  "n_images": n_images,
                  "ultralytics": _ultralytics_version()}
        blob = DetectorBlob.build(trainer.best_state, config)
        return TrainResult(blob, names, trainer.best_metrics or {}, train_s, synth_s,
                           data_yaml if work_dir else None)


def _train(data_yaml: Path, project: Path, *, model: str, epochs: int, imgsz: int, batch: int, seed: int,
           device: str | torch.device, workers: int, max_minutes: float | None) -> Any:
    on_cpu = torch.device(device).type == "cpu"
    loaders = 0 if on_cpu else min(16, workers if workers > 0 else os.cpu_count() or 1)
    args = {
        "model": model, "data": str(data_yaml), "epochs": epochs, "imgsz": imgsz, "batch": batch,
        "device": _ultralytics_device(device), "workers": loaders, "seed": seed,
        # bf16 autocast on GPUs: fp16's check downloads a reference model, and bf16 needs no loss scaling.
        "deterministic": True, "pretrained": False, "amp": False if on_cpu else "bf16", "plots": False,
        "save": True,
        "val": True, "project": str(project), "name": "train", "exist_ok": True, "verbose": False,
        # Logos are not mirror-symmetric: a flipped wordmark is another picture.
        "fliplr": 0.0, "close_mosaic": max(1, epochs // 5), "patience": 1000,
        # Short runs from scratch: a fixed AdamW rate (ultralytics' "auto" picks ~5e-4 for 17 classes) and
        # a warm-up of at most a tenth of the run instead of 3 whole epochs.
        "optimizer": "AdamW", "lr0": 0.002, "warmup_epochs": min(3.0, max(0.3, epochs / 10)),
    }
    if max_minutes:
        args["time"] = max_minutes / 60
    with _process_state(), _no_font_downloads():
        threads = torch.get_num_threads()
        trainer = _trainer_class()(overrides=args)
        # Ultralytics adds the callbacks of every logging service it finds installed (MLflow, Comet, ClearML,
        # TensorBoard, W&B, ...), which would send the run, made from the user's event photos, elsewhere.
        from ultralytics.utils.callbacks import get_default_callbacks

        trainer.callbacks = get_default_callbacks()
        # Ultralytics sets CPU threads to cpu_count - 1 (one thread on a 2-core machine); keep the caller's.
        torch.set_num_threads(threads)
        trainer.train()
    return trainer


def _ultralytics_version() -> str:
    import ultralytics

    return str(ultralytics.__version__)


# ---- inference -------------------------------------------------------------------------------------------

def _packaged_model(config: dict[str, Any]) -> tuple[str, Path]:
    """The name of the ultralytics model yaml a stored detector was built from, and the file ultralytics ships
    for it.

    The network is rebuilt from that packaged file, never from a layout stored in the gallery: ultralytics
    evaluates parts of a model yaml as Python (an activation is ``eval``-ed, a layer may name any function of
    its module), so a layout read from a gallery file someone else made could run code. Detectors stored
    before the name was recorded give it in their layout's ``yaml_file``."""
    import ultralytics

    name = config.get("model") or (config.get("yaml") or {}).get("yaml_file")
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9_.-]+\.yaml", name):
        raise TrainedDetectorError(f"the stored logo detector names no model that ultralytics ships ({name!r}); "
                                   "retrain it with 'influvision logos train'")
    # yolov8n.yaml is yolov8.yaml at scale n, as ultralytics itself reads the name.
    unified = re.sub(r"(\d+)([nslmx])(.+)?$", r"\1\3", Path(name).stem) + ".yaml"
    shipped = {p.name: p for p in sorted((Path(ultralytics.__file__).parent / "cfg" / "models").rglob("*.yaml"))}
    path = shipped.get(name) or shipped.get(unified)
    if path is None:
        raise TrainedDetectorError(f"the stored logo detector was built from {name!r}, which this ultralytics "
                                   f"{ultralytics.__version__} does not ship; retrain it with 'influvision logos train'")
    return name, path


def _build_model(config: dict[str, Any]) -> torch.nn.Module:
    require_ultralytics()
    from ultralytics.nn.tasks import DetectionModel, guess_model_scale, yaml_model_load

    name, path = _packaged_model(config)
    # Loaded by its absolute path: given the bare name, ultralytics would first look in the working folder.
    layout = yaml_model_load(path)
    layout.update(scale=guess_model_scale(name), yaml_file=name, nc=int(config["nc"]))
    return DetectionModel(layout, ch=3, nc=int(config["nc"]), verbose=False)


class TrainedLogoDetector:
    """Runs a trained YOLO logo model: same ``detect(images) -> Logos`` contract as ``LogoDetector``.

    Args:
        blob: the stored model (:meth:`Gallery.load_detector`, or ``TrainResult.blob``); its sha256 is
            checked, the network rebuilt from the packaged model yaml it names and the weights loaded from
            safetensors.
        device: torch device for the network and the returned :class:`~influvision.types.Logos`.
        min_score: detections scoring below this are dropped (the stored model's calibrated threshold,
            else ``DEFAULT_MIN_SCORE``).
        iou: non-maximum suppression IoU, across brands (two brands cannot own one place).
        imgsz: inference size (longer side of the letterboxed canvas); None: the training size.
        max_det: most detections kept per photo.

    Raises:
        TrainedDetectorError: checksum mismatch, a blob that is not a trained detector, weights that do
            not fit the stored config, or ultralytics missing.
    """

    def __init__(self, blob: DetectorBlob, *, device: str | torch.device = "cpu",
                 min_score: float = DEFAULT_MIN_SCORE,
                 iou: float = 0.5, imgsz: int | None = None, max_det: int = 30) -> None:
        config = blob.config()
        self.device = torch.device(device)
        self.config = config
        try:
            self.brands: list[str] = [str(n) for n in config["names"]]
            self.imgsz = int(imgsz or config["imgsz"])
            if len(self.brands) != int(config["nc"]):
                raise ValueError(f"{len(self.brands)} class names for {config['nc']} classes")
        except (KeyError, TypeError, ValueError) as e:
            raise TrainedDetectorError(f"the stored logo detector's config is damaged ({e}); retrain it") from e
        if self.imgsz % _STRIDE:
            raise TrainedDetectorError(f"imgsz must be a multiple of {_STRIDE}, got {self.imgsz}")
        self.min_score, self.iou, self.max_det = min_score, iou, max_det
        net = _build_model(config)
        try:
            net.load_state_dict(blob.state_dict(), strict=True)
        except Exception as e:  # safetensors' own error type, or tensors that do not fit the network
            raise TrainedDetectorError(f"the stored logo detector's weights do not fit its model: "
                                       f"{str(e).splitlines()[0]}; retrain it") from e
        # Folding batch norms into the convolutions makes CPU inference faster; the outputs stay the same.
        self._net = net.float().eval().fuse(verbose=False).to(self.device)

    @property
    def metrics(self) -> dict[str, float]:
        """Validation metrics recorded when the model was trained."""
        return dict(self.config.get("metrics", {}))

    @torch.inference_mode()
    def detect(self, images: Sequence[np.ndarray]) -> Logos:
        """Detect registered logos in a batch of photos.

        Args:
            images: K arrays (H, W, 3) uint8 RGB, any sizes.

        Returns:
            :class:`~influvision.types.Logos` on ``device``: ``image_index``, ``boxes`` (source pixels),
            ``scores`` in [0, 1], ``brand`` (index into :attr:`brands`), and ``inliers`` (zeros, int64)
            and ``agreement`` (zeros, float32) so it is interchangeable with ``LogoDetector``'s output.

        Raises:
            ShapeError: an image is not an (H, W, 3) uint8 array.
        """
        check_rgb_images(images)
        if len(images) == 0:
            return _with_columns(Logos.empty(self.device))
        canvas, scales = self._letterbox(images)
        pred = self._net(canvas)
        pred = pred[0] if isinstance(pred, (tuple, list)) else pred  # (B, 4 + nc, A): xywh, class scores
        return self._decode(pred, scales, images)

    def _letterbox(self, images: Sequence[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
        """One (B, 3, S, S) canvas; each photo resized so its longer side is S, at the top-left corner."""
        s = self.imgsz
        canvas = torch.full((len(images), 3, s, s), _PAD, dtype=torch.float32, device=self.device)
        scales = torch.empty(len(images), dtype=torch.float32, device=self.device)
        for k, img in enumerate(images):
            h, w = img.shape[:2]
            f = s / max(h, w)
            nh, nw = max(1, min(s, round(h * f))), max(1, min(s, round(w * f)))
            t = torch.from_numpy(np.require(img, requirements=['C', 'W'])).to(self.device).permute(2, 0, 1)[None].float() / 255.0
            canvas[k, :, :nh, :nw] = F.interpolate(t, size=(nh, nw), mode="bilinear", antialias=f < 1,
                                                   align_corners=False)[0]
            scales[k] = f
        return canvas, scales

    def _decode(self, pred: torch.Tensor, scales: torch.Tensor, images: Sequence[np.ndarray]) -> Logos:
        from torchvision.ops import batched_nms

        nc = len(self.brands)
        b, _, a = pred.shape
        xywh = pred[:, :4].transpose(1, 2).reshape(-1, 4)
        cls_scores = pred[:, 4:4 + nc].transpose(1, 2).reshape(-1, nc)
        scores, brand = cls_scores.max(dim=1)
        image_index = torch.arange(b, device=pred.device).repeat_interleave(a)
        keep = scores >= self.min_score
        xywh, scores, brand, image_index = xywh[keep], scores[keep], brand[keep], image_index[keep]
        boxes = torch.cat([xywh[:, :2] - xywh[:, 2:] / 2, xywh[:, :2] + xywh[:, 2:] / 2], dim=1)
        kept = batched_nms(boxes, scores, image_index, self.iou)
        # kept is sorted by score; keep each photo's max_det best: rank within its photo.
        img_k = image_index[kept]
        order = torch.argsort(img_k, stable=True)
        kept, img_k = kept[order], img_k[order]
        first = torch.searchsorted(img_k, img_k, right=False)
        kept = kept[(torch.arange(len(kept), device=kept.device) - first) < self.max_det]
        boxes = boxes[kept] / scales[image_index[kept]][:, None]
        sizes = torch.tensor([[im.shape[1], im.shape[0]] for im in images], dtype=torch.float32,
                             device=boxes.device)[image_index[kept]]
        boxes = torch.minimum(boxes.clamp(min=0), sizes.repeat(1, 2))
        dev = self.device
        return _with_columns(Logos(image_index[kept].to(dev), boxes.float().to(dev),
                                   scores[kept].float().clamp(0, 1).to(dev), brand[kept].long().to(dev)))


def _with_columns(found: Logos) -> Logos:
    """``found`` with the matcher's ``inliers`` and ``agreement`` columns, zero: this cue has neither."""
    n, dev = len(found), found.boxes.device
    return Logos(found.image_index, found.boxes, found.scores, found.brand,
                 {"inliers": torch.zeros(n, dtype=torch.long, device=dev),
                  "agreement": torch.zeros(n, dtype=torch.float32, device=dev)})

"""Face embedders: the :class:`Embedder` protocol, the registry and :func:`load_embedder`.

An embedder turns aligned face chips into descriptors. A model is one file holding a :class:`TorchEmbedder`
subclass and one ``@register_embedder(...)`` line; :func:`load_embedder` looks names up in :data:`EMBEDDERS` and
never special-cases a model. Nothing is loaded at import time: weights are found, checksum-verified and
converted on the first :func:`load_embedder` call, and the result is cached per (name, device, weights).

Built-in names: ``dlib-resnet-v1`` (default; 150 px chips, 128-d, Euclidean, calibrated threshold 0.5),
``facenet-vggface2`` and ``facenet-casia`` (160 px chips, 512-d unit vectors; weights added by the user).
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Protocol, runtime_checkable

import numpy as np
import torch
from torch import Tensor, nn

from ..errors import DeviceError, InfluvisionError, ShapeError, UnknownModelError
from ..weights import load_manifest

log = logging.getLogger(__name__)

METRICS = ("euclidean", "cosine")
PRECISIONS = ("fp32", "bf16")


@runtime_checkable
class Embedder(Protocol):
    """What the rest of influvision needs from a face embedder.

    Attributes:
        name: registry name, e.g. ``"dlib-resnet-v1"``.
        input_size: side S of the square chips it takes, in pixels.
        dim: descriptor length D.
        metric: ``"euclidean"`` or ``"cosine"``: how descriptors are compared.
        threshold: default largest same-person distance in that metric (from the model's manifest).
        device: where the network runs and where descriptors are returned.
    """

    name: str
    input_size: int
    dim: int
    metric: str
    threshold: float
    device: torch.device

    def embed(self, chips: np.ndarray | Tensor, *, flip: bool = False, batch_size: int = 256,
              precision: str = "fp32") -> Tensor:
        """(N, S, S, 3) uint8 RGB chips -> (N, D) float32 descriptors on ``device``."""
        ...


@dataclass(frozen=True)
class EmbedderSpec:
    """A registry entry: the class plus what callers need to know before building it.

    Attributes:
        name: registry name.
        cls: the :class:`TorchEmbedder` subclass.
        input_size, dim, metric: as in :class:`Embedder`.
        weights: name of the manifest in ``weights/`` (None for weight-less test models).
        threshold: explicit default threshold; None takes ``default_threshold`` from the manifest.
    """

    name: str
    cls: type[TorchEmbedder]
    input_size: int
    dim: int
    metric: str
    weights: str | None
    threshold: float | None = None

    def default_threshold(self) -> float:
        if self.threshold is not None:
            return self.threshold
        value = load_manifest(self.weights).default_threshold if self.weights else None
        if value is None:
            raise InfluvisionError(f"embedder {self.name!r} has no default threshold: give threshold= when "
                                   "registering it or default_threshold in its manifest")
        return float(value)

    def create(self, device: str | torch.device = "auto", weights: str | Path | None = None, *,
               pretrained: bool = True) -> TorchEmbedder:
        """Build the embedder (uncached; :func:`load_embedder` caches).

        Args:
            device: ``"auto"`` (CUDA when available, else CPU), or any torch device.
            weights: a weights file to use instead of the default one; still checksum-verified.
            pretrained: False leaves the network randomly initialised (tests, benchmarks of speed only).
        """
        dev = resolve_device(device)
        net = self.cls.build_network()
        if pretrained:
            state = self.cls.load_weights(Path(weights) if weights is not None else None)
            self.cls.load_into(net, state)
        net = net.to(dev).eval()
        if dev.type != "mps":  # channels_last helps cuDNN and oneDNN convolutions alike
            net = net.to(memory_format=torch.channels_last)
        return self.cls(self, net, dev, self.default_threshold())


EMBEDDERS: dict[str, EmbedderSpec] = {}
"""Every registered embedder by name. Filled when :mod:`influvision.faces.embed` is imported."""


def register_embedder(name: str, *, input_size: int, dim: int, metric: str, weights: str | None,
                      threshold: float | None = None):
    """Class decorator that registers a :class:`TorchEmbedder` subclass under ``name``.

    Args:
        name: the name users pass to :func:`load_embedder`.
        input_size: chip side in pixels.
        dim: descriptor length.
        metric: ``"euclidean"`` or ``"cosine"``.
        weights: manifest name in ``weights/`` (also the source of the default threshold), or None.
        threshold: overrides the manifest's default threshold.

    Raises:
        InfluvisionError: the name is already registered, or the metric is unknown.
    """
    if metric not in METRICS:
        raise InfluvisionError(f"embedder {name!r}: metric must be one of {METRICS}, got {metric!r}")

    def decorate(cls: type[TorchEmbedder]) -> type[TorchEmbedder]:
        if name in EMBEDDERS:
            raise InfluvisionError(f"embedder {name!r} is already registered (by "
                                   f"{EMBEDDERS[name].cls.__module__}.{EMBEDDERS[name].cls.__qualname__})")
        spec = EmbedderSpec(name, cls, input_size, dim, metric, weights, threshold)
        EMBEDDERS[name] = spec
        cls.spec = spec
        return cls

    return decorate


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"`` -> ``cuda`` when available, else ``cpu``; anything else through ``torch.device``.

    Raises:
        DeviceError: a name torch does not know, or a CUDA device this machine does not have (said before
            any model loads, not as a driver error half-way).
    """
    if isinstance(device, str) and device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError, TypeError):
        raise DeviceError(f"unknown device {device!r}: use 'auto', 'cpu', 'cuda' or 'cuda:N'") from None
    if dev.type not in ("cpu", "cuda"):
        raise DeviceError(f"device {device!r} is not supported (influvision runs on 'cpu' and 'cuda' devices); use "
                          "'auto', 'cpu', 'cuda' or 'cuda:N'")
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceError(f"device {device!r}: no CUDA device is available on this machine; use 'cpu' or 'auto'")
        index = dev.index if dev.index is not None else torch.cuda.current_device()
        if index >= torch.cuda.device_count():
            raise DeviceError(f"device {device!r}: this machine has {torch.cuda.device_count()} CUDA device(s), "
                              f"numbered from 0")
        dev = torch.device("cuda", index)
    return dev


class TorchEmbedder:
    """Base of every registered embedder: validation, batching, flip averaging; subclasses add the model.

    A subclass implements :meth:`build_network` (the architecture, randomly initialised), :meth:`load_weights`
    (a verified state dict) and, where its input differs from plain pixels, :meth:`preprocess`.
    """

    spec: ClassVar[EmbedderSpec]  # set by @register_embedder
    # Per-channel input mean and scale, RGB, for the default preprocess: (x - mean) * scale.
    input_mean: ClassVar[tuple[float, float, float]] = (127.5, 127.5, 127.5)
    input_scale: ClassVar[float] = 1 / 128

    def __init__(self, spec: EmbedderSpec, net: nn.Module, device: torch.device, threshold: float):
        self.net, self.device, self.threshold = net, device, threshold
        self.name, self.input_size, self.dim, self.metric = spec.name, spec.input_size, spec.dim, spec.metric
        self._mean = torch.tensor(self.input_mean, dtype=torch.float32, device=device).view(1, 3, 1, 1)

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(name={self.name!r}, device={self.device}, input_size={self.input_size}, "
                f"dim={self.dim}, metric={self.metric!r}, threshold={self.threshold})")

    # --- what a model file provides ---------------------------------------------------------------------------

    @classmethod
    def build_network(cls) -> nn.Module:
        """The architecture with random weights, on the CPU. Forward: (B, 3, S, S) float32 -> (B, D)."""
        raise NotImplementedError

    @classmethod
    def load_weights(cls, path: Path | None) -> dict[str, Tensor]:
        """The verified state dict (CPU tensors); ``path`` overrides the default weights file."""
        raise NotImplementedError

    @classmethod
    def load_into(cls, net: nn.Module, state: dict[str, Tensor]) -> None:
        """Load ``state`` into ``net`` strictly."""
        net.load_state_dict(state, strict=True)

    def preprocess(self, chips: Tensor) -> Tensor:
        """(B, S, S, 3) uint8 on ``device`` -> (B, 3, S, S) float32, channels_last: (x - mean) * scale."""
        x = chips.permute(0, 3, 1, 2).float()  # a permuted NHWC tensor already has channels_last strides
        return ((x - self._mean) * self.input_scale).contiguous(memory_format=torch.channels_last)

    # --- the public method ------------------------------------------------------------------------------------

    def _check_chips(self, chips: np.ndarray | Tensor) -> Tensor:
        s = self.input_size
        expected = f"uint8 RGB chips (N, {s}, {s}, 3)"
        if isinstance(chips, np.ndarray):
            shape, dtype = tuple(chips.shape), str(chips.dtype)
            ok_dtype = chips.dtype == np.uint8
        elif isinstance(chips, Tensor):
            shape, dtype = tuple(chips.shape), str(chips.dtype).removeprefix("torch.")
            ok_dtype = chips.dtype == torch.uint8
        else:
            raise ShapeError("chips", f"a numpy array or torch tensor of {expected}", type(chips).__name__)
        hint = f"pass {expected}"
        if len(shape) == 3 and shape == (s, s, 3):
            hint = "add a batch axis: chips[None]"
        elif len(shape) == 4 and shape[1:] == (3, s, s):
            hint = f"channels come last: pass chips.permute(0, 2, 3, 1), i.e. {expected}"
        elif len(shape) == 4 and shape[1] == shape[2] and shape[3] == 3 and shape[1] != s:
            hint = f"this embedder ({self.name}) takes {s}x{s} chips; align faces with size={s}"
        elif not ok_dtype:
            hint = f"convert to uint8 pixels 0-255, RGB order: {expected}"
        if len(shape) != 4 or shape[1:] != (s, s, 3) or not ok_dtype:
            raise ShapeError("chips", expected, f"{dtype} {shape}", hint)
        if isinstance(chips, np.ndarray):
            return torch.from_numpy(np.ascontiguousarray(chips))
        return chips

    def embed(self, chips: np.ndarray | Tensor, *, flip: bool = False, batch_size: int = 256,
              precision: str = "fp32") -> Tensor:
        """Descriptors of aligned face chips.

        Args:
            chips: (N, S, S, 3) uint8 RGB, S = :attr:`input_size`; numpy array or tensor on any device.
                Each batch is copied to :attr:`device` once.
            flip: also embed each chip's horizontal mirror and average the two descriptors (test-time
                augmentation; twice the compute).
            batch_size: chips per forward pass; lower it if the device runs out of memory.
            precision: ``"fp32"``, or ``"bf16"`` to run the network under bfloat16 autocast (inputs and
                descriptors stay float32). On the shared dlib fixture chips bf16 moves descriptors by at
                most about 0.01 Euclidean (cosine >= 0.99997) on the CPU; see docs/models.md.

        Returns:
            (N, D) float32 on :attr:`device`, the model's raw descriptors (dlib's are not L2-normalised;
            FaceNet's are). N = 0 gives a (0, D) tensor.

        Raises:
            ShapeError: wrong shape or dtype, or an unknown ``precision``; the message says what to pass.
        """
        x = self._check_chips(chips)
        if batch_size < 1:
            raise ShapeError("batch_size", "a positive integer", batch_size)
        if precision not in PRECISIONS:
            raise ShapeError("precision", f"one of {PRECISIONS}", repr(precision))
        n = x.shape[0]
        # Allocated outside inference mode so callers may later modify it in place.
        out = torch.empty(n, self.dim, dtype=torch.float32, device=self.device)
        bf16 = precision == "bf16"
        with torch.inference_mode(), torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=bf16):
            for start in range(0, n, batch_size):
                batch = x[start:start + batch_size].to(self.device, non_blocking=True)
                t = self.preprocess(batch)
                if flip:
                    d = self.net(torch.cat([t, t.flip(3)]))
                    d = (d[: len(batch)] + d[len(batch):]) * 0.5
                else:
                    d = self.net(t)
                out[start:start + len(batch)] = d.float()
        return out


_CACHE: dict[tuple[str, str, str | None], TorchEmbedder] = {}
_CACHE_LOCK = threading.Lock()


def load_embedder(name: str = "dlib-resnet-v1", device: str | torch.device = "auto",
                  weights: str | Path | None = None) -> Embedder:
    """The embedder registered as ``name``, with verified weights, on ``device``.

    Args:
        name: a key of :data:`EMBEDDERS` (``"dlib-resnet-v1"``, ``"facenet-vggface2"``, ``"facenet-casia"``).
        device: ``"auto"`` (CUDA if available, else CPU) or any torch device.
        weights: a weights file to use instead of the default (checked against the manifest's sha256).

    Returns:
        An :class:`Embedder`; repeated calls with the same arguments return the same object.

    Raises:
        UnknownModelError: no embedder of that name (the message lists the registered ones).
        WeightsError: the weights are missing or fail their checksum (the message says how to fix it).
    """
    if name not in EMBEDDERS:
        raise UnknownModelError(name, sorted(EMBEDDERS))
    dev = resolve_device(device)
    key = (name, str(dev), str(Path(weights).expanduser().resolve()) if weights is not None else None)
    with _CACHE_LOCK:
        if key not in _CACHE:
            _CACHE[key] = EMBEDDERS[name].create(dev, weights)
            log.info("loaded embedder %r on %s", name, dev)
        return _CACHE[key]


def clear_embedder_cache() -> None:
    """Forget every embedder :func:`load_embedder` has built (frees their memory once unreferenced)."""
    with _CACHE_LOCK:
        _CACHE.clear()


# The built-in models register themselves on import; they import only torch at module level.
from . import dlib_resnet, facenet  # noqa: E402, F401

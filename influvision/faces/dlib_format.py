"""Reader for dlib's binary serialisation of ``dlib_face_recognition_resnet_model_v1.dat``.

dlib writes a network outside-in and never records the architecture (which layer is a tag, a skip, which tag an
``add_prev`` adds), so this reader is driven by the known layer list of dlib's face-recognition ResNet
(``dnn_face_recognition_ex.cpp``) and checks every version string, kernel size, stride, padding and tensor shape
against it. A correct parse consumes the whole file, exactly 22,466,066 bytes.

Primitives (dlib/serialize.h, all little-endian):

* integer: 1 control byte (low 4 bits = N magnitude bytes, bit 0x80 = negative), then N bytes;
* float: a packed int64 mantissa then a packed int16 exponent, value = mantissa * 2**exponent;
* string: packed length then raw bytes; bool: ASCII ``'1'`` / ``'0'``;
* tensor: int version 2, packed (n, k, nr, nc), then n*k*nr*nc raw float32;
* alias_tensor: int version 1, packed (n, k, nr, nc).

The format notes and the porting pitfalls are in the project's research note on the dlib port.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import WeightsError

log = logging.getLogger(__name__)

DAT_SIZE_BYTES = 22_466_066

# Special exponents of dlib's float_details.
_EXP_INF, _EXP_NINF, _EXP_NAN = 32000, 32001, 32002


# --- the architecture, innermost (input side) layer first -----------------------------------------------------


@dataclass(frozen=True)
class LayerSpec:
    """One dlib layer as the architecture defines it.

    ``kind`` is one of ``con``, ``affine``, ``relu``, ``max_pool``, ``avg_pool``, ``add_prev``, ``fc``,
    ``tag``, ``skip``. Tag and skip layers are wrappers only: they write a version int and no record.
    """

    kind: str
    out_channels: int = 0
    in_channels: int = 0
    kernel: int = 0
    stride: int = 1
    padding: int = 0


def _conv(cin: int, cout: int, k: int, stride: int) -> LayerSpec:
    # dlib's default padding: 0 for strided layers, k // 2 otherwise.
    return LayerSpec("con", cout, cin, k, stride, 0 if stride != 1 else k // 2)


def _ares(n: int) -> list[LayerSpec]:
    return [LayerSpec("tag"), _conv(n, n, 3, 1), LayerSpec("affine", n), LayerSpec("relu"),
            _conv(n, n, 3, 1), LayerSpec("affine", n), LayerSpec("add_prev"), LayerSpec("relu")]


def _ares_down(cin: int, n: int) -> list[LayerSpec]:
    return [LayerSpec("tag"), _conv(cin, n, 3, 2), LayerSpec("affine", n), LayerSpec("relu"),
            _conv(n, n, 3, 1), LayerSpec("affine", n), LayerSpec("tag"), LayerSpec("skip"),
            LayerSpec("avg_pool", kernel=2, stride=2), LayerSpec("add_prev"), LayerSpec("relu")]


def _architecture() -> list[LayerSpec]:
    layers = [_conv(3, 32, 7, 2), LayerSpec("affine", 32), LayerSpec("relu"),
              LayerSpec("max_pool", kernel=3, stride=2)]
    layers += _ares(32) * 3                                   # level 4
    layers += _ares_down(32, 64) + _ares(64) * 3              # level 3
    layers += _ares_down(64, 128) + _ares(128) * 2            # level 2
    layers += _ares_down(128, 256) + _ares(256) * 2           # level 1
    layers += _ares_down(256, 256)                            # level 0
    layers += [LayerSpec("avg_pool", kernel=0, stride=1), LayerSpec("fc", 128, 256)]
    return layers


ARCHITECTURE: tuple[LayerSpec, ...] = tuple(_architecture())
"""The 130 wrappers of dlib's face-recognition ResNet, input side first (108 layers, 18 tags, 4 skips)."""

_VERSION_STRINGS = {
    "con": ("con_4",),
    "affine": ("affine_",),
    "relu": ("relu_",),
    "max_pool": ("max_pool_2",),
    "avg_pool": ("avg_pool_2",),
    "add_prev": ("add_prev_",),
    "fc": ("fc_2",),
}


# --- what the reader returns -----------------------------------------------------------------------------------


@dataclass
class DlibResNetParams:
    """Parameters read from the .dat, as float32 numpy arrays in PyTorch layouts.

    Attributes:
        input_mean: (3,) float32, dlib's per-channel averages in R, G, B order (pixel units, 0-255).
        input_size: chip side in pixels (150).
        convs: 29 (weight (O, I, kh, kw), bias (O,)) pairs, input side first.
        affines: 29 (gamma (C,), beta (C,)) pairs; affine i follows conv i.
        fc_weight: (128, 256) float32, the ``nn.Linear`` weight (dlib stores its transpose).
        loss_margin, distance_threshold: the metric loss's margin and dist_thresh (0.04, 0.6).
    """

    input_mean: np.ndarray
    input_size: int
    convs: list[tuple[np.ndarray, np.ndarray]] = field(default_factory=list)
    affines: list[tuple[np.ndarray, np.ndarray]] = field(default_factory=list)
    fc_weight: np.ndarray | None = None
    loss_margin: float = 0.0
    distance_threshold: float = 0.0


# --- primitive decoding ----------------------------------------------------------------------------------------


class _Stream:
    """A cursor over the file's bytes; every read checks bounds and raises WeightsError on nonsense."""

    def __init__(self, data: bytes, path: str):
        self.data, self.pos, self.path = data, 0, path

    def fail(self, problem: str) -> WeightsError:
        return WeightsError(f"{self.path}: not a dlib face-recognition ResNet file: {problem} "
                            f"(at byte {self.pos})")

    def take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise self.fail(f"file ends early, wanted {n} more bytes")
        out = self.data[self.pos:self.pos + n]
        self.pos += n
        return out

    def int(self, max_bytes: int = 8) -> int:
        ctrl = self.take(1)[0]
        n = ctrl & 0x0F
        if n == 0 or n > max_bytes or ctrl & 0x70:
            raise self.fail(f"bad integer control byte 0x{ctrl:02x}")
        value = int.from_bytes(self.take(n), "little")
        return -value if ctrl & 0x80 else value

    def float(self) -> float:
        if self.data[self.pos:self.pos + 1] and self.data[self.pos] & 0x70:
            raise self.fail("old ASCII float format is not supported")
        mantissa = self.int(8)
        exponent = self.int(2)
        if exponent == _EXP_INF:
            return math.inf
        if exponent == _EXP_NINF:
            return -math.inf
        if exponent == _EXP_NAN:
            return math.nan
        return math.ldexp(mantissa, exponent)

    def string(self) -> str:
        n = self.int()
        if n < 0 or n > 256:
            raise self.fail(f"implausible string length {n}")
        try:
            return self.take(n).decode("ascii")
        except UnicodeDecodeError as err:
            raise self.fail("string is not ASCII") from err

    def bool(self) -> bool:
        b = self.take(1)
        if b not in (b"0", b"1"):
            raise self.fail(f"bad bool byte {b!r}")
        return b == b"1"

    def version(self, expected: int, what: str) -> None:
        v = self.int()
        if v != expected:
            raise self.fail(f"{what} has version {v}, expected {expected}")

    def tensor(self) -> np.ndarray:
        self.version(2, "tensor")
        shape = tuple(self.int() for _ in range(4))
        if any(s < 0 for s in shape):
            raise self.fail(f"negative tensor shape {shape}")
        count = math.prod(shape)
        raw = self.take(4 * count)
        return np.frombuffer(raw, dtype="<f4").astype(np.float32).reshape(shape)

    def alias_tensor(self) -> tuple[int, int, int, int]:
        self.version(1, "alias_tensor")
        return tuple(self.int() for _ in range(4))  # type: ignore[return-value]

    def empty_tensor(self, what: str) -> None:
        t = self.tensor()
        if t.size:
            raise self.fail(f"{what} should be empty, has shape {t.shape}")

    def expect(self, got: object, expected: object, what: str) -> None:
        if got != expected:
            raise self.fail(f"{what} is {got!r}, expected {expected!r}")


# --- the parse -------------------------------------------------------------------------------------------------


def _read_details(s: _Stream, spec: LayerSpec, i: int, out: DlibResNetParams) -> None:
    """Read one layer's "details" record and check it against the architecture."""
    tag = s.string()
    if tag not in _VERSION_STRINGS[spec.kind]:
        raise s.fail(f"layer {i} is {tag!r}, expected one of {_VERSION_STRINGS[spec.kind]}")
    where = f"layer {i} ({tag})"
    if spec.kind == "con":
        params = s.tensor().reshape(-1)
        s.expect(s.int(), spec.out_channels, f"{where} num_filters")
        for name, value in (("nr", spec.kernel), ("nc", spec.kernel), ("stride_y", spec.stride),
                            ("stride_x", spec.stride), ("padding_y", spec.padding),
                            ("padding_x", spec.padding)):
            s.expect(s.int(), value, f"{where} {name}")
        wshape = (spec.out_channels, spec.in_channels, spec.kernel, spec.kernel)
        s.expect(s.alias_tensor(), wshape, f"{where} filters shape")
        s.expect(s.alias_tensor(), (1, spec.out_channels, 1, 1), f"{where} biases shape")
        nw = math.prod(wshape)
        s.expect(params.size, nw + spec.out_channels, f"{where} parameter count")
        for _ in range(4):  # learning-rate and weight-decay multipliers
            s.float()
        out.convs.append((params[:nw].reshape(wshape), params[nw:].copy()))
    elif spec.kind == "affine":
        c = spec.out_channels
        params = s.tensor().reshape(-1)
        s.expect(params.size, 2 * c, f"{where} parameter count")
        s.expect(s.alias_tensor(), (1, c, 1, 1), f"{where} gamma shape")
        s.expect(s.alias_tensor(), (1, c, 1, 1), f"{where} beta shape")
        s.expect(s.int(), 0, f"{where} mode (0 = per channel)")
        out.affines.append((params[:c].copy(), params[c:].copy()))
    elif spec.kind in ("max_pool", "avg_pool"):
        for name, value in (("nr", spec.kernel), ("nc", spec.kernel), ("stride_y", spec.stride),
                            ("stride_x", spec.stride), ("padding_y", 0), ("padding_x", 0)):
            s.expect(s.int(), value, f"{where} {name}")
    elif spec.kind == "fc":
        s.expect(s.int(), spec.out_channels, f"{where} num_outputs")
        s.expect(s.int(), spec.in_channels, f"{where} num_inputs")
        params = s.tensor()
        shape = (spec.in_channels, spec.out_channels, 1, 1)
        s.expect(params.shape, shape, f"{where} params shape")
        s.expect(s.alias_tensor(), shape, f"{where} weights shape")
        s.expect(s.alias_tensor(), (0, 0, 0, 0), f"{where} biases shape")
        s.expect(s.int(), 1, f"{where} bias_mode (1 = no bias)")
        for _ in range(4):
            s.float()
        # dlib computes out = x @ W with W stored (in, out); nn.Linear wants (out, in).
        out.fc_weight = np.ascontiguousarray(params.reshape(shape[:2]).T)
    # relu_ and add_prev_ carry nothing after their version string.


def read_dlib_resnet(path: str | Path) -> DlibResNetParams:
    """Parse ``dlib_face_recognition_resnet_model_v1.dat`` into numpy arrays.

    Args:
        path: the .dat file (22,466,066 bytes). Its checksum is the caller's business (see
            :mod:`influvision.weights`); this function checks the structure.

    Returns:
        The parameters, float32, on the host.

    Raises:
        WeightsError: the file is not this network: a version string, shape, stride or padding differs from the
            known architecture, the file ends early, or bytes are left over.
    """
    path = Path(path)
    data = path.read_bytes()
    s = _Stream(data, str(path))

    s.version(1, "loss layer")
    s.expect(s.string(), "loss_metric_2", "loss layer")
    margin, dist_thresh = s.float(), s.float()

    # One version int per wrapper, outermost first: 2 for layers (3 for the innermost), 1 for tags and skips.
    for depth, spec in enumerate(reversed(ARCHITECTURE)):
        innermost = depth == len(ARCHITECTURE) - 1
        expected = 1 if spec.kind in ("tag", "skip") else (3 if innermost else 2)
        s.version(expected, f"wrapper {depth} ({spec.kind})")

    s.expect(s.string(), "input_rgb_image_sized", "input layer")
    mean = np.array([s.float(), s.float(), s.float()], dtype=np.float32)
    nr, nc = s.int(), s.int()
    s.expect((nr, nc), (150, 150), "input size")
    params = DlibResNetParams(input_mean=mean, input_size=nr, loss_margin=margin,
                              distance_threshold=dist_thresh)

    layers = [spec for spec in ARCHITECTURE if spec.kind not in ("tag", "skip")]
    for i, spec in enumerate(layers):
        _read_details(s, spec, i, params)
        for _ in range(3):  # setup_called, gradient_input_is_stale, get_output_and_gradient_input_disabled
            s.bool()
        s.empty_tensor("x_grad")
        s.empty_tensor("cached_output")
        if i == 0:
            s.empty_tensor("grad_final")
            s.expect(s.int(), 1, "sample_expansion_factor")
        else:
            s.empty_tensor("params_grad")

    if s.pos != len(data):
        raise s.fail(f"{len(data) - s.pos} bytes left over after the last layer")
    if len(data) != DAT_SIZE_BYTES:  # a structurally valid variant of another size: accept, but say so
        log.warning("%s parsed, but it has %d bytes, not the reference %d", path, len(data), DAT_SIZE_BYTES)
    if len(params.convs) != 29 or len(params.affines) != 29 or params.fc_weight is None:
        raise s.fail(f"found {len(params.convs)} convs and {len(params.affines)} affines, expected 29 each")
    log.debug("parsed %s: mean %s, margin %.3f, dist_thresh %.3f", path, mean, margin, dist_thresh)
    return params

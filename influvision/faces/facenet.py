"""FaceNet (facenet-pytorch's ``InceptionResnetV1``) embedders: ``facenet-vggface2`` and ``facenet-casia``.

160x160 RGB chips, preprocessed as facenet-pytorch's ``fixed_image_standardization`` ((x - 127.5) / 128), give
512-d L2-normalised embeddings. The weights are not shipped with any installed package: they are downloaded
from facenet-pytorch's release (or added offline with ``influvision weights add facenet-vggface2 FILE``),
checksum- or pin-verified by :mod:`influvision.weights`, and only then read with ``torch.load(weights_only=True)``.

facenet-pytorch is imported only when a network is built, never when this module is imported.
"""

from __future__ import annotations

import logging
from pathlib import Path

from torch import Tensor, nn

from ..errors import WeightsError
from ..weights import load_torch_weights
from .embed import TorchEmbedder, register_embedder

log = logging.getLogger(__name__)


class _FaceNetEmbedder(TorchEmbedder):
    """InceptionResnetV1 in embedding mode (``classify=False``); subclasses name their manifest."""

    input_mean = (127.5, 127.5, 127.5)
    input_scale = 1 / 128

    @classmethod
    def build_network(cls) -> nn.Module:
        from facenet_pytorch.models.inception_resnet_v1 import InceptionResnetV1

        # pretrained=None: facenet-pytorch would otherwise download (unverified) into the torch hub cache.
        return InceptionResnetV1(pretrained=None, classify=False)

    @classmethod
    def load_weights(cls, path: Path | None) -> dict[str, Tensor]:
        state = load_torch_weights(cls.spec.weights, path=path)
        # The released files carry the training classifier ("logits.*"); embeddings do not use it.
        return {k: v for k, v in state.items() if not k.startswith("logits.")}

    @classmethod
    def load_into(cls, net: nn.Module, state: dict[str, Tensor]) -> None:
        try:
            net.load_state_dict(state, strict=True)
        except RuntimeError as err:
            raise WeightsError(f"the {cls.spec.weights} weights do not fit InceptionResnetV1: {err}") from err


@register_embedder("facenet-vggface2", input_size=160, dim=512, metric="euclidean", weights="facenet-vggface2")
class FaceNetVGGFace2(_FaceNetEmbedder):
    """FaceNet trained on VGGFace2 (Sandberg's 20180402-114759): 160 px chips -> 512-d unit vectors."""


@register_embedder("facenet-casia", input_size=160, dim=512, metric="euclidean", weights="facenet-casia")
class FaceNetCasia(_FaceNetEmbedder):
    """FaceNet trained on CASIA-WebFace (Sandberg's 20180408-102900): 160 px chips -> 512-d unit vectors."""

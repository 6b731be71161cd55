"""Small helpers for moving host-side tables to the device without stalling it."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor


def index_tensor(values: Sequence, device: torch.device) -> Tensor:
    """A small int64 tensor (nested lists allowed) on ``device``; on CUDA copied from pinned memory
    without waiting for the GPU (a plain ``torch.tensor(..., device="cuda")`` makes the host wait for the
    device's queue)."""
    t = torch.tensor(values, dtype=torch.long)
    if device.type == "cuda":
        return t.pin_memory().to(device, non_blocking=True)
    return t.to(device)

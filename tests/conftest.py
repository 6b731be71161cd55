"""Shared fixtures: the real evaluation data lives in ../shared beside the repository."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"

torch.set_num_threads(max(1, min(2, torch.get_num_threads())))


def _shared(sub: str) -> Path:
    path = SHARED / sub
    if not path.exists():
        pytest.fail(f"test data {path} is missing: clone the repository beside its shared/ folder")
    return path


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """../shared/data: faces/, scenes/, videos/, logos/ with labels."""
    return _shared("data")


@pytest.fixture(scope="module")
def logo_data(shared_data: Path) -> Path:
    """../shared/data/logos: refs/ (17 brand references) and scenes/ (labelled photos)."""
    return shared_data / "logos"


@pytest.fixture(scope="module")
def refs(logo_data: Path):
    """Every shared brand reference, loaded (a module may override this with its own subset)."""
    from influvision.logos.references import load_reference

    return [load_reference(p.stem, p) for p in sorted((logo_data / "refs").glob("*.png"))]


def rgb_of(path: Path):
    """A photo as an (H, W, 3) uint8 RGB array."""
    import numpy as np
    from PIL import Image

    return np.asarray(Image.open(path).convert("RGB"))


@pytest.fixture(scope="session")
def dlib_fixtures() -> Path:
    """../shared/fixtures/dlib_resnet: chips, descriptors.npy, index.json, sources/."""
    return _shared("fixtures/dlib_resnet")


@pytest.fixture(params=["cpu", pytest.param("cuda", marks=pytest.mark.skipif(
    not torch.cuda.is_available(), reason="no CUDA device"))])
def device(request) -> str:
    return request.param


@pytest.fixture(scope="session")
def full_gallery(shared_data, tmp_path_factory):
    """A gallery with every identity of shared/data/faces registered (all of their photos)."""
    from influvision import Gallery

    gallery = Gallery(tmp_path_factory.mktemp("gallery") / "all.db", device="cpu")
    for person in sorted((shared_data / "faces").iterdir()):
        statuses = gallery.add_person(person.name, sorted(person.iterdir()))
        if not any(s.ok for s in statuses):
            pytest.fail(f"no usable reference for {person.name}: {statuses}")
    return gallery

"""Area downscaling of large photos (influvision.resample) on a real photo."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import rgb_of

from influvision.resample import shrink


@pytest.fixture(scope="module")
def large(shared_data: Path) -> np.ndarray:
    """A scene photo enlarged to 12 megapixels, 4200 x 2800 px."""
    return cv2.resize(rgb_of(shared_data / "scenes" / "bbt2.jpg"), (4200, 2800), interpolation=cv2.INTER_CUBIC)


def test_shrink_by_an_uneven_factor_is_area_resampling(large: np.ndarray):
    h, w = large.shape[:2]
    for size in [(800, round(800 * h / w)), (1000, round(1000 * h / w))]:  # the logo searches' copies
        out = shrink(large, size)
        want = cv2.resize(large, size, interpolation=cv2.INTER_AREA)
        assert out.shape == want.shape and out.dtype == np.uint8
        diff = np.abs(out.astype(np.int16) - want)
        # A box blur of slightly different width, not a shifted or aliased picture.
        assert diff.mean() < 1.0 and np.percentile(diff, 99) <= 6, size


def test_shrink_by_a_whole_factor_is_exactly_area_resampling(large: np.ndarray):
    grey = cv2.cvtColor(large, cv2.COLOR_RGB2GRAY)
    for x, size in [(large, (420, 280)), (grey, (1050, 700)), (grey, (4200, 2800))]:
        assert np.array_equal(shrink(x, size), cv2.resize(x, size, interpolation=cv2.INTER_AREA)), size


def test_shrink_of_sides_that_blocks_do_not_divide(large: np.ndarray):
    odd = np.ascontiguousarray(large[:2797, :4199])  # blocks of 2 leave a row and a column over
    out = shrink(odd, (800, 533))
    diff = np.abs(out.astype(np.int16) - cv2.resize(odd, (800, 533), interpolation=cv2.INTER_AREA))
    # The dropped column moves the far edge by a fifth of an output pixel: edges there differ a little more.
    assert out.shape == (533, 800, 3) and diff.mean() < 1.0 and np.percentile(diff, 99) <= 10


@pytest.mark.parametrize("size", [(0, 10), (10, 0), (5000, 100), (100, 3000)])
def test_shrink_refuses_sizes_it_cannot_reach(large: np.ndarray, size: tuple[int, int]):
    with pytest.raises(ValueError, match="not within"):
        shrink(large, size)

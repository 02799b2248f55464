"""Grey-level windows (mining.windowing): the VOI lookup is the curve's linear interpolation at every
level; the network's window takes the VOI only when asked for and present; the percentile window is
the 0.5-99.5 percentile scaling."""

from __future__ import annotations

import numpy as np
import pytest

from mining.windowing import WINDOW_PERCENTILE, WINDOW_VOI, percentile_uint8, voi_uint8, window_uint8

CURVE = {"x": [100.0, 300.0, 700.0], "y": [0.0, 0.8, 1.0]}


def test_voi_is_the_curve_at_each_pixel() -> None:
    pixels = np.array([[0, 100, 200], [300, 500, 65535]], dtype=np.uint16)
    # Below the first point black, above the last white, linear between points.
    expected = np.rint(np.array([[0.0, 0.0, 0.4], [0.8, 0.9, 1.0]]) * 255).astype(np.uint8)
    np.testing.assert_array_equal(voi_uint8(pixels, CURVE), expected)
    np.testing.assert_array_equal(voi_uint8(np.array([[100, 200]], np.uint8), CURVE), [[0, 102]])
    with pytest.raises(ValueError, match="uint8 or uint16"):
        voi_uint8(pixels.astype(np.float32), CURVE)


def test_percentile_window() -> None:
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 4096, size=(50, 40)).astype(np.uint16)
    lo, hi = np.percentile(pixels, [0.5, 99.5])
    expected = np.floor(np.clip((pixels - lo) / (hi - lo), 0, 1) * 255 + 0.5)
    np.testing.assert_allclose(percentile_uint8(pixels), expected, atol=1)  # float32 arithmetic
    assert percentile_uint8(pixels).min() == 0 and percentile_uint8(pixels).max() == 255
    eight = pixels.astype(np.uint8)
    assert percentile_uint8(eight) is eight  # 8-bit images are seen as stored


def test_the_network_window_takes_the_voi_only_when_asked_and_present() -> None:
    pixels = np.arange(0, 1000, dtype=np.uint16).reshape(25, 40)
    np.testing.assert_array_equal(window_uint8(pixels, CURVE, WINDOW_VOI), voi_uint8(pixels, CURVE))
    np.testing.assert_array_equal(window_uint8(pixels, None, WINDOW_VOI), percentile_uint8(pixels))
    np.testing.assert_array_equal(window_uint8(pixels, CURVE, WINDOW_PERCENTILE), percentile_uint8(pixels))
    assert not np.array_equal(voi_uint8(pixels, CURVE), percentile_uint8(pixels))
    with pytest.raises(ValueError, match="window must be one of"):
        window_uint8(pixels, CURVE, "soft-tissue")

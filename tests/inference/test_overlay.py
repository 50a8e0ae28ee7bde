"""Heatmap colouring and blending: shapes, clipping (no uint8 wrap-around), validation."""

from __future__ import annotations

import numpy as np
import pytest

from core.errors import WorkbenchError
from core.inference.overlay import COLORMAPS, colorize, overlay


def _ramp(h: int = 8, w: int = 8) -> np.ndarray:
    return np.linspace(0.0, 1.0, h * w, dtype=np.float32).reshape(h, w)


@pytest.mark.parametrize("cmap", sorted(COLORMAPS))
def test_colorize_every_colormap(cmap):
    rgb = colorize(_ramp(), cmap)
    assert rgb.shape == (8, 8, 3) and rgb.dtype == np.uint8
    assert not np.array_equal(rgb[0, 0], rgb[-1, -1])  # the ends of the ramp differ in colour


def test_colorize_is_rgb_not_bgr():
    # Jet's hottest colour is red: R must dominate (OpenCV itself returns BGR).
    r, g, b = colorize(np.ones((2, 2)), "jet")[0, 0].astype(int)
    assert r > 100 and b < 50 and g < 50


@pytest.mark.parametrize("alpha", [0.0, 0.3, 0.5, 1.0])
def test_white_image_and_hottest_white_colour_stays_white(alpha):
    """'hot' maps 1.0 to white: any blend of white and white must be 255 — uint8 maths would wrap."""
    white = np.full((10, 10), 255, np.uint8)
    out = overlay(white, np.ones((10, 10)), alpha=alpha, colormap="hot")
    assert out.dtype == np.uint8 and out.shape == (10, 10, 3)
    assert out.min() == 255


@pytest.mark.parametrize("cmap", sorted(COLORMAPS))
def test_blend_stays_between_image_and_colour(cmap):
    """Every output channel lies between the image and the heat colour: no wrap, no overshoot."""
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (12, 12, 3), dtype=np.uint8)
    heat = rng.random((12, 12)).astype(np.float32)
    out = overlay(image, heat, alpha=0.6, colormap=cmap).astype(int)
    colour = colorize(heat, cmap).astype(int)
    lo, hi = np.minimum(image, colour), np.maximum(image, colour)
    assert np.all(out >= lo - 1) and np.all(out <= hi + 1)


def test_alpha_extremes():
    image = np.random.default_rng(1).integers(0, 256, (6, 6), dtype=np.uint8)
    heat = _ramp(6, 6)
    np.testing.assert_array_equal(overlay(image, heat, alpha=0.0), np.repeat(image[..., None], 3, axis=-1))
    np.testing.assert_array_equal(overlay(image, heat, alpha=1.0), colorize(heat))


def test_heatmap_is_resized_to_the_image_and_inputs_untouched():
    image = np.zeros((64, 48, 1), np.uint8)
    heat = _ramp(4, 4)
    before_img, before_heat = image.copy(), heat.copy()
    out = overlay(image, heat, alpha=0.5)
    assert out.shape == (64, 48, 3)
    np.testing.assert_array_equal(image, before_img)
    np.testing.assert_array_equal(heat, before_heat)


@pytest.mark.parametrize(
    ("heat", "message"),
    [
        (np.ones((4, 4, 1)), "2-D"),
        (np.full((4, 4), 1.5), r"\[0, 1\]"),
        (np.full((4, 4), -0.1), r"\[0, 1\]"),
        (np.full((4, 4), 255.0), "normalise"),
        (np.full((4, 4), np.nan), "NaN"),
        (np.zeros((0, 4)), "empty"),
    ],
)
def test_bad_heatmaps_are_explained(heat, message):
    with pytest.raises(WorkbenchError, match=message):
        overlay(np.zeros((4, 4), np.uint8), heat)


@pytest.mark.parametrize("alpha", [-0.1, 1.5, "half", None])
def test_bad_alpha(alpha):
    with pytest.raises(WorkbenchError, match="alpha"):
        overlay(np.zeros((4, 4), np.uint8), np.zeros((4, 4)), alpha=alpha)


def test_bad_image_and_colormap():
    with pytest.raises(WorkbenchError, match="uint8"):
        overlay(np.zeros((4, 4), np.float32), np.zeros((4, 4)))
    with pytest.raises(WorkbenchError, match=r"\(H, W\)"):
        overlay(np.zeros((4, 4, 4), np.uint8), np.zeros((4, 4)))
    with pytest.raises(WorkbenchError, match="unknown colormap"):
        colorize(np.zeros((4, 4)), "rainbow")

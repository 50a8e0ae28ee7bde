"""Properties of every registered preprocessing recipe, on small synthetic slices.

The equalising recipes exist so that a change of scanner brightness or contrast curve does not
change the network's input; these tests check that promise and the framing each one reports.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from core.data.preprocess import FRAME_EQ_ID, HEAD_ID, RECIPES, WHOLE_FRAME_ID, Framing, prepare_framed
from core.errors import WorkbenchError

EQUALISING = (HEAD_ID, FRAME_EQ_ID)


def _slice(h: int = 120, w: int = 160) -> np.ndarray:
    """A dark frame with an off-centre bright 'head' holding a brighter 'lesion' and some texture."""
    rng = np.random.default_rng(0)
    img = np.zeros((h, w), np.uint8)
    cv2.ellipse(img, (w // 2 + 20, h // 2), (45, 50), 0, 0, 360, 110, -1)
    cv2.circle(img, (w // 2 + 35, h // 2 - 10), 12, 220, -1)
    texture = rng.integers(0, 30, (h, w)).astype(np.uint8)
    return np.where(img > 0, np.clip(img.astype(int) + texture, 0, 255), 0).astype(np.uint8)


@pytest.mark.parametrize("recipe", sorted(RECIPES))
def test_every_recipe_gives_a_square_uint8_input(recipe) -> None:
    out = prepare_framed(_slice(), 32, recipe)
    assert out.pixels.shape == (32, 32, 1) and out.pixels.dtype == np.uint8
    assert out.pixels.max() > 0


@pytest.mark.parametrize("recipe", EQUALISING)
def test_a_monotonic_change_of_intensity_leaves_the_input_almost_unchanged(recipe) -> None:
    img = _slice()
    curve = np.clip(255.0 * (np.arange(256) / 255.0) ** 1.6 * 0.8 + 20 * (np.arange(256) > 0), 0, 255)
    changed = curve.astype(np.uint8)[img]  # darker mid-tones, lower contrast, background kept at 0
    a = prepare_framed(img, 48, recipe).pixels.astype(int)
    b = prepare_framed(changed, 48, recipe).pixels.astype(int)
    plain_a = prepare_framed(img, 48, WHOLE_FRAME_ID).pixels.astype(int)
    plain_b = prepare_framed(changed, 48, WHOLE_FRAME_ID).pixels.astype(int)
    # The plain resize passes the change through; equalisation removes most of it (the resize averages
    # pixels before the curve is undone, so a little remains).
    assert np.abs(plain_a - plain_b).mean() > 10
    assert np.abs(a - b).mean() < 0.3 * np.abs(plain_a - plain_b).mean()


def test_frame_eq_keeps_the_whole_frame_and_zeroes_the_background() -> None:
    img = _slice()
    out = prepare_framed(img, 40, FRAME_EQ_ID)
    assert out.framing == Framing()  # identity: heat maps are placed back on the whole frame
    assert out.framing.head_found
    plain = prepare_framed(img, 40, WHOLE_FRAME_ID).pixels[..., 0]
    eq = out.pixels[..., 0]
    # Same geometry as the whole-frame recipe: the head sits where it sits in the frame ...
    inside, seen = plain > 0, eq > 0
    assert (inside & seen).sum() / (inside | seen).sum() > 0.85
    # ... unlike the head crop, which fills the frame with the head.
    head = prepare_framed(img, 40, HEAD_ID).pixels[..., 0]
    assert (head > 0).mean() > (eq > 0).mean() + 0.1
    assert eq[0, 0] == 0 and eq[-1, -1] == 0  # corners are background


@pytest.mark.parametrize("recipe", EQUALISING)
def test_a_blank_image_is_kept_whole_and_reported_as_having_no_head(recipe) -> None:
    out = prepare_framed(np.full((50, 70), 40, np.uint8), 24, recipe)
    assert out.pixels.shape == (24, 24, 1)
    assert not out.framing.head_found


def test_an_unknown_recipe_names_the_known_ones() -> None:
    with pytest.raises(WorkbenchError) as err:
        prepare_framed(_slice(), 24, "no-such-recipe")
    for key in RECIPES:
        assert key in str(err.value)

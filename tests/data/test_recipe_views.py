"""core.data.recipe_views: every recipe's input for one slice, as given and shifted."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from core.data.preprocess import FRAME_EQ_ID, HEAD_ID, RECIPES, WHOLE_FRAME_ID
from core.data.recipe_views import SINGLE_IMAGE_SHIFTS, recipe_views


def _slice() -> np.ndarray:
    rng = np.random.default_rng(1)
    img = np.zeros((150, 180), np.uint8)
    cv2.ellipse(img, (100, 75), (55, 60), 0, 0, 360, 100, -1)
    cv2.circle(img, (115, 60), 14, 210, -1)
    return np.where(img > 0, np.clip(img.astype(int) + rng.integers(0, 40, img.shape), 0, 255), 0).astype(np.uint8)


def test_one_view_per_recipe_with_square_inputs() -> None:
    views = recipe_views(_slice(), 32)
    assert [v.key for v in views] == list(RECIPES)
    for v in views:
        assert v.plain.shape == v.shifted.shape == (32, 32) and v.plain.dtype == np.uint8
        assert v.change >= 0 and v.head_found


def test_a_contrast_curve_moves_the_raw_frame_more_than_the_standardised_inputs() -> None:
    change = {v.key: v.change for v in recipe_views(_slice(), 48, "darker")}
    assert change[WHOLE_FRAME_ID] > 5
    assert change[FRAME_EQ_ID] < 0.3 * change[WHOLE_FRAME_ID]
    # The head crop standardises intensities too, but its crop follows a brightness threshold, so a
    # curve that dims the scalp can move the frame; only its geometry is checked below.


def test_the_head_crop_fills_more_of_its_input_than_the_whole_frame_recipes() -> None:
    img = np.zeros((200, 200), np.uint8)
    cv2.circle(img, (120, 90), 40, 150, -1)  # a small head in a wide field of view
    views = {v.key: v for v in recipe_views(img, 48)}
    filled = {k: float((v.plain > 0).mean()) for k, v in views.items()}
    assert filled[HEAD_ID] > filled[FRAME_EQ_ID] + 0.1


@pytest.mark.parametrize("shift", SINGLE_IMAGE_SHIFTS)
def test_every_offered_shift_runs_on_one_slice(shift) -> None:
    views = recipe_views(_slice(), 24, shift)
    assert len(views) == len(RECIPES)


def test_style_shifts_need_another_image_and_are_not_offered() -> None:
    assert "histogram" not in SINGLE_IMAGE_SHIFTS and "none" not in SINGLE_IMAGE_SHIFTS
    with pytest.raises(KeyError, match="choose from"):
        recipe_views(_slice(), 24, "histogram")

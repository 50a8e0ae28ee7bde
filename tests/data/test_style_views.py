"""core.data.style_views: one slice restyled onto a partner's histogram, raw and as the network sees it."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import phantom_head

from core.data.preprocess import FRAME_EQ_ID, HEAD_ID, RECIPES, WHOLE_FRAME_ID
from core.data.style_mix import head_mask, histogram_counts, restyle
from core.data.style_views import choose_partner, style_view
from core.errors import WorkbenchError

DIM = phantom_head((150, 180), 50, 90, 30, seed=1)  # a dark, low-contrast source
BRIGHT = phantom_head((120, 120), 120, 230, 90, seed=2)  # a bright, high-contrast partner of another size


def _distance(a: np.ndarray, b: np.ndarray) -> float:
    """Earth mover's distance between two images' grey-level histograms, in grey levels (0 = same).

    The area between the cumulative histograms: bin-by-bin distances would punish a source with fewer
    distinct levels than the partner, which no monotonic table can spread out.
    """
    ha, hb = histogram_counts(a), histogram_counts(b)
    return float(np.abs(np.cumsum(ha) / ha.sum() - np.cumsum(hb) / hb.sum()).sum())


@pytest.mark.parametrize("recipe", list(RECIPES))
def test_shapes_and_types(recipe) -> None:
    v = style_view(DIM, BRIGHT, 32, recipe)
    assert v.original.shape == v.restyled.shape == DIM.shape and v.partner.shape == BRIGHT.shape
    for a in (v.original_input, v.partner_input, v.restyled_input):
        assert a.shape == (32, 32) and a.dtype == np.uint8
    assert v.restyled.dtype == np.uint8
    assert 0 <= v.input_change <= 255
    assert len(v.brightness) == len(v.contrast) == 3


def test_the_slice_as_given_is_kept_and_the_callers_arrays_are_untouched() -> None:
    src, ref = DIM.copy(), BRIGHT.copy()
    v = style_view(src, ref, 32, HEAD_ID)
    assert np.array_equal(src, DIM) and np.array_equal(ref, BRIGHT)
    assert np.array_equal(v.original, DIM) and np.array_equal(v.partner, BRIGHT)
    assert not np.shares_memory(v.original, src)


def test_restyling_is_the_training_transform_and_keeps_the_order_of_intensities() -> None:
    v = style_view(DIM, BRIGHT, 32, WHOLE_FRAME_ID)
    assert np.array_equal(v.restyled, restyle(DIM, BRIGHT))  # what new training runs draw
    head = head_mask(DIM)
    order = np.argsort(DIM[head], kind="stable")
    assert np.all(np.diff(v.restyled[head][order].astype(int)) >= 0)  # brighter stays brighter: anatomy kept
    assert np.array_equal(v.restyled[~head], DIM[~head])  # the background is left as it was


def test_restyled_histogram_approaches_the_partners() -> None:
    v = style_view(DIM, BRIGHT, 32, WHOLE_FRAME_ID)
    assert _distance(v.restyled, BRIGHT) < 0.2 * _distance(DIM, BRIGHT)
    b, c = v.brightness, v.contrast
    assert abs(b[2] - b[1]) < 0.25 * abs(b[0] - b[1])  # brightness and contrast now the partner's
    assert abs(c[2] - c[1]) < 0.25 * abs(c[0] - c[1])


def test_a_recipe_that_equalises_intensities_moves_little() -> None:
    change = {k: style_view(DIM, BRIGHT, 48, k).input_change for k in RECIPES}
    assert change[WHOLE_FRAME_ID] > 10
    assert change[FRAME_EQ_ID] < 0.3 * change[WHOLE_FRAME_ID]


def test_a_partner_with_the_same_histogram_changes_nothing() -> None:
    v = style_view(DIM, DIM, 32, WHOLE_FRAME_ID)
    assert np.array_equal(v.restyled, DIM) and v.input_change == 0


def test_errors_are_plain() -> None:
    with pytest.raises(WorkbenchError, match="preprocessing"):
        style_view(DIM, BRIGHT, 32, "no-such-recipe")
    with pytest.raises(WorkbenchError, match="partner.*2-D 8-bit"):
        style_view(DIM, np.zeros((8, 8, 3), np.uint8), 32, HEAD_ID)
    with pytest.raises(WorkbenchError, match="slice.*2-D 8-bit"):
        style_view(DIM.astype(np.float32), BRIGHT, 32, HEAD_ID)


# --- choosing a partner ------------------------------------------------------------------------------

PATHS = [f"{c}/{i}.png" for c in ("glioma", "meningioma", "notumor") for i in range(20)]
LABELS = [p.split("/")[0] for p in PATHS]


def test_the_partner_is_of_another_class_and_repeats_for_a_draw() -> None:
    picks = [choose_partner(PATHS, LABELS, "glioma/3.png", "glioma", draw) for draw in range(30)]
    assert all(LABELS[i] != "glioma" for i in picks)
    assert picks == [choose_partner(PATHS, LABELS, "glioma/3.png", "glioma", draw) for draw in range(30)]
    assert len(set(picks)) > 10  # drawn from all of them, not a favourite
    assert {LABELS[i] for i in picks} == {"meningioma", "notumor"}


def test_without_a_class_any_other_slice_may_be_the_partner() -> None:
    picks = {choose_partner(PATHS, LABELS, "glioma/3.png", None, draw) for draw in range(200)}
    assert PATHS.index("glioma/3.png") not in picks
    assert "glioma" in {LABELS[i] for i in picks}


def test_no_partner_when_every_slice_is_of_the_same_class() -> None:
    assert choose_partner(["a.png", "b.png"], ["glioma", "glioma"], "a.png", "glioma", 0) is None
    assert choose_partner(["a.png"], ["glioma"], "a.png", None, 0) is None

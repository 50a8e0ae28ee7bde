"""Intensity-style mixing: training slices restyled onto other slices' histograms, then picked per example."""

from __future__ import annotations

import numpy as np
import pytest

from core.config import AUGMENT_PRESETS
from core.data import style_mix
from core.data.preprocess import WHOLE_FRAME_ID, prepare
from core.data.style_mix import (
    COPIES,
    cached_restyled,
    draw_partners,
    histogram_counts,
    match_histogram,
    restyled_copies,
)
from core.errors import WorkbenchError
from core.training.config import TrainConfig


def _ramp(lo: int, hi: int, size: int = 48) -> np.ndarray:
    """A smooth (size, size) uint8 gradient from lo to hi: many distinct levels, a known order."""
    return np.linspace(lo, hi, size * size).reshape(size, size).round().astype(np.uint8)


# --- histogram matching ----------------------------------------------------------------------------

def test_matching_keeps_the_order_of_intensities():
    rng = np.random.default_rng(0)
    src = rng.integers(0, 256, (40, 40)).astype(np.uint8)
    ref = (rng.beta(0.5, 3, (30, 50)) * 255).astype(np.uint8)
    out = match_histogram(src, histogram_counts(ref))
    order = np.argsort(src.ravel(), kind="stable")
    assert np.all(np.diff(out.ravel()[order].astype(int)) >= 0)  # a monotonic grey-level table
    assert out.dtype == np.uint8 and out.shape == src.shape


def test_matching_takes_on_the_reference_intensities():
    dark, bright = _ramp(0, 90), _ramp(120, 250)
    out = match_histogram(dark, histogram_counts(bright))
    assert abs(out.mean() - bright.mean()) < 2 and abs(out.std() - bright.std()) < 2
    assert np.array_equal(match_histogram(dark, histogram_counts(dark)), dark)  # its own style: unchanged


def test_stress_shift_and_training_option_draw_the_same_transform():
    from core.data.shifts import _match_histogram

    a, b = _ramp(10, 200), _ramp(60, 120)
    assert np.array_equal(_match_histogram(a, b), match_histogram(a, histogram_counts(b)))


# --- partners ---------------------------------------------------------------------------------------

def test_partners_are_other_slices_drawn_from_all_of_them():
    p = draw_partners(200, 3, seed=1)
    assert p.shape == (200, 3)
    assert not (p == np.arange(200)[:, None]).any()
    assert p.min() >= 0 and p.max() < 200
    assert len(np.unique(p)) > 150  # drawn from the whole set, not a few favourites
    assert np.array_equal(p, draw_partners(200, 3, seed=1))
    assert not np.array_equal(p, draw_partners(200, 3, seed=2))


def test_partners_of_a_single_slice_is_itself():
    assert draw_partners(1, 2, seed=0).tolist() == [[0, 0]]


# --- restyled copies --------------------------------------------------------------------------------

@pytest.fixture
def slices(tmp_path, image_writer):
    levels = [(0, 80), (100, 255), (30, 140), (60, 200)]
    return [image_writer(tmp_path / f"s{i}.png", _ramp(lo, hi)) for i, (lo, hi) in enumerate(levels)]


def test_each_copy_is_the_slice_on_its_partners_histogram_then_prepared(slices):
    from core.data.imageio import decode_image

    out = restyled_copies(slices, 32, seed=5, preprocessing=WHOLE_FRAME_ID)
    assert out.shape == (4, COPIES, 32, 32, 1) and out.dtype == np.uint8
    partners = draw_partners(4, COPIES, seed=5)
    raw = [decode_image(p).pixels for p in slices]
    for i in range(4):
        for c in range(COPIES):
            expected = prepare(match_histogram(raw[i], histogram_counts(raw[partners[i, c]])), 32, WHOLE_FRAME_ID)
            assert np.array_equal(out[i, c], expected)
    assert abs(float(out[0].mean()) - float(prepare(raw[0], 32, WHOLE_FRAME_ID).mean())) > 20  # style moved


def test_unknown_recipe_is_refused_before_any_decoding(slices):
    with pytest.raises(WorkbenchError, match="preprocessing"):
        restyled_copies(slices, 32, seed=0, preprocessing="no-such-recipe")


def test_restyled_copies_are_cached_per_seed(slices, monkeypatch):
    calls = []
    real = style_mix.restyled_copies
    monkeypatch.setattr(style_mix, "restyled_copies", lambda *a, **k: calls.append(k) or real(*a, **k))
    first = cached_restyled(slices, 32, "fp", 3, preprocessing=WHOLE_FRAME_ID)
    again = cached_restyled(slices, 32, "fp", 3, preprocessing=WHOLE_FRAME_ID)
    other = cached_restyled(slices, 32, "fp", 4, preprocessing=WHOLE_FRAME_ID)
    assert len(calls) == 2  # the second call came from the cache; another seed is another entry
    assert np.array_equal(first, again) and not np.array_equal(first, other)


# --- picking per example in the training stream -----------------------------------------------------

def _stream(share: float, seed: int = 1):
    """One batch of 32 blank slices whose copies are marked: copy c of slice i is 100 c + i + 1 everywhere."""
    from core.training.pipeline import train_dataset

    n = 32
    images = np.zeros((n, 8, 8, 1), np.uint8)
    marks = 100 * np.arange(COPIES)[None, :] + np.arange(n)[:, None] + 1
    styled = np.broadcast_to(marks[:, :, None, None, None], (n, COPIES, 8, 8, 1)).astype(np.uint8)
    labels = np.arange(n) % 4
    ds = train_dataset(images, labels, 4, n, AUGMENT_PRESETS["none"], seed, styled=styled, style_mix=share)
    x, y = next(iter(ds))[:2]
    return np.asarray(x), np.asarray(y)


@pytest.mark.parametrize("share", [0.0, 0.5, 1.0])
def test_share_of_restyled_examples_follows_the_setting(share):
    x, y = _stream(share)
    assert x.shape == (32, 8, 8, 1) and y.shape == (32, 4)
    firsts = x[:, 0, 0, 0].astype(int)
    restyled = firsts > 0
    assert restyled.mean() == pytest.approx(share, abs=0.3 if 0 < share < 1 else 0)
    # A restyled example is one of *its own* copies: the label stays with the slice it shows.
    slice_of = (firsts[restyled] - 1) % 100
    assert np.array_equal(slice_of % 4, y.argmax(axis=1)[restyled])
    assert np.all(np.isin(x[restyled], firsts[restyled][:, None, None, None]))  # the whole copy, not a blend


def test_stream_with_mixing_is_deterministic_for_a_seed():
    a, _ = _stream(0.5, seed=3)
    b, _ = _stream(0.5, seed=3)
    assert np.array_equal(a, b)


def test_config_checks_the_style_mix_range():
    assert TrainConfig(style_mix=0.5).style_mix == 0.5
    for bad in (-0.1, 1.5):
        with pytest.raises(WorkbenchError, match="intensity-style"):
            TrainConfig(style_mix=bad)


# --- a run's prepared data ---------------------------------------------------------------------------

def test_prepared_data_holds_restyled_copies_of_the_training_images_only_when_mixing(demo_root):
    from core.config import DataConfig
    from core.data.datasets import open_folder
    from core.data.scan import scan_dataset
    from core.training.data import prepare_data
    from core.training.progressive import scaled_data

    ds = open_folder(demo_root)
    report = scan_dataset(ds)
    plain = prepare_data(ds, report, TrainConfig(image_size=32), DataConfig())
    mixed = prepare_data(ds, report, TrainConfig(image_size=32, style_mix=0.5), DataConfig())
    assert plain.styled is None
    n = len(mixed.x["train"])
    assert mixed.styled.shape == (n, COPIES, 32, 32, 1) and mixed.styled.dtype == np.uint8
    assert np.array_equal(mixed.x["train"], plain.x["train"])  # the originals are untouched
    assert not np.array_equal(mixed.styled[:, 0], mixed.x["train"])
    small = scaled_data(mixed, 16, {"train", "val"})
    assert small.x["train"].shape == (n, 16, 16, 1) and small.styled.shape == (n, COPIES, 16, 16, 1)
    assert set(small.x) == {"train", "val"}

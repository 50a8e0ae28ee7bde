"""Intensity-style mixing: training slices restyled onto other slices' histograms, then picked per example."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import phantom_head

from core.config import AUGMENT_PRESETS
from core.data import style_mix
from core.data.preprocess import WHOLE_FRAME_ID, prepare
from core.data.style_mix import (
    COPIES,
    STYLE_METHODS,
    cached_restyled,
    draw_partners,
    head_counts,
    head_mask,
    histogram_counts,
    match_histogram,
    restyle,
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

    a, b = HEAD_DIM, HEAD_BRIGHT
    assert np.array_equal(_match_histogram(a, b), restyle(a, b))
    assert np.array_equal(restyle(a, b), restyle(a, b, TrainConfig().style_mix_method))  # what new runs draw


# --- the head's intensities only (head-v1) ------------------------------------------------------------

# A dark head framed loosely (much background) and a bright head framed tightly (less): the pair
# that, matched frame to frame, turns the first one's background grey (its darkest levels outnumber
# the partner's background, so some of them take the partner's head levels).
HEAD_DIM = phantom_head((200, 200), 50, 90, 30, seed=1)
HEAD_DIM[:, :40] = HEAD_DIM[:, -40:] = 0  # more black around it
HEAD_BRIGHT = phantom_head((120, 120), 120, 230, 60, seed=2)


def test_matching_the_head_leaves_the_background_as_it_was():
    out = restyle(HEAD_DIM, HEAD_BRIGHT, "head-v1")
    mask = head_mask(HEAD_DIM)
    assert 0.3 < mask.mean() < 0.7  # the phantom's head was found, not the whole frame
    assert np.array_equal(out[~mask], HEAD_DIM[~mask])
    assert out.dtype == np.uint8 and out.shape == HEAD_DIM.shape


def test_the_first_method_lifts_a_black_background_and_the_head_method_does_not():
    """The reason for head-v1: whole-frame CDF matching gives the background another frame's levels."""
    mask = head_mask(HEAD_DIM)
    frame = restyle(HEAD_DIM, HEAD_BRIGHT, "frame-v1")
    head = restyle(HEAD_DIM, HEAD_BRIGHT, "head-v1")
    assert float(frame[~mask].mean()) > float(HEAD_DIM[~mask].mean()) + 12
    assert float(head[~mask].mean()) == pytest.approx(float(HEAD_DIM[~mask].mean()))


def test_matching_the_head_takes_on_the_partners_head_intensities_in_order():
    out = restyle(HEAD_DIM, HEAD_BRIGHT, "head-v1")
    mine, theirs = head_mask(HEAD_DIM), head_mask(HEAD_BRIGHT)
    # Within a few levels of a gap of about 80 (the masks' rims hold a little dark background).
    assert abs(float(out[mine].mean()) - float(HEAD_BRIGHT[theirs].mean())) < 5
    assert abs(float(out[mine].std()) - float(HEAD_BRIGHT[theirs].std())) < 5
    assert float(HEAD_BRIGHT[theirs].mean()) - float(HEAD_DIM[mine].mean()) > 60
    order = np.argsort(HEAD_DIM[mine], kind="stable")
    assert np.all(np.diff(out[mine][order].astype(int)) >= 0)  # brighter stays brighter inside the head
    assert np.array_equal(restyle(HEAD_DIM, HEAD_DIM, "head-v1"), HEAD_DIM)  # its own style: unchanged


def test_head_counts_count_the_head_only():
    counts = head_counts(HEAD_BRIGHT)
    assert counts.sum() == head_mask(HEAD_BRIGHT).sum()
    # The black surround is not in it, but for the thin rim the head's outline takes in.
    assert counts[:12].sum() < 0.1 * counts.sum() < histogram_counts(HEAD_BRIGHT)[:12].sum()


def test_a_slice_without_a_head_is_matched_whole():
    flat_noise = np.random.default_rng(0).integers(0, 6, (40, 40)).astype(np.uint8)  # nothing stands out
    assert head_mask(flat_noise).all()
    assert np.array_equal(restyle(flat_noise, HEAD_BRIGHT, "head-v1"),
                          match_histogram(flat_noise, head_counts(HEAD_BRIGHT)))


def test_an_unknown_method_is_refused_with_the_choices():
    with pytest.raises(WorkbenchError, match="head-v1.*frame-v1"):
        restyle(HEAD_DIM, HEAD_BRIGHT, "no-such-method")
    with pytest.raises(WorkbenchError, match="intensity-style method"):
        TrainConfig(style_mix=0.5, style_mix_method="no-such-method")


def test_settings_written_before_the_method_was_recorded_read_as_the_first_method():
    assert TrainConfig().style_mix_method == "head-v1"
    assert TrainConfig.from_dict({"style_mix": 0.5}).style_mix_method == "frame-v1"  # an old card that mixed
    assert TrainConfig.from_dict({"style_mix": 0.0}).style_mix_method == "head-v1"  # never mixed: nothing to keep
    assert TrainConfig.from_dict({"style_mix": 0.5, "style_mix_method": "head-v1"}).style_mix_method == "head-v1"
    cfg = TrainConfig(style_mix=0.5)
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg  # a new card round-trips


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
    levels = [(20, 80), (150, 250), (50, 140), (90, 200)]  # (tissue, lesion): heads of four styles
    return [image_writer(tmp_path / f"s{i}.png", phantom_head((48, 48), lo, hi, 30, seed=i))
            for i, (lo, hi) in enumerate(levels)]


@pytest.mark.parametrize("method", list(STYLE_METHODS))
def test_each_copy_is_the_slice_on_its_partners_histogram_then_prepared(slices, method):
    from core.data.imageio import decode_image

    out = restyled_copies(slices, 32, seed=5, preprocessing=WHOLE_FRAME_ID, method=method)
    assert out.shape == (4, COPIES, 32, 32, 1) and out.dtype == np.uint8
    partners = draw_partners(4, COPIES, seed=5)
    raw = [decode_image(p).pixels for p in slices]
    for i in range(4):
        for c in range(COPIES):
            expected = prepare(restyle(raw[i], raw[partners[i, c]], method), 32, WHOLE_FRAME_ID)
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
    first_way = cached_restyled(slices, 32, "fp", 3, preprocessing=WHOLE_FRAME_ID, method="frame-v1")
    assert len(calls) == 3 and calls[-1]["method"] == "frame-v1"  # another method is another entry
    assert not np.array_equal(first, first_way)


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

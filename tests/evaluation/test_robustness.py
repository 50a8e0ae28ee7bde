"""Simulated acquisition shifts (core.evaluation.robustness) and the robustness evaluation of a run."""

from __future__ import annotations

import numpy as np
import pytest

from core.data.shifts import SHIFTS, shift_images
from core.evaluation.robustness import robustness_table


def _phantoms(n: int = 6, size: int = 64) -> np.ndarray:
    """Bright disc with a darker lesion and fine texture on a black background, like a slice."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:size, 0:size]
    out = np.zeros((n, size, size, 1), np.uint8)
    for i in range(n):
        head = (yy - size / 2) ** 2 + (xx - size / 2) ** 2 < (size * 0.4) ** 2
        img = np.where(head, 110 + 15 * i + rng.integers(-40, 40, (size, size)), 0)  # sources differ in brightness
        lesion = (yy - size / 2 - i) ** 2 + (xx - size / 3) ** 2 < (size * 0.08) ** 2
        out[i, ..., 0] = np.clip(np.where(lesion, 60, img), 0, 255)
    return out


@pytest.mark.parametrize("key", list(SHIFTS))
def test_every_shift_keeps_shape_and_dtype_and_is_deterministic(key):
    images = _phantoms()
    a, b = shift_images(images, key, seed=3), shift_images(images, key, seed=3)
    assert a.shape == images.shape and a.dtype == np.uint8
    np.testing.assert_array_equal(a, b)
    if key == "none":
        np.testing.assert_array_equal(a, images)
    else:
        assert np.abs(a.astype(int) - images.astype(int)).mean() > 0.5, "the shift changed nothing"
    assert np.array_equal(images, _phantoms()), "the input was modified in place"


def test_style_shifts_need_no_labels_but_use_them():
    images = _phantoms(6)
    labels = np.array([0, 0, 0, 1, 1, 1])
    styled = shift_images(images, "histogram", seed=1, labels=labels)
    # Each image took another image's intensity histogram: its value set changed, its layout did not.
    assert ((styled > 0) == (images > 0)).mean() > 0.95
    assert shift_images(images, "histogram", seed=1).shape == images.shape


def test_reframe_makes_the_head_fill_the_frame():
    images = np.zeros((2, 64, 64, 1), np.uint8)
    images[:, 20:44, 24:40] = 150  # a small head in a large field of view
    framed = shift_images(images, "reframe")
    assert (framed > 0).mean() > 2 * (images > 0).mean()


def test_histogram_matching_maps_onto_the_reference_distribution():
    from core.data.shifts import _match_histogram

    rng = np.random.default_rng(0)
    src = rng.integers(0, 100, (64, 64)).astype(np.uint8)
    ref = rng.integers(100, 250, (64, 64)).astype(np.uint8)
    out = _match_histogram(src, ref)
    assert abs(float(out.mean()) - float(ref.mean())) < 3
    # Monotonic: the order of intensities is kept.
    order = np.argsort(src.ravel(), kind="stable")
    assert (np.diff(out.ravel()[order].astype(int)) >= 0).all()


def _head_mean(x: np.ndarray) -> float:
    return float(x[x > 0].mean())


def test_shifts_move_the_images_the_way_their_names_say():
    images = _phantoms()
    f = images.astype(float)
    assert _head_mean(shift_images(images, "darker")) < _head_mean(images) < _head_mean(
        shift_images(images, "brighter"))
    assert shift_images(images, "low_contrast").astype(float).std() < f.std()
    # Rician noise lifts the black background above zero, as in real magnitude images.
    background = images == 0
    assert shift_images(images, "noise")[background].mean() > 5
    # Blur and lower resolution remove fine texture: neighbouring pixels differ less.
    texture = np.abs(np.diff(f, axis=2)).mean()
    for key in ("blur", "low_resolution"):
        assert np.abs(np.diff(shift_images(images, key).astype(float), axis=2)).mean() < 0.8 * texture, key
    # The bias field brightens one side of the slice and darkens the other.
    ratio = shift_images(images, "bias_field").astype(float)[images > 0] / f[images > 0]
    assert ratio.min() < 0.9 and ratio.max() > 1.1


def test_bad_arguments_are_refused():
    with pytest.raises(KeyError, match="unknown shift"):
        shift_images(_phantoms(), "rotate")
    with pytest.raises(ValueError, match="uint8"):
        shift_images(_phantoms().astype(np.float32), "none")
    assert shift_images(_phantoms()[:0], "blur").shape == (0, 64, 64, 1)


def test_table_scores_each_shift_against_the_unchanged_images():
    images = _phantoms(8)
    labels = (np.arange(8) % 2).astype(np.int64)

    def logits_fn(x: np.ndarray) -> np.ndarray:
        # A "model" that is right on unaltered images and whose answer flips when mid-tones get darker.
        hits = np.array([int(_head_mean(img) > 0.97 * _head_mean(images[i])) for i, img in enumerate(x)])
        pred = np.where(hits, labels, 1 - labels)
        return np.eye(2)[pred] * 5.0

    table = robustness_table(logits_fn, images, labels, n_classes=2, shifts=["none", "darker", "brighter"])
    assert list(table["shift"]) == ["none", "darker", "brighter"]
    assert {"ece", "group"} <= set(table.columns)
    rows = table.set_index("shift")
    assert rows.loc["none", "accuracy"] == 1.0 and rows.loc["none", "change"] == 0.0
    assert rows.loc["darker", "accuracy"] == 0.0 and rows.loc["darker", "change"] == -100.0
    assert rows.loc["brighter", "accuracy"] == 1.0
    conf = float(np.exp(5) / (np.exp(5) + 1))
    assert np.allclose(table["mean_confidence"], conf)
    assert np.isclose(rows.loc["darker", "overconfidence"], conf)


@pytest.mark.slow
def test_robustness_of_a_run_is_computed_once_and_cached(tiny_registry, monkeypatch):
    import core.evaluation.robustness_eval as robustness_eval
    from core.evaluation.eval_sets import EvalSet
    from core.evaluation.robustness_eval import evaluate_robustness

    table = evaluate_robustness(tiny_registry, EvalSet("card_test"))
    assert list(table["shift"]) == list(SHIFTS)
    n = len(tiny_registry.card.data["test_files"])
    assert 0 < table["n_images"].iloc[0] <= n
    assert table["accuracy"].between(0, 1).all() and table["mean_confidence"].between(0, 1).all()
    monkeypatch.setattr(robustness_eval, "load_model", lambda *a, **k: pytest.fail("cache not used"))
    again = evaluate_robustness(tiny_registry, EvalSet("card_test"))
    assert list(again["accuracy"]) == pytest.approx(list(table["accuracy"]))


@pytest.mark.slow
def test_another_models_ood_file_leaves_the_unfamiliar_check_out_with_a_note(tiny_run, isolated_workbench_dirs):
    """An ood.npz of another feature width is refused as Predict refuses it, never used to score distances."""
    import shutil

    from core.evaluation.eval_sets import EvalSet
    from core.evaluation.robustness_eval import NOTE_COLUMN, evaluate_robustness
    from core.models.runs import OOD_FILE, resolve_run

    folder = isolated_workbench_dirs["models"] / tiny_run.run_id
    shutil.copytree(tiny_run.path, folder)
    np.savez_compressed(folder / OOD_FILE, means=np.zeros((len(tiny_run.class_names), 7)), precision=np.eye(7),
                        maha_threshold=1.0, energy_threshold=1.0)
    table = evaluate_robustness(resolve_run(folder.name), EvalSet("card_test"), use_cache=False)
    assert list(table["shift"]) == list(SHIFTS)
    note = str(table[NOTE_COLUMN].iloc[0])
    assert "unfamiliar-image check" in note and "7 features" in note, note


@pytest.mark.slow
def test_refitted_warnings_make_a_new_robustness_entry(tiny_registry):
    """The table counts warned answers: new thresholds on the same model must not reuse the old table."""
    from core.evaluation.cache import robustness_path
    from core.evaluation.eval_sets import EvalSet, open_eval_dataset
    from core.models.runs import update_card

    ds = open_eval_dataset(tiny_registry, EvalSet("card_test"))
    before = robustness_path(tiny_registry, ds, EvalSet("card_test"))
    results = tiny_registry.card.results.to_json()
    results["trust"] = {**dict(results.get("trust") or {}), "min_confidence": 0.123}
    changed = update_card(tiny_registry, results=results)
    assert robustness_path(changed, ds, EvalSet("card_test")) != before
    assert robustness_path(changed, ds, EvalSet("card_test")) == robustness_path(changed, ds, EvalSet("card_test"))

"""The committed default model: present, small, intact, loadable, and as good as its card says."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from core.models.runs import best_run, file_sha256, list_runs

REPO_MODELS = Path(__file__).resolve().parents[2] / "models"
CARD_KEYS = ("run_id", "status", "created", "arch", "class_names", "image_size", "preprocessing", "versions",
             "model_sha256", "params", "train_config", "data", "results", "timings", "evaluation")


@pytest.fixture(scope="module")
def default_run():
    run = best_run(list_runs(REPO_MODELS))
    assert run is not None, "no complete model is committed under models/"
    return run


def test_default_model_is_committed_small_and_intact(default_run) -> None:
    card = default_run.card.to_json()
    assert all(key in card for key in CARD_KEYS), [k for k in CARD_KEYS if k not in card]
    assert card["status"] == "complete" and card["arch"] == "custom_cnn"
    assert card["class_names"] == ["glioma", "meningioma", "notumor", "pituitary"]
    assert default_run.model_path.stat().st_size <= 10 * 1024 * 1024
    assert file_sha256(default_run.model_path) == card["model_sha256"]
    assert card["data"]["split_mode"] == "leakage_free" and not card["data"]["synthetic"]
    assert len(card["data"]["train_hashes"]) == sum(card["data"]["counts"]["train"].values())
    lf = card["evaluation"]["leakage_free"]
    assert lf["n_images"] > 500 and 0 <= lf["accuracy"] <= 1


@pytest.mark.slow
def test_default_model_predicts_on_the_demo_data(default_run, demo_root: Path) -> None:
    from core.inference.predict import Predictor, predict_files

    predictor = Predictor(default_run)
    files = sorted((demo_root / "Testing").rglob("*.png"))[::10][:8]
    results = predict_files(predictor, [(p.name, p.read_bytes()) for p in files], gradcam=True)
    assert all(r.ok for r in results)
    for r in results:
        assert r.label in default_run.class_names
        assert abs(sum(r.probabilities.values()) - 1) < 1e-6
        assert r.heatmap.shape == (default_run.image_size, default_run.image_size)
        assert 0 <= r.heatmap.min() and r.heatmap.max() <= 1


@pytest.mark.slow
@pytest.mark.realdata
def test_default_model_accuracy_on_a_fixed_sample_of_its_held_out_images(default_run, real_data_dir) -> None:
    """Not timed. A fixed 400-image sample of the card's own held-out test split must score at
    least the card's leakage-free accuracy minus 3 points (about 3 binomial standard errors)."""
    from core.classes import canonical_class
    from core.data.preprocess import load_many
    from core.evaluation.evaluate import predict_logits

    card = default_run.card.to_json()
    rng = np.random.default_rng(0)
    test_files = card["data"]["test_files"]
    chosen = sorted(rng.choice(len(test_files), size=min(400, len(test_files)), replace=False))
    paths = [real_data_dir / test_files[i] for i in chosen]
    if not all(p.exists() for p in paths):
        pytest.skip("this copy of the dataset lacks some of the model's held-out files")
    labels = np.array([default_run.class_names.index(canonical_class(Path(test_files[i]).parent.name))
                       for i in chosen])
    logits = predict_logits(default_run, load_many(paths, default_run.image_size,
                                                   preprocessing=default_run.preprocessing))
    accuracy = float((logits.argmax(axis=1) == labels).mean())
    assert accuracy >= card["evaluation"]["leakage_free"]["accuracy"] - 0.03


def test_default_model_uses_the_head_recipe_and_fitted_warnings(default_run) -> None:
    card = default_run.card.to_json()
    assert default_run.preprocessing == "head-v2"
    trust = card["results"]["trust"]
    assert 0 < trust["min_confidence"] < 1 and trust["max_distance"] > 0
    # Fitted so that at most 4 % of correct ordinary validation answers carry a warning.
    assert trust["validation_rates"]["none"]["correct_warned"] <= 0.04 + 1e-9

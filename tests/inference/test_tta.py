"""Test-time flip averaging: definition, input safety, and that inference follows the card."""

from __future__ import annotations

import numpy as np
import pytest

from core.data.tta import mirrored
from core.inference.tta import tta_logits
from core.models.card import ModelCard


def test_tta_logits_average_the_mirrored_pass() -> None:
    rng = np.random.default_rng(0)
    x = rng.random((3, 8, 8, 1))
    before = x.copy()
    weights = rng.random((64, 4))

    def logits(batch: np.ndarray) -> np.ndarray:  # a side-sensitive linear "model"
        return batch.reshape(len(batch), -1) @ weights

    np.testing.assert_allclose(tta_logits(logits, x, "none"), logits(x))
    np.testing.assert_allclose(tta_logits(logits, x, "hflip"), (logits(x) + logits(x[:, :, ::-1, :])) / 2)
    np.testing.assert_array_equal(x, before)  # the caller's batch is untouched
    assert not np.allclose(tta_logits(logits, x, "hflip"), logits(x))  # the mirror really counts
    np.testing.assert_array_equal(mirrored(mirrored(x)), x)


@pytest.mark.parametrize(("results", "mode"), [({}, "none"), ({"tta": "hflip"}, "hflip"), ({"tta": "bogus"}, "none")])
def test_tta_mode_from_card(results: dict, mode: str) -> None:
    assert ModelCard(results=results).tta == mode


@pytest.mark.slow
def test_predictor_and_evaluation_use_the_cards_tta(tiny_run, tmp_path) -> None:
    """Both inference paths average with the mirror exactly when the card says so."""
    import shutil

    from core.evaluation.evaluate import predict_logits
    from core.inference.calibration import softmax
    from core.inference.predict import Predictor
    from core.models.runs import resolve_run, update_card

    shutil.copytree(tiny_run.path, tmp_path / tiny_run.run_id)  # the session run stays untouched
    run = resolve_run(tiny_run.run_id, root=tmp_path)
    x = np.random.default_rng(1).integers(0, 255, (4, run.image_size, run.image_size, 1)).astype(np.uint8)
    for mode in ("none", "hflip"):
        run = update_card(run, results={**run.card.results.to_json(), "tta": mode})
        predictor = Predictor(run)
        plain = predictor.runner.forward(x.astype(np.float32))[1]
        flipped = predictor.runner.forward(mirrored(x).astype(np.float32))[1]
        expected = plain if mode == "none" else (plain + flipped) / 2
        scores = predictor.predict(x)
        np.testing.assert_allclose(scores.logits, expected, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(scores.probs, softmax(expected, predictor.temperature), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(predict_logits(run, x), expected, rtol=1e-4, atol=1e-4)


def test_low_confidence_threshold_is_strict_enough_to_flag_a_close_call() -> None:
    """98 % accurate overall, with the only mistakes at 60 % confidence: a 95 % target would pass
    every prediction; the 99 % target flags the uncertain ones."""
    from core.inference.calibration import low_confidence_threshold

    n = 100
    probs = np.tile([0.97, 0.01, 0.01, 0.01], (n, 1))
    labels = np.zeros(n, dtype=int)
    probs[:4] = [0.6, 0.4, 0.0, 0.0]
    labels[:2] = 1  # two of the four close calls are wrong
    t = low_confidence_threshold(probs, labels)
    assert 0.6 < t <= 0.97  # the close calls fall below the threshold and get the warning
    lenient = low_confidence_threshold(probs, labels, target_precision=0.95)
    assert (probs.max(axis=1) >= lenient).all()  # 95 % would flag nothing


def test_the_runner_scores_both_views_in_one_call_as_two_calls_would() -> None:
    """The mirrored view rides in the same forward call; each view's logits and the features of
    the unmirrored view are what separate calls give, across batch boundaries (to float32
    rounding: a batch of another size may sum in another order)."""
    from core.inference.runner import ModelRunner
    from core.lazy_tensorflow import keras

    k = keras()
    inputs = k.Input((8, 8, 1))
    x = k.layers.Conv2D(3, 3, name="conv")(inputs)
    feats = k.layers.GlobalAveragePooling2D(name="features")(x)
    logits = k.layers.Dense(4, name="logits")(k.layers.Concatenate()([feats, k.layers.Flatten()(inputs)]))
    model = k.Model(inputs, k.layers.Softmax()(logits))
    images = np.random.default_rng(1).integers(0, 256, (5, 8, 8, 1)).astype(np.uint8)
    out = ModelRunner(model, "hflip", batch_size=2).run(images)  # batches of 2, 2 and 1
    one_by_one = ModelRunner(model, "none", batch_size=1)
    plain, flipped = one_by_one.run(images), one_by_one.run(mirrored(images))
    np.testing.assert_allclose(out.view_logits[0], plain.logits, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(out.view_logits[1], flipped.logits, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(out.features, plain.features, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(out.logits, (plain.logits + flipped.logits) / 2, rtol=1e-5, atol=1e-5)
    assert not np.allclose(plain.logits, flipped.logits)  # the side matters to this model

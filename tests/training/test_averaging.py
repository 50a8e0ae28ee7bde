"""Tail weight averaging and batch-norm re-estimation (core.training.averaging) on tiny models."""

from __future__ import annotations

import numpy as np
import pytest

from core.errors import WorkbenchError
from core.training.config import TrainConfig


def _tiny_bn_model(seed: int = 0):
    from core.lazy_tensorflow import keras

    k = keras()
    k.utils.set_random_seed(seed)
    inputs = k.Input((8, 8, 1))
    x = k.layers.Conv2D(3, 3, name="conv")(inputs)
    x = k.layers.BatchNormalization(momentum=0.9, name="bn")(x)
    x = k.layers.GlobalAveragePooling2D()(x)
    outputs = k.layers.Dense(2, name="logits")(x)
    return k.Model(inputs, outputs)


def _conv_outputs(model, images: np.ndarray) -> np.ndarray:
    from core.lazy_tensorflow import keras

    probe = keras().Model(model.inputs, model.get_layer("conv").output)
    return np.asarray(probe([images.astype(np.float32)])).reshape(-1, 3).astype(np.float64)


def _images(n: int = 50) -> np.ndarray:
    return np.random.default_rng(3).uniform(0, 255, size=(n, 8, 8, 1)).astype(np.uint8)


def test_bn_statistics_become_the_dataset_mean_with_uneven_batches():
    from core.training.averaging import recompute_bn_statistics

    model, images = _tiny_bn_model(), _images(50)
    bn = model.get_layer("bn")
    assert np.allclose(np.asarray(bn.moving_mean), 0)  # fresh layer: the result below is not a leftover
    assert recompute_bn_statistics(model, images, batch_size=16) == 1  # batches of 16, 16, 16, 2
    expected = _conv_outputs(model, images).mean(axis=0)
    assert not np.allclose(expected, 0)
    np.testing.assert_allclose(np.asarray(bn.moving_mean), expected, rtol=1e-4, atol=1e-3)
    assert bn.momentum == 0.9  # restored, so the saved configuration is unchanged


def test_bn_variance_is_the_dataset_variance_in_one_batch():
    from core.training.averaging import recompute_bn_statistics

    model, images = _tiny_bn_model(), _images(40)
    recompute_bn_statistics(model, images, batch_size=len(images))
    expected = _conv_outputs(model, images).var(axis=0)
    np.testing.assert_allclose(np.asarray(model.get_layer("bn").moving_variance), expected, rtol=1e-3)


def test_frozen_batchnorm_keeps_its_statistics():
    from core.training.averaging import recompute_bn_statistics

    model = _tiny_bn_model()
    bn = model.get_layer("bn")
    bn.trainable = False  # as in a frozen transfer backbone: its ImageNet statistics must survive
    before = np.asarray(bn.moving_mean).copy(), np.asarray(bn.moving_variance).copy()
    assert recompute_bn_statistics(model, _images(20)) == 0
    np.testing.assert_array_equal(np.asarray(bn.moving_mean), before[0])
    np.testing.assert_array_equal(np.asarray(bn.moving_variance), before[1])


def _fit_recorded(epochs: int, averager, initial_epoch: int = 0):
    from core.lazy_tensorflow import keras

    k = keras()
    model = _tiny_bn_model(seed=1)
    model.compile(optimizer=k.optimizers.SGD(0.05), loss=k.losses.CategoricalCrossentropy(from_logits=True))
    seen: list[list[np.ndarray]] = []

    class Record(k.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            seen.append([np.asarray(v, dtype=np.float64).copy() for v in self.model.trainable_variables])

    x = _images(32).astype(np.float32)
    y = np.eye(2, dtype=np.float32)[np.arange(32) % 2]
    model.fit(x, y, epochs=initial_epoch + epochs, initial_epoch=initial_epoch, batch_size=8, verbose=0,
              callbacks=[Record(), averager])
    return model, seen


def test_averager_returns_the_mean_of_the_last_epochs():
    from core.training.averaging import weight_averager

    averager = weight_averager(n_epochs=2, total_epochs=4)
    _, seen = _fit_recorded(4, averager)
    weights, count = averager.averaged()
    assert count == 2 and len(seen) == 4
    assert not np.allclose(seen[2][0], seen[3][0])  # the weights moved, so the mean is a real mean
    for i, w in enumerate(weights):
        np.testing.assert_allclose(w, (seen[2][i] + seen[3][i]) / 2, rtol=1e-6)


def test_averager_counts_epochs_from_the_start_of_a_second_phase():
    from core.training.averaging import weight_averager

    averager = weight_averager(n_epochs=2, total_epochs=3)  # fine-tuning: epochs 5, 6, 7 of the run
    _, seen = _fit_recorded(3, averager, initial_epoch=5)
    weights, count = averager.averaged()
    assert count == 2 and len(seen) == 3
    for i, w in enumerate(weights):
        np.testing.assert_allclose(w, (seen[1][i] + seen[2][i]) / 2, rtol=1e-6)


def test_averager_falls_back_to_the_last_epoch_when_the_run_stops_early():
    from core.training.averaging import weight_averager

    averager = weight_averager(n_epochs=2, total_epochs=10)  # fit ran only 3 of the planned 10
    _, seen = _fit_recorded(3, averager)
    weights, count = averager.averaged()
    assert count == 1
    for w, last in zip(weights, seen[-1]):
        np.testing.assert_array_equal(w, last)


def test_set_trainable_weights_assigns_and_checks_length():
    from core.training.averaging import set_trainable_weights

    model = _tiny_bn_model()
    values = [np.full(v.shape, 0.5) for v in model.trainable_variables]
    set_trainable_weights(model, values)
    assert all(np.allclose(np.asarray(v), 0.5) for v in model.trainable_variables)
    with pytest.raises(ValueError, match="expected"):
        set_trainable_weights(model, values[:-1])


def test_config_rejects_averaging_more_epochs_than_trained():
    TrainConfig(epochs=5, average_epochs=5)
    with pytest.raises(WorkbenchError, match="epochs to average"):
        TrainConfig(epochs=5, average_epochs=6)
    with pytest.raises(WorkbenchError, match="epochs to average"):
        TrainConfig(epochs=5, average_epochs=-1)


@pytest.mark.slow
def test_training_with_averaging_records_each_step_in_the_card(demo_root, tmp_path, monkeypatch):
    from core.config import AUGMENT_PRESETS
    from core.data.datasets import open_folder
    from core.data.scan import scan_dataset
    from core.jobs import Job
    from core.models.runs import load_model
    from core.training.train import train_model

    monkeypatch.setenv("WORKBENCH_MODELS_DIR", str(tmp_path / "models"))
    ds = open_folder(demo_root)
    cfg = TrainConfig(image_size=32, width=0.25, batch_size=16, epochs=3, max_train_batches=2, patience=5,
                      augment=AUGMENT_PRESETS["none"], average_epochs=2)
    job = Job("train", "averaged tiny run")
    run = train_model(ds, scan_dataset(ds), cfg, job)
    avg = run.card.results.averaging
    assert avg["epochs_averaged"] == 2
    for key in ("val_accuracy_last_epoch", "val_accuracy_last_epoch_bn", "val_accuracy_averaged"):
        assert 0.0 <= avg[key] <= 1.0
    assert any("averaged the last 2 epochs" in line for line in job.snapshot().log)
    # The saved model is the averaged one with re-estimated statistics, not a fresh layer's.
    bn = load_model(run).get_layer("stem_bn")
    assert not np.allclose(np.asarray(bn.moving_variance), 1.0)

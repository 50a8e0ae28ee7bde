"""Mixup in the training pipeline: convex blends of example pairs, labels blended the same way."""

from __future__ import annotations

import numpy as np
import pytest

from core.config import AUGMENT_PRESETS
from core.errors import WorkbenchError
from core.training.config import TrainConfig


def _batch(n: int = 16, size: int = 8, classes: int = 4):
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, (n, size, size, 1)).astype(np.float32)
    labels = rng.integers(0, classes, n)
    return x, np.eye(classes, dtype=np.float32)[labels], rng.uniform(0.5, 2, n).astype(np.float32), labels


def _mix(alpha: float, key=(3, 7), with_weights: bool = True):
    from core.lazy_tensorflow import tf as load_tf
    from core.training.pipeline import mixup_batch

    tf = load_tf()
    x, y, w, labels = _batch()
    out = mixup_batch(tf.constant(x), tf.constant(y), tf.constant(w) if with_weights else None,
                      tf.constant(key, tf.int64), alpha)
    return (x, y, w, labels), tuple(None if o is None else np.asarray(o) for o in out)


def test_mixup_blends_each_example_with_its_neighbour_by_one_weight():
    (x, y, w, labels), (mx, my, mw) = _mix(0.4)
    partner = np.roll(np.arange(len(x)), 1)
    # Recover each example's weight from its label row, then check images and sample weights agree.
    lam = my[np.arange(len(x)), labels]
    same_class = labels == labels[partner]
    assert np.allclose(my.sum(axis=1), 1) and (my >= 0).all()
    assert (lam[~same_class] >= 0.5 - 1e-6).all() and (lam <= 1 + 1e-6).all()
    assert (my.argmax(axis=1)[~same_class] == labels[~same_class]).all()  # each keeps its own class
    lam = lam[~same_class]
    idx = np.flatnonzero(~same_class)
    expected_x = lam[:, None, None, None] * x[idx] + (1 - lam[:, None, None, None]) * x[partner[idx]]
    np.testing.assert_allclose(mx[idx], expected_x, rtol=1e-4, atol=1e-2)
    np.testing.assert_allclose(mw[idx], lam * w[idx] + (1 - lam) * w[partner[idx]], rtol=1e-5)
    assert (lam < 0.99).any(), "nothing was mixed: the test would not notice a no-op"


def test_mixup_is_deterministic_for_a_key_and_varies_with_it():
    _, a = _mix(0.4, key=(1, 2))
    _, b = _mix(0.4, key=(1, 2))
    _, c = _mix(0.4, key=(1, 3))
    np.testing.assert_array_equal(a[0], b[0])
    assert not np.allclose(a[0], c[0])


def test_mixup_without_sample_weights_returns_none_for_them():
    _, (mx, my, mw) = _mix(0.2, with_weights=False)
    assert mw is None and mx.shape == (16, 8, 8, 1) and my.shape == (16, 4)


def test_training_stream_has_soft_labels_only_with_mixup():
    from core.training.pipeline import train_dataset

    x, _, _, labels = _batch(32)
    images = x.astype(np.uint8)
    plain = next(iter(train_dataset(images, labels, 4, 16, AUGMENT_PRESETS["none"], seed=1)))
    mixed = next(iter(train_dataset(images, labels, 4, 16, AUGMENT_PRESETS["none"], seed=1, mixup=0.4)))
    assert set(np.unique(np.asarray(plain[1]))) <= {0.0, 1.0}
    soft = np.asarray(mixed[1])
    assert ((soft > 0) & (soft < 1)).any() and np.allclose(soft.sum(axis=1), 1)


def test_config_checks_the_mixup_range():
    assert TrainConfig(mixup=0.2).mixup == 0.2
    for bad in (-0.1, 1.5):
        with pytest.raises(WorkbenchError, match="mixup"):
            TrainConfig(mixup=bad)

"""core.training.forgetting: the adapted epoch kept must not forget the source (no training: a stand-in model)."""

from __future__ import annotations

import numpy as np
import pytest

from core.training.forgetting import SOURCE_VAL_KEY, forgetting_guard


class _Model:
    """Answers the source images correctly for a given share of them; its 'weights' name the epoch."""

    def __init__(self, y: np.ndarray, n_classes: int = 2) -> None:
        self.y, self.k, self.share, self.weights = y, n_classes, 1.0, [np.array(0)]

    def predict(self, x, batch_size=64, verbose=0):
        right = np.arange(len(self.y)) < round(self.share * len(self.y))
        pred = np.where(right, self.y, (self.y + 1) % self.k)
        return np.eye(self.k)[pred]

    def get_weights(self):
        return [w.copy() for w in self.weights]

    def set_weights(self, weights):
        self.weights = [w.copy() for w in weights]


def _run(epochs: list[tuple], max_drop: float = 0.005, start: float = 0.9, site_start: float | None = None):
    """Each epoch: (site validation loss, source accuracy[, site validation accuracy]); ``site_start``:
    the parent's site accuracy (None: no site images given). Returns (guard, model, logs)."""
    y = np.arange(200) % 2
    model = _Model(y)
    model.share = start
    site = (None, None)
    if site_start is not None:
        site = (np.zeros((200, 4, 4, 1), np.uint8), y)
    guard = forgetting_guard(np.zeros((200, 4, 4, 1), np.uint8), y, max_drop, *site)
    guard.set_model(model)
    guard.on_train_begin()
    if site_start is not None:
        assert guard.site_baseline == pytest.approx(start)  # scored at the start, like the source sample
        guard.site_baseline = site_start  # the stand-in answers every sample alike: the parent's site figure
    logs = []
    for e, (loss, share, *site_acc) in enumerate(epochs):
        model.share, model.weights = share, [np.array(e + 1)]
        log = {"val_loss": loss, **({"val_accuracy": site_acc[0]} if site_acc else {})}
        guard.on_epoch_end(e, log)
        logs.append(log)
    model.weights = [np.array(-1)]  # where fit left it
    guard.restore()
    return guard, model, logs


def test_the_best_site_epoch_that_keeps_the_source_is_kept():
    guard, model, logs = _run([(0.5, 0.85), (0.6, 0.9), (0.4, 0.7)])
    assert guard.baseline == pytest.approx(0.9)
    assert guard.chosen == 2 and int(model.weights[0]) == 2  # not epoch 3, whose site loss is lowest
    assert [log[SOURCE_VAL_KEY] for log in logs] == pytest.approx([0.85, 0.9, 0.7])


def test_among_epochs_within_the_limit_the_lowest_site_loss_wins():
    guard, model, _ = _run([(0.5, 0.9), (0.3, 0.9), (0.4, 0.95)])
    assert guard.chosen == 2 and int(model.weights[0]) == 2


def test_when_every_epoch_forgets_without_a_site_gain_the_original_weights_stay():
    guard, model, _ = _run([(0.2, 0.6), (0.3, 0.8), (0.1, 0.7)])  # no site accuracy to weigh: no gain shown
    assert guard.chosen == 0 and int(model.weights[0]) == 0
    # the whole-frame member on the simulated site: 6-9 points forgotten for a smaller site gain
    guard, model, _ = _run([(0.8, 0.82, 0.74), (0.7, 0.84, 0.75)], site_start=0.7)
    assert guard.chosen == 0 and int(model.weights[0]) == 0


def test_beyond_the_limit_an_epoch_is_kept_only_for_a_larger_net_gain():
    # the parent: 90 % source, 60 % site. Epoch 1 loses 1 point for 14 on the site; epoch 2 loses 2 for 12.
    guard, model, _ = _run([(0.6, 0.89, 0.74), (0.5, 0.88, 0.72)], site_start=0.6)
    assert guard.site_baseline == pytest.approx(0.6)
    assert guard.chosen == 1 and int(model.weights[0]) == 1
    # an epoch within the limit still beats any net gain beyond it
    guard, model, _ = _run([(0.6, 0.89, 0.74), (0.9, 0.9, 0.61)], site_start=0.6)
    assert guard.chosen == 2 and int(model.weights[0]) == 2


def test_without_source_images_it_is_the_best_site_epoch():
    from core.training.forgetting import forgetting_guard as make

    model = _Model(np.zeros(0, np.int64))
    guard = make(np.zeros((0, 4, 4, 1), np.uint8), np.zeros(0, np.int64), 0.005)
    guard.set_model(model)
    guard.on_train_begin()
    for e, loss in enumerate([0.5, 0.2, 0.4]):
        model.weights = [np.array(e + 1)]
        guard.on_epoch_end(e, {"val_loss": loss})
    guard.restore()
    assert guard.baseline is None and guard.chosen == 2 and int(model.weights[0]) == 2


def test_no_epoch_leaves_the_starting_weights():
    y = np.arange(10) % 2
    model = _Model(y)
    guard = forgetting_guard(np.zeros((10, 4, 4, 1), np.uint8), y, 0.005)
    guard.set_model(model)
    guard.on_train_begin()
    model.weights = [np.array(7)]
    guard.restore()
    assert int(model.weights[0]) == 0 and guard.chosen == 0

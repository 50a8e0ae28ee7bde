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


class _ClassModel(_Model):
    """Answers every source image right but for ``lost`` images of class 0, which it calls class 1, and
    ``gained``: images of class 1 it gets wrong at the start and right later (same overall accuracy)."""

    def __init__(self, y: np.ndarray) -> None:
        super().__init__(y)
        self.lost, self.wrong_of_1 = 0, 0

    def predict(self, x, batch_size=64, verbose=0):
        pred = self.y.copy()
        pred[np.flatnonzero(self.y == 0)[:self.lost]] = 1
        pred[np.flatnonzero(self.y == 1)[:self.wrong_of_1]] = 0
        return np.eye(self.k)[pred]


def _class_run(epochs: list[tuple[int, int, float]], site_loss: float | None = None, max_class_drop=0.03):
    """Each epoch: (class-0 images lost, class-1 images wrong, site validation loss); at the start
    10 of the 100 class-1 images are wrong and every class-0 image is right."""
    y = np.arange(200) % 2
    model = _ClassModel(y)
    model.wrong_of_1 = 10
    guard = forgetting_guard(np.zeros((200, 4, 4, 1), np.uint8), y, 0.005, site_loss=site_loss,
                             max_class_drop=max_class_drop)
    guard.set_model(model)
    guard.on_train_begin()
    for e, (lost, wrong_of_1, loss) in enumerate(epochs):
        model.lost, model.wrong_of_1, model.weights = lost, wrong_of_1, [np.array(e + 1)]
        guard.on_epoch_end(e, {"val_loss": loss})
    guard.restore()
    return guard, model


def test_an_epoch_that_trades_one_class_for_another_is_not_kept():
    # epoch 1: class 0 loses 8 of 100 while class 1 gains 8: overall unchanged, the real site's pattern
    guard, model = _class_run([(8, 2, 0.3), (2, 8, 0.4)])
    assert guard.forgot == {1: [0]} and guard.tier == 2
    assert guard.chosen == 2 and int(model.weights[0]) == 2  # the epoch that kept every class, though its loss is higher
    # two images of a class are noise, not forgetting; without the class limit the trade passes
    assert _class_run([(2, 8, 0.3)])[0].chosen == 1
    assert _class_run([(8, 2, 0.3)], max_class_drop=None)[0].chosen == 1


def test_an_epoch_that_forgets_a_class_is_not_kept_even_for_a_site_gain():
    y = np.arange(200) % 2
    model = _ClassModel(y)
    model.wrong_of_1 = 10
    guard = forgetting_guard(np.zeros((200, 4, 4, 1), np.uint8), y, 0.005, np.zeros((200, 4, 4, 1), np.uint8), y,
                             max_class_drop=0.03)
    guard.set_model(model)
    guard.on_train_begin()
    guard.site_baseline = 0.6
    model.lost, model.wrong_of_1, model.weights = 8, 2, [np.array(1)]
    guard.on_epoch_end(0, {"val_loss": 0.3, "val_accuracy": 0.9})  # +30 points on the site, class 0 down 8
    guard.restore()
    assert guard.chosen == 0 and int(model.weights[0]) == 0 and guard.forgot == {1: [0]}


def test_the_parent_stays_when_no_epoch_beats_its_site_validation_loss():
    guard, model = _class_run([(0, 10, 0.52), (0, 10, 0.61)], site_loss=0.5)
    assert guard.chosen == 0 and int(model.weights[0]) == 0 and guard.not_better
    guard, model = _class_run([(0, 10, 0.52), (0, 10, 0.45)], site_loss=0.5)
    assert guard.chosen == 2 and int(model.weights[0]) == 2


def test_the_note_says_why_the_parents_weights_stayed():
    from types import SimpleNamespace

    from core.training.adapt import guard_note

    names = ["glioma", "meningioma"]
    guard = SimpleNamespace(baseline=0.95, chosen=0, forgot={1: [1]}, not_better=True)
    note = guard_note(guard, 0.005, 398, names, 0.03)
    assert note.startswith("kept the original weights: no epoch did better on the site's validation images")
    assert "meningioma recognised less often" in note and "recalibrated for the site" in note
    kept = guard_note(SimpleNamespace(baseline=0.95, chosen=2, forgot={1: [1]}, not_better=False, tier=2), 0.005,
                      398, names, 0.03)
    assert kept.startswith("kept epoch 2 of fine-tuning: it fitted the site's validation images better")
    assert "no class's recall down by more than 3 points" in kept and "epochs that forgot meningioma" in kept
    net = guard_note(SimpleNamespace(baseline=0.95, chosen=1, forgot={}, not_better=False, tier=1), 0.005, 398,
                     names, 0.03)
    assert "lost more than the limit" in net and "largest net gain" in net and "passed over" not in net

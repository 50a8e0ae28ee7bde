"""Guarding what a model knew while it adapts to a site: the epoch kept must not forget the source.

Adaptation used to keep the epoch with the best site-validation loss, whatever it cost on the
images the model was trained for (measured on the simulated site, bench section 11 of the README:
source test accuracy 96.3 % → 95.5 %). Here every epoch is also scored on a class-balanced sample
of the parent's own *validation* images (never its test images, which stay the honest "source"
figure), and the epoch kept is the one with the best site-validation loss among those within
``max_drop`` of the parent's accuracy on that sample; if no epoch stays within it, the one that
forgot least.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from core.classes import canonical_class

SOURCE_VAL_KEY = "source_val_accuracy"  # added to each epoch's logs (and so to the run's history)


def source_validation(parent: Any, n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Up to ``n`` of the parent's validation images, class-balanced, read with its own preprocessing
    (empty when they are not on this machine)."""
    from core.data.preprocess import load_many
    from core.training.adapt_data import balanced_choice

    files = list(parent.card.data.get("val_files") or [])
    paths = [parent.data_root / f for f in files]
    empty = np.zeros((0, parent.image_size, parent.image_size, 1), np.uint8), np.zeros(0, np.int64)
    if not files or n <= 0 or not all(p.is_file() for p in paths):
        return empty
    index = {c: i for i, c in enumerate(parent.class_names)}
    labels = np.array([index.get(canonical_class(Path(f).parent.name), -1) for f in files])
    chosen = balanced_choice(labels, len(index), n, seed)
    if not chosen:
        return empty
    return load_many([paths[j] for j in chosen], parent.image_size,
                     preprocessing=parent.preprocessing), labels[chosen]


def forgetting_guard(x: np.ndarray, y: np.ndarray, max_drop: float) -> Any:
    """A Keras callback that keeps, in memory, the weights of the epoch to end on (see the module doc).

    Call ``restore()`` after ``fit``: the model then holds those weights (its starting weights when no
    epoch ended). ``chosen`` is the 1-based epoch kept (0: none) and ``baseline`` the parent's accuracy.
    """
    from core.lazy_tensorflow import keras

    class ForgettingGuard(keras().callbacks.Callback):
        def __init__(self) -> None:
            super().__init__()
            self.baseline: float | None = None
            self.chosen = 0
            self._best: tuple[tuple[int, float], list] | None = None  # ((within, score), weights)
            self._start: list | None = None

        def _accuracy(self) -> float | None:
            if not len(y):
                return None
            pred = self.model.predict(x, batch_size=64, verbose=0).argmax(axis=1)
            return float((pred == y).mean())

        def on_train_begin(self, logs: dict | None = None) -> None:
            self._start = self.model.get_weights()
            self.baseline = self._accuracy()

        def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
            logs = logs if logs is not None else {}
            acc = self._accuracy()
            if acc is not None:
                logs[SOURCE_VAL_KEY] = acc
            within = acc is None or self.baseline is None or acc >= self.baseline - max_drop - 1e-12
            # within the limit: the lowest site-validation loss; otherwise: the least forgetting
            score = -float(logs.get("val_loss", np.inf)) if within else float(acc)
            key = (int(within), score)
            if self._best is None or key > self._best[0]:
                self._best = (key, self.model.get_weights())
                self.chosen = epoch + 1

        def restore(self) -> None:
            weights = self._best[1] if self._best is not None else self._start
            if weights is not None:
                self.model.set_weights(weights)

    return ForgettingGuard()

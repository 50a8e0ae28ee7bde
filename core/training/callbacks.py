"""The training engine's progress callback: live progress into the job, cancel between batches.

Built by a function because the Keras base class may only be touched once TensorFlow is
wanted (a page that imports the engine must not load it). The schedules' callbacks live with
their registry (:mod:`core.training.options`).
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from core.jobs import Job
from core.lazy_tensorflow import keras
from core.training.train_feedback import PHASE_COMPILING, seconds_left


def progress_callback(*args: Any, **kwargs: Any):
    """A Keras callback writing per-batch and per-epoch progress into the job; cancels between batches.

    A cancel raises :class:`core.jobs.JobCancelled` out of ``fit`` at the next batch boundary
    (training or validation). Setting ``stop_training`` alone would still run the epoch's whole
    validation pass, the checkpoint save and early stopping's weight restore: seconds to tens of
    seconds on a CPU. The ETA counts only batches after the first, whose time is graph tracing.
    """
    # The class is defined on the first call: subclassing keras.callbacks.Callback at import time
    # would load TensorFlow whenever a page imports the engine. This function stays whole because
    # it is that one class; each of its methods is a few lines.
    k = keras()

    class ProgressCallback(k.callbacks.Callback):
        def __init__(self, job: Job, steps: int, total_epochs: int, epoch_offset: int, phase_epochs: int,
                     phase: str):
            """``epoch_offset``: epochs already trained (steps continue from there);
            ``phase_epochs``: epochs still planned from here on (for the ETA)."""
            super().__init__()
            self.job, self.steps, self.total_epochs = job, steps, total_epochs
            self.epoch_offset, self.phase_epochs, self.phase = epoch_offset, phase_epochs, phase
            self.t_epoch = time.perf_counter()
            self.t_first: float | None = None  # end of the first batch: the clock for the ETA
            self.done_batches = 0

        def _lr(self) -> float:
            return float(k.ops.convert_to_numpy(self.model.optimizer.learning_rate))

        def on_train_begin(self, logs=None):
            self.job.check_cancelled()
            self.job.update(phase=PHASE_COMPILING, eta_s=None)

        def on_epoch_begin(self, epoch, logs=None):
            self.job.check_cancelled()
            self.t_epoch = time.perf_counter()
            self.job.update(epoch=epoch + 1, batch=0, batches=self.steps,
                            **({} if self.t_first is None else {"phase": self.phase}))

        def on_train_batch_begin(self, batch, logs=None):
            self.job.check_cancelled()

        def on_train_batch_end(self, batch, logs=None):
            logs = logs or {}
            self.done_batches += 1
            now = time.perf_counter()
            if self.t_first is None:
                self.t_first = now
                self.job.update(phase=self.phase)
            step = self.epoch_offset * self.steps + self.done_batches
            global_frac = step / max(1, self.steps * self.total_epochs)
            eta = seconds_left(self.done_batches - 1, now - self.t_first,
                               self.steps * self.phase_epochs - self.done_batches)
            self.job.update(batch=batch + 1, progress=0.05 + 0.9 * min(1.0, global_frac), eta_s=eta)
            self.job.add_batch({"step": step, "epoch": self.job.epoch, "loss": float(logs.get("loss", np.nan)),
                                "accuracy": float(logs.get("accuracy", np.nan)), "lr": self._lr()})
            self.job.check_cancelled()

        def on_test_batch_begin(self, batch, logs=None):
            self.job.check_cancelled()

        def on_test_batch_end(self, batch, logs=None):
            self.job.check_cancelled()

        def on_epoch_end(self, epoch, logs=None):
            self.job.check_cancelled()  # a cut-short epoch is not a result
            row = {"epoch": epoch + 1, "phase": self.phase, "lr": self._lr(),
                   "seconds": time.perf_counter() - self.t_epoch}
            row.update({k_: float(v) for k_, v in (logs or {}).items() if k_ != "learning_rate"})
            self.job.add_epoch(row)
            self.job.add_log(f"epoch {epoch + 1}: " + ", ".join(
                f"{k_}={v:.4f}" for k_, v in row.items() if isinstance(v, float) and k_ != "seconds"))

    return ProgressCallback(*args, **kwargs)

"""The one place that runs a model on prepared images: batching, test-time augmentation,
pooled features for the out-of-distribution score, and the log-probability fallback.

Training's probes, evaluation, calibration and prediction all call :class:`ModelRunner`, so
a slice is scored the same way everywhere.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from core.data.tta import TTA_MODES, mirrored
from core.errors import WorkbenchError

BATCH = 32  # images per forward pass: bounds memory for large uploads and evaluation sets


@dataclass
class RunnerOutput:
    """Model outputs for a batch of prepared images."""

    logits: np.ndarray  # (N, K): averaged over the test-time views
    features: np.ndarray | None  # (N, D) pooled 'features' of the unmirrored pass; None without that layer
    view_logits: list[np.ndarray]  # one (N, K) array per view (unmirrored first)


class ModelRunner:
    """Runs a Keras classifier on (N, S, S, C) prepared images.

    One ``tf.function`` with a batch-agnostic signature is traced once: ``predict_on_batch``
    retraces on the short last batch and ``predict`` adds seconds of tf.data overhead per call.
    Thread-safe after construction (nothing is mutated).

    Args:
        model: the classifier; outputs are read from its ``features`` and ``logits`` layers
            when present, else log(probs), which equal the logits up to a per-row constant.
        tta: test-time augmentation (``none`` or ``hflip``: average with the mirrored slice).
        features: also return the pooled features (the out-of-distribution score needs them).
    """

    def __init__(self, model: Any, tta: str = "none", features: bool = True, batch_size: int = BATCH) -> None:
        from core.lazy_tensorflow import keras
        from core.lazy_tensorflow import tf as load_tf

        if tta not in TTA_MODES:
            raise WorkbenchError(f"unknown test-time augmentation '{tta}' (choose {', '.join(TTA_MODES)})", "tta")
        tf, k = load_tf(), keras()
        self.model, self.tta, self.batch_size = model, tta, batch_size
        names = {layer.name for layer in model.layers}
        self.has_features = features and "features" in names
        self.has_logits = "logits" in names
        outputs = ([model.get_layer("features").output] if self.has_features else []) + (
            [model.get_layer("logits").output] if self.has_logits else list(model.outputs[:1]))
        probe = k.Model(model.inputs, outputs)
        shape = [None, *model.inputs[0].shape[1:]]
        self._step = tf.function(lambda x: probe([x], training=False),
                                 input_signature=[tf.TensorSpec(shape, tf.float32)])

    def forward(self, x: np.ndarray) -> tuple[np.ndarray | None, np.ndarray]:
        """(features or None, logits) of one batch, without test-time augmentation."""
        out = self._step(np.ascontiguousarray(x, dtype=np.float32))
        arrays = [np.asarray(o, dtype=np.float64) for o in (out if isinstance(out, list | tuple) else [out])]
        feats = arrays.pop(0) if self.has_features else None
        logits = arrays[0] if self.has_logits else np.log(np.clip(arrays[0], 1e-12, 1.0))
        return feats, logits

    def run(self, images: np.ndarray, progress: Callable[[int, int], None] | None = None) -> RunnerOutput:
        """Scores of (N, S, S, C) images (uint8 or float 0..255), batch by batch."""
        x = np.asarray(images)
        feats: list[np.ndarray] = []
        views: list[list[np.ndarray]] = [[], []] if self.tta == "hflip" else [[]]
        for start in range(0, len(x), self.batch_size):
            xb = x[start:start + self.batch_size].astype(np.float32)
            n = len(xb)
            # the mirrored view rides in the same call: one graph dispatch per batch instead of two
            f, lg = self.forward(np.concatenate([xb, mirrored(xb)]) if self.tta == "hflip" else xb)
            if f is not None:
                feats.append(f[:n])
            views[0].append(lg[:n])
            if self.tta == "hflip":
                views[1].append(lg[n:])
            if progress:
                progress(min(start + self.batch_size, len(x)), len(x))
        k = int(self.model.outputs[0].shape[-1])
        view_logits = [np.concatenate(v) if v else np.zeros((0, k)) for v in views]
        logits = np.mean(view_logits, axis=0) if len(view_logits) > 1 else view_logits[0]
        features = np.concatenate(feats) if feats else None
        return RunnerOutput(logits, features, view_logits)

    def logits(self, images: np.ndarray, progress: Callable[[int, int], None] | None = None) -> np.ndarray:
        """Logits (N, K) with the runner's test-time augmentation."""
        return self.run(images, progress).logits

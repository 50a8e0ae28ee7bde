"""One evaluation's outcome: predictions per image and metrics on all and on leakage-free images."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

#: Metrics kept in the model card's compact summary (and shown beside each other on every page).
SUMMARY_KEYS = ("n_images", "accuracy", "accuracy_ci", "balanced_accuracy", "macro_f1", "weighted_f1", "ece",
                "macro_roc_auc")


@dataclass
class EvaluationResult:
    """Predictions and metrics of one model on one evaluation set."""

    run_id: str
    model_sha256: str
    eval_kind: str
    description: str  # which images, in words
    root: str  # the folder that prediction file paths are relative to
    dataset_fingerprint: str
    class_names: list[str]
    predictions: pd.DataFrame  # file, true, predicted, confidence, prob_<c>..., train_distance, overlap, correct
    metrics: dict[str, Any]  # metrics.summarize on all images
    leakage_free: dict[str, Any]  # the same on images that are not near-copies of training images
    n_overlapping: int
    temperature: float
    notes: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    created: str = ""
    from_cache: bool = False

    def subset(self, leakage_free: bool = False) -> pd.DataFrame:
        p = self.predictions
        return p[~p["overlap"]] if leakage_free else p

    def arrays(self, leakage_free: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(y_true, y_pred, probs) as class indices and an (N, C) array."""
        p = self.subset(leakage_free)
        index = {c: i for i, c in enumerate(self.class_names)}
        probs = p[[f"prob_{c}" for c in self.class_names]].to_numpy(np.float64)
        return p["true"].map(index).to_numpy(np.int64), p["predicted"].map(index).to_numpy(np.int64), probs

    def summary(self) -> dict[str, Any]:
        """Everything machine-readable (the CLI's --json and the metrics download)."""
        return {
            "run_id": self.run_id, "model_sha256": self.model_sha256, "eval_set": self.eval_kind,
            "description": self.description, "root": self.root, "dataset_fingerprint": self.dataset_fingerprint,
            **self.metrics, "n_overlapping": self.n_overlapping, "leakage_free": self.leakage_free,
            "temperature": self.temperature, "notes": self.notes, "timings": self.timings, "created": self.created,
            "from_cache": self.from_cache,
        }

    def card_summary(self) -> dict[str, Any]:
        """The compact summary stored in the model card."""
        return {
            "eval_set": self.eval_kind, "description": self.description,
            "dataset_fingerprint": self.dataset_fingerprint, "evaluated": self.created,
            **{k: self.metrics.get(k) for k in SUMMARY_KEYS}, "n_overlapping": self.n_overlapping,
            "leakage_free": {k: self.leakage_free.get(k) for k in SUMMARY_KEYS},
        }

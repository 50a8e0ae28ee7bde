"""What prediction hands on: the model's scores for a batch, and everything shown for one file.

Plain records (no model, no drawing): the Predict page, the CLI, the case report and the
exports read them; :mod:`core.inference.predict` fills them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from core.data.imageio import DecodedImage
from core.data.preprocess import Framing


@dataclass
class Scores:
    """Model outputs for a batch of prepared images."""

    logits: np.ndarray  # (N, K) pre-softmax scores
    probs: np.ndarray  # (N, K) softmax(logits / temperature): calibrated
    features: np.ndarray | None  # (N, D) pooled 'features' layer, for the Mahalanobis score
    mahalanobis: np.ndarray | None  # (N,) distance to the nearest training class mean
    energy: np.ndarray  # (N,) −logsumexp(logits / T); higher = less like the training data
    view_logits: list[np.ndarray] = field(default_factory=list)  # per test-time view (unmirrored first)


@dataclass
class PredictionResult:
    """Everything shown or exported for one file; ``error`` is set when the file was rejected."""

    file: str
    label: str | None = None
    confidence: float | None = None  # calibrated probability of ``label``
    probabilities: dict[str, float] = field(default_factory=dict)  # class name -> calibrated prob
    warnings: list[str] = field(default_factory=list)  # plain-language, shown as they are
    flags: list[str] = field(default_factory=list)  # machine-readable: low_confidence, ood, near_duplicate
    heatmap: np.ndarray | None = None  # float32 (S, S) in [0, 1]
    heatmap_class: str | None = None  # the class the heatmap explains
    method: str | None = None  # the CAM method used
    image: DecodedImage | None = None  # the decoded upload (full resolution)
    model_input: np.ndarray | None = None  # (S, S, 1) uint8, exactly what the model saw
    framing: Framing | None = None  # where model_input came from in ``image`` (head crop)
    details: dict[str, str] = field(default_factory=dict)  # the figures behind the warnings, for the curious
    meta: dict[str, Any] = field(default_factory=dict)  # safe DICOM header fields
    error: str | None = None
    prediction_set: list[str] | None = None  # conformal set at ``coverage``, most probable first (None: no calibration)
    coverage: float | None = None
    set_problem: str | None = None  # why no set is shown although the model has a calibration (too few images)
    notes: list[str] = field(default_factory=list)  # information about the score's meaning, not about the patient
    synthetic: bool = False  # the model was trained on synthetic pictures
    #: run id -> (D,) pooled features of each network that read the slice: the batch's site check reuses them
    features: dict[str, np.ndarray | None] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.error is None

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe summary (no arrays)."""
        return {"file": self.file, "label": self.label, "confidence": self.confidence,
                "probabilities": dict(self.probabilities), "warnings": list(self.warnings),
                "flags": list(self.flags), "details": dict(self.details), "meta": dict(self.meta),
                "error": self.error, "prediction_set": self.prediction_set, "coverage": self.coverage,
                "set_problem": self.set_problem, "notes": list(self.notes), "synthetic_model": self.synthetic}

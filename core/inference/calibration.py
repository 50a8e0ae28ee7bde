"""Confidence calibration: temperature scaling (Guo et al. 2017) and expected calibration error."""

from __future__ import annotations

import numpy as np
import pandas as pd


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    z = np.asarray(logits, dtype=np.float64) / temperature
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """The temperature T > 0 minimising the negative log-likelihood of ``labels``."""
    from scipy.optimize import minimize_scalar

    logits = np.asarray(logits, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    if len(labels) == 0:
        return 1.0

    def nll(log_t: float) -> float:
        p = softmax(logits, float(np.exp(log_t)))
        return float(-np.mean(np.log(np.clip(p[np.arange(len(labels)), labels], 1e-12, 1.0))))

    res = minimize_scalar(nll, bounds=(np.log(0.05), np.log(20.0)), method="bounded")
    return float(np.exp(res.x))


def reliability_table(probs: np.ndarray, labels: np.ndarray, bins: int = 10) -> pd.DataFrame:
    """Per confidence bin: count, mean confidence, accuracy (for the reliability diagram)."""
    probs = np.asarray(probs)
    conf = probs.max(axis=1)
    correct = probs.argmax(axis=1) == np.asarray(labels)
    edges = np.linspace(0.0, 1.0, bins + 1)
    idx = np.clip(np.digitize(conf, edges[1:-1], right=True), 0, bins - 1)
    rows = []
    for b in range(bins):
        m = idx == b
        rows.append({
            "bin_low": edges[b], "bin_high": edges[b + 1], "count": int(m.sum()),
            "confidence": float(conf[m].mean()) if m.any() else np.nan,
            "accuracy": float(correct[m].mean()) if m.any() else np.nan,
        })
    return pd.DataFrame(rows)


def expected_calibration_error(probs: np.ndarray, labels: np.ndarray, bins: int = 10) -> float:
    """ECE: bin-weighted mean |accuracy − confidence| over equal-width confidence bins."""
    table = reliability_table(probs, labels, bins)
    n = table["count"].sum()
    if n == 0:
        return 0.0
    used = table[table["count"] > 0]
    return float((used["count"] * (used["accuracy"] - used["confidence"]).abs()).sum() / n)


def low_confidence_threshold(probs: np.ndarray, labels: np.ndarray, target_precision: float = 0.99) -> float:
    """Smallest confidence t such that predictions with confidence ≥ t are right ≥ target of the time.

    Derived on validation data; below it the app warns "low confidence". The 99 % target is
    deliberately strict for decision support: with 95 %, a model that is 98 % accurate overall
    passes every prediction, even a 60/40 split between two tumour types. Clipped to [0.5, 0.99].
    """
    probs = np.asarray(probs)
    conf = probs.max(axis=1)
    correct = probs.argmax(axis=1) == np.asarray(labels)
    order = np.argsort(-conf, kind="stable")
    sorted_conf = conf[order]
    cum_acc = np.cumsum(correct[order]) / np.arange(1, len(order) + 1)
    # Only the last position of each run of tied confidences is a valid cut: "≥ t" keeps them all.
    last_of_tie = np.append(sorted_conf[1:] != sorted_conf[:-1], True)
    ok = np.nonzero((cum_acc >= target_precision) & last_of_tie)[0]
    t = float(sorted_conf[ok[-1]]) if len(ok) else 0.99
    return float(np.clip(t, 0.5, 0.99))

"""Classification metrics for evaluation: numbers and dataframes only, never drawing.

Labels are integer indices into ``class_names`` (the model's output order). Every function is
pure: the caller's arrays are not modified. Curves are long dataframes, ready for Altair.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
from sklearn import metrics as skm

from core.inference.calibration import expected_calibration_error, reliability_table

Z95 = 1.959963984540054  # two-sided 95 % normal quantile


def wilson_interval(successes: int, n: int, z: float = Z95) -> tuple[float, float] | None:
    """Wilson score interval for a proportion (better than p ± z·se for small n or p near 0/1).

    Returns None when ``n`` is 0 (no interval exists).
    """
    if n <= 0:
        return None
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def confusion(y_true: np.ndarray, y_pred: np.ndarray, class_names: list[str], normalize: bool = False) -> pd.DataFrame:
    """Confusion matrix with rows = true class, columns = predicted class.

    With ``normalize`` each row sums to 1 (the share of that true class predicted as each
    class; the diagonal is the recall). A class with no images gets a row of NaN.
    """
    labels = list(range(len(class_names)))
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    cm = (skm.confusion_matrix(y_true, y_pred, labels=labels).astype(np.float64) if len(y_true)
          else np.zeros((len(labels), len(labels))))  # sklearn refuses empty input
    if normalize:
        totals = cm.sum(axis=1, keepdims=True)
        cm = np.divide(cm, totals, out=np.full_like(cm, np.nan), where=totals > 0)
    df = pd.DataFrame(cm, index=pd.Index(class_names, name="true"), columns=pd.Index(class_names, name="predicted"))
    return df if normalize else df.astype(np.int64)


def confusion_long(y_true: np.ndarray, y_pred: np.ndarray, class_names: list[str]) -> pd.DataFrame:
    """One row per (true, predicted) cell with ``count`` and ``row_share`` (for the heatmap)."""
    counts = confusion(y_true, y_pred, class_names)
    shares = confusion(y_true, y_pred, class_names, normalize=True)
    long = counts.stack().rename("count").reset_index()
    long["row_share"] = shares.stack(future_stack=True).to_numpy()
    long["correct"] = long["true"] == long["predicted"]
    return long


def per_class_table(y_true: np.ndarray, y_pred: np.ndarray, class_names: list[str]) -> pd.DataFrame:
    """Precision, recall (= sensitivity), specificity, F1, support and a 95 % CI on recall.

    Undefined values (e.g. precision of a class never predicted) are NaN, not 0: a zero would
    read as "always wrong".
    """
    cm = confusion(y_true, y_pred, class_names).to_numpy()
    total = cm.sum()
    rows = []
    for i, name in enumerate(class_names):
        tp = cm[i, i]
        fn = cm[i].sum() - tp
        fp = cm[:, i].sum() - tp
        tn = total - tp - fn - fp
        precision = tp / (tp + fp) if tp + fp else np.nan
        recall = tp / (tp + fn) if tp + fn else np.nan
        specificity = tn / (tn + fp) if tn + fp else np.nan
        f1 = (2 * tp / (2 * tp + fp + fn)) if (2 * tp + fp + fn) else np.nan
        ci = wilson_interval(int(tp), int(tp + fn))
        rows.append({
            "class": name, "precision": precision, "recall": recall, "specificity": specificity, "f1": f1,
            "support": int(tp + fn), "recall_ci_low": ci[0] if ci else np.nan, "recall_ci_high": ci[1] if ci else np.nan,
        })
    return pd.DataFrame(rows)


def roc_curves(y_true: np.ndarray, probs: np.ndarray, class_names: list[str]) -> tuple[pd.DataFrame, dict[str, float | None]]:
    """One-vs-rest ROC curve per class as a long dataframe (class, fpr, tpr, threshold) and AUCs.

    A class with no positive or no negative images has no curve and AUC None.
    """
    y_true, probs = np.asarray(y_true), np.asarray(probs)
    frames, aucs = [], {}
    for i, name in enumerate(class_names):
        positive = y_true == i
        if positive.all() or not positive.any():
            aucs[name] = None
            continue
        fpr, tpr, thr = skm.roc_curve(positive, probs[:, i])
        aucs[name] = float(skm.auc(fpr, tpr))
        frames.append(pd.DataFrame({"class": name, "fpr": fpr, "tpr": tpr, "threshold": np.minimum(thr, 1.0)}))
    columns = ["class", "fpr", "tpr", "threshold"]
    return (pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=columns)), aucs


def pr_curves(y_true: np.ndarray, probs: np.ndarray, class_names: list[str]) -> tuple[pd.DataFrame, dict[str, float | None]]:
    """One-vs-rest precision-recall curve per class (class, recall, precision) and average precision."""
    y_true, probs = np.asarray(y_true), np.asarray(probs)
    frames, aps = [], {}
    for i, name in enumerate(class_names):
        positive = y_true == i
        if not positive.any():
            aps[name] = None
            continue
        precision, recall, _ = skm.precision_recall_curve(positive, probs[:, i])
        aps[name] = float(skm.average_precision_score(positive, probs[:, i]))
        frames.append(pd.DataFrame({"class": name, "recall": recall, "precision": precision}))
    columns = ["class", "recall", "precision"]
    return (pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=columns)), aps


def calibration(probs: np.ndarray, y_true: np.ndarray, bins: int = 10) -> tuple[float, pd.DataFrame]:
    """Expected calibration error and the per-bin reliability table (from core.inference.calibration)."""
    return expected_calibration_error(probs, y_true, bins), reliability_table(probs, y_true, bins)


def _clean(value: Any) -> Any:
    """JSON-safe: NaN becomes None, numpy scalars become Python numbers."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def summarize(y_true: np.ndarray, y_pred: np.ndarray, probs: np.ndarray, class_names: list[str]) -> dict[str, Any]:
    """All headline metrics of one set of predictions as a JSON-ready dict.

    Keys: n_images, accuracy, accuracy_ci, balanced_accuracy, macro_f1, weighted_f1, ece,
    per_class {class: precision, recall, specificity, f1, support, recall_ci, roc_auc,
    average_precision}, macro_roc_auc, confusion_matrix (rows = true), class_names.
    Metrics of an empty set are None.
    """
    y_true, y_pred, probs = np.asarray(y_true), np.asarray(y_pred), np.asarray(probs)
    n = int(len(y_true))
    out: dict[str, Any] = {"n_images": n, "class_names": list(class_names)}
    cm = confusion(y_true, y_pred, class_names)
    out["confusion_matrix"] = cm.to_numpy().tolist()
    if n == 0:
        out.update({k: None for k in ("accuracy", "accuracy_ci", "balanced_accuracy", "macro_f1", "weighted_f1",
                                      "ece", "macro_roc_auc")})
        out["per_class"] = {}
        return out
    correct = int((y_true == y_pred).sum())
    out["accuracy"] = correct / n
    out["accuracy_ci"] = list(wilson_interval(correct, n))
    # Balanced accuracy and F1 are averaged over the classes that occur (in truth or prediction):
    # a class absent from the evaluation set has no recall to average.
    out["balanced_accuracy"] = float(skm.balanced_accuracy_score(y_true, y_pred))
    out["macro_f1"] = float(skm.f1_score(y_true, y_pred, average="macro", zero_division=0))
    out["weighted_f1"] = float(skm.f1_score(y_true, y_pred, average="weighted", zero_division=0))
    out["ece"] = expected_calibration_error(probs, y_true)
    _, aucs = roc_curves(y_true, probs, class_names)
    _, aps = pr_curves(y_true, probs, class_names)
    valid = [a for a in aucs.values() if a is not None]
    out["macro_roc_auc"] = float(np.mean(valid)) if valid else None
    table = per_class_table(y_true, y_pred, class_names)
    out["per_class"] = {
        row["class"]: {
            "precision": _clean(row["precision"]), "recall": _clean(row["recall"]),
            "specificity": _clean(row["specificity"]), "f1": _clean(row["f1"]), "support": int(row["support"]),
            "recall_ci": None if np.isnan(row["recall_ci_low"]) else [row["recall_ci_low"], row["recall_ci_high"]],
            "roc_auc": aucs[row["class"]], "average_precision": aps[row["class"]],
        }
        for row in table.to_dict("records")
    }
    return out


def commonest_mistake(y_true: np.ndarray, y_pred: np.ndarray, class_names: list[str]) -> tuple[str, str]:
    """(true class, predicted class) of the most frequent confusion; the first class twice when there is none."""
    cm = confusion(y_true, y_pred, class_names)
    off = cm.where(~pd.DataFrame(np.eye(len(class_names), dtype=bool), index=cm.index, columns=cm.columns)).stack()
    return tuple(off.idxmax()) if len(off) else (class_names[0],) * 2

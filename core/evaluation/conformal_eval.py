"""Do a run's prediction sets keep their promise? Empirical coverage and set size on held-out images.

Numbers only (dataframes and dicts); the Evaluate page and the CLI draw or print them. The sets
come from :mod:`core.inference.conformal`, calibrated on the run's validation images; here they
are checked on images the calibration never saw: the test split, and its shifted copies.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from core.evaluation.metrics import wilson_interval
from core.evaluation.result import EvaluationResult
from core.inference.conformal import (
    COVERAGE_CHOICES,
    DEFAULT_COVERAGE,
    ConformalCalibration,
    try_run_conformal,
)

ALL = "all"  # the row over every class


def _row(target: float, name: str, member: np.ndarray, hit: np.ndarray, n_classes: int) -> dict:
    n = int(len(hit))
    covered = int(hit.sum())
    ci = wilson_interval(covered, n)
    size = member.sum(axis=1)
    return {"coverage_target": target, "class": name, "n_images": n, "covered": covered,
            "coverage": covered / n if n else float("nan"),
            "ci_low": ci[0] if ci else float("nan"), "ci_high": ci[1] if ci else float("nan"),
            "mean_set_size": float(size.mean()) if n else float("nan"),
            "singletons": float((size == 1).mean()) if n else float("nan"),
            "empty": float((size == 0).mean()) if n else float("nan"),
            "full": float((size == n_classes).mean()) if n else float("nan")}


def coverage_table(cal: ConformalCalibration, probs: np.ndarray, labels: np.ndarray,
                   levels: Sequence[float] = COVERAGE_CHOICES) -> pd.DataFrame:
    """Per coverage level, over all images and per true class: empirical coverage with its 95 %
    Wilson interval, mean set size, and the shares of singleton, empty and full sets.

    Returns:
        Long table: coverage_target, class ("all" or a class name), n_images, covered, coverage,
        ci_low, ci_high, mean_set_size, singletons, empty, full.
    """
    y = np.asarray(labels, dtype=np.int64)
    k = len(cal.class_names)
    rows = []
    for level in levels:
        member = cal.sets(probs, level)
        hit = member[np.arange(len(y)), y]
        rows.append(_row(level, ALL, member, hit, k))
        rows += [_row(level, c, member[y == i], hit[y == i], k) for i, c in enumerate(cal.class_names)]
    return pd.DataFrame(rows)


def shift_coverage(cal: ConformalCalibration, probs: np.ndarray, labels: np.ndarray,
                   coverage: float = DEFAULT_COVERAGE) -> dict[str, float]:
    """Coverage of all images, the worst class's coverage and the mean set size at one level."""
    table = coverage_table(cal, probs, labels, [coverage])
    per_class = table.loc[table["class"] != ALL, "coverage"]
    overall = table[table["class"] == ALL].iloc[0]
    return {"set_coverage": float(overall["coverage"]), "set_coverage_worst_class": float(per_class.min()),
            "mean_set_size": float(overall["mean_set_size"])}


def evaluate_conformal(run, result: EvaluationResult, levels: Sequence[float] = COVERAGE_CHOICES) -> pd.DataFrame | None:
    """:func:`coverage_table` on an evaluation's leakage-free images (None: the run has no sets).

    Near-copies of training images are left out: the model is over-sure on them, which would
    flatter the sets, as it flatters accuracy.
    """
    cal, _ = try_run_conformal(run)
    if cal is None or tuple(result.class_names) != cal.class_names:
        return None
    y, _, probs = result.arrays(leakage_free=True)
    return coverage_table(cal, probs, y, levels)


def wide_table(table: pd.DataFrame) -> pd.DataFrame:
    """One row per coverage level: coverage over all images and per class, and the mean set size."""
    cov = table.pivot(index="coverage_target", columns="class", values="coverage")
    classes = [c for c in table["class"].unique() if c != ALL]
    sizes = table[table["class"] == ALL].set_index("coverage_target")["mean_set_size"]
    out = cov[[ALL, *classes]].assign(mean_set_size=sizes).reset_index()
    return out.rename(columns={ALL: "coverage_all"})


def shift_columns(cal: ConformalCalibration | None, probs_by_shift: dict[str, np.ndarray], labels: np.ndarray,
                  coverage: float = DEFAULT_COVERAGE) -> dict[str, list[float]]:
    """Robustness-table columns: :func:`shift_coverage` per shift, in order (NaN without a calibration)."""
    keys = ("set_coverage", "set_coverage_worst_class", "mean_set_size")
    rows = [shift_coverage(cal, p, labels, coverage) if cal is not None else dict.fromkeys(keys, float("nan"))
            for p in probs_by_shift.values()]
    return {k: [r[k] for r in rows] for k in keys}

"""Reading evaluation results: the runs side by side, training histories, mistakes and confusion cells."""

from __future__ import annotations

import pandas as pd

from core.evaluation.result import EvaluationResult
from core.models.runs import HISTORY_FILE, Run, serving_run_ids


def worst_mistakes(predictions: pd.DataFrame, n: int = 12) -> pd.DataFrame:
    """The most confident wrong predictions, most confident first."""
    wrong = predictions[predictions["true"] != predictions["predicted"]]
    return wrong.sort_values("confidence", ascending=False, kind="stable").head(n)


def cell_images(predictions: pd.DataFrame, true: str, predicted: str) -> pd.DataFrame:
    """Images of one confusion-matrix cell, most confident first."""
    cell = predictions[(predictions["true"] == true) & (predictions["predicted"] == predicted)]
    return cell.sort_values("confidence", ascending=False, kind="stable")


def training_history(run: Run) -> pd.DataFrame:
    """The run's per-epoch history (empty if the run has none)."""
    path = run.path / HISTORY_FILE
    try:
        return pd.read_csv(path)
    except (OSError, ValueError):
        return pd.DataFrame()


def comparison_table(runs: list[Run], results: dict[str, EvaluationResult] | None = None) -> pd.DataFrame:
    """One row per run: architecture, accuracies, leakage-free macro-F1, cost; ``best`` marks the top one.

    Like is compared with like. Test metrics come from ``results`` when given (one evaluation
    set for all runs; only those rows can be best), else from each card's own held-out result
    (evaluations on other folders are left out). Among card figures, as in
    :func:`core.models.runs.best_run`, a run trained on synthetic data is best only when no run
    trained on real images is in the table, and a run that serves an ensemble in the table (member or
    sentinel) is never marked best over it.
    """
    rows, eligible = [], []
    # as in best_run: a member or sentinel of an ensemble in the table never outranks that ensemble
    serving = serving_run_ids(runs)
    for run in runs:
        res = (results or {}).get(run.run_id)
        if res is not None:
            ev = res.card_summary()
        else:
            ev = run.card.held_out()
        eligible.append(run.run_id not in serving and (
            res is not None if results else not run.synthetic or all(r.synthetic for r in runs)))
        rows.append({
            "run": run.run_id,
            "arch": run.card.title,
            "val_accuracy": run.card.val_accuracy,
            "test_accuracy": ev.get("accuracy"),
            "leakage_free_macro_f1": (ev.get("leakage_free") or {}).get("macro_f1"),
            "eval_set": ev.get("eval_set", ""),
            "train_seconds": run.card.train_seconds,
            "size_mb": run.card.model_bytes / 1e6 or None,
            "params": run.card.params or None,
        })
    table = pd.DataFrame(rows, columns=["run", "arch", "val_accuracy", "test_accuracy", "leakage_free_macro_f1",
                                        "eval_set", "train_seconds", "size_mb", "params"])
    scores = pd.to_numeric(table["leakage_free_macro_f1"], errors="coerce").where(pd.Series(eligible, dtype=bool))
    table["best"] = False
    if scores.notna().any():
        table.loc[scores.idxmax(), "best"] = True
    return table

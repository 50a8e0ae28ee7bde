"""Command-line pieces for prediction sets: ``calibrate --conformal-only`` and ``predict --coverage``."""

from __future__ import annotations

import argparse
import json
import sys

from core.errors import WorkbenchError
from core.inference.conformal import DEFAULT_COVERAGE, MAX_COVERAGE, MIN_COVERAGE, check_coverage


def add_coverage_option(p: argparse.ArgumentParser) -> None:
    """``--coverage PERCENT`` (a share is accepted too: 95 and 0.95 mean the same)."""
    p.add_argument("--coverage", type=str, default=f"{100 * DEFAULT_COVERAGE:g}", metavar="PERCENT",
                   help=f"coverage of the prediction set, {100 * MIN_COVERAGE:g} to {100 * MAX_COVERAGE:g} %% "
                        f"(default {100 * DEFAULT_COVERAGE:g}): the set holds the true class this often on images "
                        "like the model's validation images")


def parse_coverage(text: str) -> float:
    """The ``--coverage`` value as a share: "95" or "0.95" -> 0.95.

    Raises:
        WorkbenchError: not a number, or outside the allowed range (the option is named).
    """
    try:
        value = float(text)
    except (TypeError, ValueError):
        raise WorkbenchError(f"must be a number (a percentage such as 95), got {text!r}", "--coverage") from None
    share = round(value / 100, 9) if value > 1 else value  # 99.9 / 100 is 0.9990000000000001 in floats
    try:
        return check_coverage(share, "--coverage")
    except WorkbenchError:
        raise WorkbenchError(f"must be between {100 * MIN_COVERAGE:g} and {100 * MAX_COVERAGE:g} (percent), "
                             f"got {text}", "--coverage") from None


def calibrate_conformal(args: argparse.Namespace) -> int:
    """``calibrate --conformal-only``: refit only the prediction sets (temperature kept), of a run or an
    ensemble; with ``--conformal-folds K`` also on out-of-fold training scores, reused from ``oof.npz``."""
    from core.inference.conformal_fit import fit_run_conformal
    from core.models.runs import resolve_run

    if getattr(args, "warnings_only", False):
        raise WorkbenchError("choose one of --warnings-only and --conformal-only", "calibrate")
    folds = getattr(args, "conformal_folds", 0) or 0
    if folds:
        from core.training.conformal_folds import (
            check_folds,
            fit_sets_out_of_fold,
            precision_override,
            stored_fold_precision,
        )

        check_folds(folds)
        log = (lambda line: print(line, file=sys.stderr, flush=True)) if args.json else print
        run = resolve_run(args.model)
        precision = getattr(args, "fold_precision", None)
        if precision is None and (precision := stored_fold_precision(run, folds)) is not None:
            log(f"reusing the stored out-of-fold scores, whose fold models trained in {precision} "
                "(--fold-precision chooses otherwise)")
        run = fit_sets_out_of_fold(run, folds, log=log, cfg_override=precision_override(precision))
    else:
        run = resolve_run(args.model)
        val = (None, None)
        if run.card.is_ensemble:  # its averaged members' outputs; a member that changed is refused here
            from core.inference.ensemble_fit import ensemble_validation_logits

            val = ensemble_validation_logits(run)
        run = fit_run_conformal(run, *val)
    summary = run.card.results.to_json()["conformal"]  # plain JSON for printing
    if args.json:
        print(json.dumps(summary, indent=2))
        return 0
    choice = summary["score_choice"][summary["score"]]
    print(f"run {run.run_id}: prediction sets fitted on {summary['fitted_on']}; score {summary['score_title']}; "
          f"on validation half splits at {DEFAULT_COVERAGE:.0%}: mean set size {choice['mean_set_size']:.3f}, "
          f"worst class coverage {choice['min_class_coverage']:.3f}")
    return 0


def print_coverage(table) -> None:
    """The evaluate command's prediction-set block: coverage per class and mean set size per level."""
    from core.evaluation.conformal_eval import wide_table

    if table is None:
        print("\nprediction sets: this model has no prediction-set calibration (calibrate --conformal-only)")
        return
    wide = wide_table(table)
    classes = [c for c in wide.columns if c not in ("coverage_target", "coverage_all", "mean_set_size")]
    n = int(table.loc[table["class"] == "all", "n_images"].iloc[0])
    print(f"\nprediction sets on {n} leakage-free images (empirical coverage; target = the promised share):")
    print(f"  {'target':>7s}{'all':>8s}" + "".join(f"{c[:11]:>12s}" for c in classes) + f"{'mean size':>11s}")
    for row in wide.itertuples(index=False):
        values = row._asdict()
        print(f"  {values['coverage_target']:>7.0%}{values['coverage_all']:>8.1%}"
              + "".join(f"{values[c]:>12.1%}" for c in classes) + f"{values['mean_set_size']:>11.3f}")

"""Prediction sets of the default model: do they keep their promise? (section 9 of bench/RESULTS.md)

Per-class empirical coverage, intervals and mean set size on the held-out test at 80/90/95/99 %,
and coverage at 95 % under the stress and style shifts. Reads the cached evaluation and stress
test when present (``python -m core evaluate --model RUN --robustness`` computes them).

    python -m bench.coverage [--model RUN]
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from bench.sections import write_section

ROOT = Path(__file__).resolve().parents[1]
BEGIN, END = "<!-- coverage: written by python -m bench.coverage -->", "<!-- /coverage -->"


def markers(section: str) -> tuple[str, str]:
    """The section's markers in RESULTS.md: the default one, or a named extra one (``--section``)."""
    if not section:
        return BEGIN, END
    return (f"<!-- coverage-{section}: written by python -m bench.coverage --section {section} -->",
            f"<!-- /coverage-{section} -->")


def markdown(run_id: str, table, robust, section: str = "", title: str = "", fitted_on: str = "") -> str:
    """The section: one row per promised coverage, one column per class, then the shifts at 95 %."""
    classes = [c for c in table["class"].unique() if c != "all"]
    begin, end = markers(section)
    fitted_on = fitted_on or "the run's validation images"
    lines = [begin, f"## {title or '9. Prediction sets: promised against measured coverage'}", "",
             f"Model `{run_id}`, leakage-free held-out test, class-conditional sets calibrated on "
             f"{fitted_on}. Cells: measured coverage (95 % Wilson interval).", "",
             "| promised | all | " + " | ".join(classes) + " | mean set size | empty sets |",
             "|---|---|" + "---|" * len(classes) + "---|---|"]
    for target, rows in table.groupby("coverage_target"):
        rows = rows.set_index("class")
        cells = [f"{100 * rows.loc[c, 'coverage']:.1f} ({100 * rows.loc[c, 'ci_low']:.0f}–"
                 f"{100 * rows.loc[c, 'ci_high']:.0f})" for c in classes]
        lines.append(f"| {100 * target:g} % | {100 * rows.loc['all', 'coverage']:.1f} | " + " | ".join(cells)
                     + f" | {rows.loc['all', 'mean_set_size']:.2f} | {100 * rows.loc['all', 'empty']:.1f} % |")
    if robust is not None and "set_coverage" in robust.columns:
        lines += ["", "Under the stress and style shifts, at 95 % (the guarantee assumes no shift):", "",
                  "| condition | coverage | worst class | mean set size |", "|---|---|---|---|"]
        for row in robust.itertuples():
            lines.append(f"| {row.title} | {100 * row.set_coverage:.1f} % | {100 * row.set_coverage_worst_class:.1f} % "
                         f"| {row.mean_set_size:.2f} |")
    lines += ["", f"Written by `python -m bench.coverage{' --section ' + section if section else ''}`.", end]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sys.path.insert(0, str(ROOT))
    parser = argparse.ArgumentParser(prog="python -m bench.coverage", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=None, help="run id (default: the best registered model)")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "RESULTS.md")
    parser.add_argument("--section", default="", help="write a named extra section (its own markers) instead of "
                        "section 9, e.g. for a model other than the default")
    parser.add_argument("--title", default="", help="the extra section's heading")
    parser.add_argument("--no-shifts", action="store_true", help="skip the coverage under the stress and style "
                        "shifts (minutes of predictions)")
    args = parser.parse_args(argv)
    from core.evaluation.conformal_eval import evaluate_conformal
    from core.evaluation.eval_sets import EvalSet
    from core.evaluation.evaluate import evaluate_run
    from core.evaluation.robustness_eval import evaluate_robustness
    from core.models.runs import best_run, list_runs, resolve_run

    run = resolve_run(args.model) if args.model else best_run(list_runs())
    result = evaluate_run(run, EvalSet("card_test"), store_in_card=False)
    table = evaluate_conformal(run, result)
    if table is None:
        print(f"{run.run_id} has no prediction-set calibration: python -m core calibrate --model {run.run_id} "
              "--conformal-only", file=sys.stderr)
        return 2
    robust = None if args.no_shifts else evaluate_robustness(run, EvalSet("card_test"))
    fitted_on = run.card.results.conformal.get("fitted_on", "")
    section = markdown(run.run_id, table, robust, args.section, args.title, fitted_on if args.section else "")
    write_section(section, args.out, *markers(args.section))
    print(section)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

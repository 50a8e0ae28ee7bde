"""``python -m core evaluate``: the Evaluate page's engine, headless.

Exit status 0 on success, 2 on bad input (unknown model, missing folder, class mismatch): the
WorkbenchError is printed by :func:`core.cli.main`.
"""

from __future__ import annotations

import argparse
import json
import sys

from core.atomic import check_writable
from core.errors import WorkbenchError
from core.evaluation.eval_sets import EVAL_SETS
from core.inference.gradcam import CAM_METHODS


def register(sub) -> None:
    p = sub.add_parser("evaluate", help="evaluate a registered model; metrics on all and leakage-free images")
    p.add_argument("--model", required=True, help="run id or run folder inside the model registry")
    p.add_argument("--data", default=None,
                   help="dataset folder: class folders, or a root with Testing/ (default: the held-out test "
                        "split recorded in the model card)")
    p.add_argument("--set", dest="eval_set", default=None, choices=sorted(EVAL_SETS),
                   help="which images: " + EVAL_SETS.help_text() + " Default: card_test without --data; with "
                        "--data, dataset_test for a root with Testing/, else folder.")
    p.add_argument("--no-cache", action="store_true", help="recompute even if a cached result exists")
    p.add_argument("--robustness", action="store_true",
                   help="also score the images under simulated acquisition shifts (contrast, bias field, noise, "
                        "blur, resolution, JPEG): a proxy for other scanners, not external validation")
    p.add_argument("--boxes", default=None, metavar="CSV",
                   help="tumour boxes (file,class,x0,y0,x1,y1; paths relative to the evaluated folder): adds the "
                        "pointing game and the heat-in-box ratio of the heat maps on the leakage-free images listed")
    p.add_argument("--cam", default=None, choices=sorted(CAM_METHODS),
                   help="heat-map method for --boxes (default: the one Predict & Explain uses)")
    p.add_argument("--warnings", action="store_true",
                   help="also predict the images as uploads would be and count how many wrong answers carry a "
                        "warning, slice by slice and with the site check of the whole set (a set it tells apart "
                        "from the training images puts a warning on every slice)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=run)


def _choose_set(args: argparse.Namespace):
    from core.data.datasets import open_folder
    from core.errors import WorkbenchError
    from core.evaluation.eval_sets import EvalSet

    if args.data is None:
        if args.eval_set not in (None, "card_test"):
            raise WorkbenchError("--data is needed for this evaluation set", f"--set {args.eval_set}")
        return EvalSet("card_test")
    if args.eval_set == "card_test":
        raise WorkbenchError("card_test uses the model card's own data; leave out --data", "--set card_test")
    kind = args.eval_set or ("dataset_test" if open_folder(args.data).layout == "splits" else "folder")
    return EvalSet(kind, args.data)


def run(args: argparse.Namespace) -> int:
    from core.cli.conformal import print_coverage
    from core.evaluation.conformal_eval import evaluate_conformal
    from core.evaluation.evaluate import evaluate_run
    from core.models.runs import resolve_run

    model_run = resolve_run(args.model)
    eval_set = _choose_set(args)
    try:
        check_writable(model_run.path, "model folder")
    except WorkbenchError as exc:  # evaluating still helps; only storing the result is impossible
        print(f"warning: the result will be shown but not stored in the model card: {exc.reason}", file=sys.stderr)
    result = evaluate_run(model_run, eval_set, use_cache=not args.no_cache)
    summary = result.summary()
    sets = evaluate_conformal(model_run, result)  # None: the run has no prediction sets
    summary["conformal"] = None if sets is None else sets.to_dict(orient="records")
    table = None
    if args.robustness:
        from core.evaluation.robustness_eval import evaluate_robustness

        table = evaluate_robustness(model_run, eval_set, use_cache=not args.no_cache)
    if args.boxes:
        from core.evaluation.localisation import evaluate_localisation

        summary["localisation"] = evaluate_localisation(model_run, eval_set, args.boxes, args.cam)
    if args.warnings:
        from core.evaluation.warning_audit import audit_evaluation

        summary["warnings"] = audit_evaluation(model_run, eval_set, result).to_json()
    if args.json:
        if table is not None:
            summary["robustness"] = table.to_dict(orient="records")
        print(json.dumps(summary, indent=2))
        return 0
    _print_text(summary)
    print_coverage(sets)
    if table is not None:
        _print_robustness(table)
    if args.boxes:
        _print_localisation(summary["localisation"])
    if args.warnings:
        print_warning_audit(summary["warnings"])
    return 0


def print_warning_audit(audit: dict) -> None:
    """The warning audit in words: how many wrong answers carried a warning, and how many right ones did."""
    from core.reports.eval_tables import warnings_on_mistakes

    def rates(r: dict) -> str:
        pct = lambda v: "n/a" if v is None else f"{v:.1%}"  # noqa: E731 - None when nothing was wrong (or right)
        return (f"{pct(r['wrong_warned'])} of the {r['n_wrong']} wrong answers carry a warning; "
                f"{pct(r['correct_warned'])} of the right ones do; wrong without a warning: {pct(r['silent_wrong'])} "
                "of all answers")

    print(f"\nwarnings, as Predict & Explain shows them ({audit['n_images']} images, accuracy "
          f"{audit['accuracy']:.1%} on this pass):")
    print(f"  slice by slice: {rates(audit['per_slice'])}")
    if audit["leakage_free"] and audit["leakage_free"]["n_images"] != audit["n_images"]:
        print(f"  slice by slice, leakage-free ({audit['leakage_free']['n_images']} images): "
              f"{rates(audit['leakage_free'])}")
    site = audit["site_check"]
    if site is None:
        print(f"  site check of the whole set not run: {audit['site_problem']}")
    else:
        verdict = "told apart from the training images" if site["shift_detected"] else "not told apart"
        print(f"  site check of the whole set: {verdict} (AUC {site['domain_auc']:.2f} on {site['n_images']} images)")
        print(f"  as one batch: {rates(audit['with_site_check'])}")
    if (said := warnings_on_mistakes(audit["flags_on_wrong"])) is not None:
        print(f"  {said}")
    for line in audit["unreadable"][:5]:
        print(f"  not analysed: {line}")


def _print_localisation(loc: dict) -> None:
    print(f"\nheat maps against tumour boxes ({loc['method']}, {loc['n_images']} leakage-free images with a box):")
    if not loc["n_images"]:
        print("  no evaluated image is listed in the box file")
        return
    print(f"  pointing game (peak inside the box grown by 10 % of the image side): {loc['pointing_game']:.1%}")
    ratio = loc["heat_in_box_ratio"]
    print(f"  heat inside the box: {ratio:.1f}× what a uniform map would put there" if ratio is not None
          else "  heat inside the box: n/a (all maps empty)")
    for name, row in loc["per_class"].items():
        print(f"    {name:12s} pointing {row['pointing_game']:.1%}, heat ratio "
              f"{row['heat_in_box_ratio'] or float('nan'):.1f}×, {row['n_images']} images")


def _print_robustness(table) -> None:
    print(f"\nrobustness to simulated acquisition and source shifts ({table['n_images'].iloc[0]} leakage-free "
          "images; a proxy for other scanners and hospitals, not external validation):")
    print(f"  {'shift':34s}{'accuracy':>9s}{'change':>9s}{'macro-F1':>10s}{'ECE':>8s}{'confidence':>12s}"
          f"{'wrong warned':>14s}{'right warned':>14s}{'set cov. 95%':>14s}{'set size':>10s}")
    for row in table.itertuples():
        pct = lambda v: "n/a" if v != v or v is None else f"{v:.0%}"  # noqa: E731 - NaN when nothing was wrong
        print(f"  {row.title:34s}{row.accuracy:>9.3f}{row.change:>+8.1f}p{row.macro_f1:>10.3f}{row.ece:>8.3f}"
              f"{row.mean_confidence:>12.3f}{pct(row.wrong_warned):>14s}{pct(row.correct_warned):>14s}"
              f"{getattr(row, 'set_coverage', float('nan')):>14.1%}{getattr(row, 'mean_set_size', float('nan')):>10.2f}")
    from core.evaluation.robustness_eval import NOTE_COLUMN

    if NOTE_COLUMN in table.columns:  # a check was left out of the warning columns
        print(f"  note: {table[NOTE_COLUMN].iloc[0]}")


def _fmt(value: float | None, ci: list[float] | None = None) -> str:
    if value is None:
        return "n/a"
    return f"{value:.3f}" + (f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else "")


def _print_text(s: dict) -> None:
    out = sys.stdout
    lf = s["leakage_free"]
    print(f"Model {s['run_id']} on {s['description']} ({s['root']})", file=out)
    print(f"{'':22s}{'all images':>28s}{'leakage-free':>28s}", file=out)
    print(f"{'images':22s}{s['n_images']:>28d}{lf['n_images']:>28d}", file=out)
    for key, label in (("accuracy", "accuracy [95% CI]"), ("balanced_accuracy", "balanced accuracy"),
                       ("macro_f1", "macro-F1"), ("weighted_f1", "weighted F1"), ("ece", "ECE")):
        ci_key = "accuracy_ci" if key == "accuracy" else None
        print(f"{label:22s}{_fmt(s[key], s.get(ci_key) if ci_key else None):>28s}"
              f"{_fmt(lf[key], lf.get(ci_key) if ci_key else None):>28s}", file=out)
    if s["n_overlapping"]:
        print(f"{s['n_overlapping']} test images are near-copies of training images; accuracy on them measures "
              "memory, not generalisation.", file=out)
    print("\nper class (all images): precision  recall [95% CI]        specificity  F1     support", file=out)
    for name, row in s["per_class"].items():
        print(f"  {name:12s} {_fmt(row['precision']):>9s}  {_fmt(row['recall'], row['recall_ci']):24s} "
              f"{_fmt(row['specificity']):>11s}  {_fmt(row['f1']):6s} {row['support']:>7d}", file=out)
    print("\nconfusion matrix (rows = true, columns = predicted):", file=out)
    names = s["class_names"]
    print("  " + " " * 12 + "".join(f"{n[:10]:>11s}" for n in names), file=out)
    for name, row in zip(names, s["confusion_matrix"]):
        print(f"  {name:12s}" + "".join(f"{v:>11d}" for v in row), file=out)
    for note in s["notes"]:
        print(f"note: {note}", file=out)
    when = f"cached result from {s['created']}" if s["from_cache"] else f"{s['timings'].get('total_s', 0):.1f} s"
    print(f"\n{when}", file=out)

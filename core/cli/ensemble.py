"""``python -m core ensemble``: register an ensemble run from two or more registered runs.

Exit status 0 on success, 2 on bad input (fewer than two models, different class lists, a
missing or changed member): the WorkbenchError is printed by :func:`core.cli.main`.
"""

from __future__ import annotations

import argparse
import json
from typing import Any


def register(sub: Any) -> None:
    """Add the ``ensemble`` sub-command to the CLI's sub-parsers."""
    p = sub.add_parser("ensemble", help="register an ensemble of registered runs (their calibrated probabilities "
                                        "averaged)")
    p.add_argument("--models", nargs="+", required=True, metavar="RUN",
                   help="two or more run ids or run folders in the model registry; an ensemble named here is "
                        "replaced by its members and sentinels (ensembles are flattened, never nested)")
    p.add_argument("--sentinels", nargs="+", default=[], metavar="RUN",
                   help="single models that never vote but warn when their answer differs from the ensemble's "
                        "(e.g. one trained on whole frames, which reacts to an unfamiliar image style); the fit "
                        "keeps that warning only if it stays within the false-alarm budget")
    p.add_argument("--title", default=None, help="a name shown for the ensemble (default: its members' kinds)")
    p.add_argument("--no-site-sample", action="store_true",
                   help="do not keep a sample of the training images with the ensemble for the site check (kept by "
                        "default when the training images are on this machine; python -m core site-reference keeps "
                        "one later)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from core.evaluation.site_reference import REFERENCE_FILE, keep_sample
    from core.inference.ensemble_fit import register_ensemble

    ens = register_ensemble(args.models, title=args.title, sentinels=args.sentinels)
    note = None if args.no_site_sample else keep_sample(ens)
    results = ens.card.results
    dis = results.disagreement
    summary = {"run_id": ens.run_id, "path": str(ens.path), "title": ens.card.title,
               "members": [dict(m) for m in ens.card.members], "val_accuracy": results.val_accuracy,
               "val_macro_f1": results.val_macro_f1, "members_val_accuracy": dis.get("members_accuracy"),
               "n_val": results.n_val, "low_confidence_threshold": results.low_confidence_threshold,
               "disagreement_spread_threshold": dis.get("spread_threshold"),
               "warn_on_differ": dis.get("warn_on_differ", True),
               "unfamiliar_members": dis.get("unfamiliar_members"), "unstable_members": dis.get("unstable_members"),
               "correct_warned_val": dis.get("correct_warned"), "wrong_warned_val": dis.get("wrong_warned"),
               "n_test_files": len(ens.card.data.get("test_files") or []),
               "sentinels": [dict(m) for m in ens.card.sentinels],
               "sentinels_val_accuracy": dis.get("sentinels_accuracy"), "sentinel_warns": dis.get("sentinel_warns"),
               "site_sample": (ens.path / REFERENCE_FILE).is_file(), "site_sample_note": note}
    if args.json:
        print(json.dumps(summary, indent=2))
        return 0
    print(f"Registered ensemble {ens.run_id}: {ens.card.title}")
    for m, acc in zip(ens.card.members, dis.get("members_accuracy") or [None] * len(ens.card.members)):
        shown = f", val acc {acc:.1%}" if acc is not None else ""
        print(f"  member {m['run_id']} ({m['preprocessing']}, {m['image_size']} px{shown})")
    for m, acc in zip(ens.card.sentinels, dis.get("sentinels_accuracy") or [None] * len(ens.card.sentinels)):
        shown = f", val acc {acc:.1%}" if acc is not None else ""
        print(f"  sentinel {m['run_id']} ({m['preprocessing']}, {m['image_size']} px{shown}; warns only)")
    print(f"Validation ({summary['n_val']} images common to the members): accuracy {summary['val_accuracy']:.1%}, "
          f"macro-F1 {summary['val_macro_f1']:.3f}")
    differ = "their top classes differ or " if summary["warn_on_differ"] else ""
    print(f"Warnings fitted there: low confidence below {summary['low_confidence_threshold']:.3f}; the models "
          f"disagree when {differ}their probabilities spread more than "
          f"{100 * summary['disagreement_spread_threshold']:.1f} points; unfamiliar: "
          f"{_members(summary['unfamiliar_members'])}; mirrored copy answered differently: "
          f"{_members(summary['unstable_members'])}")
    if ens.card.sentinels:
        print("  a sentinel answering differently: " + ("shown" if summary["sentinel_warns"] else
                                                         "not shown (it warned too many correct answers)"))
    rates = (summary["correct_warned_val"], summary["wrong_warned_val"])
    if None not in rates:
        print(f"  together they warn {rates[0]:.1%} of correct and {rates[1]:.1%} of wrong validation answers")
    if summary["site_sample_note"]:
        print(f"Site check: {summary['site_sample_note']}")
    return 0


def _members(need: int | None) -> str:
    """A fitted member count in words (None: a card from before the count was fitted)."""
    if need is None:
        return "when a majority of the members say so"
    return "never shown" if need == 0 else f"when {need} or more members say so"

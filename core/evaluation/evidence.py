"""What a run's held-out evaluation says beyond in-source accuracy, kept on its card for the model box.

In-source accuracy alone hides shortcut learning: a model that reads a collection's style scores well at
home and fails on another scanner, and accuracy says nothing of the mistakes made without a warning. So
when the stress test (simulated acquisition and source shifts), the heat maps' localisation against tumour
boxes or the warning audit is measured on an evaluation set, its headline goes into that set's entry on
the card, beside the accuracy, and the Predict page's model box and the case report show them together.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from core.evaluation.cache import ROBUSTNESS_VERSION
from core.models.card_validation import finite_number

STRESS, LOCALISATION, WARNINGS = "stress", "localisation", "warnings"  # keys inside a card's evaluation entry


def stress_summary(table: pd.DataFrame) -> dict[str, Any]:
    """The stress test's headline: the worst shift (largest loss of accuracy, in points) and the spread.

    Args:
        table: :func:`core.evaluation.robustness_eval.evaluate_robustness` output (one row per shift,
            ``none`` being the unchanged images).
    """
    shifted = table[table["shift"] != "none"]
    worst = shifted.loc[shifted["change"].idxmin()]
    missed = [float(v) for v in table.get("wrong_warned", pd.Series(dtype=float)) if finite_number(v)]
    return {"version": ROBUSTNESS_VERSION, "n_images": int(table["n_images"].iloc[0]), "n_shifts": len(shifted),
            "worst_shift": str(worst["title"]), "worst_change_pt": round(float(worst["change"]), 2),
            "median_change_pt": round(float(shifted["change"].median()), 2),
            "wrong_warned_min": round(min(missed), 4) if missed else None}


def localisation_summary(block: dict[str, Any]) -> dict[str, Any]:
    """The localisation block's headline (:func:`core.evaluation.localisation.evaluate_localisation`)."""
    return {key: block.get(key) for key in ("pointing_game", "heat_in_box_ratio", "n_images", "method")}


def warnings_summary(per_slice: dict[str, Any], n_images: int) -> dict[str, Any]:
    """The warning audit's headline, slice by slice (what a single upload gets): shares of mistakes and of correct
    answers warned, and of all answers wrong without a warning (:class:`core.evaluation.warning_audit.WarningAudit`)."""
    return {"n_images": int(n_images), "n_wrong": int(per_slice["n_wrong"]),
            **{k: None if per_slice.get(k) is None else round(float(per_slice[k]), 6)
               for k in ("wrong_warned", "correct_warned", "silent_wrong")}}


def store_evidence(run, eval_kind: str, fingerprint: str, key: str, value: dict[str, Any]) -> None:
    """Add ``value`` under ``key`` to the card's entry for this evaluation set (kind and dataset fingerprint),
    and to the held-out slot when the set is the card's own test split. Nothing is written when the set was
    never evaluated (there is no accuracy to stand beside), or when the models folder is read-only.

    The held-out slot is matched by kind, not fingerprint: the card's test split is the list of files on the
    card, while the fingerprint hashes the whole folder's file times, which change when the same images are
    copied to another machine (the default's slot, written in session 10, has another fingerprint than the
    same files have today).
    """
    from core.models.runs import resolve_run, update_card

    try:
        fresh = resolve_run(str(run.path), root=run.path.parent)  # another job may have written the card
        evaluations = {k: dict(v) for k, v in fresh.card.evaluations.items()}
        entry = evaluations.get(f"{eval_kind}:{fingerprint}")
        if entry is None or entry.get(key) == value:
            return  # never evaluated, or already kept: a cached stress test need not rewrite the card
        entry[key] = value
        fields: dict[str, Any] = {"evaluations": evaluations}
        held = dict(fresh.card.evaluation or {})
        if held and eval_kind == "card_test" and held.get("eval_set", "card_test") == "card_test":
            fields["evaluation"] = {**held, key: value}  # the held-out figures themselves are not touched
        update_card(fresh, **fields)
    except OSError:
        pass  # a read-only models folder: the figures were shown, the card stays as it was


def evidence_lines(held_out: dict[str, Any]) -> dict[str, str]:
    """The model box's lines for a card's held-out entry: label -> words (none when not measured)."""
    out = {}
    stress = held_out.get(STRESS)
    if isinstance(stress, dict) and finite_number(stress.get("worst_change_pt")):
        change = f"{stress['worst_change_pt']:+.1f}".replace("-", "\u2212")  # a printed minus, not a hyphen
        out["Simulated scanner changes (held-out test)"] = (
            f"worst case {stress.get('worst_shift') or 'unnamed'}: {change} points of accuracy, among "
            f"{stress.get('n_shifts', '?')} simulated changes of contrast, noise, blur, resolution, framing and "
            "source style; a proxy for other scanners, not a test on another hospital's images")
    loc = held_out.get(LOCALISATION)
    if isinstance(loc, dict) and finite_number(loc.get("pointing_game")) and loc.get("n_images"):
        out["Heat map on the tumour (held-out test)"] = (
            f"its strongest point falls inside the tumour's box on {loc['pointing_game']:.0%} of {loc['n_images']} "
            f"slices with a known box ({loc.get('method') or 'heat map'})")
    warned = held_out.get(WARNINGS)
    if isinstance(warned, dict) and finite_number(warned.get("silent_wrong")) and warned.get("n_images"):
        mistakes = (f"{warned['wrong_warned']:.0%} of its {warned['n_wrong']} mistakes carried a warning"
                    if finite_number(warned.get("wrong_warned")) else "it made no mistake")
        out["Mistakes without a warning (held-out test)"] = (
            f"{warned['silent_wrong']:.1%} of {warned['n_images']} answers were wrong without a warning; {mistakes}, "
            f"and {warned.get('correct_warned') or 0:.0%} of correct answers did (each slice on its own)")
    return out

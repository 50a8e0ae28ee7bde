"""What the pages and reports say about a saved model: one formatter, one format per figure.

Accuracies are percentages, macro-F1 is a 0–1 score, everywhere. :func:`model_facts` is the
Predict page's and the case report's model box; :func:`runs_table` lists runs (Overview, Train).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pandas as pd

from core.classes import display_name
from core.data.preprocess import get_recipe
from core.errors import WorkbenchError
from core.evaluation.evidence import evidence_lines
from core.models.runs import Run

SPLIT_WORDS = {"leakage_free": "leakage-free", "dataset": "folder's own"}


def percent(value: Any) -> str:
    """A share as "97.3 %" ("" when it is not a number)."""
    return f"{100 * value:.1f} %" if isinstance(value, int | float) and not isinstance(value, bool) else ""


def held_out_sentence(ev: Mapping[str, Any]) -> str:
    """The leakage-free held-out figures in words ("not evaluated yet" when there are none)."""
    free = ev.get("leakage_free") if isinstance(ev.get("leakage_free"), Mapping) else {}
    formats = (("accuracy", "accuracy", percent), ("macro_f1", "macro-F1", lambda v: f"{v:.3f}"),
               ("balanced_accuracy", "balanced accuracy", percent))
    parts = [f"{label} {fmt(free[key])}" for key, label, fmt in formats if isinstance(free.get(key), int | float)]
    if not parts:
        return "not evaluated yet"
    n = free.get("n_images")
    count = f"{n} images" if isinstance(n, int) and not isinstance(n, bool) else ""
    where = str(ev.get("description") or "")
    if count and count not in where:  # said once: the card's test split already gives its count
        parts.append(count)
    return ", ".join(parts) + (f"; {where}" if where else "")


def model_facts(run: Run) -> dict[str, str]:
    """The model box of the Predict page and the case report, as label -> text (old cards too)."""
    card = run.card
    recipe = _recipe_words(run.preprocessing)
    out = {
        "Model run": run.run_id,
        "Architecture": card.title,
        "Training data": str(card.data.get("name") or "unknown") + (" (SYNTHETIC demo, not patient data)"
                                                                    if card.synthetic else ""),
        "Trained": card.created or "unknown",
        "Classes": ", ".join(display_name(c) for c in run.class_names),
        "Input": f"{run.image_size}×{run.image_size} grayscale, {recipe}",
    }
    if card.is_ensemble:
        out["Input"] = f"each of its {len(card.members)} models prepares its own"
        out["Members"] = _listed(card.members)
        if card.sentinels:  # they never vote: said apart from the members, with what they do
            out["Check models (warn only, never vote)"] = _listed(card.sentinels)
    rule = _warning_rule(card)
    if rule:
        out["Warnings fitted on validation"] = rule
    if card.val_accuracy is not None:
        n_val = "?" if card.results.n_val is None else card.results.n_val
        out["Validation accuracy"] = f"{percent(card.val_accuracy)} ({n_val} images)"
    out["Leakage-free test metrics"] = held_out_sentence(card.held_out())
    out.update(evidence_lines(dict(card.held_out())))  # in-source accuracy alone hides shortcut learning
    if run.adapted:
        out["Adapted"] = f"{run.adapted_note()}: meant for that site's images only"
    return out


def _warning_rule(card: Any) -> str:
    """When the model warns, in words ("" for a card whose warnings were never fitted)."""
    from core.inference.ensemble_warnings import describe_ensemble_rule
    from core.inference.trust import describe_thresholds

    if card.is_ensemble:
        if not card.results.disagreement:
            return ""
        return describe_ensemble_rule(card.results.disagreement, card.trust.get("min_confidence",
                                                                                card.low_confidence_threshold),
                                      len(card.members), len(card.sentinels))
    return describe_thresholds(dict(card.trust)) if card.trust else ""


def _recipe_words(recipe_id: Any) -> str:
    """A preprocessing recipe as a reader reads it ("head crop + intensity standardisation"); an id no
    longer registered stays as recorded."""
    try:
        return get_recipe(str(recipe_id)).title.lower()
    except WorkbenchError:
        return str(recipe_id)


def _listed(entries) -> str:
    """An ensemble card's member (or sentinel) entries in words; the run id last, for tracing it."""
    return "; ".join(f"{m.get('title', m.get('arch', '?'))}, {m.get('image_size', '?')} px, "
                     f"{_recipe_words(m.get('preprocessing', '?'))} ({m.get('run_id')})" for m in entries)


def runs_table(runs: list[Run]) -> pd.DataFrame:
    """One row per run (unusable ones too, with why), the figure people look for first; numbers stay numbers."""
    rows = []
    for r in runs:
        card = r.card
        rows.append({
            "model": r.run_id,
            "val accuracy": card.val_accuracy,  # a share: pages show it as a percentage
            "architecture": card.title if r.usable else "",
            "dataset": (r.adapted_note() if r.adapted else str(card.data.get("name", "")))
            + (" (SYNTHETIC)" if card.synthetic else ""),
            "split": SPLIT_WORDS.get(card.split_mode, ""),
            "image size": card.image_size or None,
            "macro-F1": card.results.val_macro_f1,
            "ECE": card.results.val_ece,
            "train time (s)": card.train_seconds,
            "size (MB)": card.model_bytes / 1e6 or None,
            "status": ("unusable: " + "; ".join(r.problems)) if r.problems else "ok",
            "created": card.created[:16].replace("T", " "),
        })
    return pd.DataFrame(rows)

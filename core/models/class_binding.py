"""The class order bound to the model: a card whose class names were swapped is refused.

The network only knows output positions; the card says which class each position is. Swapping
two names in ``card.json`` relabels every answer (measured in issue 23: 44 -> 20 of 48 correct,
no warning). So the order is bound to the model file:

- cards written since issue 23 store ``class_order_sha256`` = sha256 of the model file's sha256
  and the class names in order; any edit of either breaks it;
- older cards (such as the committed default model's) have no such field: their order is
  checked against the order ``conformal.npz`` stored when the run was calibrated. A run with
  neither cannot be checked and is read as before.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from core.errors import WorkbenchError

CONFORMAL_FILE = "conformal.npz"  # the name core.inference.conformal writes (no import: models never import inference)
_REFUSAL = ("the class order in the model card (its class names, in order) does not match {what}, so answers would "
            "carry another class's name; the card was edited or damaged: restore it from a copy, or retrain the model")


def class_order_digest(class_names: Sequence[str], model_sha256: str) -> str:
    """The binding stored in new cards: sha256 over the model file's sha256 and the ordered class names."""
    text = json.dumps([str(model_sha256), [str(c) for c in class_names]], separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def stored_conformal_order(folder: Path) -> tuple[str, ...] | None:
    """The class order ``conformal.npz`` was fitted with, or None without a readable one."""
    path = Path(folder) / CONFORMAL_FILE
    if not path.is_file() or path.is_symlink():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            return tuple(str(c) for c in z["class_names"])
    except Exception:  # noqa: BLE001 - a damaged side file is reported by its own check, not here
        return None


def class_order_problem(folder: Path, card: Any) -> str | None:
    """Why the card's class order cannot be trusted, or None."""
    names = tuple(card.class_names)
    if card.class_order_sha256:
        if card.class_order_sha256 != class_order_digest(names, card.model_sha256):
            return _REFUSAL.format(what="the order the model was saved with")
        return None
    stored = stored_conformal_order(folder)
    if stored is not None and sorted(stored) == sorted(names) and stored != names:
        return _REFUSAL.format(what=f"the order its calibration stored ({', '.join(stored)})")
    return None


def check_class_order(run: Any) -> None:
    """Refuse a run whose card's class order is not the model's.

    Raises:
        WorkbenchError: the binding (or, for an older card, conformal.npz) disagrees with the card.
    """
    problem = class_order_problem(run.path, run.card)
    if problem:
        raise WorkbenchError(problem, run.run_id)

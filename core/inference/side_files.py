"""A run's side files, checked when the run is read for prediction.

A run is its model file and its card; without either (or with a card that does not fit the
model) it is *unusable* and refused. Its side files only switch features on, so a damaged one
turns *that feature* off with one plain warning, never a traceback:

======================  ==============================  =================================
side file               feature                         when damaged
======================  ==============================  =================================
``conformal.npz``       prediction sets                 off; ``calibrate --conformal-only``
``ood.npz``             unfamiliar-image check          off; retrain (or keep it off)
card ``train_hashes``   training-copy check             off
======================  ==============================  =================================
"""

from __future__ import annotations

import re
import zipfile
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from core.data.hashing import HASH_WORDS, hashes_from_hex
from core.inference.ood import OODModel

#: The feature each side file switches on, as the warnings name it.
PREDICTION_SETS, UNFAMILIAR_CHECK, TRAINING_COPY_CHECK = ("prediction sets", "unfamiliar-image check",
                                                         "training-copy check")
_HEX_HASH = re.compile(f"[0-9a-fA-F]{{{16 * HASH_WORDS}}}")
#: What np.load and the zip/deflate layers beneath it raise on a truncated or bit-flipped file.
DAMAGED_FILE_ERRORS = (OSError, ValueError, KeyError, TypeError, EOFError, zipfile.BadZipFile, zlib.error)


def disabled_warning(feature: str, why: str, fix: str = "") -> str:
    """One plain sentence: which feature is off and why (the prediction itself still works)."""
    return f"The {feature} {'are' if feature.endswith('s') else 'is'} off for this model: {why}." + (
        f" {fix}" if fix else "")


def feature_width(model: Any) -> int | None:
    """Width of the model's pooled ``features`` layer (what ood.npz must describe), or None without one.

    Pass it to :func:`load_ood` so another model's ood.npz is switched off instead of mis-scoring.
    """
    try:
        return int(model.get_layer("features").output.shape[-1])
    except (ValueError, AttributeError, TypeError, IndexError):
        return None


def load_ood(path: Path, n_classes: int, feature_dim: int | None) -> tuple[OODModel | None, str | None]:
    """The run's out-of-distribution model, or (None, warning) when ``ood.npz`` is damaged or another model's."""
    if not path.is_file():
        return None, None
    why = "its file (ood.npz) is damaged"
    try:
        with np.load(path, allow_pickle=False) as z:
            means = np.asarray(z["means"], np.float64)
            precision = np.asarray(z["precision"], np.float64)
            maha, energy = float(z["maha_threshold"]), float(z["energy_threshold"])
    except DAMAGED_FILE_ERRORS:
        return None, disabled_warning(UNFAMILIAR_CHECK, why)
    shapes_ok = means.ndim == 2 and precision.shape == (means.shape[1], means.shape[1]) and len(means) == n_classes
    finite = shapes_ok and np.isfinite(means).all() and np.isfinite(precision).all() and np.isfinite([maha, energy]).all()
    if not finite:
        return None, disabled_warning(UNFAMILIAR_CHECK, why)
    if feature_dim is not None and means.shape[1] != feature_dim:
        return None, disabled_warning(UNFAMILIAR_CHECK, f"its file (ood.npz) describes {means.shape[1]} features, "
                                      f"but this model has {feature_dim}, so it belongs to another model")
    return OODModel(means, precision, maha, energy), None


def load_train_hashes(texts: object) -> tuple[np.ndarray, str | None]:
    """The card's training-image hashes as (N, 8) words, or (empty, warning) when any entry is not a hash."""
    empty = np.zeros((0, HASH_WORDS), dtype=np.uint64)
    items = list(texts) if isinstance(texts, list | tuple) else []
    if not items:
        return empty, None
    good = all(isinstance(t, str) and _HEX_HASH.fullmatch(t) for t in items)
    if not good:
        return empty, disabled_warning(TRAINING_COPY_CHECK, "the model card's list of training-image hashes is "
                                       "damaged (an entry is not a 256-bit hexadecimal hash)")
    return hashes_from_hex(items), None


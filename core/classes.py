"""Canonical class names and the mapping from the folder-name variants found in the wild."""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import PurePath

import numpy as np

from core.errors import WorkbenchError

#: Canonical names, alphabetical: this is also the model output order, because folders are
#: discovered and sorted by canonical name (never by a hand-typed list).
CANONICAL_CLASSES: tuple[str, ...] = ("glioma", "meningioma", "notumor", "pituitary")

DISPLAY_NAMES: dict[str, str] = {
    "glioma": "Glioma",
    "meningioma": "Meningioma",
    "notumor": "No tumour",
    "pituitary": "Pituitary tumour",
}

_ALIASES: dict[str, str] = {}
for _canon, _variants in {
    "glioma": ["glioma", "gliomas", "glioma_tumor", "glioma_tumour"],
    "meningioma": ["meningioma", "meningiomas", "meningioma_tumor", "meningioma_tumour"],
    "notumor": ["notumor", "notumour", "no_tumor", "no_tumour", "no", "normal", "healthy"],
    "pituitary": ["pituitary", "pituitary_tumor", "pituitary_tumour", "pituitary_adenoma"],
}.items():
    for _v in _variants:
        _ALIASES[_v] = _canon


def canonical_class(name: str) -> str | None:
    """Return the canonical class for a folder name (any case/separator), or None if unknown."""
    key = re.sub(r"[\s\-]+", "_", name.strip().lower())
    return _ALIASES.get(key) or _ALIASES.get(key.replace("_", ""))


def folder_class_indices(paths: Sequence[str | PurePath], class_names: Sequence[str]) -> np.ndarray:
    """Index in ``class_names`` of each file's class, read from its folder's name; -1 where the list lacks it."""
    index = {c: i for i, c in enumerate(class_names)}
    return np.array([index.get(canonical_class(PurePath(f).parent.name), -1) for f in paths], dtype=np.int64)


def display_name(name: str) -> str:
    """Human label for a canonical class name (falls back to the name itself)."""
    return DISPLAY_NAMES.get(name, name)


def map_class_folders(folder_names: list[str], where: str) -> dict[str, str]:
    """Map folder names to canonical classes; refuse unknown names and duplicates.

    Returns:
        folder name -> canonical class.
    Raises:
        WorkbenchError: a folder name is not a known class, or two folders map to one class.
    """
    mapping: dict[str, str] = {}
    unknown = []
    for folder in sorted(folder_names):
        canon = canonical_class(folder)
        if canon is None:
            unknown.append(folder)
            continue
        clash = [f for f, c in mapping.items() if c == canon]
        if clash:
            raise WorkbenchError(
                f"folders '{clash[0]}' and '{folder}' both mean class '{canon}'; keep only one",
                where,
            )
        mapping[folder] = canon
    if unknown:
        raise WorkbenchError(
            f"unknown class folder(s) {', '.join(repr(u) for u in unknown)}; expected folders "
            f"named after the classes {', '.join(CANONICAL_CLASSES)} (variants such as "
            "'glioma_tumor' or 'no_tumor' are accepted)",
            where,
        )
    return mapping


#: Folder names of a dataset's own splits (any case) -> split.
SPLIT_FOLDERS = {"training": "train", "train": "train", "testing": "test", "test": "test",
                 "validation": "val", "val": "val"}

"""Which images an evaluation scores: the evaluation-set registry, listing, selection and overlap with training."""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import pandas as pd

from core.config import DataConfig
from core.data.data_changes import dataset_changes
from core.data.datasets import Dataset, open_folder
from core.data.hashing import HALF_WORDS, hashes_from_hex, nearest_distance
from core.data.splits import make_split
from core.errors import WorkbenchError
from core.models.card import ModelCard
from core.models.runs import Run
from core.options import Option, Registry

#: The page's radio and the CLI's --set list these; EvalSet checks against them.
EVAL_SETS = Registry("evaluation set", [
    Option("card_test", "Held-out test split recorded in the model card",
           "The images set aside when this model was trained; it never saw them."),
    Option("dataset_test", "Test split of a dataset (its Testing/ folder, else the leakage-free test part)",
           "A dataset's own test images: the model's generalisation to that source."),
    Option("folder", "Every image in a folder", "Every readable image in a folder of class sub-folders."),
])


@dataclass(frozen=True)
class EvalSet:
    """Which images to evaluate on."""

    kind: str  # a key of EVAL_SETS
    folder: str | None = None  # the dataset or folder (dataset_test, folder); unused for card_test

    def __post_init__(self) -> None:
        EVAL_SETS.check(self.kind, "evaluation set")
        if self.kind != "card_test" and not self.folder:
            raise WorkbenchError("this evaluation set needs a folder", self.kind)


def near_dup_threshold(run: Run) -> int:
    """The Hamming threshold the run was split with: images this close to a training image overlap."""
    cfg = run.card.data.get("data_config")
    return int((cfg if isinstance(cfg, dict) else {}).get("near_dup_threshold", DataConfig().near_dup_threshold))


def open_eval_dataset(run: Run, eval_set: EvalSet) -> Dataset:
    """List (not decode) the dataset behind an evaluation set; fast, used for the cache key.

    Raises:
        WorkbenchError: the folder is missing (e.g. the training data is not on this machine)
            or its class names do not fit the model.
    """
    if eval_set.kind == "card_test":
        if not run.card.data.get("test_files"):
            raise WorkbenchError("the model card records no held-out test split; evaluate on a dataset or "
                                 "folder instead", run.run_id)
        root = run.data_root
        if not root.is_dir():
            raise WorkbenchError(f"the training data of this model ({root}) is not on this machine, so its "
                                 "held-out test split cannot be evaluated here; evaluate on a dataset or folder "
                                 "that is", run.run_id)
        ds = open_folder(root)
    else:
        ds = open_folder(str(eval_set.folder))
    unknown = sorted(set(ds.class_names) - set(run.class_names))
    if unknown:
        raise WorkbenchError(
            f"class names do not match: the model knows {', '.join(run.class_names)} but the data also has "
            f"{', '.join(unknown)}; a model can only be scored on the classes it was trained on", str(ds.root))
    return ds


def data_kind_warning(card: ModelCard, eval_synthetic: bool) -> str | None:
    """A caution when a model trained on real scans is scored on synthetic phantoms, or the reverse.

    Returns None when the kinds match or the card does not say what it trained on.
    """
    trained = card.data.get("synthetic")
    if not isinstance(trained, bool) or trained == eval_synthetic:
        return None
    if eval_synthetic:
        return ("This model learned from real MRI scans, but this evaluation set is the synthetic demo (drawn "
                "phantoms). Its score here says little about how it does on patients' images; evaluate it on real "
                "data instead.")
    return ("This model learned from the synthetic demo (drawn phantoms), but this evaluation set holds real MRI "
            "scans. A low score is expected: it has never seen a real image.")


def select_images(run: Run, eval_set: EvalSet, ds: Dataset, report) -> tuple[pd.DataFrame, str, list[str]]:
    """The scan rows (path, label, phash) to evaluate, a description and notes for the reader."""
    readable = report.readable
    notes: list[str] = []
    if eval_set.kind == "card_test":
        data = run.card.data
        wanted = list(data["test_files"])
        present = readable.set_index("path")
        missing = [p for p in wanted if p not in present.index]
        if data.get("fingerprint") != ds.fingerprint:  # file times differ; did any image change?
            if missing:
                raise WorkbenchError(f"the dataset changed since training: {len(missing)} of the {len(wanted)} "
                                     f"held-out test images are missing or unreadable (e.g. {missing[0]})",
                                     str(ds.root))
            changes = dataset_changes(data, readable)
            if changes.changed:
                notes.append(f"The dataset changed since training ({changes.sentence()}), but every held-out "
                             "test image is still present.")
        rows = present.loc[[p for p in wanted if p in present.index]].reset_index()
        description = f"held-out test split of {data.get('name', ds.name)} recorded at training ({len(wanted)} images)"
    elif eval_set.kind == "dataset_test":
        if (readable["source_split"] == "test").any():
            rows = readable[readable["source_split"] == "test"]
            description = f"Testing/ folder of {ds.name}"
        else:
            # The card's split settings: on the model's own dataset this is exactly its test part.
            data_cfg = DataConfig.from_dict(run.card.data.get("data_config"))
            split = make_split(report, data_cfg, "leakage_free")
            rows = readable[split.reindex(readable.index) == "test"]
            description = f"leakage-free test part of {ds.name} (split seed {data_cfg.split_seed})"
    else:
        rows = readable
        description = f"all images in {ds.name}"
    bad = len(report.files) - len(readable)
    if bad:
        notes.append(f"{bad} unreadable file(s) in the folder were skipped.")
    absent = sorted(set(run.class_names) - set(rows["label"]))
    if absent:
        notes.append(f"No images of {', '.join(absent)} in this set: recall for those classes is undefined.")
    if rows.empty:
        raise WorkbenchError("the evaluation set holds no readable images", str(ds.root))
    return rows[["path", "label", "phash"]].reset_index(drop=True), description, notes


_HASH_TEXT = re.compile(r"[0-9a-fA-F]{64}|[0-9a-fA-F]{128}")  # a half (older cards) or a whole hash


def overlap_distances(run: Run, phashes: list[str]) -> np.ndarray | None:
    """Each image's smallest pHash distance to any training image (None if the card has no hashes).

    Cards written before the head-crop half was added hold only the full-frame half (64 hex
    digits); then both sides are compared on that half alone, which is the same hash.
    """
    train = list(run.card.data.get("train_hashes") or [])
    if not train or not all(isinstance(t, str) and _HASH_TEXT.fullmatch(t) for t in train):
        return None  # none, or a damaged list (core.inference.side_files): overlap cannot be checked
    half = 16 * HALF_WORDS  # hex digits of one half
    if min(len(train[0]), *(len(p) for p in phashes)) <= half:
        # Duplicate the shared full-frame half: min(full, full) is the full-frame distance.
        phashes = [p[:half] * 2 for p in phashes]
        train = [t[:half] * 2 for t in train]
    return nearest_distance(hashes_from_hex(phashes), hashes_from_hex(train))

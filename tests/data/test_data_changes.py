"""Issue 14, item 12: "the dataset changed since training" only when images really changed.

An untouched copy of a dataset (new file times, so a new fingerprint) is not a change; an added,
removed or edited image is, and the message says which.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from core.data.data_changes import DataChanges, content_digest, dataset_changes
from core.data.datasets import open_folder
from core.data.scan import scan_dataset


def _card_data(root: Path) -> dict:
    """What a model card records, with the first few files held out as validation/test."""
    readable = scan_dataset(open_folder(root)).readable
    paths = readable["path"].tolist()
    held = set(paths[:6])
    return {"val_files": paths[:3], "test_files": paths[3:6],
            "train_hashes": readable[~readable["path"].isin(held)]["phash"].tolist(),
            "content_digest": content_digest(readable)}


def _readable(root: Path):
    return scan_dataset(open_folder(root)).readable


@pytest.fixture
def copy(demo_root: Path, tmp_path: Path) -> Path:
    out = tmp_path / "data"
    shutil.copytree(demo_root, out)
    return out


def _a_train_image(root: Path, card: dict) -> Path:
    held = set(card["val_files"]) | set(card["test_files"])
    rel = next(p for p in _readable(root)["path"] if p not in held)
    return root / rel


def test_touched_copy_is_unchanged_although_fingerprint_differs(copy: Path) -> None:
    card = _card_data(copy)
    before = open_folder(copy).fingerprint
    for f in copy.rglob("*.png"):
        os.utime(f, ns=(1_000_000_000, 1_000_000_000))
    assert open_folder(copy).fingerprint != before  # the old check would have cried "changed"
    assert dataset_changes(card, _readable(copy)) == DataChanges()
    legacy = {k: v for k, v in card.items() if k != "content_digest"}  # cards written before the digest
    assert not dataset_changes(legacy, _readable(copy)).changed


def test_added_removed_and_modified_are_counted(copy: Path) -> None:
    card = _card_data(copy)
    victim = _a_train_image(copy, card)
    shutil.copy(victim, victim.with_name("zz_added.png"))
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64), np.uint8)).save(
        victim.with_name("zz_new_noise.png"))
    (copy / card["val_files"][0]).unlink()
    changes = dataset_changes(card, _readable(copy))
    assert changes.removed == 1 and changes.added >= 1 and changes.changed
    assert "removed" in changes.sentence() and "added" in changes.sentence()


def test_an_image_edited_in_place_is_modified(copy: Path) -> None:
    card = _card_data(copy)
    victim = _a_train_image(copy, card)
    Image.fromarray(np.random.default_rng(1).integers(0, 255, (64, 64), np.uint8)).save(victim)
    changes = dataset_changes(card, _readable(copy))
    assert changes == DataChanges(modified=1)
    assert changes.sentence() == "1 image changed in content"


def test_sentence_wording() -> None:
    assert DataChanges(added=2, removed=1).sentence() == "2 images added and 1 removed"
    assert DataChanges().sentence() == "no image changed"
    assert DataChanges(re_encoded=True).changed


def test_an_ensembles_union_of_training_hashes_keeps_each_copy(copy: Path) -> None:
    """The default ensemble's own folder read as "187 images added": its card's union of the members'
    training hashes was a set, and the dataset's exact copies are counted once per copy."""
    from core.models.ensemble import union_of_hashes

    twin = _a_train_image(copy, _card_data(copy))
    shutil.copyfile(twin, twin.with_name("exact_copy_" + twin.name))  # a dataset with an exact copy
    card = _card_data(copy)
    assert len(set(card["train_hashes"])) < len(card["train_hashes"])
    one_less = [h for h in card["train_hashes"] if h != card["train_hashes"][0]]  # a member that lacks one
    union = {**card, "content_digest": None,  # an ensemble card keeps no digest
             "train_hashes": union_of_hashes([card["train_hashes"], one_less, card["train_hashes"]])}
    assert sorted(union["train_hashes"]) == sorted(card["train_hashes"])
    assert dataset_changes(union, _readable(copy)) == DataChanges()
    assert union_of_hashes([["a", "b"], ["b", "b", "c"]]) == ["a", "b", "b", "c"]

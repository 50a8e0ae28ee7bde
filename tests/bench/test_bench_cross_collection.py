"""bench.cross_collection: the boxed collection and its duplicates are held out whole (no model)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from bench import cross_collection


def _tree(root: Path, class_tree) -> Path:
    data = root / "data"
    class_tree(data, {f"Training/{c}": 3 for c in ("glioma", "meningioma", "notumor")}, seed=3)
    # a byte-identical copy of a boxed slice under another name: must follow it to the held-out side
    shutil.copyfile(data / "Training/glioma/img_000.png", data / "Training/glioma/copy_of_000.png")
    (data / cross_collection.BOXES).write_text(
        "file,class,x0,y0,x1,y1\n"
        "Training/glioma/img_000.png,glioma,0.1,0.1,0.5,0.5\n"
        "Training/meningioma/img_001.png,meningioma,0.2,0.2,0.6,0.6\n"
        "Training/pituitary/not_in_the_folder.png,pituitary,0.2,0.2,0.6,0.6\n")
    return data


def test_boxed_slices_and_their_copies_are_held_out_and_nothing_else(tmp_path, class_tree):
    data = _tree(tmp_path, class_tree)
    out = tmp_path / "split"
    summary = cross_collection.prepare(data, out)
    held = sorted(p.relative_to(out / cross_collection.FIGSHARE).as_posix()
                  for p in (out / cross_collection.FIGSHARE).rglob("*.png"))
    assert held == ["glioma/copy_of_000.png", "glioma/img_000.png", "meningioma/img_001.png"]
    rest = {p.relative_to(out / cross_collection.REST).as_posix() for p in (out / cross_collection.REST).rglob("*.png")}
    assert len(rest) == 7 and not rest & set(held)  # every file lands on exactly one side
    assert summary["held_out"] == 3 and summary["added_as_duplicates"] == 1
    assert summary["counts"] == {"figshare": {"glioma": 2, "meningioma": 1},
                                 "rest": {"glioma": 2, "meningioma": 2, "notumor": 3}}
    assert json.loads((out / "split.json").read_text())["counts"] == summary["counts"]
    # the copies are byte for byte the originals
    assert (out / "figshare/glioma/img_000.png").read_bytes() == (data / "Training/glioma/img_000.png").read_bytes()


def test_the_site_split_draws_blocks_of_neighbouring_files_and_puts_every_file_on_one_side(tmp_path, class_tree):
    out = tmp_path / "split"
    class_tree(out / cross_collection.FIGSHARE, {"glioma": 3, "meningioma": 23})
    counts = cross_collection.site_split(out, per_class=10, block=5, seed=1)
    assert counts == {"site_labelled": {"glioma": 3, "meningioma": 10},
                      "site_labelled_unseen": {"meningioma": 13}}
    labelled = sorted(int(p.stem[4:]) for p in (out / "site_labelled/meningioma").iterdir())
    unseen = sorted(int(p.stem[4:]) for p in (out / "site_labelled_unseen/meningioma").iterdir())
    assert sorted(labelled + unseen) == list(range(23))
    blocks = {n // 5: [m for m in range(n // 5 * 5, min(n // 5 * 5 + 5, 23))] for n in labelled}
    partly = [b for b, members in blocks.items() if not set(members) <= set(labelled)]
    assert len(partly) <= 1  # whole blocks of neighbours, but for the one that tops the count up
    again = cross_collection.site_split(out, per_class=10, block=5, seed=2, name="other")
    assert again["other"] == counts["site_labelled"]


def test_the_reverse_hold_keeps_out_the_unboxed_tumours_of_the_boxed_classes_only(tmp_path, class_tree):
    data = _tree(tmp_path, class_tree)
    out = tmp_path / "split"
    summary = cross_collection.prepare(data, out, hold=cross_collection.UNBOXED)
    held = sorted(p.relative_to(out / "unboxed").as_posix() for p in (out / "unboxed").rglob("*.png"))
    assert held == ["meningioma/img_000.png", "meningioma/img_002.png"]  # img_001 is boxed; no pituitary here
    assert summary["counts"]["rest"] == {"glioma": 4, "meningioma": 1, "notumor": 3}
    # the boxed glioma's copy is trained on with it, never held out apart from it
    assert (out / "rest/glioma/copy_of_000.png").exists() and (out / "rest/glioma/img_000.png").exists()

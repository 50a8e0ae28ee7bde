"""Another collection, not a simulated shift: train without the figshare slices, meet them as a new site.

``python -m bench.cross_collection prepare --out DIR`` splits the dataset by collection;
``python -m bench.cross_collection train --out DIR --like RUN [--seed N]`` trains RUN's recipe on
what is left (``WORKBENCH_MODELS_DIR`` says where it is registered). Everything after that is the
workbench's own commands on ``DIR/<hold>``: ``evaluate --data … --warnings``, ``site-check``,
``adapt`` (bench/RESULTS.md section 24 lists them with their figures); ``site-split`` draws labelled
cases for ``adapt`` from the held-out collection and keeps the rest unseen.

The dataset merges three public collections. ``tumour_boxes.csv`` lists the slices that were matched
to the figshare collection (Cheng et al.: T1 contrast-enhanced slices from two hospitals in China),
1,513 of them (meningioma 650, pituitary 742, glioma 121). Those, with every exact or near duplicate of
any of them (near-duplicate groups kept whole, so no copy of a held-out slice is trained on), are the
held-out "site"; the rest (SARTAJ and Br35H, and figshare slices that no box matched) are the
training collection. Every simulated site so far was the model's own slices with a change applied;
this one was scanned, exported and selected by other people.

``--hold unboxed`` turns it round for two classes: the meningiomas and pituitary tumours that no box
matched (the other collections') are held out, and the model learns those two classes from figshare's
slices alone, as a hospital would whose training data came from one source per class.

What it is not: a clean split by source. Figshare slices without a box stay in the training part
(the boxes cover most, not all, of figshare's meningiomas and pituitary tumours, and few of its
gliomas), and the held-out collection has no "no tumour" slices (figshare has none). So the trained
model has seen some of figshare's style, and the site's class mix differs from the training mix.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

from bench.common import DEFAULT_DATA

BOXES = "tumour_boxes.csv"
REST = "rest"
FIGSHARE, UNBOXED = "figshare", "unboxed"
HOLDS = {
    FIGSHARE: "the figshare collection: the boxed slices and their duplicates",
    UNBOXED: "the meningioma and pituitary slices no box matched (the other collections' tumours of those "
             "classes), trained on the figshare ones of the same classes",
}
UNBOXED_CLASSES = ("meningioma", "pituitary")
LABELLED = "site_labelled"


def held_out_paths(readable, boxed: set[str]) -> set[str]:
    """The boxed slices' paths and every path that shares an exact or near-duplicate group with one.

    ``readable``: a scan's readable files (columns path, exact_group, near_group; -1 = no group).
    """
    held = set(boxed) & set(readable["path"])
    for column in ("exact_group", "near_group"):
        groups = set(readable.loc[readable["path"].isin(held) & (readable[column] >= 0), column])
        held |= set(readable.loc[readable[column].isin(groups), "path"])
    return held


def held_out_set(readable, boxed: set[str], hold: str) -> set[str]:
    """The paths ``hold`` (a key of :data:`HOLDS`) keeps out of training."""
    figshare = held_out_paths(readable, boxed)
    if hold == FIGSHARE:
        return figshare
    if hold == UNBOXED:  # the complement of a set closed under duplicate groups is closed too
        return set(readable.loc[readable["label"].isin(UNBOXED_CLASSES), "path"]) - figshare
    raise ValueError(f"unknown hold {hold!r}: one of {', '.join(HOLDS)}")


def prepare(data: Path, out: Path, hold: str = FIGSHARE) -> dict:
    """Copy the dataset into ``out/<hold>/<class>/`` (held out) and ``out/rest/<class>/`` (trained on)."""
    import pandas as pd

    from core.data.datasets import open_folder
    from core.data.scan import scan_dataset

    ds = open_folder(data)
    report = scan_dataset(ds)
    readable = report.readable
    boxed = set(pd.read_csv(data / BOXES)["file"])
    held = held_out_set(readable, boxed, hold)
    counts: dict[str, dict[str, int]] = {hold: {}, REST: {}}
    for path, label in zip(readable["path"], readable["label"]):
        part = hold if path in held else REST
        target = out / part / label / Path(path).name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(ds.root / path, target)
        counts[part][label] = counts[part].get(label, 0) + 1
    summary = {"data": str(data), "hold": hold, "held_out_is": HOLDS[hold], "boxed": len(boxed),
               "held_out": len(held),
               "added_as_duplicates": len(held - boxed) if hold == FIGSHARE else None, "counts": counts,
               "unreadable": len(report.unreadable())}
    (out / "split.json").write_text(json.dumps(summary, indent=2))
    return summary


def site_split(out: Path, per_class: int, hold: str = FIGSHARE, block: int = 5, seed: int = 0,
               name: str = LABELLED) -> dict:
    """Split the held-out ``out/<hold>`` into labelled cases for adaptation (``out/<name>``) and the images
    the adapted model is scored on (``out/<name>_unseen``).

    The labelled cases are ``per_class`` files of each class taken in blocks of ``block`` neighbouring file
    names, the blocks drawn at random (``seed``): neighbouring file numbers are often one patient's
    neighbouring slices (bench section 23), so a block keeps most of a patient on one side, where single
    files drawn at random would put the same patient on both; and blocks from all over the collection
    are a fairer few cases than its first ``per_class`` files (in the unboxed hold those are unusual:
    the parent got 4 of 12 of their meningiomas right, against 88 % of the rest).
    """
    import numpy as np

    rng = np.random.default_rng(seed)
    unseen = f"{name}_unseen"
    counts: dict[str, dict[str, int]] = {name: {}, unseen: {}}
    for folder in sorted(p for p in (out / hold).iterdir() if p.is_dir()):
        files = sorted(folder.iterdir())
        blocks = [files[i:i + block] for i in range(0, len(files), block)]
        picked: set[Path] = set()
        for b in rng.permutation(len(blocks)):
            if len(picked) >= per_class:
                break
            picked |= set(blocks[b][:per_class - len(picked)])
        for f in files:
            part = name if f in picked else unseen
            target = out / part / folder.name / f.name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(f, target)
            counts[part][folder.name] = counts[part].get(folder.name, 0) + 1
    return counts


def train(out: Path, like: str, seed: int | None) -> str:
    """Train run ``like``'s recipe (its card's train_config) on ``out/rest``; returns the new run id."""
    from core.config import DataConfig
    from core.data.datasets import open_folder
    from core.data.scan import scan_dataset
    from core.evaluation.site_reference import keep_after_training
    from core.jobs import FINISHED, job_registry
    from core.models.runs import resolve_run
    from core.paths import models_dir
    from core.training.config import TrainConfig
    from core.training.train import train_model

    parent = resolve_run(like, root=Path(models_dir()))
    overrides = {"seed": seed} if seed is not None else {}
    cfg = TrainConfig.from_card(parent.card, **overrides)
    data_cfg = DataConfig.from_dict(parent.card.data.get("data_config"))
    ds = open_folder(out / REST)
    report = scan_dataset(ds, threshold=data_cfg.near_dup_threshold)
    job = job_registry().submit("train", f"{like}'s recipe on {ds.name}",
                                lambda j: keep_after_training(train_model(ds, report, cfg, j, data_cfg), j))
    seen = 0
    while True:  # the training log as it comes, as `python -m core train` prints it
        snap = job.snapshot()
        for line in snap.log[seen:]:
            print(line, file=sys.stderr, flush=True)
        seen = len(snap.log)
        if snap.status in FINISHED:
            break
        time.sleep(1.0)
    if snap.status != "done":
        raise SystemExit(f"training {snap.status}: {snap.error}")
    return snap.result.run_id


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("prepare", help="split the dataset by collection into two folders")
    p.add_argument("--data", type=Path, default=DEFAULT_DATA)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--hold", choices=list(HOLDS), default=FIGSHARE,
                   help="; ".join(f"{k}: {v}" for k, v in HOLDS.items()))
    s = sub.add_parser("site-split", help="split the held-out collection into labelled cases and unseen ones")
    s.add_argument("--out", type=Path, required=True)
    s.add_argument("--per-class", type=int, default=40)
    s.add_argument("--hold", choices=list(HOLDS), default=FIGSHARE)
    s.add_argument("--block", type=int, default=5, help="neighbouring files drawn together")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--name", default=LABELLED, help="folder of the labelled cases (the rest: NAME_unseen)")
    t = sub.add_parser("train", help="train a registered run's recipe on the training collection")
    t.add_argument("--out", type=Path, required=True)
    t.add_argument("--like", required=True, help="run id whose train_config is used")
    t.add_argument("--seed", type=int, default=None)
    args = parser.parse_args()
    if args.command == "prepare":
        print(json.dumps(prepare(args.data, args.out, args.hold), indent=2))
    elif args.command == "site-split":
        print(json.dumps(site_split(args.out, args.per_class, args.hold, args.block, args.seed, args.name), indent=2))
    else:
        print(train(args.out, args.like, args.seed))


if __name__ == "__main__":
    main()

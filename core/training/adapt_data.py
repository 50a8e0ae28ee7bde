"""A labelled site folder for adaptation: checked, split leakage-aware, and read at the parent's input size.

The site's images are split into adapt / validation / test parts with near-duplicate groups
kept whole (:func:`core.data.splits.grouped_split`), so the site's test figure is not
inflated by a copy of a slice the model was adapted on. Images that are copies of the
parent's own training images are said, and only ever used to adapt, never to test.

Splitting and reading are separate steps (:func:`split_site`, :meth:`SiteData.read_for`): an
ensemble's site is split once and each member reads the same files with its own preprocessing
and image size.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from core.classes import folder_class_indices
from core.data.datasets import Dataset, open_folder
from core.data.hashing import hashes_from_hex, nearest_distance
from core.data.image_cache import cached_images
from core.data.scan import scan_dataset
from core.data.splits import grouped_split
from core.errors import WorkbenchError

MIN_CLASSES = 2
MIN_PER_CLASS = 5  # fewer and a class cannot be in the adapt, validation and test parts at once
SITE_FRACTIONS = {"test": 0.3, "val": 0.2}  # the remainder adapts; validation early-stops and recalibrates
# A copy of a parent's training image (re-encoded or rescaled) lies a few bits away. Stricter than
# the scan's 20 because a copy claim removes an image from the site's test part: distinct synthetic
# phantoms of one class already fall 14-20 bits apart.
COPY_BITS = 12
PARTS = ("adapt", "val", "test")


@dataclass
class SiteData:
    """A site's images per part, labelled with the parent's class indices."""

    ds: Dataset
    files: pd.DataFrame  # readable rows: path, label, phash, part, copy_of_parent
    x: dict[str, np.ndarray]  # part -> (N, S, S, 1) uint8 ({} until read_for)
    y: dict[str, np.ndarray]  # part -> (N,) class index in the parent's order
    class_names: list[str]  # the parent's classes
    unreadable: list[tuple[str, str]] = field(default_factory=list)
    read_as: tuple[int, str] | None = None  # (image size, preprocessing id) the images in x were read with

    @property
    def copies(self) -> list[str]:
        """Site files that are (near-)copies of the parent's training images."""
        return self.files.loc[self.files["copy_of_parent"], "path"].tolist()

    def counts(self) -> dict[str, dict[str, int]]:
        """Images per part and class (every parent class listed)."""
        return {p: {c: int((self.y[p] == i).sum()) for i, c in enumerate(self.class_names)} for p in PARTS}

    def paths(self, part: str) -> list[str]:
        """The part's files, relative to the site folder."""
        return self.files.loc[self.files["part"] == part, "path"].tolist()

    def abspaths(self, part: str) -> list[Path]:
        """The part's files as paths on this machine."""
        return [self.ds.abspath(p) for p in self.paths(part)]

    def read_for(self, run, progress=None) -> SiteData:
        """This same split, its images read with ``run``'s preprocessing and image size (a new SiteData).

        Raises:
            WorkbenchError: ``run`` does not know the split's classes in the same order.
        """
        if list(run.class_names) != self.class_names:
            raise WorkbenchError("the model's classes differ from those the site was split for "
                                 f"([{', '.join(run.class_names)}] against [{', '.join(self.class_names)}])",
                                 run.run_id)
        images = cached_images([self.ds.abspath(p) for p in self.files["path"]], run.image_size,
                               self.ds.fingerprint, progress, preprocessing=run.preprocessing)
        x = {part: images[(self.files["part"] == part).to_numpy()] for part in PARTS}
        return dataclasses.replace(self, x=x, read_as=(run.image_size, run.preprocessing))


def check_site_classes(site_classes: list[str], counts: dict[str, int], parent_classes: list[str],
                       where: str) -> None:
    """Refuse a site whose classes the parent cannot learn from (the messages name the limits).

    Raises:
        WorkbenchError: unknown class names, fewer than two classes, or a class below the minimum.
    """
    unknown = [c for c in site_classes if c not in parent_classes]
    if unknown:
        raise WorkbenchError(f"the model does not know the class(es) {', '.join(unknown)}; it knows "
                             f"{', '.join(parent_classes)}. Rename or remove those folders.", where)
    present = [c for c in site_classes if counts.get(c, 0) > 0]
    if len(present) < MIN_CLASSES:
        raise WorkbenchError(f"adaptation needs readable images of at least {MIN_CLASSES} classes; found "
                             f"{len(present)} ({', '.join(present) or 'none'})", where)
    small = [f"{c} ({counts.get(c, 0)})" for c in site_classes if counts.get(c, 0) < MIN_PER_CLASS]
    if small:
        raise WorkbenchError(f"every class needs at least {MIN_PER_CLASS} readable images to adapt, validate "
                             f"and test on; too few in: {', '.join(small)}", where)


def prepare_site(folder: str | Path, parent, seed: int = 0, progress=None) -> SiteData:
    """Open, scan, check, split and read a labelled site folder for ``parent`` (a registered Run).

    Raises:
        WorkbenchError: see :func:`split_site`.
    """
    return split_site(folder, parent, seed).read_for(parent, progress)


def split_site(folder: str | Path, parent, seed: int = 0) -> SiteData:
    """Open, scan, check and split a labelled site folder for ``parent``; no image is read yet.

    Copies of the parent's training images are found against its card's ``train_hashes`` (for
    an ensemble, the union of its members').

    Raises:
        WorkbenchError: see :func:`check_site_classes`; also a missing folder, one class only, or
            a site that leaves no validation or test part.
    """
    try:
        ds = open_folder(folder, kind="site")
    except WorkbenchError as exc:
        if "at least two classes" in exc.reason:
            raise WorkbenchError(f"adaptation needs at least {MIN_CLASSES} classes: {exc.reason}", str(folder)) \
                from None
        raise
    report = scan_dataset(ds)
    files = report.readable.reset_index(drop=True).copy()
    counts = files["label"].value_counts().to_dict()
    check_site_classes(list(ds.class_names), counts, list(parent.class_names), str(ds.root))
    files["copy_of_parent"] = _copies_of_training(files["phash"].tolist(), parent)
    split = grouped_split(files, SITE_FRACTIONS, seed)
    files["part"] = split.where(~files["copy_of_parent"], "train").replace({"train": "adapt"}).to_numpy()
    for part in ("val", "test"):
        if not (files["part"] == part).any():
            raise WorkbenchError(f"the site's images left no {'validation' if part == 'val' else 'test'} part "
                                 f"(near-copies of each other or of the model's training images count once); "
                                 f"add more distinct images", str(ds.root))
    index = {c: i for i, c in enumerate(parent.class_names)}
    y = {part: files.loc[(files["part"] == part).to_numpy(), "label"].map(index).to_numpy(np.int64)
         for part in PARTS}
    return SiteData(ds, files[["path", "label", "phash", "part", "copy_of_parent"]].reset_index(drop=True), {}, y,
                    list(parent.class_names), list(report.unreadable()))


def _copies_of_training(site_hashes: list[str], parent) -> np.ndarray:
    """True where a site image is within :data:`COPY_BITS` of one of the parent's training images."""
    train = list(parent.card.data.get("train_hashes") or [])
    if not train or not site_hashes:
        return np.zeros(len(site_hashes), dtype=bool)
    dist = nearest_distance(hashes_from_hex(site_hashes), hashes_from_hex(train))
    return np.asarray(dist <= COPY_BITS)


def balanced_choice(labels: np.ndarray, n_classes: int, n: int, seed: int = 0) -> list[int]:
    """Sorted indices of up to ``n`` items, about as many of each class (0..n_classes-1) as it has."""
    rng = np.random.default_rng(seed)
    per_class = max(1, n // n_classes)
    chosen = []
    for i in range(n_classes):
        members = np.flatnonzero(labels == i)
        chosen += list(rng.choice(members, min(per_class, len(members)), replace=False)) if len(members) else []
    return sorted(int(j) for j in chosen)


def replay_sample(parent, n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """A class-balanced sample of what ``parent`` learned from, read with its own preprocessing.

    Returns (images, class indices, paths as text). Replaying these while adapting keeps what
    the model knew (without it, in-source accuracy fell 5 points in the issue's probe).

    Raises:
        WorkbenchError: the parent's training images are not on this machine.
    """
    from core.data.preprocess import load_many
    from core.models.lineage import reference_files

    try:
        paths = reference_files(parent)
    except WorkbenchError as exc:
        raise WorkbenchError("adaptation replays some of the model's own training images so that it keeps what "
                             f"it knew, and they are not on this machine ({exc.reason})", exc.source) from None
    labels = folder_class_indices(paths, parent.class_names)
    chosen = balanced_choice(labels, len(parent.class_names), n, seed)
    picked = [paths[i] for i in chosen]
    return (load_many(picked, parent.image_size, preprocessing=parent.preprocessing), labels[chosen],
            [str(p) for p in picked])


def site_weights(y_site: np.ndarray, y_replay: np.ndarray, n_classes: int) -> np.ndarray:
    """Sample weights: class-balanced within the site and within the replay, each side half the total."""
    from core.training.pipeline import class_weights

    parts = []
    total = len(y_site) + len(y_replay)
    for y in (y_site, y_replay):
        if len(y):
            w = class_weights(y, n_classes)[y]
            parts.append(w / w.sum() * total / (2 if len(y_site) and len(y_replay) else 1))
    return np.concatenate(parts).astype(np.float32)


def source_test_files(parent) -> tuple[list[Path], np.ndarray]:
    """The parent's own held-out test files and labels (empty when they are not on this machine)."""
    from core.classes import canonical_class

    files = list(parent.card.data.get("test_files") or [])
    paths = [parent.data_root / f for f in files]
    if not files or not all(p.is_file() for p in paths):
        return [], np.zeros(0, np.int64)
    return paths, np.array([parent.class_names.index(canonical_class(Path(f).parent.name)) for f in files])


def source_test(parent) -> tuple[np.ndarray, np.ndarray]:
    """The parent's own held-out test images (empty when they are not on this machine)."""
    from core.data.preprocess import load_many

    paths, labels = source_test_files(parent)
    if not paths:
        return np.zeros((0, parent.image_size, parent.image_size, 1), np.uint8), labels
    return load_many(paths, parent.image_size, preprocessing=parent.preprocessing), labels

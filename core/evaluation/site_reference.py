"""A sample of a run's training images kept beside the model, as numbers, for the site check.

The site check compares a site's images with the model's training images. A hospital that runs
the workbench has the model but not the training collection, so without this file the check could
not run there. The file keeps, for a class-stratified sample of training images, exactly what the
comparison reads: brightness and framing statistics, file facts, perceptual hashes (to keep
near-copies in one fold) and every network's pooled features; no pixels. It also spares the check
reading and running the networks on hundreds of training images each time.

The file names each network's model checksum: after a model changes, the stored features no longer
describe it and the file is not used (the check falls back to the training images when they are here).
"""

from __future__ import annotations

import io
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from core.classes import folder_class_indices
from core.data.shortcut import STATISTICS, image_statistics
from core.data.site_images import FILE_COLUMNS, ImageSample, read_sample
from core.errors import WorkbenchError

if TYPE_CHECKING:
    from core.jobs import Job, JobStage
    from core.models.runs import Run

REFERENCE_FILE = "site_reference.npz"
POOL_PER_CLASS = 250  # training images kept per class: a one-class batch draws up to this many
FORMAT_VERSION = 1
FEATURE_DTYPE = np.float16  # 192 features x 4 networks x 1,000 images in 1.5 MB; both sides are rounded alike


@dataclass(frozen=True)
class SideTable:
    """What the comparison reads of one side (the site's images or the training sample): no pixels.

    ``stats``: one row per image, the brightness and framing statistics and the file facts;
    ``features``: run id -> (N, D) pooled features of that network (None: it has no 'features' layer).
    """

    stats: pd.DataFrame
    hashes: np.ndarray | None
    features: dict[str, np.ndarray | None]

    def __len__(self) -> int:
        return len(self.stats)

    @classmethod
    def of(cls, sample: ImageSample, features: dict[str, np.ndarray | None]) -> SideTable:
        stats = image_statistics(sample.stat_images).join(sample.files.reset_index(drop=True))
        return cls(stats, sample.hashes, {k: as_stored(v) for k, v in features.items()})

    def rows(self, index: Sequence[int]) -> SideTable:
        idx = np.asarray(index, dtype=np.int64)
        return SideTable(self.stats.iloc[idx].reset_index(drop=True),
                         None if self.hashes is None else self.hashes[idx],
                         {k: None if v is None else v[idx] for k, v in self.features.items()})


def as_stored(features: np.ndarray | None) -> np.ndarray | None:
    """Features rounded as the stored sample keeps them, so neither side differs by rounding alone."""
    return None if features is None else np.asarray(features).astype(FEATURE_DTYPE).astype(np.float64)


@dataclass(frozen=True)
class SiteReference:
    """The stored training sample of a run: its table, each image's class index, and where it came from."""

    table: SideTable
    labels: np.ndarray  # (N,) class index per image
    class_names: tuple[str, ...]
    networks: dict[str, str]  # run id -> model checksum the features were computed with
    created: str
    drawn_from: int  # training images the sample was drawn from

    def describe(self) -> str:
        return (f"drawn from a sample of {len(self.table):,} of its {self.drawn_from:,} training images kept with "
                f"the model on {self.created[:10]}")


def pool_indices(labels: np.ndarray, per_class: int, seed: int = 0) -> list[int]:
    """Sorted indices of up to ``per_class`` images of every class (all of a smaller class)."""
    rng = np.random.default_rng(seed)
    chosen: list[int] = []
    for k in sorted(set(int(v) for v in labels if v >= 0)):
        pool = np.flatnonzero(labels == k)
        chosen += pool.tolist() if len(pool) <= per_class else rng.choice(pool, per_class, replace=False).tolist()
    return sorted(int(i) for i in chosen)


def build_reference(run, per_class: int = POOL_PER_CLASS, seed: int = 0, progress=None) -> SiteReference:
    """Read a class-stratified sample of ``run``'s training images and describe it as the check will.

    Raises:
        WorkbenchError: the training images are not on this machine, or an ensemble member is unusable.
    """
    from core.evaluation.site_features import feature_runs, keep_only, model_inputs, network_outputs
    from core.models.lineage import reference_files

    note = progress or (lambda *_: None)
    nets = feature_runs(run)
    files = reference_files(run)
    labels = folder_class_indices(files, run.class_names)
    pick = pool_indices(labels, per_class, seed)
    note(0.1, f"Reading {len(pick)} training images")
    sample = read_sample([files[i] for i in pick], model_inputs(nets))
    keep = {str(p) for p in sample.paths}
    labels = np.array([labels[i] for i in pick if str(files[i]) in keep], dtype=np.int64)  # unreadable ones left out
    note(0.5, "Running the model" if len(nets) == 1 else f"Running the {len(nets)} models")
    keep_only(nets)
    outputs = network_outputs(nets, sample)
    table = SideTable.of(sample, {r.run_id: o.features for r, o in zip(nets, outputs)})
    note(1.0, "Done")
    return SiteReference(table, labels, tuple(run.class_names), {r.run_id: r.card.model_sha256 for r in nets},
                         time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), len(files))


def save_reference(run, reference: SiteReference) -> Path:
    """Write the sample beside the model (atomically; plain arrays, no pickled objects).

    Raises:
        WorkbenchError: the model's folder cannot be written.
    """
    from core.atomic import write_bytes

    ids = list(reference.networks)
    arrays = {"version": np.int64(FORMAT_VERSION), "class_names": np.array(reference.class_names),
              "labels": reference.labels.astype(np.int64), "stat_columns": np.array(list(reference.table.stats.columns)),
              "stats": reference.table.stats.to_numpy(np.float64), "network_ids": np.array(ids),
              "network_sha256": np.array([reference.networks[i] for i in ids]),
              "has_features": np.array([reference.table.features.get(i) is not None for i in ids]),
              "created": np.array(reference.created), "drawn_from": np.int64(reference.drawn_from)}
    if reference.table.hashes is not None:
        arrays["hashes"] = reference.table.hashes
    for j, i in enumerate(ids):
        if (f := reference.table.features.get(i)) is not None:
            arrays[f"features_{j}"] = f.astype(FEATURE_DTYPE)
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    target = Path(run.path) / REFERENCE_FILE
    try:
        write_bytes(target, buf.getvalue())
    except OSError as exc:
        raise WorkbenchError(f"the sample of training images cannot be kept with the model ({exc.strerror or exc})",
                             str(target)) from None
    return target


def load_reference(run, networks: dict[str, str]) -> tuple[SiteReference | None, str | None]:
    """(the stored sample, None), or (None, why it cannot be used); no file is (None, None).

    ``networks``: run id -> model checksum of the networks the check will run; the stored features must
    come from exactly these.
    """
    import zipfile
    import zlib

    path = Path(run.path) / REFERENCE_FILE
    if not path.is_file() or path.is_symlink():
        return None, None
    try:
        with np.load(path, allow_pickle=False) as z:
            if int(z["version"]) != FORMAT_VERSION:
                return None, "the stored sample of training images was written by another version of the workbench"
            ids = [str(v) for v in z["network_ids"]]
            shas = [str(v) for v in z["network_sha256"]]
            has = [bool(v) for v in z["has_features"]]
            labels = np.asarray(z["labels"], np.int64)
            stats = pd.DataFrame(np.asarray(z["stats"], np.float64), columns=[str(c) for c in z["stat_columns"]])
            hashes = np.asarray(z["hashes"]) if "hashes" in z.files else None
            feats = {i: np.asarray(z[f"features_{j}"]).astype(np.float64) if has[j] else None for j, i in enumerate(ids)}
            names = tuple(str(c) for c in z["class_names"])
            created, drawn = str(z["created"]), int(z["drawn_from"])
    except (OSError, ValueError, KeyError, TypeError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
        return None, f"the stored sample of training images is damaged ({type(exc).__name__})"
    n = len(labels)
    hashes_ok = hashes is None or (hashes.dtype == np.uint64 and hashes.ndim == 2 and len(hashes) == n)
    shapes_ok = len(stats) == n and hashes_ok and all(
        f is None or (f.ndim == 2 and len(f) == n and np.isfinite(f).all()) for f in feats.values())
    if not shapes_ok or not np.isfinite(stats.to_numpy()).all() or (n and not 0 <= labels.min() <= labels.max() < len(names)):
        return None, "the stored sample of training images is damaged (its parts do not fit together)"
    if names != tuple(run.class_names):
        return None, "the stored sample of training images was made for another list of classes"
    if dict(zip(ids, shas)) != dict(networks):
        return None, "the stored sample of training images describes another version of the model's networks"
    missing = [c for c in (*STATISTICS, *FILE_COLUMNS) if c not in stats.columns]
    if missing:
        return None, "the stored sample of training images is damaged (columns missing)"
    return SiteReference(SideTable(stats, hashes, feats), labels, names, dict(zip(ids, shas)), created, drawn), None


def kept_reference(run) -> tuple[SiteReference | None, str | None]:
    """:func:`load_reference` for the networks ``run`` reads now (its own, or an ensemble's members and sentinels).

    Raises:
        WorkbenchError: an ensemble member is missing, damaged or was changed after registration.
    """
    from core.evaluation.site_features import feature_runs

    return load_reference(run, {r.run_id: r.card.model_sha256 for r in feature_runs(run)})


LATER = "keep it later with python -m core site-reference or on the Evaluate page"


def keep_sample(run: Run) -> str:
    """Keep the site check's sample beside ``run`` and say so in one sentence; a failure is said, not raised:
    the model is complete and usable without the sample (:data:`LATER` says how to keep it afterwards)."""
    started = time.perf_counter()
    try:
        reference = build_reference(run)
        path = save_reference(run, reference)
    except WorkbenchError as exc:
        return f"the site check's sample of training images was not kept ({exc}); {LATER}"
    return (f"kept a sample of {len(reference.table):,} training images for the site check ({path.name}, "
            f"{path.stat().st_size / 1e6:.1f} MB, {time.perf_counter() - started:.0f} s)")


def keep_after_training(run: Run | None, job: Job | JobStage) -> Run | None:
    """:func:`keep_sample` as a training job's last step, while the training images are surely on this
    machine; returns ``run`` (None passes through: another worker's share of a multi-worker run). A cancel
    that came before this step skips it: the model is saved either way."""
    if run is None:
        return None
    if job.cancelled:
        job.add_log(f"the site check's sample of training images was not kept (cancelled); {LATER}")
        return run
    job.update(phase="Saved; keeping a sample of the training images for the site check", progress=0.995)
    job.add_log(keep_sample(run))
    return run

"""A training run's data: the scanned dataset split and loaded as arrays at the model's size."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from core.config import DataConfig
from core.data.data_changes import content_digest
from core.data.datasets import Dataset
from core.data.image_cache import cached_images
from core.data.scan import ScanReport
from core.data.splits import make_split
from core.data.style_mix import cached_restyled
from core.errors import WorkbenchError
from core.jobs import Job, counter
from core.training.config import TrainConfig
from core.training.train_feedback import PHASE_DECODING, PHASE_RESTYLING

SPLITS = ("train", "val", "test")


@dataclass
class PreparedData:
    """Arrays for one training run, with the split they came from."""

    x: dict[str, np.ndarray]  # split -> (N, S, S, 1) uint8
    y: dict[str, np.ndarray]  # split -> (N,) int class index
    paths: dict[str, list[str]]  # split -> relative paths
    hashes: dict[str, list[str]]  # split -> perceptual hashes (hex)
    class_names: list[str]
    content_digest: str = ""  # core.data.data_changes.content_digest of the scanned images
    # (N_train, copies, S, S, 1) uint8: the training images restyled onto other slices' intensities
    # (core.data.style_mix), when the run mixes styles; None otherwise.
    styled: np.ndarray | None = None

    def counts(self) -> dict[str, dict[str, int]]:
        """Images per split and class, for the model card."""
        return {s: {c: int((self.y[s] == i).sum()) for i, c in enumerate(self.class_names)} for s in SPLITS}


def prepare_data(ds: Dataset, report: ScanReport, cfg: TrainConfig, data_cfg: DataConfig,
                 job: Job | None = None) -> PreparedData:
    """Split the scanned dataset and load every split's images at the configured size."""
    mode = "leakage_free" if cfg.leakage_free else "dataset"
    files = report.readable.copy()
    files["split"] = make_split(report, data_cfg, mode)
    index = {c: i for i, c in enumerate(ds.class_names)}
    paths_all = [ds.abspath(p) for p in files["path"]]

    mixing = cfg.style_mix > 0
    progress = counter(job, 0.0, 0.03 if mixing else 0.05, PHASE_DECODING, thousands=True)
    images = cached_images(paths_all, cfg.image_size, ds.fingerprint, progress, preprocessing=cfg.preprocessing)
    out = PreparedData({}, {}, {}, {}, list(ds.class_names), content_digest(report.readable))
    for split in SPLITS:
        mask = (files["split"] == split).to_numpy()
        out.x[split] = images[mask]
        out.y[split] = files.loc[mask, "label"].map(index).to_numpy(np.int64)
        out.paths[split] = files.loc[mask, "path"].tolist()
        out.hashes[split] = files.loc[mask, "phash"].tolist()
    if mixing:
        train_paths = [ds.abspath(p) for p in out.paths["train"]]
        out.styled = cached_restyled(train_paths, cfg.image_size, ds.fingerprint, cfg.seed,
                                     preprocessing=cfg.preprocessing, method=cfg.style_mix_method,
                                     progress=counter(job, 0.03, 0.05, PHASE_RESTYLING, thousands=True))
    if len(out.x["train"]) == 0 or len(out.x[cfg.validate_on]) == 0:
        raise WorkbenchError("the split left no training or validation images; the dataset is too small",
                             ds.name)
    return out

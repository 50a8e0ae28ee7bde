"""What a finished training leaves in its run folder: the model for inference, its history and its card."""

from __future__ import annotations

import csv
import platform
import time
from pathlib import Path
from typing import Any

from core.config import DataConfig
from core.data.datasets import Dataset
from core.data.preprocess import get_recipe
from core.lazy_tensorflow import keras
from core.models.architectures import ArchSpec
from core.models.card import ModelCard
from core.models.class_binding import class_order_digest
from core.models.runs import MODEL_FILE, file_sha256
from core.training.config import TrainConfig
from core.training.data import PreparedData


def inference_copy(model: Any) -> Any:
    """An uncompiled copy with the same weights: the saved file carries no optimizer state
    (AdamW's two slots per weight would triple its size) and is only ever used for inference."""
    # from_config, not clone_model: Keras 3's clone_model carries the optimizer along.
    copy = keras().Model.from_config(model.get_config())
    copy.set_weights(model.get_weights())
    return copy


def write_history(path: Path, history: list[dict[str, Any]]) -> None:
    """The per-epoch records as CSV (columns: every key any epoch recorded)."""
    keys: list[str] = []
    for row in history:
        keys.extend(k for k in row if k not in keys)
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=keys)
        writer.writeheader()
        writer.writerows(history)


def build_card(run_id: str, spec: ArchSpec, cfg: TrainConfig, data_cfg: DataConfig, ds: Dataset, data: PreparedData,
               model: Any, folder: Path, results: dict[str, Any], weights_note: str, train_seconds: float,
               status: str = "complete") -> ModelCard:
    """The card of a run whose model file is already saved in ``folder`` (its sha256 goes in)."""
    import tensorflow as tf  # already loaded: the model was trained with it

    model_path = folder / MODEL_FILE
    sha = file_sha256(model_path)
    return ModelCard(
        run_id=run_id, status=status, created=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        arch=spec.key, arch_title=spec.title, class_names=tuple(data.class_names), image_size=cfg.image_size,
        input_channels=1, preprocessing_id=cfg.preprocessing,
        preprocessing_description=get_recipe(cfg.preprocessing).help, weights=weights_note,
        versions={"tensorflow": tf.__version__, "keras": keras().__version__, "python": platform.python_version()},
        model_file=MODEL_FILE, model_sha256=sha,
        class_order_sha256=class_order_digest(data.class_names, sha), model_bytes=model_path.stat().st_size,
        params=int(model.count_params()), train_config=cfg.to_dict(),
        data={
            "name": ds.name,
            "root": str(ds.root),
            "kind": ds.kind,
            "synthetic": ds.synthetic,
            "fingerprint": ds.fingerprint,  # paths, sizes and file times: for caches
            "content_digest": data.content_digest,  # paths and bytes: did the images change?
            "split_mode": "leakage_free" if cfg.leakage_free else "dataset",
            "data_config": data_cfg.to_dict(),
            "counts": data.counts(),
            "val_files": data.paths["val"],
            "test_files": data.paths["test"],
            "train_hashes": data.hashes["train"],
        },
        results=results, timings={"train_seconds": round(train_seconds, 1)},
    )

"""The model card of an adapted run: the parent's card with new weights, new data, and its lineage.

``lineage`` (a top-level card key) records ``parent_run``, the whole ``chain`` of ancestors
(oldest first, so an adapted run of an adapted run keeps it), the site (name, folder,
fingerprint, counts per part, copies of the parent's training images, unreadable files), the
recipe, and the before/after table.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

import numpy as np

from core.errors import WorkbenchError
from core.jobs import Job
from core.models.card import ModelCard
from core.models.class_binding import class_order_digest
from core.models.runs import MODEL_FILE, file_sha256
from core.training.config import TrainConfig


def lineage_chain(parent) -> list[str]:
    """Ancestors of a run adapted from ``parent``, oldest first (``parent`` last)."""
    earlier = list((parent.card.extra.get("lineage") or {}).get("chain") or [])
    return [*earlier, parent.run_id]


def site_record(site) -> dict[str, Any]:
    """What the lineage says of the site: name, folder, fingerprint, counts, copies, unreadable files."""
    return {"name": site.ds.name, "root": str(Path(site.ds.root).resolve()), "fingerprint": site.ds.fingerprint,
            "counts": site.counts(), "copies_of_parent_training": site.copies,
            "unreadable": [{"path": p, "reason": r} for p, r in site.unreadable]}


def lineage_record(parent, site, recipe: dict[str, Any], before: dict[str, Any], after: dict[str, Any],
                   ) -> dict[str, Any]:
    """The card's ``lineage``: parent, the whole chain of ancestors, site, recipe and before/after table."""
    return {"parent_run": parent.run_id, "chain": lineage_chain(parent), "parent_model_sha256": parent.card.model_sha256,
            "site": site_record(site), "recipe": recipe, "before_after": {"parent": before, "adapted": after}}


def adapted_train_config(parent_cfg: TrainConfig, cfg) -> TrainConfig:
    """The training settings an adapted run records: the parent's, with the adaptation's epochs, rate,
    batch, patience and seed, no weight averaging, and one image size throughout (a parent trained with
    progressive resizing is adapted at its final size only)."""
    return dataclasses.replace(parent_cfg, epochs=cfg.epochs, learning_rate=cfg.learning_rate,
                               batch_size=cfg.batch_size, patience=cfg.patience, seed=cfg.seed,
                               average_epochs=0, small_epochs=0)


def adapted_card(parent, run_id: str, folder: Path, model: Any, site, n_replay: int, cfg, results: dict[str, Any],
                 before: dict[str, Any], after: dict[str, Any], seconds: float, kept: str = "") -> ModelCard:
    """The new run's card (its model file is already in ``folder``)."""
    pcard = parent.card
    names = list(parent.class_names)
    train_cfg = adapted_train_config(TrainConfig.from_card(pcard), cfg)
    counts = site.counts()
    recipe = {**cfg.to_dict(), "replayed_images": n_replay, "augmentation": "the parent's",
              "class_balance": "inverse frequency within the site and within the replay; each half the weight",
              "selection": "epoch with the lowest loss on the site's validation part, below the parent's own, among "
                           "those within the source limits (overall and per class); else the parent's weights",
              "kept": kept,
              "recalibrated_on": "the site's validation part (temperature, warnings, prediction sets)"}
    lineage = lineage_record(parent, site, recipe, before, after)
    data = {
        "name": site.ds.name,
        "root": str(Path(site.ds.root).resolve()),
        "kind": "site",
        "synthetic": bool(site.ds.synthetic or pcard.synthetic),
        "fingerprint": site.ds.fingerprint,
        "split_mode": "leakage_free",
        "data_config": dict(pcard.data.get("data_config") or {}),
        "counts": {"train": counts["adapt"], "val": counts["val"], "test": counts["test"]},
        "val_files": site.paths("val"),
        "test_files": site.paths("test"),
        # The predict page's "seen in training" check: the parent's images and the site's adapt part.
        "train_hashes": list(pcard.data.get("train_hashes") or []) + site.files.loc[
            site.files["part"] == "adapt", "phash"].tolist(),
    }
    model_path = folder / MODEL_FILE
    extra = {k: v for k, v in pcard.extra.items() if k != "lineage"}
    extra["lineage"] = lineage
    sha = file_sha256(model_path)
    return pcard.replace(
        run_id=run_id, status="complete", created=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        weights=f"adapted from {parent.run_id}", model_sha256=sha,
        # the new model file gets its own class-order binding (the parent's is tied to the parent's file)
        class_order_sha256=class_order_digest(list(names), sha),
        model_bytes=model_path.stat().st_size, params=int(model.count_params()),
        train_config=train_cfg.to_dict(), data=data, results=results,
        timings={"train_seconds": round(seconds, 1)}, evaluation={}, evaluations={}, extra=extra,
        class_names=tuple(names),
    )


def save_adapted(model, parent, site, x_rep, y_rep, cfg, job: Job, stage: Path, run_id: str,
                 history: list[dict], before: dict, after: dict, seconds: float, kept: str = ""):
    """Calibrate on the site's validation part, write the run into ``stage``, fit its warnings there."""
    from core.inference.calibration_fit import fit_calibration
    from core.models.runs import CARD_FILE, HISTORY_FILE, MODEL_FILE, OOD_FILE, Run, write_card
    from core.training.saving import inference_copy, write_history

    job.update(phase="Recalibrating on the site's validation images", progress=0.95)
    x_train = np.concatenate([site.x["adapt"], x_rep]) if len(x_rep) else site.x["adapt"]
    y_train = np.concatenate([site.y["adapt"], y_rep]) if len(y_rep) else site.y["adapt"]
    results, ood = fit_calibration(model, {"train": x_train, "val": site.x["val"]},
                                   {"train": y_train, "val": site.y["val"]}, "val", parent.card.tta, cfg.seed,
                                   job.check_cancelled, class_names=list(parent.class_names), conformal_dir=stage)
    job.check_cancelled()
    inference_copy(model).save(stage / MODEL_FILE)
    ood.save(stage / OOD_FILE)
    write_history(stage / HISTORY_FILE, history)
    card = adapted_card(parent, run_id, stage, model, site, len(x_rep), cfg, results, before, after, seconds, kept)
    write_card(stage / CARD_FILE, card)
    job.check_cancelled()
    return fit_site_warnings(Run(run_id, stage, card), model, job)


def fit_site_warnings(run, model, job: Job):
    """Warnings refitted on the site's validation part (inside the staging folder, before publishing)."""
    from core.inference.trust_fit import fit_run_warnings

    job.update(phase="Fitting the warnings on the site's validation images", progress=0.98)
    try:
        return fit_run_warnings(run, model=model)
    except WorkbenchError as exc:
        job.add_log(f"warnings keep their basic thresholds: {exc.reason}")
        return run

"""The training engine: one function that turns (config, dataset) into a registered model.

It runs the same way from the Train page (in a background job) and the CLI. All progress
goes through a :class:`core.jobs.Job`; the engine knows nothing about any UI. The steps live
in their own modules: data (:mod:`.data`), the fit loop (:mod:`.loop`), calibration
(:mod:`core.inference.calibration_fit`), the run folder (:mod:`.saving`).

TensorFlow is imported inside :func:`train_model`: the Train page imports this module to
start jobs, and must paint before TensorFlow has loaded.
"""

from __future__ import annotations

import shutil
import time
from typing import Any

from core.config import DataConfig
from core.data.datasets import Dataset
from core.data.scan import ScanReport
from core.errors import WorkbenchError
from core.inference.calibration_fit import fit_calibration
from core.inference.trust import describe_thresholds
from core.jobs import Job, JobCancelled
from core.models.architectures import ArchSpec, build_model, get_arch
from core.models.runs import (
    CARD_FILE,
    HISTORY_FILE,
    MODEL_FILE,
    OOD_FILE,
    Run,
    new_run_id,
    publish,
    staging_dir,
    write_card,
)
from core.training.config import TrainConfig
from core.training.data import PreparedData, prepare_data
from core.training.distributed import finish_worker, is_chief, lost_workers, release_workers, worker_folder
from core.training.options import strategy_for
from core.training.precision import float32_model, precision_scope
from core.training.train_feedback import PHASE_COMPILING, PHASE_DECODING

__all__ = ["PreparedData", "prepare_data", "train_model"]

WARNINGS_PHASE = "Fitting the warnings on shifted validation images"


def train_model(ds: Dataset, report: ScanReport, cfg: TrainConfig, job: Job,
                data_cfg: DataConfig = DataConfig(), keep_partial: bool = False) -> Run | None:
    """Train, calibrate and register a model. Runs in the calling thread (use a Job thread).

    In multi-worker training only the chief registers the run; the other workers return None.

    Raises:
        JobCancelled: the user cancelled; nothing usable is left in the registry.
        WorkbenchError: bad data or configuration; earlier models are untouched.
    """
    from core.lazy_tensorflow import keras
    from core.training.loop import fit_phases

    spec = get_arch(cfg.arch)
    keras().utils.set_random_seed(cfg.seed)  # python, numpy and TF seeds, inside the worker thread
    t0 = time.perf_counter()
    job.update(phase=PHASE_DECODING, epochs=cfg.epochs + (cfg.finetune.epochs if spec.transfer else 0))
    data = prepare_data(ds, report, cfg, data_cfg, job)
    job.add_log(f"train={len(data.x['train'])} val={len(data.x['val'])} test={len(data.x['test'])} images")
    job.check_cancelled()
    job.update(phase=PHASE_COMPILING)
    strategy = strategy_for(cfg)
    model, weights_note = build_and_compile(cfg, spec, len(data.class_names), strategy, job)
    job.check_cancelled()

    run_id = new_run_id(cfg.arch)
    chief = is_chief(strategy)  # always, except on the other workers of a multi-worker run
    stage = staging_dir(run_id) if chief else worker_folder(strategy)
    try:
        checkpoints = stage / "checkpoint"
        checkpoints.mkdir()
        with lost_workers(strategy):  # a dead peer: one plain error, not TensorFlow's traceback
            averaging = fit_phases(model, data, cfg, spec, strategy, job, checkpoints)
        # A bfloat16 run continues as float32: calibration, the saved model and its warnings.
        model = float32_model(model, cfg.arch, cfg.image_size, cfg.width)
        if not chief:
            return finish_worker(strategy, stage, lambda folder: _worker_save(model, folder, job))
        train_seconds = time.perf_counter() - t0
        run = _save_and_publish(model, data, cfg, data_cfg, ds, spec, job, stage, run_id, weights_note,
                                train_seconds, averaging)
        run = _fit_warnings(run, model, job)
        release_workers(strategy, job.add_log)  # the other workers leave the cluster once it is published
        return run
    except BaseException:
        # Cancelled or failed: nothing half-done may look like a usable model.
        if keep_partial and (stage / MODEL_FILE).exists():
            job.add_log("keeping partial run as requested")
        else:
            shutil.rmtree(stage, ignore_errors=True)
        raise


def _worker_save(model: Any, folder, job: Job) -> None:
    """A non-chief worker saves too (TensorFlow's multi-worker recipe), into a folder it then removes."""
    from core.training.saving import inference_copy

    inference_copy(model).save(folder / MODEL_FILE)
    job.add_log("training done; the chief publishes the run")


def build_and_compile(cfg: TrainConfig, spec: ArchSpec, n_classes: int, strategy: Any, job: Job) -> tuple[Any, str]:
    """Build ``cfg.arch`` for ``n_classes`` inside ``strategy``'s scope and compile it.

    Shared by the main training run and the out-of-fold models, so both start the same way.

    Returns:
        The compiled model and where its starting weights came from, in words (for the card).

    Raises:
        WorkbenchError: when ImageNet weights were asked for but cannot be loaded (offline machine).
    """
    from core.training.loop import compile_model, set_backbone_trainable

    weights = cfg.weights if spec.transfer else "none"
    weights_note = "not applicable (trained from scratch)"
    with strategy.scope(), precision_scope(cfg.precision):
        if weights == "imagenet":
            from core.models.weights import weight_status

            status = weight_status(cfg.arch)
            if status.state != "cached":
                job.add_log(f"ImageNet weights {status.state}: {status.message}")
            try:
                model = build_model(cfg.arch, n_classes, cfg.image_size, "imagenet")
                weights_note = "ImageNet (Keras cache)"
            except Exception as exc:  # noqa: BLE001 - offline downloads raise URLError/OSError/...
                raise WorkbenchError(
                    f"ImageNet weights for {spec.title} could not be loaded ({type(exc).__name__}); this "
                    "machine is probably offline. Place the weights file in the Keras cache (see the Train "
                    "page), upload it, or choose 'random initialisation'.", cfg.arch) from None
        else:
            model = build_model(cfg.arch, n_classes, cfg.image_size, "none", cfg.width)
            if spec.transfer:
                weights_note = "random initialisation (no ImageNet weights)"
        if spec.transfer:
            set_backbone_trainable(model, None)
        compile_model(model, cfg, cfg.learning_rate)
    return model, weights_note


def _save_and_publish(model: Any, data: PreparedData, cfg: TrainConfig, data_cfg: DataConfig, ds: Dataset,
                      spec: ArchSpec, job: Job, stage, run_id: str, weights_note: str, train_seconds: float,
                      averaging: dict[str, Any] | None) -> Run:
    """Calibrate, write model, OOD model, history and card into ``stage``, then publish it."""
    from core.training.saving import build_card, inference_copy, write_history

    job.update(phase="Calibrating and saving", progress=0.96)
    results, ood = fit_calibration(model, data.x, data.y, cfg.validate_on, cfg.tta, cfg.seed, job.check_cancelled,
                                   class_names=data.class_names, conformal_dir=stage)  # + conformal.npz
    if averaging:
        results["averaging"] = averaging
    job.check_cancelled()
    inference_copy(model).save(stage / MODEL_FILE)
    ood.save(stage / OOD_FILE)
    shutil.rmtree(stage / "checkpoint", ignore_errors=True)  # read back already (loop.fit_phases)
    write_history(stage / HISTORY_FILE, job.snapshot().history)
    card = build_card(run_id, spec, cfg, data_cfg, ds, data, model, stage, results, weights_note, train_seconds)
    write_card(stage / CARD_FILE, card)
    job.check_cancelled()
    run = publish(stage, run_id)
    job.add_log(f"saved {run.path}")
    return run


def _fit_warnings(run: Run, model: Any, job: Job) -> Run:
    """Fit the warning thresholds on validation images and their shifted copies (core.inference.trust_fit).

    A run whose validation images cannot be read again keeps its older thresholds: it is
    still usable, only its warnings are less well tuned, and the log says so.
    """
    from core.inference.trust_fit import fit_run_warnings

    job.update(phase=WARNINGS_PHASE, progress=0.98)
    try:
        run = fit_run_warnings(run, model=model, job=job.stage(0.98, 1.0, template=f"{WARNINGS_PHASE} ({{}})"))
    except WorkbenchError as exc:
        job.add_log(f"warnings keep their basic thresholds: {exc.reason}")
        return run
    except JobCancelled:
        # The model is already saved and usable: a cancel here only skips the fine-tuning of its warnings.
        job.add_log("warnings keep their basic thresholds: cancelled while fitting them (the model is saved)")
        return run
    trust = run.card.trust
    job.add_log(f"warnings: {describe_thresholds(trust)}")
    return run

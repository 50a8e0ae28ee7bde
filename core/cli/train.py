"""``python -m core train``: the same engine as the Train page, headless."""

from __future__ import annotations

import argparse
import json
import sys
import time

from core.config import AUGMENT_PRESETS, DataConfig
from core.data.preprocess import RECIPES
from core.data.splits import SPLIT_MODES
from core.data.style_mix import STYLE_METHODS
from core.data.tta import TTA
from core.models.architectures import ARCHITECTURES
from core.options import bound_of
from core.training.config import FineTuneConfig, TrainConfig
from core.training.options import OPTIMIZERS, PRECISIONS, SCHEDULES, STRATEGIES, WEIGHTS
from core.training.presets import PRESETS, preset_config

ARCHITECTURE_KEYS = list(ARCHITECTURES)


def _choice(p, flag: str, registry, default: str) -> None:
    """An option whose choices, default and help come from a registry (core.options.Registry)."""
    p.add_argument(flag, default=default, choices=list(registry), help=registry.help_text().replace("%", "%%"))


#: option -> (settings class, field, argparse attribute): each option is checked alone against the
#: range its settings class declares, so the message names the option that is out of range.
OPTION_FIELDS: dict[str, tuple[type, str, str]] = {
    "--epochs": (TrainConfig, "epochs", "epochs"),
    "--image-size": (TrainConfig, "image_size", "image_size"),
    "--batch-size": (TrainConfig, "batch_size", "batch_size"),
    "--lr": (TrainConfig, "learning_rate", "lr"),
    "--label-smoothing": (TrainConfig, "label_smoothing", "label_smoothing"),
    "--mixup": (TrainConfig, "mixup", "mixup"),
    "--style-mix": (TrainConfig, "style_mix", "style_mix"),
    "--width": (TrainConfig, "width", "width"),
    "--patience": (TrainConfig, "patience", "patience"),
    "--seed": (TrainConfig, "seed", "seed"),
    "--max-batches": (TrainConfig, "max_train_batches", "max_batches"),
    "--finetune-epochs": (FineTuneConfig, "epochs", "finetune_epochs"),
    "--unfreeze": (FineTuneConfig, "unfreeze_layers", "unfreeze"),
    "--split-seed": (DataConfig, "split_seed", "split_seed"),
    "--average-epochs": (TrainConfig, "average_epochs", "average_epochs"),
}


def _number(p, flag: str, kind: type, help: str = "", default_words: str | None = None) -> None:
    """A number option of OPTION_FIELDS: its default and range (in the help) come from the field's Bound.

    ``default_words``: the option defaults to None and the help says what that means instead.
    """
    settings, name, _ = OPTION_FIELDS[flag]
    b = bound_of(settings, name)
    default = None if default_words else getattr(settings(), name)
    p.add_argument(flag, type=kind, default=default, help=f"{help + '; ' if help else ''}{b.words()}{b.unit} "
                   f"(default {default_words or default})")


def register(sub) -> None:
    t = TrainConfig
    p = sub.add_parser("train", help="train a model on a dataset folder and register it under models/")
    p.add_argument("--data", required=True, help="dataset folder (Kaggle layout or class folders)")
    p.add_argument("--preset", default=None, metavar="NAME",
                   help="start from a named recipe (" + "; ".join(f"{k}: {o.title}" for k, o in PRESETS.items())
                   + "); options given explicitly still change single settings")
    p.add_argument("--arch", default=t.arch, help="architecture key: " + ", ".join(ARCHITECTURE_KEYS))
    _number(p, "--epochs", int)
    _number(p, "--image-size", int, "square input side", default_words="the architecture's own, e.g. 128 for the "
            "custom CNN")
    _number(p, "--batch-size", int)
    _number(p, "--lr", float, "peak learning rate")
    _choice(p, "--optimizer", OPTIMIZERS, t.optimizer)
    _choice(p, "--schedule", SCHEDULES, t.lr_schedule)
    _number(p, "--label-smoothing", float)
    _number(p, "--mixup", float, "mixup alpha, e.g. 0.2")
    _number(p, "--style-mix", float, "share of training examples shown with another training slice's intensity "
            "histogram (any class), so a source's brightness and contrast stop telling the class, e.g. 0.5")
    _choice(p, "--style-mix-method", STYLE_METHODS, t.style_mix_method)
    _number(p, "--width", float, "channel multiplier (custom CNN)")
    p.add_argument("--augment", default="standard", choices=sorted(AUGMENT_PRESETS))
    _number(p, "--patience", int, "early-stopping patience")
    _choice(p, "--weights", WEIGHTS, t.weights)
    _number(p, "--finetune-epochs", int, "phase-2 epochs of a transfer model")
    _number(p, "--unfreeze", int, "backbone layers unfrozen in phase 2")
    p.add_argument("--split", default="leakage_free", choices=list(SPLIT_MODES))
    _number(p, "--split-seed", int)
    _number(p, "--seed", int)
    _choice(p, "--strategy", STRATEGIES, t.strategy)
    _choice(p, "--precision", PRECISIONS, t.precision)
    _number(p, "--max-batches", int, "cap batches per epoch (smoke runs)", default_words="every batch")
    p.add_argument("--preprocessing", default=t.preprocessing, choices=sorted(RECIPES),
                   help="preprocessing recipe; " + "; ".join(f"{k}: {r.title}" for k, r in RECIPES.items())
                   + f" (default {t.preprocessing})")
    p.add_argument("--json", action="store_true")
    p.add_argument("--no-site-sample", action="store_true",
                   help="do not keep a sample of the training images with the model for the site check (kept by "
                        "default: about 1,000 images as numbers, no pixels, a few seconds; the check then runs on any "
                        "computer the model is copied to; keep one later with python -m core site-reference)")
    _choice(p, "--tta", TTA, t.tta)
    _number(p, "--average-epochs", int, "average the weights of the last N epochs and re-estimate batch-norm statistics")
    p.set_defaults(func=run, option_defaults={a.dest: a.default for a in p._actions})

    c = sub.add_parser("calibrate", help="refit a run's temperature and thresholds on its validation split")
    c.add_argument("--model", required=True, help="run id or run folder inside the model registry")
    _choice(c, "--tta", TTA, t.tta)
    c.add_argument("--warnings-only", action="store_true",
                   help="only fit the warning thresholds on the validation images and their shifted copies "
                        "(keeps the temperature; for runs trained before the warnings were fitted)")
    c.add_argument("--conformal-only", action="store_true",
                   help="only fit the prediction sets (conformal.npz) on the validation images, with the run's "
                        "temperature and test-time augmentation kept (for runs trained before prediction sets)")
    c.add_argument("--conformal-folds", type=int, default=0, metavar="K",
                   help="with --conformal-only: also calibrate on the training images, scored out of fold by K "
                        "models trained with the run's recipe without them (core.training.out_of_fold; K "
                        "trainings, stored in the run's oof.npz and reused; an ensemble averages its members' "
                        "scores); 0: validation images only (default)")
    c.add_argument("--fold-precision", choices=list(PRECISIONS), default=None,
                   help="with --conformal-folds: train the fold models in this precision instead of the run's "
                        "(bfloat16 about halves the time on CPUs with bfloat16 units; the saved models are float32 "
                        "either way, and the card records the change); without it, scores stored from fold "
                        "models trained in one precision are reused, else each network's own is used")
    c.add_argument("--json", action="store_true")
    c.set_defaults(func=calibrate)




def check_options(args: argparse.Namespace) -> None:
    """Refuse any option outside its declared range before any work starts.

    Raises:
        WorkbenchError: named after the option, with the allowed range and the value given.
    """
    from core.errors import WorkbenchError

    for option, (settings, name, attr) in OPTION_FIELDS.items():
        value = getattr(args, attr, None)
        if value is None:
            continue
        try:
            settings(**{name: value})
        except WorkbenchError as exc:
            raise WorkbenchError(exc.reason, option) from None


def calibrate(args: argparse.Namespace) -> int:
    from core.errors import WorkbenchError
    from core.inference.calibration_fit import recalibrate_run
    from core.inference.trust import describe_thresholds
    from core.inference.trust_fit import fit_run_warnings
    from core.models.runs import resolve_run

    if args.conformal_folds and not args.conformal_only:
        raise WorkbenchError("--conformal-folds refits only the prediction sets: add --conformal-only", "calibrate")
    if getattr(args, "fold_precision", None) and not args.conformal_folds:
        raise WorkbenchError("--fold-precision sets how the fold models train: add --conformal-folds K", "calibrate")
    if args.conformal_only:
        from core.cli.conformal import calibrate_conformal

        return calibrate_conformal(args)
    if args.warnings_only:
        run_ = fit_run_warnings(resolve_run(args.model))
    else:
        run_ = fit_run_warnings(recalibrate_run(resolve_run(args.model), args.tta))
    r = run_.card.results
    if args.warnings_only:
        t = r.to_json()["trust"]  # plain JSON for printing
        print(json.dumps(t, indent=2) if args.json else
              f"run {run_.run_id} warnings: {describe_thresholds(t)}")
        return 0
    if args.json:
        print(json.dumps(r.to_json(), indent=2))
    else:
        print(f"run {run_.run_id} (tta={r.tta}): val accuracy {r.val_accuracy:.4f}, macro-F1 "
              f"{r.val_macro_f1:.4f}, ECE {r.val_ece:.4f} (T={r.temperature:.2f}), low-confidence "
              f"threshold {r.low_confidence_threshold:.2f}")
        sets = r.to_json().get("conformal") or {}
        print(f"prediction sets refitted on {sets.get('fitted_on', 'the validation images')}")
        if sets.get("out_of_fold_dropped"):
            folds = sets.get("out_of_fold_dropped_folds")
            again = (f"; run `python -m core calibrate --model {run_.run_id} --conformal-only --conformal-folds "
                     f"{folds}` to add them again") if folds else ""
            print(f"note: the out-of-fold training scores were left out: {sets['out_of_fold_dropped']}{again}")
    return 0


#: argparse attribute -> (TrainConfig field, how the option's value becomes the field's value)
PRESET_OVERRIDES: dict[str, tuple[str, object]] = {
    "arch": ("arch", None), "image_size": ("image_size", None), "epochs": ("epochs", None),
    "batch_size": ("batch_size", None), "lr": ("learning_rate", None), "optimizer": ("optimizer", None),
    "schedule": ("lr_schedule", None), "label_smoothing": ("label_smoothing", None), "mixup": ("mixup", None),
    "style_mix": ("style_mix", None), "style_mix_method": ("style_mix_method", None),
    "width": ("width", None), "augment": ("augment", AUGMENT_PRESETS.__getitem__), "patience": ("patience", None),
    "weights": ("weights", None), "seed": ("seed", None), "strategy": ("strategy", None),
    "precision": ("precision", None), "max_batches": ("max_train_batches", None),
    "preprocessing": ("preprocessing", None), "tta": ("tta", None), "average_epochs": ("average_epochs", None),
    "split": ("leakage_free", lambda v: v == "leakage_free"),
}


def _preset_config(args: argparse.Namespace) -> TrainConfig:
    """The ``--preset`` recipe with the options given explicitly (those not at their default) laid over it.

    Raises:
        WorkbenchError: unknown preset (the message lists them), or a combination the config refuses.
    """
    overrides = {}
    for attr, (name, convert) in PRESET_OVERRIDES.items():
        value = getattr(args, attr)
        if value != args.option_defaults.get(attr):
            overrides[name] = convert(value) if convert else value
    if args.finetune_epochs != args.option_defaults.get("finetune_epochs") or \
            args.unfreeze != args.option_defaults.get("unfreeze"):
        overrides["finetune"] = FineTuneConfig(epochs=args.finetune_epochs, unfreeze_layers=args.unfreeze)
    return preset_config(args.preset, **overrides)


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """The TrainConfig ``train``'s arguments describe: the ``--preset`` recipe with the options given
    explicitly laid over it, else every option as given.

    Raises:
        WorkbenchError: unknown architecture or preset, or a combination the config refuses.
    """
    from core.models.architectures import get_arch

    if args.preset is not None:
        return _preset_config(args)
    spec = get_arch(args.arch)
    image_size = spec.default_image_size if args.image_size is None else args.image_size
    return TrainConfig(
        arch=args.arch, image_size=image_size, epochs=args.epochs,
        batch_size=args.batch_size, learning_rate=args.lr, optimizer=args.optimizer, lr_schedule=args.schedule,
        label_smoothing=args.label_smoothing, augment=AUGMENT_PRESETS[args.augment], patience=args.patience,
        weights=args.weights, finetune=FineTuneConfig(epochs=args.finetune_epochs, unfreeze_layers=args.unfreeze),
        seed=args.seed, leakage_free=args.split == "leakage_free", strategy=args.strategy, width=args.width,
        max_train_batches=args.max_batches, tta=args.tta,
        average_epochs=args.average_epochs, mixup=args.mixup, style_mix=args.style_mix,
        style_mix_method=args.style_mix_method,
        preprocessing=args.preprocessing,
        precision=args.precision,
    )


def run(args: argparse.Namespace) -> int:
    from core.data.datasets import open_folder
    from core.data.scan import scan_dataset
    from core.evaluation.site_reference import keep_after_training
    from core.jobs import FINISHED, job_registry
    from core.models.architectures import get_arch
    from core.training.train import train_model

    check_options(args)
    if args.strategy == "multiworker":
        from core.training.distributed import multiworker_strategy, read_tf_config

        read_tf_config()  # a missing or malformed TF_CONFIG is refused before any work
    spec = get_arch(args.arch)
    cfg = config_from_args(args)
    data_cfg = DataConfig(split_seed=args.split_seed)
    ds = open_folder(args.data)
    report = scan_dataset(ds, threshold=data_cfg.near_dup_threshold)
    if args.strategy == "multiworker":
        multiworker_strategy()  # joins the cluster (waits for every worker) before TensorFlow runs anything else
    out = sys.stderr if args.json else sys.stdout

    def work(j):  # the sample is kept inside the job, so its line is printed with the training log
        run_ = train_model(ds, report, cfg, j, data_cfg)
        return run_ if args.no_site_sample else keep_after_training(run_, j)

    job = job_registry().submit("train", f"{spec.title} on {ds.name}", work)
    seen = 0
    while True:
        snap = job.snapshot()
        for line in snap.log[seen:]:
            print(line, file=out, flush=True)
        seen = len(snap.log)
        if snap.status in FINISHED:
            break
        time.sleep(1.0)
    if snap.status != "done":
        print(f"error: training {snap.status}: {snap.error}", file=sys.stderr)
        return 2 if snap.status == "failed" else 130
    run_ = snap.result
    if run_ is None:  # another worker of a multi-worker run: the chief published it
        print("this worker's part is done; the chief published the run", file=out)
        return 0
    card = run_.card.to_json()  # plain JSON for printing
    summary = {"run_id": run_.run_id, "path": str(run_.path), "results": card["results"],
               "timings": card["timings"], "counts": card["data"]["counts"]}
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        r = run_.card.results
        print(f"run {run_.run_id}: val accuracy {r.val_accuracy:.4f}, macro-F1 {r.val_macro_f1:.4f}, "
              f"ECE {r.val_ece:.4f} (T={r.temperature:.2f}), {run_.card.train_seconds:.0f} s")
        print(f"saved to {run_.path}")
    return 0

"""Everything that defines a training run, as frozen dataclasses saved unchanged into the model card."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from core.config import AUGMENT_PRESETS, AugmentConfig, from_dict_lenient
from core.data.preprocess import RECIPES
from core.data.style_mix import DEFAULT_STYLE_METHOD, FIRST_STYLE_METHOD, STYLE_METHODS
from core.data.tta import TTA
from core.errors import WorkbenchError
from core.options import bounded, check_bounds
from core.training.options import OPTIMIZERS, PRECISIONS, SCHEDULES, STRATEGIES, WEIGHTS

if TYPE_CHECKING:
    from core.models.card import ModelCard


@dataclass(frozen=True)
class FineTuneConfig:
    """Second phase for transfer models: unfreeze the top of the backbone at a lower rate."""

    # phase-2 epochs; 0 disables phase 2
    epochs: int = bounded(0, 0, 1000, "fine-tuning epochs", zero="off", ui_hi=200)
    # how many of the backbone's top layers become trainable
    unfreeze_layers: int = bounded(20, 0, 10_000, "layers to unfreeze", ui_lo=1, ui_hi=500)
    # phase-2 learning rate = learning_rate * lr_factor
    lr_factor: float = bounded(0.1, 0, 1, "fine-tuning learning-rate factor", lo_open=True, ui_lo=0.001, step=0.01)

    def __post_init__(self) -> None:
        check_bounds(self)

    to_dict = dataclasses.asdict


@dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a training run; saved unchanged into the model card."""

    arch: str = "custom_cnn"  # key of core.models.architectures.ARCHITECTURES
    # square input side in pixels
    image_size: int = bounded(128, 32, 512, "image size", unit=" pixels", step=16)
    # phase-1 epochs (upper bound; early stopping may end sooner)
    epochs: int = bounded(20, 1, 1000, "epochs", ui_hi=500)
    batch_size: int = bounded(32, 1, 1024, "batch size", ui_hi=512)
    learning_rate: float = bounded(2e-3, 0, 1, "learning rate", lo_open=True, hi_open=True, ui_lo=1e-6, ui_hi=0.5,
                                   step=1e-4)
    optimizer: str = "adamw"  # key of core.training.options.OPTIMIZERS
    # decoupled weight decay for AdamW
    weight_decay: float = bounded(1e-4, 0, 1, "weight decay", hi_open=True)
    # key of core.training.options.SCHEDULES: cosine decay, or ReduceLROnPlateau (one or the other)
    lr_schedule: str = "cosine"
    label_smoothing: float = bounded(0.05, 0, 1, "label smoothing", hi_open=True, ui_hi=0.3, step=0.01)
    # mixup alpha (Beta(alpha, alpha) blend of example pairs)
    mixup: float = bounded(0.0, 0, 1, "mixup alpha", zero="off", step=0.05)
    augment: AugmentConfig = field(default_factory=lambda: AUGMENT_PRESETS["standard"])
    # Share of training examples shown with another training slice's intensity histogram (any
    # class; core.data.style_mix), so that a source's global intensity style stops telling the class.
    style_mix: float = bounded(0.0, 0, 1, "intensity-style mixing (share of examples)", zero="off", step=0.05)
    # How a slice takes the other's intensities (key of core.data.style_mix.STYLE_METHODS): the
    # head's grey levels only; cards written before it that mix styles read as the first method.
    style_mix_method: str = DEFAULT_STYLE_METHOD
    class_weighting: bool = True  # weight the loss by inverse class frequency
    # EarlyStopping patience in epochs without a better validation loss
    patience: int = bounded(6, 0, 1000, "patience", unit=" epochs", ui_lo=1, ui_hi=100)
    weights: str = "imagenet"  # key of core.training.options.WEIGHTS (transfer models only)
    finetune: FineTuneConfig = field(default_factory=FineTuneConfig)
    seed: int = bounded(1, 0, 2**31 - 1, "seed")
    validate_on: str = "val"  # which split early-stops the run: val | test
    leakage_free: bool = True  # split with near-duplicates grouped (only for unsplit folders)
    strategy: str = "default"  # key of core.training.options.STRATEGIES
    # channel multiplier for the custom CNN
    width: float = bounded(1.0, 0, 4, "width", lo_open=True)
    # batches per epoch, for tests and smoke runs (None: every batch)
    max_train_batches: int | None = bounded(None, 1, title="batches per epoch", ui_lo=0, ui_hi=100_000)
    tta: str = "hflip"  # test-time augmentation, key of core.data.tta.TTA
    # Average the weights of the last N epochs and re-estimate batch-norm statistics
    # (core.training.averaging); 0 keeps the epoch with the best validation loss instead.
    # Its upper end is the run's epoch count (checked in __post_init__).
    average_epochs: int = bounded(0, 0, 1000, "epochs to average", zero="keep the best epoch", ui_hi=500)
    # Preprocessing recipe (core.data.preprocess.RECIPES): head crop + intensity standardisation
    # by default; the card records it and inference applies the same one.
    preprocessing: str = "head-v2"
    # Compute precision while training, key of core.training.options.PRECISIONS: "bfloat16" runs the
    # layers in mixed bfloat16 (core.training.precision); the saved model is float32 either way.
    precision: str = "float32"
    # Progressive resizing (Howard's fast.ai DAWNBench recipe; Tan & Le 2021): the first
    # ``small_epochs`` of the epochs train on images scaled down to ``small_image_size`` (cheaper
    # steps while the network learns coarse shapes), the rest at image_size, which the saved model takes.
    small_epochs: int = bounded(0, 0, 1000, "epochs at the small image size", zero="off", ui_hi=500)
    small_image_size: int = bounded(96, 32, 512, "small image size", unit=" pixels", step=16)

    def __post_init__(self) -> None:
        check_bounds(self)
        if self.small_epochs and not self.small_epochs < self.epochs:
            raise WorkbenchError("epochs at the small image size must be fewer than the epochs", "TrainConfig")
        if self.small_epochs and not self.small_image_size < self.image_size:
            raise WorkbenchError(f"the small image size ({self.small_image_size} pixels) must be below the image "
                                 f"size ({self.image_size} pixels)", "TrainConfig")
        for registry, value in ((OPTIMIZERS, self.optimizer), (SCHEDULES, self.lr_schedule), (WEIGHTS, self.weights),
                                (STRATEGIES, self.strategy), (TTA, self.tta),
                                (PRECISIONS, self.precision), (STYLE_METHODS, self.style_mix_method)):
            registry.check(value, "TrainConfig")
        if self.validate_on not in ("val", "test"):
            raise WorkbenchError("validate_on must be 'val' or 'test'", "TrainConfig")
        if self.average_epochs > self.epochs + self.finetune.epochs:
            raise WorkbenchError("epochs to average must be between 0 and the number of epochs", "TrainConfig")
        if self.preprocessing not in RECIPES:
            raise WorkbenchError(f"unknown preprocessing '{self.preprocessing}'", "TrainConfig")

    to_dict = dataclasses.asdict

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> TrainConfig:
        data = dict(data or {})
        if data.get("style_mix") and "style_mix_method" not in data:
            # Written before the method was recorded: it mixed styles the first way, and a
            # re-run or adaptation of that run must too.
            data["style_mix_method"] = FIRST_STYLE_METHOD
        return from_dict_lenient(cls, data, {"augment": AugmentConfig, "finetune": FineTuneConfig})

    @classmethod
    def from_card(cls, card: ModelCard, **overrides: Any) -> TrainConfig:
        """The configuration a card's run was trained with (its ``train_config``), with ``overrides``.

        The card keeps it as a mapping (models sit below training); this is its typed view. The
        overrides are applied before the checks, so they can replace a value the checks refuse.
        """
        return cls.from_dict({**card.train_config, **overrides})

    def replace(self, **changes: Any) -> TrainConfig:
        return dataclasses.replace(self, **changes)

"""Training recipes by name: ``python -m core train --preset fast`` and the Train page's recipe choice.

A preset is one :class:`core.options.Option` whose builder returns a whole :class:`TrainConfig`
(given the architecture's defaults it may override); the page and the CLI list their titles and
help from :data:`PRESETS`. A preset is a starting point: options given explicitly on the command
line, and the page's own widgets, still change single fields.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from core.config import AUGMENT_PRESETS
from core.options import Option, Registry
from core.training.config import TrainConfig


def fast_precision() -> str:
    """bfloat16 where this machine runs it natively (AVX512-BF16, AMX or a GPU), else float32."""
    from core.training.hardware import detect_hardware

    return "bfloat16" if detect_hardware().bf16_fast else "float32"


def _default(**overrides: Any) -> TrainConfig:
    return replace(TrainConfig(), **overrides)


def _fast(**overrides: Any) -> TrainConfig:
    """Meant for about 10 minutes on two CPU cores from a cold start: the custom CNN at 0.75 width and
    80 pixels for all 45 epochs, large batches at a high peak rate with Keras's cosine decay and
    warm-up, the standard geometric augmentation (the `generalise` preset's blur, noise and
    down-sampling cost much of an epoch on a CPU), the last epochs' weights averaged, and bfloat16
    where the CPU has it. Chosen on validation (bench section 8): one size throughout reached 97.6 %
    against 95.8 % for progressive resizing (20 epochs at 64 pixels, then 8 at 96), which lost
    accuracy at the change of size; 45 epochs beat 30 on two seeds (98.01 / 97.90 % against
    97.78 / 97.43 %) once the faster first batch left room under 12 minutes."""
    cfg = TrainConfig(
        arch="custom_cnn", image_size=80, width=0.75, epochs=45, batch_size=64, learning_rate=4e-3,
        optimizer="adamw", weight_decay=5e-5, lr_schedule="cosine", label_smoothing=0.05, mixup=0.0,
        augment=AUGMENT_PRESETS["standard"], class_weighting=True, patience=1000, average_epochs=2, tta="hflip",
        preprocessing="head-v2", precision=fast_precision(),
    )
    return replace(cfg, **overrides)


#: name → Option(title, help, builder(**field overrides) → TrainConfig).
PRESETS = Registry("training preset", [
    Option("default", "Default settings",
           "The workbench's standard settings: every field at its default.", _default),
    Option("fast", "Fast (about 10 minutes)",
           "A short recipe for two CPU cores: 80-pixel images, a large batch with warm-up and cosine decay, "
           "light augmentation, the last epochs averaged, bfloat16 where the CPU has it. Measured on 2 CPU cores: "
           "8.4 to 9.6 minutes to a saved model on a quiet machine (longer while other work shares the cores) and "
           "96.7 % of held-out test images right (98.0 % of validation images), about what the default recipe "
           "reaches in over an hour. Its heat maps point at the tumour less often: their strongest point falls in "
           "the tumour's box on 63 % of boxed test slices, against 72 % for the default recipe (bench section 8).",
           _fast),
])


#: The Train page's "Recipe" choice: its own settings, or a preset (the all-defaults one is the page's own).
RECIPE_CHOICES: dict[str, str] = {"custom": "The settings above",
                                  **{k: o.title for k, o in PRESETS.items() if k != "default"}}
RECIPE_HELP = " ".join(f"{o.title}: {o.help}" for k, o in PRESETS.items() if k in RECIPE_CHOICES)


def preset_config(name: str, **overrides: Any) -> TrainConfig:
    """The TrainConfig of preset ``name`` with ``overrides`` (TrainConfig fields) applied.

    Raises:
        WorkbenchError: unknown preset (the message lists the presets), or an override out of range.
    """
    return PRESETS.check(name, "--preset").build(**overrides)

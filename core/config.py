"""Settings shared by every stage, as frozen dataclasses: how data is split and augmented.

The training run's own settings (``TrainConfig``) live in :mod:`core.training.config`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, TypeVar

from core.options import bounded, check_bounds

T = TypeVar("T")


def from_dict_lenient(cls: type[T], data: dict[str, Any] | None, nested: dict[str, type] | None = None) -> T:
    """Build a dataclass from a dict, ignoring unknown keys (older/newer cards stay readable).

    ``nested`` maps a field name to the dataclass its dict value is built into.
    """
    data = dict(data or {})
    nested = nested or {}
    kwargs = {}
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        if f.name not in data:
            continue
        value = data[f.name]
        sub = nested.get(f.name)
        kwargs[f.name] = from_dict_lenient(sub, value) if sub and isinstance(value, dict) else value
    return cls(**kwargs)


@dataclass(frozen=True)
class DataConfig:
    """How a dataset is split when it has no split of its own."""

    # share of images held out for validation (early stopping)
    val_fraction: float = bounded(0.15, 0, 0.5, "validation fraction", hi_open=True)
    # share held out for the final, untouched test
    test_fraction: float = bounded(0.15, 0, 0.5, "test fraction", hi_open=True)
    # the same seed always gives the same split
    split_seed: int = bounded(42, 0, 2**31 - 1, "split seed")
    # max Hamming distance (of 256 bits) between near-duplicate pHashes
    near_dup_threshold: int = bounded(20, 0, 64, "near-duplicate threshold", unit=" bits")

    def __post_init__(self) -> None:
        check_bounds(self)

    to_dict = dataclasses.asdict

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> DataConfig:
        return from_dict_lenient(cls, data)


@dataclass(frozen=True)
class AugmentConfig:
    """Random training-time transforms; the preview page and the trainer run the same code."""

    # max absolute rotation, degrees
    rotation_deg: float = bounded(0.0, 0, 180, "Rotation (± degrees)", step=1.0)
    # max relative zoom in/out (0.1 = ±10 %)
    zoom: float = bounded(0.0, 0, 0.9, "Zoom (± fraction)", step=0.01)
    # max shift as a fraction of the image side
    translate: float = bounded(0.0, 0, 0.5, "Shift (± fraction of the side)", step=0.01)
    horizontal_flip: bool = False  # left-right flip: brains are roughly symmetric, so this is safe
    vertical_flip: bool = False  # upside-down: anatomically implausible for axial slices
    # max additive change, fraction of full range
    brightness: float = bounded(0.0, 0, 1, "Brightness (± fraction of the range)", step=0.01)
    # max multiplicative change around the image mean (0.2 = ×0.8..1.2)
    contrast: float = bounded(0.0, 0, 0.9, "Contrast (± fraction)", step=0.01)
    # max Gaussian blur sigma in pixels (each image draws its own in 0..blur)
    blur: float = bounded(0.0, 0, 3, "Blur (max σ, pixels)", step=0.1)
    # max Rician noise sigma, fraction of full range (each image draws its own)
    noise: float = bounded(0.0, 0, 0.2, "Noise (max σ, fraction of the range)", step=0.01)
    # max |log gamma| of a random contrast curve (0.4 = gamma 0.67..1.49)
    gamma: float = bounded(0.0, 0, 1, "Contrast curve (max |log γ|)", step=0.05)
    # max resolution loss: each image is scaled to 1-downsample..1 and back
    downsample: float = bounded(0.0, 0, 0.75, "Resolution loss (max fraction)", step=0.05)

    def __post_init__(self) -> None:
        check_bounds(self)

    @property
    def is_identity(self) -> bool:
        """True when no transform is enabled."""
        return self == AugmentConfig()

    to_dict = dataclasses.asdict

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> AugmentConfig:
        return from_dict_lenient(cls, data)


AUGMENT_PRESETS: dict[str, AugmentConfig] = {
    "none": AugmentConfig(),
    "light": AugmentConfig(rotation_deg=5, zoom=0.05, translate=0.03, horizontal_flip=True),
    "standard": AugmentConfig(
        rotation_deg=10, zoom=0.1, translate=0.05, horizontal_flip=True, brightness=0.05, contrast=0.1
    ),
    # Standard plus the acquisition differences the robustness stress test found the model most
    # sensitive to (blur and noise stand in for other scanners' resolution and field strength).
    "robust": AugmentConfig(
        rotation_deg=10, zoom=0.1, translate=0.05, horizontal_flip=True, brightness=0.05, contrast=0.1, blur=1.0,
        noise=0.03
    ),
    # For other hospitals' scans (issue 12): the framing, contrast-curve and acquisition
    # differences between sources, drawn wider than the stress test's conditions so that
    # they sit inside the training distribution.
    "generalise": AugmentConfig(
        rotation_deg=15, zoom=0.15, translate=0.06, horizontal_flip=True, brightness=0.05, contrast=0.15,
        blur=1.2, noise=0.04, gamma=0.4, downsample=0.6
    ),
    "strong": AugmentConfig(
        rotation_deg=20, zoom=0.2, translate=0.1, horizontal_flip=True, brightness=0.1, contrast=0.2
    ),
}

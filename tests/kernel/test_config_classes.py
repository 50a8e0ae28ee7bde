"""core.config, core.classes and core.paths: validation, round-trips, class names, folders."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import pytest

from core import paths
from core.classes import CANONICAL_CLASSES, DISPLAY_NAMES, canonical_class, display_name, map_class_folders
from core.config import AUGMENT_PRESETS, AugmentConfig, DataConfig
from core.errors import WorkbenchError
from core.training.config import FineTuneConfig, TrainConfig

# ---------------------------------------------------------------------------- config validation


@pytest.mark.parametrize(
    "kwargs",
    [
        {"val_fraction": 0.5},
        {"val_fraction": -0.1},
        {"test_fraction": 0.7},
        {"near_dup_threshold": -1},
        {"near_dup_threshold": 65},
    ],
)
def test_invalid_data_config(kwargs: dict) -> None:
    with pytest.raises(WorkbenchError) as info:
        DataConfig(**kwargs)
    assert info.value.source == "DataConfig"


@pytest.mark.parametrize(
    ("field", "bad"),
    [
        ("rotation_deg", -1),
        ("rotation_deg", 181),
        ("zoom", 0.95),
        ("zoom", -0.1),
        ("translate", 0.6),
        ("brightness", 1.5),
        ("contrast", 0.91),
        ("contrast", -0.01),
    ],
)
def test_invalid_augment_config_names_the_field(field: str, bad: float) -> None:
    with pytest.raises(WorkbenchError, match=field) as info:
        AugmentConfig(**{field: bad})
    assert info.value.source == "AugmentConfig"
    assert str(bad) in info.value.reason


@pytest.mark.parametrize(
    "kwargs",
    [
        {"image_size": 16},
        {"image_size": 1024},
        {"epochs": 0},
        {"batch_size": 0},
        {"learning_rate": 0},
        {"learning_rate": 1.0},
        {"optimizer": "rmsprop"},
        {"lr_schedule": "step"},
        {"weights": "random"},
        {"validate_on": "train"},
        {"strategy": "tpu"},
    ],
)
def test_invalid_train_config(kwargs: dict) -> None:
    with pytest.raises(WorkbenchError) as info:
        TrainConfig(**kwargs)
    assert info.value.source == "TrainConfig"
    assert info.value.reason


def test_configs_are_frozen() -> None:
    cfg = TrainConfig()
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.epochs = 3  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.augment.zoom = 0.5  # type: ignore[misc]


def test_replace_validates_too() -> None:
    assert TrainConfig().replace(epochs=3).epochs == 3
    with pytest.raises(WorkbenchError):
        TrainConfig().replace(image_size=8)


# ---------------------------------------------------------------------------- round-trips


def _custom_train_config() -> TrainConfig:
    return TrainConfig(
        arch="custom_cnn",
        image_size=96,
        epochs=4,
        learning_rate=1e-3,
        optimizer="sgd",
        augment=AugmentConfig(rotation_deg=7, zoom=0.05, vertical_flip=True, contrast=0.2),
        finetune=FineTuneConfig(epochs=2, unfreeze_layers=5, lr_factor=0.5),
        seed=9,
        max_train_batches=3,
    )


def test_train_config_round_trips_with_nested_configs() -> None:
    cfg = _custom_train_config()
    data = cfg.to_dict()
    assert isinstance(data["augment"], dict) and isinstance(data["finetune"], dict)
    again = TrainConfig.from_dict(data)
    assert again == cfg
    assert isinstance(again.augment, AugmentConfig) and isinstance(again.finetune, FineTuneConfig)
    assert TrainConfig.from_dict(json.loads(json.dumps(data))) == cfg  # as stored in a model card


def test_from_dict_ignores_unknown_keys_and_fills_defaults() -> None:
    cfg = TrainConfig.from_dict({"epochs": 2, "from_the_future": True, "augment": {"zoom": 0.1, "new": 1}})
    assert cfg.epochs == 2 and cfg.augment == AugmentConfig(zoom=0.1)
    assert cfg.batch_size == TrainConfig().batch_size
    assert TrainConfig.from_dict(None) == TrainConfig()
    assert DataConfig.from_dict({"split_seed": 3}) == DataConfig(split_seed=3)
    assert AugmentConfig.from_dict(AUGMENT_PRESETS["strong"].to_dict()) == AUGMENT_PRESETS["strong"]


def test_from_dict_validates() -> None:
    with pytest.raises(WorkbenchError, match="rotation_deg"):
        TrainConfig.from_dict({"augment": {"rotation_deg": 500}})
    with pytest.raises(WorkbenchError):
        DataConfig.from_dict({"val_fraction": 0.9})


def test_from_dict_does_not_modify_its_input() -> None:
    data = _custom_train_config().to_dict()
    before = json.dumps(data, sort_keys=True)
    TrainConfig.from_dict(data)
    assert json.dumps(data, sort_keys=True) == before


def test_default_train_config_uses_the_standard_preset() -> None:
    assert TrainConfig().augment == AUGMENT_PRESETS["standard"]
    assert not AUGMENT_PRESETS["standard"].is_identity


# ---------------------------------------------------------------------------- class names


def test_canonical_classes_are_alphabetical_and_displayable() -> None:
    assert list(CANONICAL_CLASSES) == sorted(CANONICAL_CLASSES)  # the model's output order
    assert set(DISPLAY_NAMES) == set(CANONICAL_CLASSES)
    assert display_name("notumor") == "No tumour"
    assert display_name("other") == "other"


@pytest.mark.parametrize(
    ("folder", "canon"),
    [
        ("glioma", "glioma"),
        ("glioma_tumor", "glioma"),
        ("Glioma Tumour", "glioma"),
        ("meningioma-tumor", "meningioma"),
        ("no_tumor", "notumor"),
        ("NoTumor", "notumor"),
        (" normal ", "notumor"),
        ("PITUITARY_TUMOR", "pituitary"),
        ("pituitary adenoma", "pituitary"),
        ("astrocytoma", None),
        ("", None),
        ("tumor", None),
    ],
)
def test_canonical_class(folder: str, canon: str | None) -> None:
    assert canonical_class(folder) == canon


def test_map_class_folders() -> None:
    mapping = map_class_folders(["no_tumor", "Glioma"], "here")
    assert mapping == {"Glioma": "glioma", "no_tumor": "notumor"}
    with pytest.raises(WorkbenchError, match="unknown class folder") as info:
        map_class_folders(["glioma", "other"], "here")
    assert info.value.source == "here"
    with pytest.raises(WorkbenchError, match="both mean class 'notumor'"):
        map_class_folders(["normal", "no_tumor"], "here")


# ---------------------------------------------------------------------------- folders


def test_tests_use_isolated_cache_and_models_folders(isolated_workbench_dirs: dict) -> None:
    assert paths.cache_dir() == isolated_workbench_dirs["cache"]
    assert paths.models_dir() == isolated_workbench_dirs["models"]
    assert paths.PROJECT_ROOT / "models" != paths.models_dir()
    assert paths.default_data_dir() is None


def test_data_roots_refuse_folders_outside(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    allowed, other = tmp_path / "allowed", tmp_path / "other"
    (allowed / "set").mkdir(parents=True)
    other.mkdir()
    monkeypatch.setenv("WORKBENCH_DATA_ROOTS", os.pathsep.join([str(allowed), str(tmp_path / "second")]))
    assert paths.check_under_data_roots(allowed / "set") == (allowed / "set").resolve()
    assert paths.check_under_data_roots(allowed) == allowed.resolve()
    for outside in (other, allowed / ".." / "other", tmp_path / "allowed-but-not-really"):
        with pytest.raises(WorkbenchError, match="outside the allowed data folders"):
            paths.check_under_data_roots(outside)


def test_data_roots_default_to_shared_data_and_the_data_dir(tmp_path: Path, monkeypatch) -> None:
    assert paths.data_roots() == [(paths.PROJECT_ROOT.parent / "shared" / "data").resolve()]
    monkeypatch.setenv("WORKBENCH_DATA_DIR", str(tmp_path))
    assert tmp_path.resolve() in paths.data_roots()
    assert paths.default_data_dir() == tmp_path

"""``TrainConfig.from_card``: the typed view of a card's ``train_config`` (a mapping in the models layer)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from core.errors import WorkbenchError
from core.models.card import ModelCard
from core.models.run import Run
from core.training.config import TrainConfig
from core.training.train_feedback import finished_summary

DEFAULT_CARD = Path(__file__).resolve().parents[2] / "models" / "20261201-135406-custom_cnn-a305" / "card.json"


def test_the_default_card_gives_the_config_it_was_trained_with() -> None:
    data = json.loads(DEFAULT_CARD.read_text())
    cfg = TrainConfig.from_card(ModelCard.from_json(data))
    assert cfg.epochs == 45 and cfg.augment.rotation_deg == 15 and cfg.tta == "hflip"
    assert cfg.to_dict() == {**TrainConfig().to_dict(), **data["train_config"],
                             "augment": cfg.augment.to_dict(), "finetune": cfg.finetune.to_dict()}


def test_overrides_apply_before_the_checks() -> None:
    card = ModelCard(train_config={**TrainConfig().to_dict(), "strategy": "no-such-strategy", "epochs": 3})
    with pytest.raises(WorkbenchError):
        TrainConfig.from_card(card)
    assert TrainConfig.from_card(card, strategy="default").epochs == 3


def test_the_finished_message_reads_the_typed_results() -> None:
    card = ModelCard(class_names=("a", "b"), image_size=32, train_config=TrainConfig(epochs=7).to_dict(),
                     results={"val_accuracy": 0.875, "val_macro_f1": 0.8, "val_ece": 0.05},
                     timings={"train_seconds": 12.0})
    message, _ = finished_summary(Run("r1", Path("/nowhere/r1"), card), epochs_run=7)
    assert message.startswith("Finished: validation accuracy 87.5% (macro-F1 0.800, ECE 0.050)")

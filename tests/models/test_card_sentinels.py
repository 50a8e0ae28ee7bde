"""Ensemble cards may list sentinels (models that only warn); single cards may not, and old cards stay as they were."""

from __future__ import annotations

import pytest

from core.errors import WorkbenchError
from core.models.card import ModelCard
from core.models.card_validation import validate_card

SHA = "0" * 64


def _ensemble(**extra) -> dict:
    return {"run_id": "e", "arch": "ensemble", "class_names": ["a", "b"], "image_size": 32, "kind": "ensemble",
            "members": [{"run_id": "m1", "model_sha256": SHA}, {"run_id": "m2", "model_sha256": "1" * 64}], **extra}


def test_sentinels_round_trip_and_an_ensemble_without_them_is_written_as_before():
    plain = ModelCard.from_json(_ensemble())
    assert plain.sentinels == () and "sentinels" not in plain.to_json()
    card = ModelCard.from_json(_ensemble(sentinels=[{"run_id": "s", "model_sha256": "2" * 64}]))
    assert [dict(s) for s in card.sentinels] == [{"run_id": "s", "model_sha256": "2" * 64}]
    assert ModelCard.from_json(card.to_json()) == card


@pytest.mark.parametrize("data, words", [
    (_ensemble(sentinels=[{"run_id": "s"}]), "'sentinels[0]' must name a run"),
    (_ensemble(sentinels={"run_id": "s", "model_sha256": SHA}), "'sentinels' must be a list"),
    ({"run_id": "x", "arch": "custom_cnn", "class_names": ["a", "b"], "image_size": 32,
      "sentinels": [{"run_id": "s", "model_sha256": SHA}]}, "'sentinels' is only allowed on an ensemble"),
])
def test_malformed_sentinels_are_refused(data, words):
    assert any(words in p for p in validate_card(data)), validate_card(data)
    with pytest.raises(WorkbenchError, match="damaged"):
        ModelCard.from_json(data)

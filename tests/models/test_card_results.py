"""``card.results`` is a typed record (issue 22): attributes for readers, the same JSON written back.

- the committed default card is written back byte for byte as before;
- any results object (known keys, unknown keys, values that do not fit their field, any order)
  round-trips unchanged;
- an older card without a key reads the one default readers always used; a typo is an error.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.models.card import DEFAULT_TEMPERATURE, ModelCard
from core.models.results import RunResults

DEFAULT_CARD = Path(__file__).resolve().parents[2] / "models" / "20261201-135406-custom_cnn-a305" / "card.json"
MINIMAL = {"class_names": ["a", "b"], "image_size": 32}  # the smallest card validation accepts


def test_the_default_card_round_trips_byte_identically() -> None:
    text = DEFAULT_CARD.read_text()
    written = ModelCard.from_json(json.loads(text)).to_json()
    # The one key the card adds, as it did before results were typed: this card predates the class-order binding.
    assert written.pop("class_order_sha256") == "" and "class_order_sha256" not in json.loads(text)
    assert json.dumps(written, indent=2) == text  # core.atomic.write_json's format
    assert not ModelCard.from_json(json.loads(text)).results.extra  # every key it holds is a typed field


json_scalars = st.none() | st.booleans() | st.integers(-5, 5) | st.floats(allow_nan=False) | st.text(max_size=4)
json_values = st.recursive(json_scalars, lambda inner: st.lists(inner, max_size=3)
                           | st.dictionaries(st.text(max_size=4), inner, max_size=3), max_leaves=6)
known_keys = st.sampled_from([f.name for f in dataclasses.fields(RunResults)
                              if f.name not in ("extra", "written", "_verbatim")])
any_key = known_keys | st.text(max_size=8)


@settings(max_examples=200, deadline=None, database=None)
@given(st.dictionaries(any_key, json_values, max_size=8))
def test_any_results_object_round_trips_unchanged(results: dict) -> None:
    record = RunResults.from_json(results)
    assert json.dumps(record.to_json()) == json.dumps(results)  # same keys, order and values
    assert json.dumps(ModelCard(results=results).to_json()["results"]) == json.dumps(results)


def test_unknown_keys_are_kept_in_extra_and_written_back_in_place() -> None:
    results = {"temperature": 0.8, "from_a_newer_version": {"x": [1, 2]}, "tta": "hflip"}
    record = RunResults.from_json(results)
    assert dict(record.extra) == {"from_a_newer_version": {"x": [1, 2]}}
    assert list(record.to_json()) == ["temperature", "from_a_newer_version", "tta"]


def test_an_old_card_reads_the_defaults_and_writes_nothing_it_did_not_hold() -> None:
    card = ModelCard.from_json({**MINIMAL, "results": {"val_accuracy": 0.9}})
    assert card.results.temperature == card.temperature == DEFAULT_TEMPERATURE == 1.0
    assert (card.tta, card.validated_on, card.results.n_val, dict(card.trust)) == ("none", "val", None, {})
    assert "temperature" not in card.results.written
    assert card.to_json()["results"] == {"val_accuracy": 0.9}


def test_a_value_that_does_not_fit_reads_the_default_and_is_written_back_as_it_was() -> None:
    record = RunResults.from_json({"temperature": 2, "validated_on": None, "trust": "fitted"})
    assert record.temperature == 2.0 and isinstance(record.temperature, float)
    assert record.validated_on == "val" and dict(record.trust) == {}
    assert json.dumps(record.to_json()) == '{"temperature": 2, "validated_on": null, "trust": "fitted"}'
    # ... until it is changed: then the new value is written.
    assert record.replace(temperature=3.0).to_json()["temperature"] == 3.0


def test_keywords_write_only_what_differs_from_the_defaults() -> None:
    assert RunResults().to_json() == {}
    assert RunResults(temperature=0.5, ood={"energy_threshold": 1.0}).to_json() == {
        "temperature": 0.5, "ood": {"energy_threshold": 1.0}}


def test_a_typo_is_an_error_not_none_and_the_record_is_read_only() -> None:
    card = ModelCard(results={"temperature": 0.7})
    with pytest.raises(AttributeError):
        _ = card.results.temprature
    with pytest.raises(TypeError):
        _ = card.results["temperature"]  # not a mapping any more: one way to read it
    with pytest.raises(dataclasses.FrozenInstanceError):
        card.results.temperature = 2.0  # type: ignore[misc]
    with pytest.raises(TypeError):
        card.results.ood["energy_threshold"] = 1.0  # type: ignore[index]


def test_a_dict_given_to_the_card_is_converted_into_a_private_copy() -> None:
    results = {"temperature": 0.7, "ood": {"energy_threshold": 1.0}}
    card = ModelCard(results=results)
    results["temperature"], results["ood"]["energy_threshold"] = 9.0, 9.0
    assert isinstance(card.results, RunResults)
    assert card.temperature == 0.7 and card.results.ood["energy_threshold"] == 1.0
    assert isinstance(ModelCard(results=[1, 2]).results, RunResults)  # unvalidated junk: an empty record

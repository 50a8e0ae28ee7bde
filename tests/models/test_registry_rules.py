"""Registry rules under hostile cards and folders (issue 13, defects 2, 5, 6 and 9).

- A malformed card makes that one run unusable with a clear message; the others still list.
- The card must fit the model it describes (class count, input size, temperature, thresholds).
- A run folder that is a link never counts, so nothing outside the registry becomes the default.
- "Best" compares each card's own held-out figure, and prefers real-data runs over synthetic ones.

Fake runs (a few bytes for model.keras) need no TensorFlow; the model checks build an 8-px Keras model.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import pytest
from test_registry import fake_run

from core.errors import WorkbenchError
from core.models.card import ModelCard
from core.models.card_validation import validate_card
from core.models.runs import (
    CARD_FILE,
    MODEL_FILE,
    best_run,
    file_sha256,
    list_runs,
    load_model,
    resolve_run,
)


@pytest.fixture
def models(isolated_workbench_dirs: dict) -> Path:
    root = isolated_workbench_dirs["models"]
    root.mkdir(parents=True, exist_ok=True)
    return root


def held_out(macro_f1: float, eval_set: str = "card_test") -> dict:
    return {"eval_set": eval_set, "leakage_free": {"macro_f1": macro_f1}}


# --- defect 5: a malformed card ----------------------------------------------------------------------

#: name -> (changes to a good card, or the raw text of card.json; words the problem must contain)
BAD_CARDS: dict[str, tuple[dict | str, str]] = {
    "results-is-a-list": ({"results": [1, 2]}, "'results' must be an object"),
    "no-image-size": ({"image_size": None}, "'image_size'"),
    "image-size-text": ({"image_size": "128"}, "'image_size'"),
    "image-size-zero": ({"image_size": 0}, "'image_size'"),
    "class-names-numbers": ({"class_names": [1, 2]}, "'class_names'"),
    "one-class": ({"class_names": ["glioma"]}, "'class_names'"),
    "duplicate-classes": ({"class_names": ["glioma", "glioma"]}, "more than once"),
    "temperature-negative": ({"results": {"temperature": -0.5}}, "'results.temperature'"),
    "temperature-nan": ({"results": {"temperature": math.nan}}, "'results.temperature'"),
    "temperature-inf": ({"results": {"temperature": math.inf}}, "'results.temperature'"),
    "threshold-above-1": ({"results": {"low_confidence_threshold": 1.5}}, "'results.low_confidence_threshold'"),
    "ood-threshold-text": ({"results": {"ood": {"energy_threshold": "low"}}}, "'results.ood.energy_threshold'"),
    "unknown-tta": ({"results": {"tta": "rotate"}}, "'results.tta'"),
    "data-is-text": ({"data": "somewhere"}, "'data' must be an object"),
    "test-files-numbers": ({"data": {"test_files": [1, 2]}}, "'data.test_files'"),
    "synthetic-text": ({"data": {"synthetic": "no"}}, "'data.synthetic'"),
    "evaluation-f1-above-1": ({"evaluation": held_out(7.0)}, "'evaluation.leakage_free.macro_f1'"),
    "created-number": ({"created": 2026}, "'created' must be text"),
    "card-is-a-list": ("[1, 2]", "not a model card"),
    "torn-json": ('{"class_names": ["a", "b"], "imag', "cannot be read"),
    "not-utf8": ('{"class_names": ["\udcff"]}', "cannot be read"),
}


def bad_run(models: Path, name: str) -> Path:
    changes, _ = BAD_CARDS[name]
    folder = fake_run(models / name, created="2026-06-01")  # newer than the good run
    if isinstance(changes, str):
        (folder / CARD_FILE).write_bytes(changes.encode("utf-8", "surrogateescape"))
    else:
        card = json.loads((folder / CARD_FILE).read_text())
        card.update(changes)
        (folder / CARD_FILE).write_text(json.dumps({k: v for k, v in card.items() if v is not None}))
    return folder


@pytest.mark.parametrize("name", list(BAD_CARDS))
def test_malformed_card_makes_only_that_run_unusable(models, name):
    fake_run(models / "good", evaluation=held_out(0.5))
    bad_run(models, name)
    _, words = BAD_CARDS[name]
    assert [r.run_id for r in list_runs()] == ["good"]  # listing survives, the bad run is left out
    assert best_run(list_runs()).run_id == "good"
    listed = {r.run_id: r for r in list_runs(include_broken=True)}
    assert set(listed) == {"good", name} and listed["good"].usable
    bad = listed[name]
    assert not bad.usable and any(words in p for p in bad.problems), bad.problems
    assert "UNUSABLE" in bad.label()
    with pytest.raises(WorkbenchError, match="model card is damaged") as info:
        resolve_run(name)
    assert words in info.value.reason and info.value.source == name
    with pytest.raises(WorkbenchError, match="damaged"):
        load_model(bad)  # a Run built by hand is refused too, before Keras reads anything


def test_good_cards_have_no_problems():
    committed = next((Path(__file__).resolve().parents[2] / "models").glob("*/card.json"))
    assert validate_card(json.loads(committed.read_text())) == []
    assert validate_card({"class_names": ["a", "b"], "image_size": 8}) == []


# --- defect 9: links in the registry -------------------------------------------------------------------

def test_linked_run_folder_is_never_listed_resolved_or_best(models, tmp_path):
    fake_run(models / "good", evaluation=held_out(0.5))
    outside = fake_run(tmp_path / "elsewhere" / "planted", evaluation=held_out(1.0), created="2026-09-01")
    os.symlink(outside, models / "planted")
    os.symlink(models / "good", models / "alias")  # even a link to a real run is not a run
    assert [r.run_id for r in list_runs()] == ["good"]
    assert best_run(list_runs()).run_id == "good"
    for name in ("planted", "alias", str(models / "planted"), str(models / "planted" / MODEL_FILE)):
        with pytest.raises(WorkbenchError, match="link|only loaded from the registry"):
            resolve_run(name)
    broken = {r.run_id: r for r in list_runs(include_broken=True)}
    assert "link" in broken["planted"].problems[0] and broken["planted"].card == ModelCard()  # never read


def test_linked_card_or_model_file_is_refused(models, tmp_path):
    fake_run(models / "good")
    secret = tmp_path / "secret.json"
    secret.write_text(json.dumps({"class_names": ["a", "b"], "image_size": 32}))
    linked = fake_run(models / "linked-card")
    (linked / CARD_FILE).unlink()
    os.symlink(secret, linked / CARD_FILE)
    assert [r.run_id for r in list_runs()] == ["good"]
    with pytest.raises(WorkbenchError, match="link"):
        resolve_run("linked-card")


def test_registry_folder_given_through_a_link_still_works(models, tmp_path, monkeypatch):
    fake_run(models / "good")
    os.symlink(models, tmp_path / "models-link")
    monkeypatch.setenv("WORKBENCH_MODELS_DIR", str(tmp_path / "models-link"))
    assert [r.run_id for r in list_runs()] == ["good"]
    assert resolve_run("good").run_id == "good"


# --- defect 2: best compares like with like ---------------------------------------------------------------

def test_best_run_ignores_evaluations_on_other_folders(models):
    fake_run(models / "held-out", evaluation=held_out(0.8))
    fake_run(models / "other-folder", evaluation=held_out(1.0, eval_set="folder"), created="2026-05-01")
    assert best_run(list_runs()).run_id == "held-out"


def test_synthetic_run_is_never_the_default_while_a_real_run_exists(models):
    fake_run(models / "real", data={"synthetic": False}, evaluation=held_out(0.6))
    fake_run(models / "phantoms", data={"synthetic": True}, evaluation=held_out(1.0), created="2026-05-01")
    assert best_run(list_runs()).run_id == "real"
    fake_run(models / "real-unscored", data={"synthetic": False}, created="2026-04-01")
    assert best_run([r for r in list_runs() if r.run_id != "real"]).run_id == "real-unscored"
    only_synthetic = [r for r in list_runs() if r.synthetic]
    assert best_run(only_synthetic).run_id == "phantoms"  # with no real-data run it may be used


# --- defect 6: the card must fit the model ---------------------------------------------------------------

@pytest.fixture(scope="module")
def tiny_keras_file(tmp_path_factory) -> Path:
    from core.lazy_tensorflow import keras

    k = keras()
    inputs = k.Input((8, 8, 1))
    logits = k.layers.Dense(2, name="logits")(k.layers.Flatten()(inputs))
    path = tmp_path_factory.mktemp("keras") / MODEL_FILE
    k.Model(inputs, k.layers.Softmax()(logits)).save(path)
    return path


def keras_run(models: Path, model_file: Path, **card) -> Path:
    folder = models / "r"
    folder.mkdir()
    (folder / MODEL_FILE).write_bytes(model_file.read_bytes())
    base = {"status": "complete", "created": "2026-01-01", "class_names": ["glioma", "notumor"], "image_size": 8,
            "model_sha256": file_sha256(folder / MODEL_FILE), "results": {"temperature": 1.5}}
    (folder / CARD_FILE).write_text(json.dumps({**base, **card}))
    return folder


@pytest.mark.slow
@pytest.mark.parametrize("card, words", [
    ({"class_names": ["glioma", "meningioma", "notumor"]}, "3 classes but the model has 2 outputs"),
    ({"image_size": 16}, "16×16 pixels but the model takes input of shape (8, 8, 1)"),
    ({"input_channels": 3}, "3 channel(s) but the model takes 1"),
], ids=["class-count", "image-size", "channels"])
def test_card_that_does_not_fit_the_model_is_refused(models, tiny_keras_file, card, words):
    keras_run(models, tiny_keras_file, **card)
    (run,) = list_runs()  # well formed: only the model can tell
    with pytest.raises(WorkbenchError, match="does not fit the model") as info:
        load_model(run)
    assert words in info.value.reason and info.value.source.endswith(CARD_FILE)


@pytest.mark.slow
def test_card_that_fits_loads(models, tiny_keras_file):
    keras_run(models, tiny_keras_file)
    model = load_model(resolve_run("r"))
    assert model.outputs[0].shape[-1] == 2

"""Checks on a model card: its own shape and types, and its agreement with the model it describes.

A card is a JSON file on disk that anyone with access to the folder can edit. Nothing read from
it is trusted: :func:`validate_card` lists what is wrong with it (an empty list means usable),
and :func:`check_card_against_model` compares it with the loaded network, so an edited class
list, image size or temperature is refused instead of silently giving wrong labels.
"""

from __future__ import annotations

import math
from typing import Any

MIN_IMAGE_SIZE, MAX_IMAGE_SIZE = 8, 2048
MAX_TEMPERATURE = 100.0

#: Sections that must be JSON objects when present.
OBJECT_FIELDS = ("results", "data", "evaluation", "evaluations", "timings", "train_config", "preprocessing",
                 "versions")
#: Fields that must be text when present.
TEXT_FIELDS = ("run_id", "status", "created", "arch", "arch_title", "model_sha256", "class_order_sha256", "model_file",
               "weights")
#: Fields that must be whole numbers >= 0 when present.
COUNT_FIELDS = ("model_bytes", "params", "input_channels", "card_version")
#: results.* that are shares between 0 and 1.
SHARE_RESULTS = ("val_accuracy", "val_macro_f1", "val_ece", "val_ece_raw", "low_confidence_threshold")
#: evaluation summaries' shares between 0 and 1.
SHARE_METRICS = ("accuracy", "balanced_accuracy", "macro_f1", "weighted_f1", "ece", "macro_roc_auc")


def finite_number(value: Any) -> bool:
    """A real, finite number (a bool is not one)."""
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _text_list(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


def _type_name(value: Any) -> str:
    return {list: "a list", str: "text", bool: "true/false", type(None): "null"}.get(type(value), "a number")


def validate_card(card: Any) -> list[str]:
    """What is wrong with a model card, in plain words; an empty list means it can be used."""
    if not isinstance(card, dict):
        return [f"card.json holds {_type_name(card)}, not a model card (a JSON object)"]
    problems = _class_and_size_problems(card)
    for key in OBJECT_FIELDS:
        if card.get(key) is not None and not isinstance(card[key], dict):
            problems.append(f"'{key}' must be an object, not {_type_name(card[key])}")
    for key in TEXT_FIELDS:
        if card.get(key) is not None and not isinstance(card[key], str):
            problems.append(f"'{key}' must be text, not {_type_name(card[key])}")
    for key in COUNT_FIELDS:
        if card.get(key) is not None and not _count(card[key]):
            problems.append(f"'{key}' must be a whole number of at least 0")
    problems += _results_problems(_section(card, "results"))
    problems += _data_problems(_section(card, "data"))
    problems += _evaluation_problems("evaluation", _section(card, "evaluation"))
    for key, summary in _section(card, "evaluations").items():
        if not isinstance(summary, dict):
            problems.append(f"'evaluations.{key}' must be an object")
        else:
            problems += _evaluation_problems(f"evaluations.{key}", summary)
    pre = _section(card, "preprocessing")
    if pre.get("id") is not None and not isinstance(pre["id"], str):
        problems.append("'preprocessing.id' must be the name of a preprocessing recipe")
    problems += _ensemble_problems(card)
    timings = _section(card, "timings")
    if timings.get("train_seconds") is not None and not finite_number(timings["train_seconds"]):
        problems.append("'timings.train_seconds' must be a number")
    return problems


def _ensemble_problems(card: dict[str, Any]) -> list[str]:
    """An ensemble card must list at least two members, each with a run id and a model checksum."""
    kind, members, sentinels = card.get("kind", "single"), card.get("members"), card.get("sentinels")
    if kind not in ("single", "ensemble"):
        return [f"'kind' must be 'single' or 'ensemble' (it is {kind!r})"]
    if kind == "single":
        return [f"'{key}' is only allowed on an ensemble's card"
                for key, value in (("members", members), ("sentinels", sentinels)) if value not in (None, [])]
    if not isinstance(members, list) or len(members) < 2:
        return ["an ensemble's card must list at least two 'members'"]
    if sentinels is not None and not isinstance(sentinels, list):
        return ["an ensemble's 'sentinels' must be a list"]
    problems = []
    for key, runs in (("members", members), ("sentinels", sentinels or [])):
        for i, m in enumerate(runs):
            if not (isinstance(m, dict) and isinstance(m.get("run_id"), str) and m["run_id"].strip()
                    and isinstance(m.get("model_sha256"), str) and len(m["model_sha256"]) == 64):
                problems.append(f"'{key}[{i}]' must name a run ('run_id') and its model checksum ('model_sha256')")
    return problems


def _section(card: dict[str, Any], key: str) -> dict[str, Any]:
    value = card.get(key)
    return value if isinstance(value, dict) else {}


def _class_and_size_problems(card: dict[str, Any]) -> list[str]:
    problems = []
    names = card.get("class_names")
    if not (isinstance(names, list) and len(names) >= 2 and all(isinstance(n, str) and n.strip() for n in names)):
        problems.append("'class_names' must be a list of at least two class names")
    elif len(set(names)) != len(names):
        problems.append("'class_names' names the same class more than once")
    size = card.get("image_size")
    if not (_count(size) and MIN_IMAGE_SIZE <= size <= MAX_IMAGE_SIZE):
        shown = "missing" if size is None else repr(size)
        problems.append(f"'image_size' must be a whole number of pixels from {MIN_IMAGE_SIZE} to {MAX_IMAGE_SIZE} "
                        f"(it is {shown})")
    return problems


def _results_problems(results: dict[str, Any]) -> list[str]:
    from core.data.tta import TTA_MODES

    problems = []
    t = results.get("temperature")
    if t is not None and not (finite_number(t) and 0 < t <= MAX_TEMPERATURE):
        problems.append(f"'results.temperature' must be a number above 0 and at most {MAX_TEMPERATURE:g} "
                        f"(it is {t!r})")
    for key in SHARE_RESULTS:
        value = results.get(key)
        if value is not None and not (finite_number(value) and 0 <= value <= 1):
            problems.append(f"'results.{key}' must be a number from 0 to 1 (it is {value!r})")
    if results.get("n_val") is not None and not _count(results["n_val"]):
        problems.append("'results.n_val' must be a whole number")
    if results.get("tta") is not None and results["tta"] not in TTA_MODES:
        problems.append(f"'results.tta' must be one of {', '.join(TTA_MODES)}")
    ood = results.get("ood")
    if ood is not None:
        if not isinstance(ood, dict):
            problems.append("'results.ood' must be an object")
        else:
            for key in ("mahalanobis_threshold", "energy_threshold"):
                if ood.get(key) is not None and not finite_number(ood[key]):
                    problems.append(f"'results.ood.{key}' must be a finite number")
            if finite_number(ood.get("mahalanobis_threshold")) and ood["mahalanobis_threshold"] < 0:
                problems.append("'results.ood.mahalanobis_threshold' cannot be negative (it is a distance)")
    return problems


def _data_problems(data: dict[str, Any]) -> list[str]:
    problems = []
    for key in ("val_files", "test_files", "train_hashes"):
        if data.get(key) is not None and not _text_list(data[key]):
            problems.append(f"'data.{key}' must be a list of text")
    for key in ("name", "root", "kind", "fingerprint", "split_mode"):
        if data.get(key) is not None and not isinstance(data[key], str):
            problems.append(f"'data.{key}' must be text")
    for key in ("data_config", "counts"):
        if data.get(key) is not None and not isinstance(data[key], dict):
            problems.append(f"'data.{key}' must be an object")
    if data.get("synthetic") is not None and not isinstance(data["synthetic"], bool):
        problems.append("'data.synthetic' must be true or false")
    return problems


def _evaluation_problems(where: str, summary: dict[str, Any]) -> list[str]:
    problems = []
    free = summary.get("leakage_free")
    if free is not None and not isinstance(free, dict):
        return [f"'{where}.leakage_free' must be an object"]
    for prefix, part in ((where, summary), (f"{where}.leakage_free", free or {})):
        for key in SHARE_METRICS:
            value = part.get(key)
            if value is not None and not (finite_number(value) and 0 <= value <= 1):
                problems.append(f"'{prefix}.{key}' must be a number from 0 to 1 (it is {value!r})")
    return problems


def check_card_against_model(card: dict[str, Any], model: Any) -> list[str]:
    """Disagreements between a (valid) card and the loaded Keras model; empty when they agree."""
    problems = []
    try:
        in_shape = tuple(model.inputs[0].shape)
        out_shape = tuple(model.outputs[0].shape)
    except (AttributeError, IndexError, TypeError):
        return ["the model has no single input and output to compare with its card"]
    names, size = card.get("class_names") or [], card.get("image_size")
    if out_shape[-1] != len(names):
        problems.append(f"the card names {len(names)} classes but the model has {out_shape[-1]} outputs")
    if len(in_shape) != 4 or in_shape[1:3] != (size, size):
        problems.append(f"the card says {size}×{size} pixels but the model takes input of shape {in_shape[1:]}")
    channels = card.get("input_channels", 1)
    if len(in_shape) == 4 and in_shape[3] != channels:
        problems.append(f"the card says {channels} channel(s) but the model takes {in_shape[3]}")
    return problems

"""The model card: a frozen, typed record of what a model is and how it must be fed.

Saved as ``card.json`` beside every model. Inference reads the class order, image size and
preprocessing from it; defaults for fields that older cards lack live here and nowhere else
(those of ``results`` in :mod:`core.models.results`).
The JSON is checked by :mod:`core.models.card_validation` before a card is built from it.
``results`` is a typed record (:class:`core.models.results.RunResults`); ``train_config`` stays a
read-only mapping because its typed form, ``core.training.config.TrainConfig``, lives in the
training layer above this one (read it with ``TrainConfig.from_card``).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from core.data.preprocess import WHOLE_FRAME_ID
from core.errors import WorkbenchError
from core.models.card_validation import validate_card
from core.models.results import DEFAULT_TEMPERATURE, RunResults
from core.models.results import plain as _plain

CARD_VERSION = 1  # bump when a field changes meaning; readers keep loading every older version
MODEL_FILE = "model.keras"

#: JSON sections kept as read-only mappings (their inner shape is checked by card_validation).
SECTIONS = ("versions", "train_config", "data", "evaluation", "evaluations", "timings")
__all__ = ["CARD_VERSION", "DEFAULT_TEMPERATURE", "MODEL_FILE", "ModelCard", "RunResults", "card_from_json_lenient"]


def _frozen(value: Any) -> Mapping[str, Any]:
    """A read-only view of a JSON object (a private copy, so the caller's dict can change freely)."""
    return MappingProxyType(json.loads(json.dumps(_plain(value)))) if isinstance(value, Mapping) else MappingProxyType({})


@dataclass(frozen=True)
class ModelCard:
    """What a saved model is. Build with :meth:`from_json` (checked) or the constructor (training)."""

    card_version: int = CARD_VERSION
    run_id: str = ""
    status: str = "complete"  # "complete", or "partial" for a run kept after a cancel
    created: str = ""  # ISO time the run was saved
    arch: str = ""
    arch_title: str = ""
    class_names: tuple[str, ...] = ()
    image_size: int = 0
    input_channels: int = 1
    preprocessing_id: str = WHOLE_FRAME_ID  # core.data.preprocess recipe; cards before it existed used the legacy one
    preprocessing_description: str = ""
    weights: str = ""  # where the starting weights came from, in words
    versions: Mapping[str, Any] = field(default_factory=dict)
    model_file: str = MODEL_FILE
    model_sha256: str = ""
    class_order_sha256: str = ""  # core.models.class_binding: class order bound to the model file ("" in older cards)
    model_bytes: int = 0
    params: int = 0
    train_config: Mapping[str, Any] = field(default_factory=dict)  # TrainConfig.to_dict()
    data: Mapping[str, Any] = field(default_factory=dict)  # training data: name, root, counts, val/test files...
    # validation metrics, temperature, thresholds; a JSON dict given here is converted
    results: RunResults = field(default_factory=RunResults)
    timings: Mapping[str, Any] = field(default_factory=dict)
    evaluation: Mapping[str, Any] = field(default_factory=dict)  # the held-out test result ({} until evaluated)
    evaluations: Mapping[str, Any] = field(default_factory=dict)  # every evaluation, keyed "set:fingerprint"
    extra: Mapping[str, Any] = field(default_factory=dict)  # keys a newer version wrote: kept, not interpreted
    kind: str = "single"  # "single": one network in model.keras; "ensemble": the runs listed in ``members``
    members: tuple[Mapping[str, Any], ...] = ()  # an ensemble's member runs: run_id, model_sha256, ... (in order)
    # an ensemble's sentinels: runs that never vote, only warn when their answer differs (same fields as members)
    sentinels: tuple[Mapping[str, Any], ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "class_names", tuple(self.class_names))
        object.__setattr__(self, "members", tuple(_frozen(m) for m in self.members))
        object.__setattr__(self, "sentinels", tuple(_frozen(m) for m in self.sentinels))
        for name in (*SECTIONS, "extra"):
            object.__setattr__(self, name, _frozen(getattr(self, name)))
        object.__setattr__(self, "results", RunResults.from_json(self.results))

    # --- JSON -------------------------------------------------------------------------------------

    @classmethod
    def from_json(cls, data: Any) -> ModelCard:
        """A card from parsed ``card.json``.

        Raises:
            WorkbenchError: the JSON is not a usable card (the message lists every problem).
        """
        problems = validate_card(data)
        if problems:
            raise WorkbenchError("the model card is damaged: " + "; ".join(problems), "card.json")
        known = {f.name for f in dataclasses.fields(cls)}
        pre = data.get("preprocessing") if isinstance(data.get("preprocessing"), dict) else {}
        kwargs = {k: v for k, v in data.items() if k in known and k not in ("extra", "preprocessing") and v is not None}
        extra = {k: v for k, v in data.items() if k not in known and k != "preprocessing"}
        return cls(**kwargs, preprocessing_id=str(pre.get("id") or WHOLE_FRAME_ID),
                   preprocessing_description=str(pre.get("description") or ""), extra=extra)

    def to_json(self) -> dict[str, Any]:
        """The JSON object written to ``card.json`` (unknown keys from a newer version kept)."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            if f.name in ("extra", "preprocessing_id", "preprocessing_description"):
                continue
            value = _plain(getattr(self, f.name))
            if f.name == "evaluation" and not value:
                continue  # "not evaluated yet" is the field's absence, as in every earlier card
            if f.name in ("kind", "members") and not self.is_ensemble:
                continue  # a single model's card is written exactly as before ensembles existed
            if f.name == "sentinels" and not value:
                continue  # an ensemble without sentinels is written exactly as before they existed
            out[f.name] = value
            if f.name == "input_channels":
                out["preprocessing"] = {"id": self.preprocessing_id, "description": self.preprocessing_description}
        out.update(_plain(self.extra))
        return out

    def replace(self, **changes: Any) -> ModelCard:
        """A copy with some fields changed (sections are replaced whole)."""
        return dataclasses.replace(self, **changes)

    # --- what readers ask ---------------------------------------------------------------------------

    @property
    def title(self) -> str:
        """The architecture's display name ("unknown" for a card that names none)."""
        return self.arch_title or self.arch or "unknown"

    @property
    def is_ensemble(self) -> bool:
        """True for an ensemble run: no network of its own, its members' averaged probabilities."""
        return self.kind == "ensemble"

    @property
    def complete(self) -> bool:
        return self.status == "complete"

    @property
    def synthetic(self) -> bool:
        """True when the model was trained on synthetic (demo) images."""
        return self.data.get("synthetic") is True

    @property
    def temperature(self) -> float:
        """Calibration temperature: probabilities are softmax(logits / T)."""
        return self.results.temperature

    @property
    def tta(self) -> str:
        """The test-time augmentation the calibration was fitted with ('none' for cards before it)."""
        return self.results.tta

    @property
    def validated_on(self) -> str:
        """The split that early-stopped and calibrated the run."""
        return self.results.validated_on

    @property
    def low_confidence_threshold(self) -> float | None:
        return self.results.low_confidence_threshold

    @property
    def trust(self) -> Mapping[str, Any]:
        """Fitted warning thresholds (core.inference.trust_fit); empty before they were fitted."""
        return self.results.trust

    @property
    def val_accuracy(self) -> float | None:
        return self.results.val_accuracy

    @property
    def train_seconds(self) -> float | None:
        value = self.timings.get("train_seconds")
        return float(value) if isinstance(value, int | float) else None

    @property
    def split_mode(self) -> str:
        return str(self.data.get("split_mode", ""))

    def held_out(self) -> Mapping[str, Any]:
        """The card's own held-out test result; {} when none (or when the slot holds another set's)."""
        ev = self.evaluation
        return ev if ev and ev.get("eval_set", "card_test") == "card_test" else {}

    def leakage_free_macro_f1(self) -> float | None:
        """Leakage-free macro-F1 on the card's own held-out split (None: not evaluated on it)."""
        free = self.held_out().get("leakage_free")
        value = free.get("macro_f1") if isinstance(free, Mapping) else None
        return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def card_from_json_lenient(data: Any) -> tuple[ModelCard, list[str]]:
    """(card, problems): an empty card and the problems when the JSON is not usable."""
    problems = validate_card(data)
    return (ModelCard(), problems) if problems else (ModelCard.from_json(data), [])

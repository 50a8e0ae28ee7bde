"""A model card's ``results`` section as a typed record: validation figures, calibration, fitted thresholds.

Writers (calibration, the trust and prediction-set fits, ensembles, site adaptation) build the
section as a JSON dict and hand it to the card, which converts it with :meth:`RunResults.from_json`;
readers use attributes (``card.results.temperature``). Defaults for keys that older cards lack live
here and nowhere else. The record writes back exactly the JSON it was read from: the keys keep
their order, keys this version does not know are kept in ``extra``, and a value that does not fit
its field's type (an integer temperature, a null) is written back as it was while readers see the
field's value.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from core.data.tta import TTA_MODES

DEFAULT_TEMPERATURE = 1.0  # cards from before calibration: probabilities as the network gives them

_EMPTY: Mapping[str, Any] = MappingProxyType({})
_SHARES = ("val_accuracy", "val_macro_f1", "val_ece_raw", "val_ece", "low_confidence_threshold")
_SECTIONS = ("ood", "averaging", "trust", "conformal", "disagreement")


def plain(value: Any) -> Any:
    """JSON-ready copy of mappings, tuples and records (MappingProxyType is not JSON serialisable)."""
    if isinstance(value, RunResults):
        return value.to_json()
    if isinstance(value, Mapping):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, tuple | list):
        return [plain(v) for v in value]
    return value


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _read(name: str, raw: Any) -> Any:
    """What readers see for the JSON value ``raw`` of field ``name`` (the default when it does not fit)."""
    if name == "temperature":
        return float(raw) if _number(raw) else DEFAULT_TEMPERATURE
    if name == "tta":
        return raw if raw in TTA_MODES else "none"
    if name == "validated_on":
        return raw if isinstance(raw, str) else "val"
    if name == "n_val":
        return raw if isinstance(raw, int) and not isinstance(raw, bool) else None
    if name in _SHARES:
        return float(raw) if _number(raw) else None
    if name in _SECTIONS:
        return MappingProxyType(dict(raw)) if isinstance(raw, Mapping) else _EMPTY
    raise AttributeError(name)


def _same(a: Any, b: Any) -> bool:
    return json.dumps(plain(a), sort_keys=True) == json.dumps(plain(b), sort_keys=True)


@dataclass(frozen=True)
class RunResults:
    """What validation said about a trained model, and what was fitted on it (``card.results``).

    Build with :meth:`from_json` (what the card does with a dict) or with keywords; a field left
    at its default is written only when the JSON it came from held it.
    """

    validated_on: str = "val"  # the split that early-stopped and calibrated the run
    tta: str = "none"  # test-time augmentation the calibration was fitted with (core.data.tta)
    val_accuracy: float | None = None
    val_macro_f1: float | None = None
    val_ece_raw: float | None = None  # expected calibration error before the temperature
    val_ece: float | None = None  # ... and after it
    temperature: float = DEFAULT_TEMPERATURE  # probabilities are softmax(logits / T)
    low_confidence_threshold: float | None = None
    n_val: int | None = None  # validation images the figures come from
    # Sections, read-only mappings ({} when the card has none):
    ood: Mapping[str, Any] = field(default_factory=dict)  # OOD thresholds (core.inference.ood)
    averaging: Mapping[str, Any] = field(default_factory=dict)  # last-epoch weight averaging (core.training.averaging)
    trust: Mapping[str, Any] = field(default_factory=dict)  # fitted warning thresholds (core.inference.trust_fit)
    conformal: Mapping[str, Any] = field(default_factory=dict)  # prediction sets (core.inference.conformal_fit)
    disagreement: Mapping[str, Any] = field(default_factory=dict)  # an ensemble's warning (core.inference.ensemble_fit)
    extra: Mapping[str, Any] = field(default_factory=dict)  # keys another version wrote: kept, not interpreted
    written: tuple[str, ...] = ()  # the keys of the JSON this was read from, in their order
    # JSON values that did not fit their field: written back as they were while the field is unchanged
    _verbatim: Mapping[str, Any] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        # Private read-only copies: a caller's dict may change later, and cards are shared between threads.
        for name in (*_SECTIONS, "extra", "_verbatim"):
            value = getattr(self, name)
            object.__setattr__(self, name, MappingProxyType(json.loads(json.dumps(plain(value))))
                               if isinstance(value, Mapping) else _EMPTY)
        object.__setattr__(self, "written", tuple(self.written))

    @classmethod
    def from_json(cls, data: Any) -> RunResults:
        """The record of a parsed ``results`` object (anything but a JSON object gives an empty record).

        Not checked here: :func:`core.models.card_validation.validate_card` checks a card's JSON.
        """
        if isinstance(data, RunResults):
            return data
        if not isinstance(data, Mapping):
            return cls()
        data = json.loads(json.dumps(plain(data)))  # a private copy, with JSON's types
        fields, extra, verbatim = {}, {}, {}
        for key, raw in data.items():
            if key not in _FIELDS:
                extra[key] = raw
                continue
            fields[key] = _read(key, raw)
            if not _same(fields[key], raw):
                verbatim[key] = raw
        return cls(**fields, extra=extra, written=tuple(data), _verbatim=verbatim)

    def to_json(self) -> dict[str, Any]:
        """The JSON object: exactly what :meth:`from_json` read, plus what was changed since."""
        out: dict[str, Any] = {}
        for key in self.written:
            if key in _FIELDS:
                out[key] = self._json_value(key)
            elif key in self.extra:
                out[key] = plain(self.extra[key])
        for name, default in _FIELDS.items():  # set by keywords, not read from JSON
            if name not in out and not _same(getattr(self, name), default):
                out[name] = plain(getattr(self, name))
        out.update({k: plain(v) for k, v in self.extra.items() if k not in out})
        return out

    def _json_value(self, name: str) -> Any:
        value = getattr(self, name)
        if name in self._verbatim and _same(_read(name, self._verbatim[name]), value):
            return plain(self._verbatim[name])  # unchanged since it was read: as it was written
        return plain(value)

    def replace(self, **changes: Any) -> RunResults:
        """A copy with some fields changed."""
        return dataclasses.replace(self, **changes)


#: Field name -> default, for the keys :class:`RunResults` interprets.
_FIELDS: dict[str, Any] = {f.name: _EMPTY if f.name in _SECTIONS else f.default for f in dataclasses.fields(RunResults)
                           if f.name not in ("extra", "written", "_verbatim")}

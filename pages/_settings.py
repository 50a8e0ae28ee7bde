"""Widgets for config fields: range, default and step come from the field's declared Bound.

A limit changes in one place (the config dataclass, see :func:`core.options.bounded`); the
Train and Augmentation Preview pages and the address-bar parsers follow it.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from core.options import bound_of


def default_of(cls: Any, name: str) -> Any:
    """The dataclass field's default value."""
    field = {f.name: f for f in dataclasses.fields(cls)}[name]
    return field.default


def number(container: Any, label: str, cls: Any, name: str, key: str, help: str, value: Any = None,
           **kw: Any) -> Any:
    """A number_input for ``cls.name``: min/max from its Bound, default from the field (or ``value``)."""
    b = bound_of(cls, name)
    lo, hi = b.widget_range()
    default = default_of(cls, name) if value is None else value
    kind = float if isinstance(default, float) or isinstance(b.step, float) else int
    step = kw.pop("step", b.step)
    return container.number_input(label, kind(lo), kind(hi), kind(default), **({"step": kind(step)} if step else {}),
                                  key=key, help=help, **kw)


def slider(container: Any, label: str, cls: Any, name: str, key: str, help: str, **kw: Any) -> Any:
    """A float slider for ``cls.name`` (min, max, default and step from the field)."""
    b = bound_of(cls, name)
    lo, hi = b.widget_range()
    if "value" not in kw and key is not None:
        kw["value"] = float(default_of(cls, name))
    return container.slider(label, float(lo), float(hi), step=b.step, key=key, help=help, **kw)


def url_parser(cls: Any, name: str, kind: type = int):
    """(kind, lo, hi) for pages/_shared.parse_number, from the field's widget range."""
    lo, hi = bound_of(cls, name).widget_range()
    return kind, lo, hi

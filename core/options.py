"""Declared choices and ranges: registries of named options, and bounds on number settings.

A choice (optimizer, schedule, weights source, test-time augmentation...) is one registry
entry with its key, title, help and builder; a number setting's range is one :class:`Bound` on
its config field. Config validation, page widgets and CLI checks all read these, so adding an
optimizer or changing a limit is one edit.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field, fields
from typing import Any, Generic, Protocol, TypeVar

from core.errors import WorkbenchError


@dataclass(frozen=True)
class Option:
    """One choice: ``key`` is stored in configs and cards; ``title`` and ``help`` are shown to people."""

    key: str
    title: str
    help: str
    build: Callable[..., Any] | None = None  # what the choice makes (an optimizer, callbacks...), if anything


class Choice(Protocol):
    """What every registry entry has: :class:`Option`, and the richer entries (architectures,
    preprocessing recipes, CAM methods, export formats) that carry more than one builder."""

    @property
    def key(self) -> str: ...

    @property
    def title(self) -> str: ...

    @property
    def help(self) -> str: ...


C = TypeVar("C", bound=Choice)


class Registry(Mapping[str, C], Generic[C]):
    """An ordered, read-only mapping of key → entry (an :class:`Option` or another :class:`Choice`);
    the first entry is listed first.

    Args:
        what: what the options are, in plain words ("optimizer"), for error messages.
    """

    def __init__(self, what: str, options: Iterable[C]) -> None:
        self.what = what
        self._options = {o.key: o for o in options}

    def __getitem__(self, key: str) -> C:
        return self._options[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._options)

    def __len__(self) -> int:
        return len(self._options)

    def check(self, key: Any, source: str | None = None) -> C:
        """The option for ``key``, or a WorkbenchError naming the valid keys."""
        if not isinstance(key, str) or key not in self._options:
            raise WorkbenchError(f"unknown {self.what} '{key}' (choose {', '.join(self._options)})",
                                 source or self.what)
        return self._options[key]

    @contextmanager
    def extended(self, entry: C) -> Iterator[C]:
        """Within the block, ``entry`` is registered (replacing one with its key); afterwards the
        registry is as before. For tests that add a tiny architecture or alter a checksum."""
        old = self._options.get(entry.key)
        self._options[entry.key] = entry
        try:
            yield entry
        finally:
            if old is None:
                del self._options[entry.key]
            else:
                self._options[entry.key] = old

    def title(self, key: str) -> str:
        """The display title of ``key`` (the key itself when unknown: old cards may name retired options)."""
        option = self._options.get(key)
        return option.title if option else key

    def help_text(self) -> str:
        """Every option's title and help, one line each (for CLI help and page tooltips)."""
        return " ".join(f"{o.key}: {o.help}" for o in self._options.values())


@dataclass(frozen=True)
class Bound:
    """The allowed range of a number setting, declared once on its config field (see :func:`bounded`).

    Config validation, page widgets and CLI checks read it. ``ui_lo``/``ui_hi`` narrow a widget
    to the useful part of a wide allowed range (the config still accepts the whole range).
    """

    lo: float
    hi: float = math.inf
    title: str = ""  # plain words for people: "image size"
    lo_open: bool = False  # True: lo itself is not allowed
    hi_open: bool = False
    zero: str = ""  # what 0 means, e.g. "off"
    unit: str = ""  # shown after the range: " pixels"
    ui_lo: float | None = None
    ui_hi: float | None = None
    step: float | None = None

    def contains(self, value: Any) -> bool:
        """True when ``value`` is a number in range (NaN and non-numbers never are)."""
        if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value):
            return False
        above = value > self.lo if self.lo_open else value >= self.lo
        below = value < self.hi if self.hi_open else value <= self.hi
        return above and below

    def words(self) -> str:
        """The range in words: "from 0 (off) to 1000", "above 0 and at most 4", "at least 1"."""
        lo = _number(self.lo) + (f" ({self.zero})" if self.zero and self.lo == 0 else "")
        if math.isinf(self.hi):
            return f"above {lo}" if self.lo_open else f"at least {lo}"
        hi = _number(self.hi)
        if self.lo_open:
            return f"above {lo} and {'below' if self.hi_open else 'at most'} {hi}"
        return f"from {lo} to {'below ' if self.hi_open else ''}{hi}"

    def widget_range(self) -> tuple[float, float]:
        """(min, max) for a number widget."""
        lo = self.ui_lo if self.ui_lo is not None else self.lo
        hi = self.ui_hi if self.ui_hi is not None else self.hi
        return lo, hi


def _number(value: float) -> str:
    """2147483647 as written, 0.5 as 0.5 (never 2.14748e+09)."""
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def bounded(default: Any, lo: float, hi: float = math.inf, title: str = "", **kw: Any) -> Any:
    """A dataclass field with a declared :class:`Bound` (``metadata['bound']``)."""
    return field(default=default, metadata={"bound": Bound(lo, hi, title, **kw)})


def bound_of(cls: Any, name: str) -> Bound:
    """The Bound declared on field ``name`` of dataclass ``cls``."""
    return {f.name: f for f in fields(cls)}[name].metadata["bound"]


def check_bounds(obj: Any) -> None:
    """Refuse any bounded field of a dataclass instance that is out of range (None passes: "no limit").

    Raises:
        WorkbenchError: naming the setting, its allowed range and the value given.
    """
    for f in fields(obj):
        b = f.metadata.get("bound")
        value = getattr(obj, f.name)
        if b is None or value is None or b.contains(value):
            continue
        raise WorkbenchError(f"{b.title or f.name} ('{f.name}') must be {b.words()}{b.unit}, got {value}",
                             type(obj).__name__)

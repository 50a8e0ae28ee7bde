"""Small registries of named choices: one entry gives a choice its key, title, help and builder.

Config validation, page widgets and CLI flags all read the same registry, so adding an
optimizer (or a schedule, a weights source, a test-time augmentation...) is one entry.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from core.errors import WorkbenchError


@dataclass(frozen=True)
class Option:
    """One choice: ``key`` is stored in configs and cards; ``title`` and ``help`` are shown to people."""

    key: str
    title: str
    help: str
    build: Callable[..., Any] | None = None  # what the choice makes (an optimizer, callbacks...), if anything


class Registry(Mapping[str, Option]):
    """An ordered, read-only mapping of key → :class:`Option`; the first entry is listed first.

    Args:
        what: what the options are, in plain words ("optimizer"), for error messages.
    """

    def __init__(self, what: str, options: Iterable[Option]) -> None:
        self.what = what
        self._options = {o.key: o for o in options}

    def __getitem__(self, key: str) -> Option:
        return self._options[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._options)

    def __len__(self) -> int:
        return len(self._options)

    def check(self, key: Any, source: str | None = None) -> Option:
        """The option for ``key``, or a WorkbenchError naming the valid keys."""
        if not isinstance(key, str) or key not in self._options:
            raise WorkbenchError(f"unknown {self.what} '{key}' (choose {', '.join(self._options)})",
                                 source or self.what)
        return self._options[key]

    def title(self, key: str) -> str:
        """The display title of ``key`` (the key itself when unknown: old cards may name retired options)."""
        option = self._options.get(key)
        return option.title if option else key

    def help_text(self) -> str:
        """Every option's title and help, one line each (for CLI help and page tooltips)."""
        return "; ".join(f"{o.key}: {o.help}" for o in self._options.values())

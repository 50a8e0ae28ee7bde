"""Sections of bench/RESULTS.md written by separate benchmarks, each between its own markers."""

from __future__ import annotations

from pathlib import Path


def write_section(section: str, path: Path, begin: str, end: str) -> None:
    """Replace the text between ``begin`` and ``end`` in ``path`` with ``section`` (or append it).

    ``section`` includes the markers, so the next run finds them again.
    """
    text = path.read_text() if path.exists() else ""
    if begin in text and end in text:
        text = text[:text.index(begin)] + section + text[text.index(end) + len(end):]
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    path.write_text(text)

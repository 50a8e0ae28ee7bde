"""Settings kept in the page address, so a refresh or a shared link restores them."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import streamlit as st


def restore_from_url(fields: dict[str, Callable[[str], Any]]) -> None:
    """Fill widget state from the page address on a session's first visit (after a refresh).

    Args:
        fields: widget key -> parser that returns the widget value or raises ValueError when
            the text is not a valid value for it (a hand-edited address is ignored, not fatal).
    """
    for key, parse in fields.items():
        if key not in st.session_state and key in st.query_params:
            try:
                st.session_state[key] = parse(st.query_params[key])
            except (ValueError, TypeError, KeyError):
                pass


def remember_in_url(values: dict[str, Any]) -> None:
    """Write widget values into the page address, so a refresh restores them."""
    for key, value in values.items():
        text = str(value)
        if st.query_params.get(key) != text:
            st.query_params[key] = text


def parse_choice(options: Iterable[Any]) -> Callable[[str], Any]:
    """A parser for restore_from_url that accepts only one of ``options`` (compared as text)."""
    by_text = {str(o): o for o in options}
    return lambda text: by_text[text]


def parse_number(kind: Callable[[str], Any], low: float, high: float) -> Callable[[str], Any]:
    """A parser for restore_from_url that accepts a number of ``kind`` within [low, high]."""
    def parse(text: str) -> Any:
        value = kind(text)
        if not low <= value <= high:
            raise ValueError(text)
        return value
    return parse

"""Text that users control (file and folder names), made safe where it is shown or exported.

- Spreadsheets run a CSV cell that starts with ``= + - @`` (or a tab or carriage return) as a
  formula: ``=HYPERLINK(...)`` in a file name becomes a live link. Such text cells get a leading
  apostrophe, the neutralisation OWASP recommends; numbers are left as numbers.
- Streamlit renders Markdown in ``st.markdown``, captions and image captions: a file name such as
  ``![x](https://host/x.png)`` would load an external image. :func:`escape_markdown` makes every
  ASCII punctuation character literal, so the name is shown exactly as it is.
"""

from __future__ import annotations

import re
import string
from typing import Any

import pandas as pd

#: First characters that make a spreadsheet treat a cell as a formula.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
_PUNCTUATION = re.compile("([" + re.escape(string.punctuation) + "])")


def neutralise_cell(value: Any) -> Any:
    """``value`` with a leading apostrophe when it is text a spreadsheet would run as a formula."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def neutralise_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """A copy of ``frame`` whose text cells are neutralised (numeric columns are unchanged)."""
    out = frame.copy()
    for column in out.columns:
        if not pd.api.types.is_numeric_dtype(out[column]) and not pd.api.types.is_bool_dtype(out[column]):
            out[column] = out[column].map(neutralise_cell)
    return out


def escape_markdown(text: Any) -> str:
    """``text`` shown literally by Markdown: punctuation escaped, line breaks and tabs as spaces."""
    flat = re.sub(r"[\r\n\t\v\f]+", " ", str(text))
    return _PUNCTUATION.sub(r"\\\1", flat)


def markdown_free_table(rows: dict[str, Any]) -> pd.DataFrame:
    """A one-column label -> text frame for ``st.table`` (which renders Markdown in every cell),
    with labels and values escaped: a dataset or run name in a model card is shown literally."""
    return pd.DataFrame({"": [escape_markdown(v) for v in rows.values()]},
                        index=[escape_markdown(k) for k in rows])


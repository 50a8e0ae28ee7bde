"""One colour per class across the app, and split colours that never reuse a class's colour (issue 24).

Before, red meant "test" in one chart and "No tumour" in the next: Vega's default palette hands
out colours in order of appearance. Every chart that colours by class or by split takes its scale
from here.
"""

from __future__ import annotations

import altair as alt

from core.classes import DISPLAY_NAMES, display_name

#: class -> colour (colour-blind-safe hues); other class names get greys in order.
CLASS_COLOURS: dict[str, str] = {"glioma": "#7b3294", "meningioma": "#e66101", "notumor": "#1a9641",
                                 "pituitary": "#0571b0"}
#: split -> shade of grey: splits are never confused with a class.
SPLIT_COLOURS: dict[str, str] = {"train": "#252525", "training": "#252525", "val": "#737373",
                                 "validation": "#737373", "test": "#bdbdbd", "all": "#525252"}
_SPARE = ["#8c510a", "#c51b7d", "#01665e", "#762a83"]


def class_colour(name: str, index: int = 0) -> str:
    """The colour of a class (canonical or display name)."""
    canonical = {v: k for k, v in DISPLAY_NAMES.items()}.get(name, name)
    return CLASS_COLOURS.get(canonical, _SPARE[index % len(_SPARE)])


def class_scale(names: list[str], labels: list[str] | None = None) -> alt.Scale:
    """A colour scale for ``labels`` (default: the display names of ``names``), coloured by class."""
    labels = labels if labels is not None else [display_name(n) for n in names]
    return alt.Scale(domain=labels, range=[class_colour(n, i) for i, n in enumerate(names)])


def split_scale(splits: list[str]) -> alt.Scale:
    """A grey scale for split names (train, val, test, validation, training)."""
    return alt.Scale(domain=splits, range=[SPLIT_COLOURS.get(s, "#969696") for s in splits])

"""Should a site use the adapted model? A verdict from the before/after table, with its uncertainty.

The table compares the parent and the adapted model on the site's held-back test part, often a few
dozen images. On a real other collection (bench section 24) adaptation with 40 labelled cases per
class showed "100 % → 100 %" on its 24 held-back images and "97.4 → 96.9 %" on the source, while
the adapted model was 1.9 points worse on 1,324 unseen images of that collection. A table of two
percentages invites "no harm done"; the verdict says what so few images can show.

The interval is Agresti and Caffo's for a difference of two proportions (one success and one failure
added to each side), which stays honest at 0 % and 100 %. It treats the two columns as independent
samples although they share images, so it is wider than a paired interval: the verdict errs toward
"cannot tell", never toward a gain that is not there.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

Z95 = 1.959964


@dataclass(frozen=True)
class Verdict:
    """``use``: "adapted" (a gain shown), "original" (shown worse) or "unclear"; ``text``: plain words."""

    use: str
    change: float | None  # adapted minus original accuracy on the site's test part
    interval: tuple[float, float] | None
    text: str

    def to_json(self) -> dict[str, Any]:
        return {"use": self.use, "change": self.change,
                "interval": list(self.interval) if self.interval else None, "text": self.text}


def difference_interval(p_before: float, p_after: float, n: int) -> tuple[float, float]:
    """95 % interval of (after − before) accuracy on ``n`` images each (Agresti–Caffo)."""
    a, b = (p_after * n + 1) / (n + 2), (p_before * n + 1) / (n + 2)
    half = Z95 * math.sqrt(a * (1 - a) / (n + 2) + b * (1 - b) / (n + 2))
    return (a - b - half, a - b + half)


def adaptation_verdict(table: dict[str, Any]) -> Verdict:
    """The verdict on an ``adapt`` result (its JSON: ``before``/``after`` with ``site``, ``site_n``,
    ``source``)."""
    before, after = table["before"], table["after"]
    n = int(after.get("site_n") or 0)
    source_note = ""
    if before.get("source") is not None and after.get("source") is not None:
        drop, n_source = before["source"] - after["source"], int(after.get("source_n") or 0)
        lost = round(drop * n_source)
        if lost > 0:  # any image lost is said: the guard's limit is on validation images, not these
            source_note = (f" It also lost {100 * drop:.1f} points on the original model's own {n_source} test "
                           f"images ({lost} {'image' if lost == 1 else 'images'}).")
    if not n or before.get("site") is None or after.get("site") is None:
        return Verdict("unclear", None, None, "The site had no held-back test images, so nothing shows whether "
                       "adaptation helps: keep the original model until labelled site images are tested." + source_note)
    change = after["site"] - before["site"]
    lo, hi = difference_interval(before["site"], after["site"], n)
    said = (f"On the site's {n} held-back test images the adapted model scored {100 * after['site']:.1f} % against "
            f"{100 * before['site']:.1f} % ({100 * change:+.1f} points; 95 % interval {100 * lo:+.1f} to "
            f"{100 * hi:+.1f}).")
    if lo > 0:
        return Verdict("adapted", change, (lo, hi), said + " A gain beyond chance: use the adapted model for this "
                       "site." + source_note)
    if hi < 0:
        return Verdict("original", change, (lo, hi), said + " Worse beyond chance: keep the original model."
                       + source_note)
    return Verdict("unclear", change, (lo, hi), said + f" {n} images cannot tell this change from chance, so they do "
                   "not show that adaptation helps: keep the original model, or adapt again with more labelled images "
                   "(a larger test part narrows the interval)." + source_note)

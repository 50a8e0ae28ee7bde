"""core.training.adapt_verdict: what a before/after table on a few site images can show (no model)."""

from __future__ import annotations

import pytest

from core.training.adapt_verdict import adaptation_verdict, difference_interval


def _table(before: float | None, after: float | None, n: int, source=(0.97, 0.97)) -> dict:
    return {"before": {"site": before, "source": source[0]},
            "after": {"site": after, "site_n": n, "source": source[1], "source_n": 858}}


@pytest.mark.parametrize("before,after,n", [(1.0, 1.0, 24), (0.0, 0.0, 24), (0.9, 0.95, 60), (0.5, 0.4, 400)])
def test_the_interval_holds_the_change_and_has_width_at_the_extremes(before, after, n):
    lo, hi = difference_interval(before, after, n)
    assert lo < after - before + 1e-9 and hi > after - before - 1e-9
    assert hi - lo > 0.05  # 24 images at 100 % and 100 % still leave real doubt
    wider = difference_interval(before, after, n // 4)
    assert wider[1] - wider[0] > hi - lo  # fewer images, less known


def test_the_real_sites_table_is_unclear_and_says_keep_the_original():
    # bench section 24: 40 cases per class, 24 held back, 100 % before and after; source 97.4 -> 96.9 %
    v = adaptation_verdict(_table(1.0, 1.0, 24, (0.974, 0.969)))
    assert v.use == "unclear" and v.change == 0.0
    assert "24 images cannot tell this change from chance" in v.text and "keep the original model" in v.text
    assert "It also lost 0.5 points on the original model's own 858 test images (4 images)" in v.text


def test_a_clear_gain_says_use_it_and_a_clear_loss_says_keep_the_original():
    gain = adaptation_verdict(_table(0.70, 0.90, 200))
    assert gain.use == "adapted" and gain.interval[0] > 0 and "use the adapted model" in gain.text
    assert "lost" not in gain.text  # the source did not move
    loss = adaptation_verdict(_table(0.90, 0.70, 200))
    assert loss.use == "original" and loss.interval[1] < 0 and "keep the original model" in loss.text
    assert adaptation_verdict(_table(0.90, 0.93, 100)).use == "unclear"  # +3 points on 100 images: chance


def test_no_held_back_images_is_unclear_and_the_json_is_plain():
    v = adaptation_verdict(_table(None, None, 0))
    assert v.use == "unclear" and v.interval is None and "no held-back test images" in v.text
    assert v.to_json() == {"use": "unclear", "change": None, "interval": None, "text": v.text}
    assert adaptation_verdict(_table(0.7, 0.9, 200)).to_json()["interval"][0] > 0

"""Issue 14, items 8 and 9: time left from measured steps only, and a plain verdict after training."""

from __future__ import annotations

import pytest

from core.training.train_feedback import chance_level, seconds_left, training_verdict


def test_no_estimate_before_two_measured_batches() -> None:
    assert seconds_left(0, 0.0, 100) is None  # only the first (tracing) batch is done
    assert seconds_left(1, 0.5, 100) is None
    assert seconds_left(2, 1.0, 100) == pytest.approx(50.0)


def test_estimate_ignores_tracing_time() -> None:
    # 35 s of tracing in the first batch would have given "13.8 min"; 0.5 s per measured step gives 40 s.
    assert seconds_left(4, 2.0, 80) == pytest.approx(40.0)


@pytest.mark.parametrize("k", [2, 3, 4, 10])
def test_chance_level_is_one_over_k(k: int) -> None:
    assert chance_level(k) == pytest.approx(1 / k)


def test_run_at_chance_says_it_learned_nothing() -> None:
    v = training_verdict(0.246, 0.099, 4, epochs_run=1, epochs_planned=1)
    assert v.level == "warning"
    assert "learned nothing useful" in v.headline and "25%" in v.headline
    assert "too few epochs" in v.advice and "Try" in v.advice


def test_long_run_at_chance_blames_something_else() -> None:
    v = training_verdict(0.30, 0.25, 4, epochs_run=30, epochs_planned=30)
    assert v.level == "warning" and "too few epochs" not in v.advice


def test_middling_and_good_runs() -> None:
    assert training_verdict(0.6, 0.55, 4, 10, 10).level == "info"
    good = training_verdict(0.97, 0.96, 4, 20, 20)
    assert good.level == "success" and "97%" in good.advice and "test" in good.advice

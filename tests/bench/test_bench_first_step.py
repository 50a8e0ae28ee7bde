"""bench.first_step: both ways of running the cosine schedule are timed and written as one section."""

from __future__ import annotations

import pytest

from bench import first_step

TINY = {"image_size": 32, "width": 0.25, "batch_size": 4, "precision": "float32"}


@pytest.mark.slow  # builds and traces six tiny networks
def test_both_ways_are_timed_and_the_section_is_replaced_not_repeated(tmp_path, monkeypatch):
    figures = first_step.measure("fast", 1, **TINY)
    assert set(figures["raw"]) == set(first_step.WAYS)
    for way in first_step.WAYS:
        first, = figures["raw"][way]["first"]
        later, = figures["raw"][way]["second"]
        assert first > 0 and later > 0
    assert (figures["image_size"], figures["batch_size"]) == (32, 4)
    out = tmp_path / "RESULTS.md"
    out.write_text("# Results\n\nkept\n")
    monkeypatch.setattr(first_step, "measure", lambda preset, tries: figures)
    assert first_step.main(["--tries", "1", "--out", str(out)]) == 0
    assert first_step.main(["--tries", "1", "--out", str(out)]) == 0
    text = out.read_text()
    assert text.count(first_step.BEGIN) == 1 and "kept" in text
    assert "| schedule in the optimizer |" in text and "| rate set by a callback |" in text and "×" in text


def test_fewer_than_one_try_is_refused(tmp_path, capsys):
    assert first_step.main(["--tries", "0", "--out", str(tmp_path / "R.md")]) == 2
    assert "--tries" in capsys.readouterr().err

"""bench.cancel writes its own section of RESULTS.md and python -m bench keeps it (no figure is judged)."""

from __future__ import annotations

from pathlib import Path

from bench.cancel import BEGIN, END, markdown, write_section

RESULT = {"tries": 1, "images": 10, "image_size": 32, "width": 0.25, "batch": 4,
          "latency": {"first batch": {"delay_s": 1.0, "median_s": 2.0, "worst_s": 3.0, "cancelled": 1, "tries": 1}},
          "time_to_first_progress": {"first_batch_s": {"median_s": 5.0, "worst_s": 6.0}}}


def test_section_is_replaced_not_repeated(tmp_path: Path) -> None:
    out = tmp_path / "RESULTS.md"
    out.write_text("# Benchmark results\n\n## 1. Training\n")
    write_section(markdown(RESULT), out, BEGIN, END)
    write_section(markdown(RESULT), out, BEGIN, END)
    text = out.read_text()
    assert text.count(BEGIN) == 1 and text.count(END) == 1 and text.startswith("# Benchmark results")
    assert "| first batch (+1.0 s) | 2.00 s | 3.00 s | 1 of 1 |" in text
    assert "the first finished batch (the bar moves) | 5.00 s | 6.00 s" in text


def test_full_benchmark_keeps_the_cancel_section(tmp_path: Path) -> None:
    import json

    from bench.run import write_markdown

    out = tmp_path / "RESULTS.md"
    write_section(markdown(RESULT), out, BEGIN, END)
    recorded = json.loads((Path(__file__).resolve().parents[2] / "bench" / "results.json").read_text())
    write_markdown(recorded, out)  # rewrites sections 1-5 from the committed figures
    text = out.read_text()
    assert "## 1. Training throughput" in text and text.count(BEGIN) == 1
    assert "| first batch (+1.0 s) | 2.00 s | 3.00 s | 1 of 1 |" in text

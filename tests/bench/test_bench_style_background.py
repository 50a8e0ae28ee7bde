"""bench.style_background: the background lift per style-mixing method, on phantom slices (no model)."""

from __future__ import annotations

from pathlib import Path

from conftest import phantom_head

from bench import style_background


def _tree(tmp_path: Path, image_writer) -> Path:
    """Training/<class>/*.jpg: loosely framed dim heads and tightly framed bright ones."""
    root = tmp_path / "data"
    for i in range(3):
        loose = phantom_head((200, 200), 50, 90, 30, seed=i)
        loose[:, :40] = loose[:, -40:] = 0  # much black around the head
        image_writer(root / "Training" / "glioma" / f"g{i}.png", loose)
        image_writer(root / "Training" / "notumor" / f"n{i}.png", phantom_head((120, 120), 120, 230, 60, seed=9 + i))
    for p in root.rglob("*.png"):  # the bench reads .jpg, as the Kaggle tree has
        p.rename(p.with_suffix(".jpg"))
    return root


def test_the_head_method_never_lifts_the_background_and_the_section_says_so(tmp_path, image_writer):
    root = _tree(tmp_path, image_writer)
    out = tmp_path / "RESULTS.md"
    assert style_background.main(["--data", str(root), "--pairs", "40", "--out", str(out)]) == 0
    figures = style_background.measure(sorted((root / "Training").glob("*/*.jpg")), 40, 0)
    assert figures["head-v1"]["lifted"] == 0 and figures["head-v1"]["p90_lift"] == 0.0
    assert figures["frame-v1"]["lifted"] > 0  # the pairs of a loose dim head with a tight bright one
    assert figures["head-v1"]["median_head_gap"] < figures["frame-v1"]["median_head_gap"]
    text = out.read_text()
    assert text.count(style_background.BEGIN) == 1 and "| `head-v1`: The head's intensities | 0 of 40 |" in text
    style_background.main(["--data", str(root), "--pairs", "40", "--out", str(out)])  # replaced, not repeated
    assert out.read_text().count(style_background.BEGIN) == 1


def test_no_slices_is_a_plain_refusal(tmp_path, capsys):
    assert style_background.main(["--data", str(tmp_path), "--out", str(tmp_path / "R.md")]) == 2
    assert "no training slices" in capsys.readouterr().err

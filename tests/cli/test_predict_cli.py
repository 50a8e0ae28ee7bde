"""``python -m core predict``: output keys, overlays, exit codes (0 all analysed, 2 any rejected)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from core.cli import main

pytestmark = pytest.mark.slow
KEYS = {"file", "label", "confidence", "probabilities", "warnings", "error", "overlay"}


@pytest.fixture
def good_files(demo_root: Path) -> list[str]:
    return [str(p) for p in sorted((demo_root / "Testing" / "glioma").glob("*.png"))[:2]]


def _json(capsys) -> list[dict]:
    return json.loads(capsys.readouterr().out)


def test_all_good_files_exit_0_with_json_and_overlays(tiny_registry, good_files, tmp_path, capsys):
    out_dir = tmp_path / "cams"
    code = main(["predict", *good_files, "--json", "--gradcam", str(out_dir), "--method", "gradcam++"])
    rows = _json(capsys)
    assert code == 0
    assert [r["file"] for r in rows] == good_files
    for row in rows:
        assert KEYS <= row.keys()
        assert row["error"] is None and row["label"] in tiny_registry.class_names
        assert sum(row["probabilities"].values()) == pytest.approx(1.0)
        assert row["confidence"] == pytest.approx(max(row["probabilities"].values()))
        png = Path(row["overlay"])
        assert png.parent == out_dir and "gradcampp" in png.name
        with Image.open(png) as img:
            assert img.mode == "RGB" and img.size == (128, 128)  # the demo slice's own size
    assert not list(out_dir.glob(".*"))  # no temporary files left behind


def test_a_rejected_file_gives_exit_2_and_the_rest_still_run(tiny_registry, good_files, tmp_path, capsys):
    text = tmp_path / "notes.jpg"
    text.write_text("not an image")
    files = [good_files[0], str(tmp_path / "missing.png"), str(text), str(tmp_path)]
    code = main(["predict", *files, "--json"])
    rows = _json(capsys)
    assert code == 2
    assert [r["file"] for r in rows] == files
    assert rows[0]["error"] is None and rows[0]["label"] and rows[0]["overlay"] is None
    assert "does not exist" in rows[1]["error"]
    assert "not an image" in rows[2]["error"]
    assert "folder" in rows[3]["error"]
    assert all(r["label"] is None for r in rows[1:])


def test_text_output(tiny_registry, good_files, tmp_path, capsys):
    code = main(["predict", good_files[0], str(tmp_path / "gone.png"), "--model", tiny_registry.run_id])
    out = capsys.readouterr().out
    assert code == 2
    assert tiny_registry.run_id in out and "not a diagnosis" in out
    assert f"{good_files[0]}: " in out and "%" in out
    assert "gone.png: error: the file does not exist" in out


def test_model_by_folder_path(tiny_registry, good_files, capsys):
    assert main(["predict", good_files[0], "--json", "--model", str(tiny_registry.path)]) == 0
    assert _json(capsys)[0]["label"] in tiny_registry.class_names


def test_unknown_model_and_empty_registry_exit_2(tiny_run, good_files, capsys):
    # The autouse fixture points WORKBENCH_MODELS_DIR at an empty folder.
    assert main(["predict", good_files[0]]) == 2
    assert "no trained model yet" in capsys.readouterr().err
    assert main(["predict", good_files[0], "--model", "no-such-run"]) == 2
    assert "no-such-run" in capsys.readouterr().err


def test_bad_settings_exit_2(tiny_registry, good_files, tmp_path, capsys):
    assert main(["predict", good_files[0], "--gradcam", str(tmp_path), "--target-class", "astro"]) == 2
    assert "unknown class" in capsys.readouterr().err
    assert main(["predict", good_files[0], "--gradcam", str(tmp_path), "--alpha", "1.5"]) == 2
    assert "alpha" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_target_class_is_explained(tiny_registry, good_files, tmp_path, capsys):
    code = main(["predict", good_files[0], "--json", "--gradcam", str(tmp_path), "--target-class", "notumor",
                 "--colormap", "inferno", "--alpha", "1.0"])
    row = _json(capsys)[0]
    assert code == 0 and row["overlay"].endswith("_layercam_notumor.png")  # the default method, then the class
    pixels = np.asarray(Image.open(row["overlay"]))
    assert pixels.shape[-1] == 3

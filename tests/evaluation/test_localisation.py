"""core.evaluation.localisation: pointing game and heat-in-box ratio, box files, and ``evaluate --boxes``."""

from __future__ import annotations

import dataclasses
import json
import shutil

import numpy as np
import pytest

from core.data.preprocess import Framing
from core.errors import WorkbenchError
from core.evaluation.localisation import BoxScore, read_boxes, score_heatmap, summarise


def _blob(h: int, w: int, cy: float, cx: float, sigma: float = 3.0) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w]
    return np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * sigma**2)).astype(np.float32)


def test_a_map_on_the_tumour_hits_and_a_map_elsewhere_misses():
    box = (0.4, 0.4, 0.6, 0.6)
    on = score_heatmap(_blob(100, 100, 50, 50), box)
    off = score_heatmap(_blob(100, 100, 10, 85), box)
    assert on.hit and not off.hit
    assert on.ratio > 10 > 1 > off.ratio


def test_uniform_map_scores_ratio_one_and_empty_map_is_nan():
    assert score_heatmap(np.ones((80, 80), np.float32), (0.25, 0.25, 0.75, 0.75)).ratio == pytest.approx(1.0)
    empty = score_heatmap(np.zeros((80, 80), np.float32), (0.25, 0.25, 0.75, 0.75))
    assert not empty.hit and np.isnan(empty.ratio)


def test_the_pointing_tolerance_is_a_tenth_of_the_image_side_half_on_each_edge():
    box = (0.40, 0.40, 0.50, 0.50)  # grown by 0.1 of the side: 0.35..0.55
    just_inside = _blob(200, 200, 90, 108.5, sigma=1.0)  # peak at x ≈ 0.545
    outside = _blob(200, 200, 90, 112, sigma=1.0)  # x ≈ 0.56
    assert score_heatmap(just_inside, box).hit
    assert not score_heatmap(outside, box).hit
    assert score_heatmap(outside, box, grow=0.4).hit
    assert not score_heatmap(just_inside, box, grow=0.0).hit


def test_summary_ignores_empty_maps_in_the_ratio_but_counts_them_as_misses():
    s = summarise([BoxScore(True, 4.0), BoxScore(False, float("nan")), BoxScore(True, 2.0)])
    assert s == {"pointing_game": pytest.approx(2 / 3), "heat_in_box_ratio": pytest.approx(3.0), "n_images": 3}
    assert summarise([]) == {"pointing_game": None, "heat_in_box_ratio": None, "n_images": 0}


def test_a_crop_framing_maps_heat_back_to_the_original_frame():
    # The model saw the right half of the image: its map's peak must land in the right half.
    framing = Framing(0.5, 0.0, 1.0, 1.0)
    heat = framing.place(_blob(32, 32, 16, 16), (64, 128))
    assert heat.shape == (64, 128) and heat[:, :64].max() == 0.0
    assert np.unravel_index(int(heat.argmax()), heat.shape)[1] > 64
    box = framing.box_to_input((0.5, 0.0, 0.75, 0.5))
    assert box == pytest.approx((0.0, 0.0, 0.5, 0.5))


@pytest.mark.parametrize("text, message", [
    ("name,x0,y0,x1,y1\na.png,0,0,1,1\n", "lacks the column"),
    ("file,class,x0,y0,x1,y1\na.png,glioma,0.5,0.5,0.4,0.6\n", "x0 < x1"),
    ("file,class,x0,y0,x1,y1\na.png,glioma,0.1,0.1,1.4,0.6\n", "normalised"),
    ("file,class,x0,y0,x1,y1\na.png,glioma,nan,0.1,0.4,0.6\n", "line 2"),
])
def test_bad_box_files_are_refused_with_a_reason(tmp_path, text, message):
    path = tmp_path / "boxes.csv"
    path.write_text(text)
    with pytest.raises(WorkbenchError, match=message):
        read_boxes(path)


def test_missing_box_file_is_a_clear_error(tmp_path):
    with pytest.raises(WorkbenchError, match="could not be read"):
        read_boxes(tmp_path / "nope.csv")


def test_box_paths_use_forward_slashes(tmp_path):
    path = tmp_path / "boxes.csv"
    path.write_text("file,class,x0,y0,x1,y1\nTraining\\glioma\\a.png,glioma,0.1,0.1,0.4,0.6\n")
    assert list(read_boxes(path).index) == ["Training/glioma/a.png"]


@pytest.mark.slow
def test_evaluate_cli_adds_a_localisation_block(tiny_run, isolated_workbench_dirs, capsys, tmp_path):
    from core.cli import main
    from core.models.runs import resolve_run

    shutil.copytree(tiny_run.path, isolated_workbench_dirs["models"] / tiny_run.run_id)
    run = resolve_run(tiny_run.run_id)
    files = run.card.data["test_files"][:6]
    boxes = tmp_path / "boxes.csv"
    boxes.write_text("file,class,x0,y0,x1,y1\n" + "".join(
        f"{f},{f.split('/')[-2]},0.3,0.3,0.7,0.7\n" for f in files) + "not/evaluated.png,glioma,0.1,0.1,0.2,0.2\n")
    assert main(["evaluate", "--model", run.run_id, "--boxes", str(boxes), "--json"]) == 0
    loc = json.loads(capsys.readouterr().out)["localisation"]
    assert {"pointing_game", "heat_in_box_ratio", "n_images"} <= set(loc)
    assert 1 <= loc["n_images"] <= 6  # only evaluated, leakage-free images that have a box
    assert 0.0 <= loc["pointing_game"] <= 1.0
    kept = resolve_run(run.run_id).card.evaluation["localisation"]  # beside the held-out accuracy, for the model box
    assert kept["n_images"] == loc["n_images"] and kept["pointing_game"] == loc["pointing_game"]
    assert main(["evaluate", "--model", run.run_id, "--boxes", str(boxes), "--cam", "layercam"]) == 0
    assert "pointing game" in capsys.readouterr().out


def test_validation_localisation_scores_the_cards_validation_slices_only(tiny_run, tmp_path):
    """A recipe can be chosen on it: it reads the validation files the card lists, never the test split."""
    from core.evaluation.localisation import validation_localisation

    val, test = tiny_run.card.data["val_files"][:5], tiny_run.card.data["test_files"][:5]
    boxes = tmp_path / "boxes.csv"
    boxes.write_text("file,class,x0,y0,x1,y1\n" + "".join(
        f"{f},{f.split('/')[-2]},0.3,0.3,0.7,0.7\n" for f in [*val, *test]))
    loc = validation_localisation(tiny_run, boxes, "layercam")
    assert loc["n_images"] == len(val)  # the five test boxes are not read
    assert 0.0 <= loc["pointing_game"] <= 1.0 and loc["heat_in_box_ratio"] > 0
    assert loc["method"] == "LayerCAM" and sum(c["n_images"] for c in loc["per_class"].values()) == len(val)


def test_validation_localisation_needs_validation_files(tiny_run, tmp_path):
    from core.evaluation.localisation import validation_localisation

    boxes = tmp_path / "boxes.csv"
    boxes.write_text("file,class,x0,y0,x1,y1\n")
    card = tiny_run.card.replace(data={**tiny_run.card.data, "val_files": []})
    with pytest.raises(WorkbenchError, match="no validation images"):
        validation_localisation(dataclasses.replace(tiny_run, card=card), boxes)

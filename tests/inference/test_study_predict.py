"""Whole-study prediction, its exports and ``python -m core predict STUDY`` with the tiny test model."""

from __future__ import annotations

import csv
import io
import json
import random
from pathlib import Path

import numpy as np
import pytest
from study_builders import FREE_TEXT, PATIENT, SECRET_ID, nifti_bytes, phantom_volume, series_files, zip_of

from core.cli import main
from core.data.study import open_study
from core.errors import WorkbenchError
from core.inference.study import STRIP, predict_study
from core.inference.study_rules import STUDY_RULES
from core.reports.study import slice_chart, slice_frame, study_csv, study_summary_pdf

pytestmark = pytest.mark.slow
N = 14
KEYS = {"study", "label", "probabilities", "prediction_set", "warnings", "flags", "used_slices", "skipped", "slices"}


@pytest.fixture(scope="module")
def vol() -> np.ndarray:
    return phantom_volume(N, label="glioma", size=48, blank_edges=2)


@pytest.fixture(scope="module")
def result(tiny_predictor, vol):
    return predict_study(tiny_predictor, open_study(series_files(vol)).pick(), source="series")


def test_study_answer_with_used_and_skipped_slices(result, tiny_predictor):
    assert result.ok and result.label in tiny_predictor.class_names
    assert sum(result.probabilities.values()) == pytest.approx(1.0)
    assert len(result.slices) == N and len(result.used) + len(result.skipped) == N
    skipped = {s["slice"]: s["reason"] for s in result.skipped}
    assert {1, 2, N - 1, N} <= set(skipped)  # the blank edges
    assert all("no head outline" in skipped[n] for n in (1, 2, N - 1, N))
    assert all(tiny_predictor.class_names.count(result.slice(n).label) == 1 for n in result.used)
    assert any("were used" in w and "skipped" in w for w in result.warnings)


def test_heat_maps_only_for_the_strip(result):
    assert 1 <= len(result.strip) <= STRIP and set(result.strip) <= set(result.used)
    with_maps = [i for i, r in enumerate(result.slices, 1) if r.heatmap is not None]
    assert with_maps == result.strip
    assert all(result.slice(n).heatmap_class == result.label for n in result.strip)


def test_prediction_set_holds_the_label(result, tiny_predictor):
    if tiny_predictor.conformal is None:
        assert result.prediction_set is None
    else:
        assert result.label in result.prediction_set and set(result.prediction_set) <= set(tiny_predictor.class_names)


@pytest.mark.parametrize("rule", list(STUDY_RULES))
def test_every_rule_gives_an_answer(tiny_predictor, vol, rule):
    r = predict_study(tiny_predictor, open_study(series_files(vol)).pick(), rule=rule, gradcam=False)
    assert r.ok and r.rule == rule and all(s.heatmap is None for s in r.slices)


def test_same_answer_from_a_shuffled_zip_and_from_nifti(tiny_predictor, vol, result):
    files = series_files(vol)
    random.Random(0).shuffle(files)
    from_zip = predict_study(tiny_predictor, open_study(("s.zip", zip_of(files))).pick(), gradcam=False)
    assert from_zip.label == result.label and from_zip.used == result.used
    np.testing.assert_allclose([from_zip.probabilities[c] for c in tiny_predictor.class_names],
                               [result.probabilities[c] for c in tiny_predictor.class_names])
    from_nifti = predict_study(tiny_predictor, open_study(("v.nii.gz", nifti_bytes(vol))).pick(), gradcam=False)
    assert from_nifti.ok and from_nifti.used == result.used


def test_blank_study_has_no_answer_and_says_why(tiny_predictor):
    blank = np.zeros((4, 48, 48), np.uint8)
    r = predict_study(tiny_predictor, open_study(series_files(blank)).pick())
    assert not r.ok and r.label is None and "no_usable_slices" in r.flags and len(r.skipped) == 4


def test_too_few_usable_slices_and_not_mr_are_warned(tiny_predictor, vol):
    r = predict_study(tiny_predictor, open_study(series_files(vol[1:6], modality="OT")).pick(), gradcam=False)
    assert "too_few_slices" in r.flags and "not_mr" in r.flags


def test_settings_are_checked_before_reading(tiny_predictor, vol):
    stack = open_study(series_files(vol)).pick()
    with pytest.raises(WorkbenchError, match="study rule"):
        predict_study(tiny_predictor, stack, rule="majority")
    with pytest.raises(WorkbenchError, match="CAM method"):
        predict_study(tiny_predictor, stack, method="nope")


def test_csv_has_one_row_per_slice_and_a_summary(result, tiny_predictor):
    rows = list(csv.DictReader(io.StringIO(study_csv(result, tiny_predictor.class_names).decode())))
    assert [r["row"] for r in rows] == ["slice"] * N + ["summary"]
    assert rows[-1]["label"] == result.label and rows[-1]["used"] == str(len(result.used))
    assert rows[0]["used"] == "False" and rows[0]["skipped_because"].startswith("no head")
    used = rows[result.used[0] - 1]
    assert float(used["confidence"]) == pytest.approx(result.slice(result.used[0]).confidence, abs=1e-6)


def test_chart_and_frame_and_pdf(result, tiny_predictor, tiny_run):
    from core.reports.run_summary import model_facts

    frame = slice_frame(result, tiny_predictor.class_names)
    assert len(frame) == N and frame["used"].sum() == len(result.used)
    spec = slice_chart(result, tiny_predictor.class_names, current=result.strip[0]).to_dict()
    assert "layer" in spec
    pdf = study_summary_pdf(result, model_facts(tiny_run), created="2026-01-01")
    assert pdf.startswith(b"%PDF") and len(pdf) > 2000


def test_patient_data_never_in_outputs(result, tiny_predictor):
    text = json.dumps(result.to_dict()) + study_csv(result, tiny_predictor.class_names).decode()
    for secret in (PATIENT, SECRET_ID, FREE_TEXT, "Doe"):
        assert secret not in text


# --- the CLI ----------------------------------------------------------------------------------

def test_cli_json_one_object_per_study(tiny_registry, vol, tmp_path, capsys):
    folder = tmp_path / "series"
    folder.mkdir()
    for name, data in series_files(vol):
        (folder / name).write_bytes(data)
    assert main(["predict", str(folder), "--json"]) == 0
    obj = json.loads(capsys.readouterr().out)
    assert KEYS <= obj.keys() and obj["study"]["n_slices"] == N and obj["study"]["series"]
    assert len(obj["slices"]) == N and obj["slices"][2]["slice"] == 3
    assert {"file", "label", "probabilities"} <= obj["slices"][2].keys()
    assert sorted(obj["used_slices"] + [s["slice"] for s in obj["skipped"]]) == list(range(1, N + 1))
    nii = tmp_path / "v.nii.gz"
    nii.write_bytes(nifti_bytes(vol))
    assert main(["predict", str(folder), str(nii), "--json"]) == 0
    both = json.loads(capsys.readouterr().out)
    assert [o["study"]["kind"] for o in both] == ["DICOM series", "NIfTI volume"]


def test_cli_picks_a_series_and_lists_them_otherwise(tiny_registry, vol, tmp_path, capsys):
    z = tmp_path / "two.zip"
    z.write_bytes(zip_of(series_files(vol, uid="1.2.3.1", prefix="A") + series_files(vol[:8], uid="1.2.3.2",
                                                                                           prefix="B")))
    assert main(["predict", str(z), "--json"]) == 2
    obj = json.loads(capsys.readouterr().out)
    assert "holds 2 series" in obj["error"] and "1.2.3.2" in obj["error"]
    assert main(["predict", str(z), "--series", "1.2.3.2", "--json", "--gradcam", str(tmp_path / "cams")]) == 0
    picked = json.loads(capsys.readouterr().out)
    assert picked["study"]["n_slices"] == 8
    assert len(picked["overlays"]) == len(picked["driving_slices"]) >= 1
    assert all((tmp_path / "cams" / Path(p).name).is_file() and "_slice00" in p for p in picked["overlays"])
    assert main(["predict", str(z), "--series", "2"]) == 0
    out = capsys.readouterr().out
    assert "study answer:" in out and "used" in out and "slice    1" in out


def test_single_image_predict_is_unchanged_and_studies_mixed_in_are_refused(tiny_registry, demo_root, tmp_path,
                                                                             capsys):
    image = str(sorted((demo_root / "Testing" / "glioma").glob("*.png"))[0])
    assert main(["predict", image, "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert isinstance(rows, list) and rows[0]["file"] == image and rows[0]["error"] is None
    nii = tmp_path / "v.nii"
    nii.write_bytes(nifti_bytes(np.zeros((3, 32, 32), np.uint8), gz=False))
    assert main(["predict", image, str(nii), "--json"]) == 2
    rows = json.loads(capsys.readouterr().out)
    assert rows[0]["error"] is None and "give studies in a call of their own" in rows[1]["error"]


def test_an_ensemble_scores_a_study_with_each_members_own_input(tiny_ensemble, vol):
    """The Predict page's whole-study mode with an ensemble: every used slice gets the members' averaged
    calibrated probabilities (each member on its own crop and size), and the strip its averaged heat maps."""
    from core.inference.ensemble_predict import EnsemblePredictor

    predictor = EnsemblePredictor(tiny_ensemble)
    result = predict_study(predictor, open_study(series_files(vol)).pick(), source="series")
    assert result.ok and result.label in predictor.class_names
    singles = [predict_study(m, open_study(series_files(vol)).pick(), gradcam=False) for m in predictor.members]
    common = set(result.used).intersection(*(s.used for s in singles))
    assert common
    for n in common:
        mean = np.mean([[s.slice(n).probabilities[c] for c in predictor.class_names] for s in singles], axis=0)
        np.testing.assert_allclose([result.slice(n).probabilities[c] for c in predictor.class_names], mean, atol=1e-9)
        assert "Each model's answer" in result.slice(n).details
    for n in result.strip:
        heat = result.slice(n).heatmap
        assert heat is not None and heat.shape == (tiny_ensemble.image_size,) * 2 and 0 <= heat.min() <= heat.max() <= 1
    assert not result.prepared.keys() - set(range(1, N + 1))
    assert "prepared" not in json.dumps(result.to_dict())
    from core.reports.run_summary import model_facts

    assert study_summary_pdf(result, model_facts(tiny_ensemble)).startswith(b"%PDF")  # the study's PDF report

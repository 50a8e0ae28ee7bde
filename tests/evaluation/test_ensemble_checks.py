"""The site check and the heat-map localisation score on an ensemble run (``tiny_ensemble``: a 32-px
head-crop member and a 48-px whole-frame member).

The site check must read every member's features on that member's own input; localisation must
score the ensemble's own averaged map, the one Predict & Explain shows. The case report (PDF) of an
ensemble's prediction is made too.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from core.cli import main

pytestmark = pytest.mark.slow


@pytest.fixture
def ensemble(tiny_ensemble_copy):
    return tiny_ensemble_copy


# --- site check ----------------------------------------------------------------------------------


def test_site_check_json_uses_every_members_features_on_its_own_input(ensemble, demo_root, tmp_path, capsys,
                                                                       forward_inputs):
    from test_site import make_site, n_demo_test

    site = make_site(demo_root, tmp_path / "site")
    assert main(["site-check", "--model", ensemble.run_id, "--data", str(site), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert {"n_images", "n_reference", "domain_auc", "auc_interval", "shift_detected", "signals", "advice",
            "unreadable", "seconds"} <= set(out)
    assert out["n_images"] == n_demo_test(demo_root) and out["shift_detected"] is True, out
    feats = out["signals"]["model_features"]
    member_ids = [m["run_id"] for m in ensemble.card.members]
    assert sorted(feats["members"]) == sorted(member_ids)
    assert all(0.0 <= a <= 1.0 for a in feats["members"].values())
    # each member ran on its own input (32-px head crop, 48-px whole frame), on site and reference images
    assert {(32, 32, 1), (48, 48, 1)} == set(forward_inputs)


def test_site_check_does_not_flag_the_ensembles_own_test_images(ensemble, tmp_path):
    from core.evaluation.site_check import site_check

    site = tmp_path / "own_test"
    for rel in ensemble.card.data["test_files"]:
        (site / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ensemble.data_root / rel, site / rel)
    result = site_check(ensemble, site)
    assert result.n_images == len(ensemble.card.data["test_files"]) >= 20
    assert result.shift_detected is False, result.to_json()
    assert len(result.signals["model_features"]["members"]) == 2


def test_site_check_of_an_ensemble_with_too_few_images_gives_no_verdict(ensemble, demo_root, tmp_path):
    from test_site import make_site

    from core.evaluation.site_check import MIN_IMAGES, site_check

    site = make_site(demo_root, tmp_path / "few", per_class=4)
    result = site_check(ensemble, site)
    assert result.n_images == 16 < MIN_IMAGES
    assert result.domain_auc is None and result.shift_detected is None and result.signals == {}


def test_the_reference_sample_is_what_the_members_learned_from(ensemble):
    from core.models.ensemble import member_runs
    from core.models.lineage import reference_files, training_files

    members = member_runs(ensemble)
    union = set().union(*(training_files(m) for m in members))
    ref = reference_files(ensemble)
    assert set(ref) == union and len(ref) == len(union)
    held = {ensemble.data_root / f for f in ensemble.card.data["test_files"]}
    assert held and not held & set(ref)


# --- localisation --------------------------------------------------------------------------------


def _boxes(run, tmp_path: Path) -> Path:
    files = run.card.data["test_files"][:6]
    path = tmp_path / "boxes.csv"
    path.write_text("file,class,x0,y0,x1,y1\n" + "".join(
        f"{f},{f.split('/')[-2]},0.3,0.3,0.7,0.7\n" for f in files))
    return path


def test_localisation_scores_the_ensembles_own_averaged_map(ensemble, tmp_path, capsys):
    import pandas as pd

    from core.data.imageio import decode_image
    from core.evaluation.localisation import read_boxes, score_files, score_heatmap
    from core.inference.ensemble_predict import EnsemblePredictor
    from core.inference.gradcam import DEFAULT_CAM_METHOD

    boxes_path = _boxes(ensemble, tmp_path)
    boxes, predictor = read_boxes(boxes_path), EnsemblePredictor(ensemble)
    files = pd.DataFrame({"path": list(boxes.index), "label": [f.split("/")[-2] for f in boxes.index]})
    table = score_files(ensemble, predictor, ensemble.data_root, files, boxes, DEFAULT_CAM_METHOD)
    assert list(table["path"]) == list(boxes.index)
    # Each score, from the map Predict & Explain shows for the image (members' maps averaged).
    for row in table.itertuples():
        image = decode_image(ensemble.data_root / row.path)
        prepared = predictor.prepare_framed(image)
        heat = predictor.explain_for(image, prepared, ensemble.class_names.index(row.label))
        want = score_heatmap(prepared.framing.place(heat, image.pixels.shape[:2]),
                             tuple(boxes.loc[row.path, ["x0", "y0", "x1", "y1"]]))
        assert row.hit == want.hit and row.ratio == pytest.approx(want.ratio)

    # End to end: the evaluate command scores the leakage-free ones among them.
    assert main(["evaluate", "--model", ensemble.run_id, "--boxes", str(boxes_path), "--json"]) == 0
    loc = json.loads(capsys.readouterr().out)["localisation"]
    assert 1 <= loc["n_images"] <= len(table) and 0.0 <= loc["pointing_game"] <= 1.0
    kept = table.set_index("path")["hit"]
    assert loc["pointing_game"] * loc["n_images"] <= kept.sum() + 1e-9


def test_localisation_of_an_ensemble_refuses_a_named_layer(ensemble, tmp_path):
    from core.errors import WorkbenchError
    from core.evaluation.eval_sets import EvalSet
    from core.evaluation.localisation import evaluate_localisation

    with pytest.raises(WorkbenchError, match="each model in the ensemble"):
        evaluate_localisation(ensemble, EvalSet("card_test"), _boxes(ensemble, tmp_path), layer_name="conv_1")


def test_case_report_pdf_of_an_ensemble_prediction(ensemble, demo_root):
    from core.inference.ensemble_predict import load_predictor
    from core.inference.predict import predict_files
    from core.reports.case_report import case_report_pdf
    from core.reports.run_summary import model_facts

    f = sorted((demo_root / "Testing" / "pituitary").glob("*.png"))[0]
    (result,) = predict_files(load_predictor(ensemble.run_id), [(f.name, f.read_bytes())], gradcam=True)
    assert result.ok and result.heatmap is not None
    facts = model_facts(ensemble)
    assert all(m["run_id"] in facts["Members"] for m in ensemble.card.members)
    assert case_report_pdf(result, facts).startswith(b"%PDF")

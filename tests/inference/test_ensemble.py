"""Ensembles as a kind of run: registration, refusals, prediction, heat maps, warnings, evaluation, export.

Two tiny members are trained once for the module (a head-crop 32-px and a whole-frame 48-px
custom CNN, different seeds), so the ensemble mixes preprocessing and image sizes.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from core.cli import main
from core.errors import WorkbenchError
from core.models.card import ModelCard
from core.models.card_validation import validate_card

SIZES = ((32, "head-v2", 1), (48, "gray-uint8-resize-area-v1", 2))


@pytest.fixture(scope="module")
def members(tmp_path_factory: pytest.TempPathFactory, demo_root: Path):
    """Two complete tiny runs in one models folder (differing in preprocessing and image size)."""
    from fixtures_models import train_members

    return train_members(tmp_path_factory.mktemp("ensemble_members"), demo_root, SIZES)


@pytest.fixture
def registry(members, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private copy of the members' models folder (tests delete and tamper with files)."""
    from fixtures_models import private_registry

    return private_registry(members[0].path.parent, tmp_path, monkeypatch)


def _register(capsys, *names: str) -> dict:
    code = main(["ensemble", "--models", *names, "--json"])
    out = capsys.readouterr()
    assert code == 0, out.err
    return json.loads(out.out)


def _refused(capsys, *args: str) -> str:
    code = main(list(args))
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("error: ")
    return err


pytestmark = pytest.mark.slow


# --- the card ---------------------------------------------------------------------------------


def test_single_model_card_is_written_exactly_as_before(members):
    data = members[0].card.to_json()
    assert "kind" not in data and "members" not in data
    again = ModelCard.from_json(data)
    assert not again.is_ensemble and again.to_json() == data


@pytest.mark.parametrize("change, words", [
    ({"kind": "committee"}, "'kind' must be"),
    ({"kind": "ensemble", "members": []}, "at least two 'members'"),
    ({"kind": "ensemble", "members": [{"run_id": "a", "model_sha256": "0" * 64}]}, "at least two 'members'"),
    ({"kind": "ensemble", "members": [{"run_id": "a", "model_sha256": "short"}, {"run_id": "b"}]}, "members[0]"),
    ({"members": [{"run_id": "a", "model_sha256": "0" * 64}] * 2}, "only allowed on an ensemble"),
])
def test_malformed_ensemble_cards_are_refused(members, change, words):
    data = {**members[0].card.to_json(), **change}
    problems = validate_card(data)
    assert any(words in p for p in problems), problems
    with pytest.raises(WorkbenchError, match="damaged"):
        ModelCard.from_json(data)


# --- registration -----------------------------------------------------------------------------


def test_register_lists_members_with_checksums_and_fits_warnings(registry, members, capsys):
    from core.models.runs import file_sha256, list_runs, resolve_run

    out = _register(capsys, members[0].run_id, members[1].run_id)
    ens = resolve_run(out["run_id"])
    assert ens.card.is_ensemble and not (ens.path / "model.keras").exists()
    assert [m["run_id"] for m in ens.card.members] == [m.run_id for m in members]
    assert [m["model_sha256"] for m in ens.card.members] == [file_sha256(registry / m.run_id / "model.keras")
                                                             for m in members]
    assert [m["image_size"] for m in ens.card.members] == [32, 48]
    assert ens.card.image_size == 48 and ens.class_names == members[0].class_names
    assert out["site_sample"] and "kept a sample of" in out["site_sample_note"]  # the training images are here
    results = ens.card.results
    assert results.temperature == 1.0 and results.tta == "none"
    assert 0 <= results.disagreement["spread_threshold"] <= 1
    assert results.disagreement["correct_warned"] is None or results.disagreement["correct_warned"] <= 0.05
    # the fitted member rule: how many of the 2 members must raise their own warning (0: never)
    assert results.disagreement["unfamiliar_members"] in (0, 1, 2) and results.disagreement["unstable_members"] in (0, 1, 2)
    assert isinstance(results.disagreement["warn_on_differ"], bool)
    assert (out["unfamiliar_members"], out["unstable_members"]) == (results.disagreement["unfamiliar_members"],
                                                                    results.disagreement["unstable_members"])
    assert not results.trust["flag_unstable"] and results.trust["max_distance"] is None
    assert (ens.path / "conformal.npz").is_file() and results.conformal["n_per_class"]
    # its card has no test-time augmentation of its own (members apply theirs): the text says what was fitted
    assert "averaged" in results.conformal["fitted_on"] and "augmentation" not in results.conformal["fitted_on"]
    assert set(ens.card.data["val_files"]) <= set(members[0].card.data["val_files"])
    assert ens.card.data["test_files"] and set(ens.card.data["test_files"]) <= set(members[1].card.data["test_files"])
    assert ens.run_id in [r.run_id for r in list_runs()]
    assert not list(registry.glob(".tmp-*"))


def test_registration_keeps_the_site_checks_sample_unless_told_not_to(registry, members, capsys):
    from core.evaluation.site_reference import kept_reference
    from core.models.runs import resolve_run

    kept = resolve_run(_register(capsys, members[0].run_id, members[1].run_id)["run_id"])
    reference, problem = kept_reference(kept)
    assert problem is None and reference is not None
    assert set(reference.networks) == {m.run_id for m in members}  # the members' features, not a placeholder
    code = main(["ensemble", "--models", members[0].run_id, members[1].run_id, "--no-site-sample", "--json"])
    out = json.loads(capsys.readouterr().out)
    assert code == 0 and out["site_sample"] is False and out["site_sample_note"] is None
    assert kept_reference(resolve_run(out["run_id"])) == (None, None)


def test_registration_loads_each_members_network_once(registry, members, monkeypatch):
    from collections import Counter

    from core.inference.ensemble_fit import member_probabilities, register_ensemble
    from core.lazy_tensorflow import keras
    from core.models.ensemble import member_runs

    saving = keras().saving
    original = saving.load_model
    loads: Counter[str] = Counter()

    def counting(path, *args, **kwargs):  # every Keras load, whichever helper asks for it
        loads[Path(path).parent.name] += 1
        return original(path, *args, **kwargs)

    monkeypatch.setattr(saving, "load_model", counting)
    ens = register_ensemble([m.run_id for m in members])
    assert loads == Counter({m.run_id: 1 for m in members})
    # the networks passed through the fit give what loading each file anew gives
    paths, labels = ens.validation_set()
    fresh = member_probabilities(member_runs(ens), paths)
    assert loads == Counter({m.run_id: 2 for m in members})  # the counter sees loads outside registration too
    assert ens.card.results.disagreement["members_accuracy"] == [float((p.argmax(axis=1) == labels).mean())
                                                                 for p in fresh]


def test_one_model_is_refused(registry, members, capsys):
    err = _refused(capsys, "ensemble", "--models", members[0].run_id)
    assert "at least two different models" in err


def test_the_same_model_twice_is_refused(registry, members, capsys):
    err = _refused(capsys, "ensemble", "--models", members[0].run_id, members[0].run_id)
    assert "listed twice" in err


def test_different_class_lists_are_refused_with_both_lists(registry, members, capsys):
    from core.models.runs import CARD_FILE

    other = registry / "reordered"
    shutil.copytree(registry / members[1].run_id, other)
    card = json.loads((other / CARD_FILE).read_text())
    card["class_names"] = list(reversed(card["class_names"]))
    # an older run with no class-order binding (card field or conformal.npz), which would refuse it first
    card["class_order_sha256"] = ""
    (other / "conformal.npz").unlink(missing_ok=True)
    (other / CARD_FILE).write_text(json.dumps(card))
    err = _refused(capsys, "ensemble", "--models", members[0].run_id, "reordered")
    assert ", ".join(members[0].class_names) in err and ", ".join(reversed(members[0].class_names)) in err
    assert not [p for p in registry.iterdir() if "ensemble" in p.name]


def test_an_ensemble_named_as_member_is_flattened(registry, members, capsys):
    first = _register(capsys, members[0].run_id, members[1].run_id)
    again = _register(capsys, first["run_id"])  # the ensemble alone: its two members
    assert [m["run_id"] for m in again["members"]] == [m.run_id for m in members]
    err = _refused(capsys, "ensemble", "--models", first["run_id"], members[0].run_id)
    assert "listed twice" in err  # flattened, member 0 would count double


def test_a_tampered_member_is_refused_at_registration(registry, members, capsys):
    with open(registry / members[1].run_id / "model.keras", "ab") as fh:
        fh.write(b"\0")
    err = _refused(capsys, "ensemble", "--models", members[0].run_id, members[1].run_id)
    assert "checksum differs" in err and members[1].run_id in err
    # No ensemble exists yet: the message blames the model's own file, not a registered ensemble.
    assert "after the model was trained" in err and "ensemble was registered" not in err


def test_an_unknown_member_is_refused(registry, members, capsys):
    err = _refused(capsys, "ensemble", "--models", members[0].run_id, "no-such-run")
    assert "no-such-run" in err


# --- loading ----------------------------------------------------------------------------------


@pytest.fixture
def ensemble(registry, members, capsys):
    from core.models.runs import resolve_run

    return resolve_run(_register(capsys, members[0].run_id, members[1].run_id)["run_id"])


def test_a_deleted_member_is_refused_at_load(ensemble, members, registry):
    from core.inference.ensemble_predict import load_predictor

    shutil.rmtree(registry / members[0].run_id)
    with pytest.raises(WorkbenchError, match="deleted or moved") as info:
        load_predictor(ensemble.run_id)
    assert members[0].run_id in str(info.value)


def test_a_member_changed_with_its_card_is_refused_at_load(ensemble, members, registry):
    """Model and card both rewritten consistently: the ensemble's own record still catches it."""
    from core.inference.ensemble_predict import load_predictor
    from core.models.class_binding import class_order_digest
    from core.models.runs import CARD_FILE, file_sha256

    folder = registry / members[1].run_id
    with open(folder / "model.keras", "ab") as fh:
        fh.write(b"\0")
    card = json.loads((folder / CARD_FILE).read_text())
    card["model_sha256"] = file_sha256(folder / "model.keras")
    # A consistent rewrite re-binds the class order too, so only the ensemble's record can catch it.
    card["class_order_sha256"] = class_order_digest(card["class_names"], card["model_sha256"])
    (folder / CARD_FILE).write_text(json.dumps(card))
    with pytest.raises(WorkbenchError, match="changed after the ensemble was registered"):
        load_predictor(ensemble.run_id)


def test_single_model_steps_say_the_run_is_an_ensemble(ensemble):
    from core.models.runs import load_model

    with pytest.raises(WorkbenchError, match="ensemble of 2 models"):
        load_model(ensemble)


# --- prediction, heat maps, warnings -----------------------------------------------------------


@pytest.fixture
def uploads(demo_root: Path) -> list[tuple[str, bytes]]:
    files = sorted((demo_root / "Testing" / "glioma").glob("*.png"))[:2] + \
        sorted((demo_root / "Testing" / "pituitary").glob("*.png"))[:1]
    return [(f.name, f.read_bytes()) for f in files]


def test_predict_averages_the_members_calibrated_probabilities(ensemble, members, registry, uploads):
    from core.inference.ensemble_predict import EnsemblePredictor, load_predictor
    from core.inference.predict import Predictor, predict_files

    predictor = load_predictor(ensemble.run_id)
    assert isinstance(predictor, EnsemblePredictor)
    # 90 %: the demo's validation split (about 14 images a class) is too small for sets at 95 %
    assert predictor.set_problem(0.95) and predictor.set_problem(0.9) is None
    results = predict_files(predictor, uploads, gradcam=True, coverage=0.9)
    singles = [predict_files(Predictor.load(m.run_id), uploads) for m in members]
    for i, r in enumerate(results):
        assert r.ok and r.prediction_set and r.coverage == 0.9
        mean = np.mean([[s[i].probabilities[c] for c in r.probabilities] for s in singles], axis=0)
        np.testing.assert_allclose(list(r.probabilities.values()), mean, atol=1e-9)
        assert r.label == max(r.probabilities, key=r.probabilities.get)
        assert r.heatmap.shape == r.model_input.shape[:2] == (ensemble.image_size, ensemble.image_size)
        assert r.heatmap.dtype == np.float32 and 0 <= r.heatmap.min() and r.heatmap.max() <= 1
        assert "Each model's answer" in r.details


def test_disagreeing_members_raise_the_warning(ensemble, uploads):
    from core.inference.ensemble_predict import DISAGREE, DISAGREE_MESSAGE, load_predictor
    from core.inference.predict import predict_files

    predictor = load_predictor(ensemble.run_id)
    fitted = ensemble.card.results.disagreement["spread_threshold"]
    assert predictor.spread_threshold == fitted
    predictor.spread_threshold = -1.0  # any spread counts: every slice is flagged
    loud = predict_files(predictor, uploads)
    assert all(DISAGREE in r.flags and DISAGREE_MESSAGE in r.warnings for r in loud)


def test_each_member_map_goes_back_through_its_own_crop(ensemble, uploads):
    """Members whose crops cover only the left or top half: the average is zero where neither looked."""
    from core.data.imageio import decode_image
    from core.data.preprocess import Framing, Prepared
    from core.inference.ensemble_predict import EnsemblePredictor, EnsemblePrepared

    class Fake:
        disabled: list[str] = []  # no damaged side files

        def __init__(self, framing: Framing) -> None:
            self.framing = framing

        def explain(self, pixels, class_index, method):
            return np.ones(pixels.shape[:2], np.float32)

    left, top = Framing(0, 0, 0.5, 1), Framing(0, 0, 1, 0.5)
    predictor = EnsemblePredictor(ensemble, members=[Fake(left), Fake(top)])
    image = decode_image(uploads[0][1], uploads[0][0])
    h, w = image.pixels.shape
    parts = (Prepared(np.zeros((8, 8, 1), np.uint8), left), Prepared(np.zeros((16, 16, 1), np.uint8), top))
    shown = EnsemblePrepared(np.zeros((48, 48, 1), np.uint8), Framing(), parts)
    heat = predictor.explain_for(image, shown, 0, "gradcam")
    assert heat.shape == (48, 48) and heat.max() == pytest.approx(1.0)
    assert heat[30:, 30:].max() == 0  # bottom right: neither member saw it
    assert heat[:20, :20].min() == pytest.approx(1.0)  # top left: both
    assert heat[:20, 30:].max() == pytest.approx(0.5, abs=0.05)  # top right: one of two


# --- evaluate, report facts, export -----------------------------------------------------------


def test_evaluate_an_ensemble_from_the_cli(ensemble, members, capsys):
    from core.evaluation.eval_sets import EvalSet
    from core.evaluation.evaluate import evaluate_run

    code = main(["evaluate", "--model", ensemble.run_id, "--json"])
    out = json.loads(capsys.readouterr().out)
    assert code == 0 and out["n_images"] == len(ensemble.card.data["test_files"])
    ens = evaluate_run(ensemble, EvalSet("card_test"), store_in_card=False).predictions.set_index("file")
    cols = [f"prob_{c}" for c in ensemble.class_names]
    singles = [evaluate_run(m, EvalSet("card_test"), store_in_card=False).predictions.set_index("file")
               for m in members]
    mean = np.mean([s.loc[ens.index, cols].to_numpy() for s in singles], axis=0)  # the members' own held-out files
    np.testing.assert_allclose(ens[cols].to_numpy(), mean, atol=1e-9)
    assert out["accuracy"] == pytest.approx((ens["correct"]).mean())
    assert out["conformal"]  # the sets' coverage on the ensemble's own output


def test_robustness_of_an_ensemble_averages_its_members_under_every_shift(ensemble, members, capsys):
    from core.data.shifts import SHIFTS
    from core.evaluation.eval_sets import EvalSet
    from core.evaluation.evaluate import evaluate_run

    code = main(["evaluate", "--model", ensemble.run_id, "--robustness", "--json"])
    out = json.loads(capsys.readouterr().out)
    assert code == 0, out
    rows = {r["shift"]: r for r in out["robustness"]}
    assert list(rows) == list(SHIFTS)
    for r in rows.values():
        assert 0 <= r["accuracy"] <= 1 and 0 <= r["mean_confidence"] <= 1
        assert r["correct_warned"] is None or 0 <= r["correct_warned"] <= 1
    # Unshifted, the ensemble answers as evaluate does on the same leakage-free images (up to two
    # slices: here each image is first reduced to twice the model's side, as the shifts need).
    ens = evaluate_run(ensemble, EvalSet("card_test"), store_in_card=False)
    n = ens.leakage_free["n_images"]
    assert rows["none"]["n_images"] == n
    assert abs(rows["none"]["accuracy"] - ens.leakage_free["accuracy"]) <= 2 / n + 1e-9


def test_model_facts_name_the_members(ensemble):
    from core.reports.run_summary import model_facts

    facts = model_facts(ensemble)
    assert all(m["run_id"] in facts["Members"] for m in ensemble.card.members)


def test_export_writes_one_verified_keras_file(ensemble, tmp_path, capsys):
    code = main(["export", "--model", ensemble.run_id, "--format", "keras", "--out", str(tmp_path / "e.zip"),
                 "--json"])
    out = json.loads(capsys.readouterr().out)
    assert code == 0 and out["max_abs_diff"] <= 1e-4
    import zipfile

    with zipfile.ZipFile(tmp_path / "e.zip") as zf:
        facts = json.loads(zf.read("export.json"))
        assert "model.keras" in zf.namelist()
    assert [i["shape"][1] for i in facts["inputs"]] == [32, 48]
    err = _refused(capsys, "export", "--model", ensemble.run_id, "--format", "onnx", "--out", str(tmp_path / "o.zip"))
    assert "choose keras" in err and not (tmp_path / "o.zip").exists()


# --- training an ensemble from the Train page's engine -------------------------------------------


def test_member_configs_vary_seed_and_input_and_refuse_bad_sizes():
    from core.training.config import TrainConfig
    from core.training.ensemble_train import MAX_MEMBERS, member_configs

    cfgs = member_configs(TrainConfig(seed=7, preprocessing="head-v2"), 3)
    assert [c.seed for c in cfgs] == [7, 8, 9]
    assert [c.preprocessing for c in cfgs] == ["head-v2", "frame-eq-v1", "head-v2"]
    assert [c.style_mix for c in cfgs] == [0.0, 0.5, 0.0]  # the other input also mixes intensity styles
    assert [c.style_mix for c in member_configs(TrainConfig(style_mix=0.3), 2)] == [0.3, 0.3]  # set: kept
    plain = member_configs(TrainConfig(), 3, diverse_inputs=False)
    assert {c.preprocessing for c in plain} == {"head-v2"} and {c.style_mix for c in plain} == {0.0}
    for bad in (1, MAX_MEMBERS + 1):
        with pytest.raises(WorkbenchError, match="from 2 to"):
            member_configs(TrainConfig(), bad)


def test_the_check_model_reads_the_raw_frame_after_the_members_seeds():
    from core.data.preprocess import WHOLE_FRAME_ID
    from core.training.config import TrainConfig
    from core.training.ensemble_train import member_configs, sentinel_config

    cfg = TrainConfig(seed=7, style_mix=0.3)
    watch = sentinel_config(cfg, 3)
    assert watch.preprocessing == WHOLE_FRAME_ID and watch.style_mix == 0.0  # it must keep reading the style
    assert watch.seed == 10 and watch.seed not in {c.seed for c in member_configs(cfg, 3)}


@pytest.mark.parametrize("sentinel", [False, True])
def test_train_ensemble_in_a_background_job(demo_root, tmp_path, monkeypatch, sentinel):
    from core.config import AUGMENT_PRESETS
    from core.data.datasets import open_folder
    from core.data.scan import scan_dataset
    from core.jobs import DONE, JobRegistry
    from core.models.runs import list_runs
    from core.training.config import TrainConfig
    from core.training.ensemble_train import train_ensemble

    monkeypatch.setenv("WORKBENCH_MODELS_DIR", str(tmp_path / "models"))
    monkeypatch.setenv("WORKBENCH_CACHE_DIR", str(tmp_path / "cache"))
    ds = open_folder(demo_root)
    report = scan_dataset(ds)
    cfg = TrainConfig(arch="custom_cnn", image_size=32, width=0.25, epochs=1, batch_size=32, patience=1, seed=3,
                      augment=AUGMENT_PRESETS["none"], max_train_batches=2)
    jobs = JobRegistry()
    job = jobs.submit("train", "ensemble of 2", lambda j: train_ensemble(ds, report, cfg, j, 2, sentinel=sentinel))
    jobs.wait(job, timeout=600)
    snap = job.snapshot()
    assert snap.status == DONE, snap.error
    ens = snap.result
    runs = {r.run_id: r for r in list_runs()}
    assert ens.card.is_ensemble and ens.run_id in runs and len(runs) == 3 + sentinel
    assert [runs[m["run_id"]].preprocessing for m in ens.card.members] == ["head-v2", "frame-eq-v1"]
    assert [runs[m["run_id"]].preprocessing for m in ens.card.sentinels] == (["gray-uint8-resize-area-v1"]
                                                                           if sentinel else [])
    assert any("registered ensemble" in line for line in snap.log)


# --- pages --------------------------------------------------------------------------------------

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def test_predict_page_runs_an_ensemble(ensemble, demo_root, monkeypatch):
    from streamlit.testing.v1 import AppTest

    monkeypatch.syspath_prepend(str(PROJECT_ROOT))
    at = AppTest.from_file(str(PROJECT_ROOT / "pages" / "5_Predict_and_Explain.py"), default_timeout=180).run()
    assert not at.exception, at.exception
    at.selectbox(key="predict_model").set_value(ensemble.run_id).run()
    good = sorted((demo_root / "Testing" / "glioma").glob("*.png"))[0]
    at.file_uploader(key="predict_uploads").set_value([(good.name, good.read_bytes(), "image/png")])
    at.run()
    assert not at.exception, at.exception
    (result,) = at.session_state["predict_results"][1]
    assert result.ok and result.heatmap is not None and "Each model's answer" in result.details
    facts = at.table[0].value  # the model card box: one row per fact
    shown = re.sub(r"\\(.)", r"\1", facts.loc["Members"].iloc[0])  # read as displayed: escaped marks are literal
    assert all(m["run_id"] in shown for m in ensemble.card.members)


def test_train_page_offers_an_ensemble(isolated_workbench_dirs, demo_root, monkeypatch):
    import streamlit as st
    from streamlit.testing.v1 import AppTest

    import core.jobs as jobs
    from core.data.demo import DEMO_VERSION
    from core.jobs import JobRegistry

    monkeypatch.syspath_prepend(str(PROJECT_ROOT))
    shutil.copytree(demo_root, isolated_workbench_dirs["cache"] / f"demo-v{DEMO_VERSION}-seed0")
    registry = JobRegistry()
    monkeypatch.setattr(jobs, "_REGISTRY", registry)
    st.cache_resource.clear()
    at = AppTest.from_file(str(PROJECT_ROOT / "pages" / "3_Train.py"), default_timeout=180).run()
    assert not at.exception, at.exception
    assert at.button(key="train_start").label == "Start training"
    assert not [c for c in at.checkbox if c.key == "train_sentinel"]  # one model: no check model to add
    at.number_input(key="train_n_models").set_value(3).run()
    assert at.button(key="train_start").label == "Train an ensemble of 3"
    assert "only warns" in at.checkbox(key="train_sentinel").label
    at.checkbox(key="train_sentinel").check().run()
    assert at.button(key="train_start").label == "Train an ensemble of 3 with a check model"
    at.button(key="train_start").click().run()
    try:
        (job,) = registry.jobs("train")
        assert "ensemble of 3" in job.title
    finally:
        for job in registry.jobs():
            job.cancel()
            registry.wait(job, 120)
        st.cache_resource.clear()

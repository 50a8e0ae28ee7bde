"""Ensembles with a sentinel: a model that never votes but warns when its answer differs.

Three tiny members are trained once for the module; two vote, the third (whole frame, other seed)
is the sentinel.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from core.cli import main
from core.errors import WorkbenchError

SIZES = ((32, "head-v2", 1), (48, "gray-uint8-resize-area-v1", 2), (40, "gray-uint8-resize-area-v1", 3))

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory, demo_root: Path):
    from fixtures_models import train_members

    return train_members(tmp_path_factory.mktemp("sentinel_members"), demo_root, SIZES)


@pytest.fixture
def registry(models, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private copy of the members' models folder (tests delete and tamper with files)."""
    from fixtures_models import private_registry

    return private_registry(models[0].path.parent, tmp_path, monkeypatch)


def _cli(capsys, *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture
def watched(registry, models, capsys):
    """The ensemble of models 0 and 1 with model 2 as its sentinel."""
    from core.models.runs import resolve_run

    code, out, err = _cli(capsys, "ensemble", "--models", models[0].run_id, models[1].run_id,
                          "--sentinels", models[2].run_id, "--json")
    assert code == 0, err
    return resolve_run(json.loads(out)["run_id"])


def test_registration_records_the_sentinel_and_fits_whether_it_warns(watched, models, registry):
    from core.models.ensemble import ensemble_sha256
    from core.models.runs import file_sha256

    card = watched.card
    assert [m["run_id"] for m in card.members] == [models[0].run_id, models[1].run_id]
    assert [(s["run_id"], s["model_sha256"]) for s in card.sentinels] == \
        [(models[2].run_id, file_sha256(registry / models[2].run_id / "model.keras"))]
    dis = card.results.disagreement
    assert isinstance(dis["sentinel_warns"], bool) and len(dis["sentinels_accuracy"]) == 1
    assert 0 <= dis["sentinel_differs_share"] <= 1
    assert dis["sentinel_share"] == (dis["sentinel_differs_share"] if dis["sentinel_warns"] else 0.0)
    assert dis["correct_warned"] is None or dis["correct_warned"] <= 0.05  # the budget holds with it
    # the sentinel changes the warnings, so the ensemble's identity (caches) differs from the plain one's
    assert card.model_sha256 != ensemble_sha256(models[:2])
    assert set(card.data["val_files"]) <= set(models[2].card.data["val_files"])  # it never trained on them
    assert "sentinels (warn only, never vote)" in card.preprocessing_description


def test_the_sentinel_never_votes(watched, models, capsys):
    """The answer is the members' average: the same as the ensemble without a sentinel."""
    from core.inference.ensemble_predict import load_predictor
    from core.inference.predict import predict_files
    from core.models.runs import resolve_run

    code, out, err = _cli(capsys, "ensemble", "--models", models[0].run_id, models[1].run_id, "--json")
    assert code == 0, err
    plain = load_predictor(json.loads(out)["run_id"])
    files = sorted((resolve_run(models[0].run_id).data_root / "Testing" / "glioma").glob("*.png"))[:3]
    uploads = [(f.name, f.read_bytes()) for f in files]
    got = predict_files(load_predictor(watched.run_id), uploads, gradcam=True)
    want = predict_files(plain, uploads, gradcam=True)
    for g, w in zip(got, want):
        assert g.ok and g.probabilities == w.probabilities and g.label == w.label
        np.testing.assert_allclose(g.heatmap, w.heatmap, atol=1e-6)
        assert "Check model's answer (it does not vote)" in g.details


def test_a_differing_sentinel_raises_its_own_warning(watched, models):
    from core.classes import display_name
    from core.inference.ensemble_predict import SENTINEL, SENTINEL_MESSAGE, load_predictor
    from core.inference.ensemble_warnings import MemberRule
    from core.inference.predict import predict_files

    predictor = load_predictor(watched.run_id)
    predictor.low_confidence, predictor.spread_threshold, predictor.warn_on_differ = 0.0, 1.0, False
    predictor.member_rule = MemberRule(0, 0, sentinel=True)  # only the sentinel may warn
    files = sorted(p for c in ("glioma", "meningioma", "notumor", "pituitary")
                   for p in sorted((watched.data_root / "Testing" / c).glob("*.png"))[:4])
    results = predict_files(predictor, [(f.name, f.read_bytes()) for f in files])
    for r in results:
        said = r.details["Check model's answer (it does not vote)"].split(" (")[0]
        differs = said != display_name(r.label)  # shown as a reader reads class names
        assert (SENTINEL in r.flags) is differs and (SENTINEL_MESSAGE in r.warnings) is differs, (said, r.label)
    predictor.member_rule = MemberRule(0, 0, sentinel=False)
    assert not any(SENTINEL in r.flags for r in predict_files(predictor, [(f.name, f.read_bytes()) for f in files]))


def test_robustness_counts_the_sentinels_warning(watched, capsys, monkeypatch):
    """The stress test's warnings come from the same rule as Predict's: with the sentinel shown and the
    other parts silenced, a shifted slice is warned exactly where the sentinel differs."""
    import core.evaluation.ensemble_robustness as er
    from core.models.ensemble import member_runs, sentinel_runs

    seen = {}
    real = er.ensemble_flags

    def spy(*args, **kwargs):
        seen["sentinel_probs"] = args[7] if len(args) > 7 else kwargs.get("sentinel_probs")
        return real(*args, **kwargs)

    monkeypatch.setattr(er, "ensemble_flags", spy)
    code, out, err = _cli(capsys, "evaluate", "--model", watched.run_id, "--robustness", "--json")
    assert code == 0, err
    assert seen["sentinel_probs"] is not None and seen["sentinel_probs"].shape[0] == 1
    assert len(member_runs(watched)) == 2 and len(sentinel_runs(watched)) == 1


@pytest.mark.parametrize("case", ["member_too", "ensemble", "tampered", "deleted"])
def test_bad_sentinels_are_refused(registry, models, capsys, case):
    a, b, c = (m.run_id for m in models)
    if case == "member_too":
        code, _, err = _cli(capsys, "ensemble", "--models", a, b, "--sentinels", b)
        assert code == 2 and "listed twice" in err
    elif case == "ensemble":
        code, out, _ = _cli(capsys, "ensemble", "--models", a, b, "--json")
        code, _, err = _cli(capsys, "ensemble", "--models", a, c, "--sentinels", json.loads(out)["run_id"])
        assert code == 2 and "a sentinel must be one model" in err
    else:
        code, out, err = _cli(capsys, "ensemble", "--models", a, b, "--sentinels", c, "--json")
        assert code == 0, err
        if case == "tampered":
            with open(registry / c / "model.keras", "ab") as fh:
                fh.write(b"\0")
        else:
            shutil.rmtree(registry / c)
        from core.inference.ensemble_predict import load_predictor

        with pytest.raises(WorkbenchError, match="sentinel") as info:
            load_predictor(json.loads(out)["run_id"])
        assert c in str(info.value)


def test_naming_an_ensemble_with_a_sentinel_carries_the_sentinel(watched, models, capsys):
    code, out, err = _cli(capsys, "ensemble", "--models", watched.run_id, "--json")
    assert code == 0, err
    again = json.loads(out)
    assert [m["run_id"] for m in again["members"]] == [models[0].run_id, models[1].run_id]
    assert [s["run_id"] for s in again["sentinels"]] == [models[2].run_id]


def test_model_facts_name_the_sentinel_apart(watched, models):
    from core.reports.run_summary import model_facts

    facts = model_facts(watched)
    assert models[2].run_id in facts["Check models (warn only, never vote)"]
    assert models[2].run_id not in facts["Members"]


def test_export_leaves_the_sentinel_out_and_says_so(watched, models, tmp_path, capsys):
    import zipfile

    code, out, err = _cli(capsys, "export", "--model", watched.run_id, "--format", "keras", "--out",
                          str(tmp_path / "e.zip"), "--json")
    assert code == 0, err
    with zipfile.ZipFile(tmp_path / "e.zip") as zf:
        facts = json.loads(zf.read("export.json"))
        readme = zf.read("README.md").decode()
    assert [i["member"] for i in facts["inputs"]] == [models[0].run_id, models[1].run_id]  # members only
    assert models[2].run_id in facts["not_included"] and "Not included:" in readme


def test_site_check_reads_the_sentinels_features_too(watched, models, demo_root, tmp_path, capsys):
    """The check model still sees the image's style: the site check sets its features beside the members'."""
    from PIL import Image

    site = tmp_path / "site"
    for cls in watched.class_names:  # the demo's own test images, made darker: a changed style
        (site / cls).mkdir(parents=True)
        for f in sorted((demo_root / "Testing" / cls).glob("*.png"))[:8]:
            img = np.asarray(Image.open(f).convert("L"), np.float32)
            Image.fromarray((0.5 * img).astype(np.uint8)).save(site / cls / f.name)
    code, out, err = _cli(capsys, "site-check", "--model", watched.run_id, "--data", str(site), "--json")
    assert code == 0, err
    feats = json.loads(out)["signals"]["model_features"]
    assert sorted(feats["members"]) == sorted(m.run_id for m in models)  # two members and the sentinel

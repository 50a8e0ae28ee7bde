"""Site check (no labels) and site adaptation (a few labelled images -> a new run).

The tiny demo model is the parent; a "site" is the demo's Testing images re-styled (darker,
higher contrast, other image size) the way another scanner's export might differ.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from core.errors import WorkbenchError

pytestmark = pytest.mark.slow


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------


def restyle(src: Path, dst: Path, size: int = 96, gamma: float = 2.2) -> None:
    """A darker, re-sized copy of an image: a different 'site' style, same anatomy and label."""
    px = np.asarray(Image.open(src).convert("L"), dtype=np.float64) / 255.0
    out = (np.power(px, gamma) * 255).astype(np.uint8)
    dst.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(out).resize((size, size)).save(dst)


def make_site(demo_root: Path, dst: Path, per_class: int | None = None, classes=None) -> Path:
    """The demo's Testing images, re-styled, in class folders."""
    for folder in sorted((demo_root / "Testing").iterdir()):
        if classes is not None and folder.name not in classes:
            continue
        for i, f in enumerate(sorted(folder.iterdir())):
            if per_class is not None and i >= per_class:
                break
            restyle(f, dst / folder.name / f.name)
    return dst


def n_demo_test(demo_root: Path) -> int:
    return sum(1 for p in (demo_root / "Testing").rglob("*") if p.is_file())


def copy_demo_test(demo_root: Path, dst: Path) -> Path:
    shutil.copytree(demo_root / "Testing", dst)
    return dst


@pytest.fixture
def parent(tiny_run, isolated_workbench_dirs):
    """The tiny run copied into this test's own registry (adapted runs land beside it)."""
    from core.models.runs import resolve_run

    models = isolated_workbench_dirs["models"]
    models.mkdir(parents=True, exist_ok=True)
    shutil.copytree(tiny_run.path, models / tiny_run.run_id)
    return resolve_run(tiny_run.run_id)


def folder_digest(folder: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(folder.rglob("*")):
        if p.is_file():
            h.update(p.name.encode() + p.read_bytes())
    return h.hexdigest()


# --------------------------------------------------------------------------------------------
# the statistics
# --------------------------------------------------------------------------------------------


def test_domain_auc_half_for_same_distribution_and_one_for_separable():
    from core.evaluation.site_check import domain_auc

    rng = np.random.default_rng(0)
    same = rng.normal(size=(400, 3))
    y = np.r_[np.ones(200), np.zeros(200)].astype(int)
    assert abs(domain_auc(same, y) - 0.5) < 0.1
    apart = same + y[:, None] * 5.0
    assert domain_auc(apart, y) > 0.98
    assert domain_auc(np.ones((400, 2)), y) == 0.5  # nothing varies: nothing to tell apart


def test_near_duplicates_stay_in_one_fold():
    """Twins on the two sides must not let a memorising classifier 'recognise' the site."""
    from core.evaluation.site_check import domain_auc

    rng = np.random.default_rng(1)
    base = rng.normal(size=(150, 6))
    x = np.r_[base, base + 1e-6]  # every site row has a twin among the reference rows... no: the same side
    y = np.r_[np.ones(150), np.zeros(150)].astype(int)
    groups = np.r_[np.arange(150), np.arange(150)]
    assert domain_auc(x, y, groups=groups) < 0.6  # twins across the sides: indistinguishable
    x_site_twins = np.r_[base[:75], base[:75] + 1e-6, rng.normal(size=(150, 6))]
    grouped = domain_auc(x_site_twins, y, groups=np.r_[np.arange(75), np.arange(75), 75 + np.arange(150)])
    ungrouped = domain_auc(x_site_twins, y)
    assert grouped < ungrouped  # without groups the twins inflate the AUC


@pytest.mark.parametrize("auc,n,expect", [(0.5, 500, False), (0.63, 500, False), (0.70, 500, True),
                                          (0.66, 20, False), (0.95, 20, True)])
def test_verdict_rule_needs_a_real_and_large_difference(auc, n, expect):
    from core.evaluation.site_check import auc_interval, is_shift

    lo, hi = auc_interval(auc, n, n)
    assert 0 <= lo <= auc <= hi <= 1
    assert is_shift(auc, (lo, hi)) is expect


def test_interval_narrows_with_more_images():
    from core.evaluation.site_check import auc_interval

    small, large = auc_interval(0.7, 20, 200), auc_interval(0.7, 500, 500)
    assert (small[1] - small[0]) > (large[1] - large[0])


# --------------------------------------------------------------------------------------------
# the site check on the demo
# --------------------------------------------------------------------------------------------


def test_site_check_flags_a_restyled_site(parent, demo_root, tmp_path):
    from core.evaluation.site_check import SHIFT_ADVICE, site_check

    site = make_site(demo_root, tmp_path / "site")
    before = folder_digest(site)
    result = site_check(parent, site)
    assert result.n_images == n_demo_test(demo_root) and result.domain_auc is not None
    assert result.shift_detected is True, result.to_json()
    assert result.domain_auc > 0.9
    assert result.signals["image_size"]["auc"] > 0.9  # 96 px files against 128 px ones
    assert result.signals["intensity"]["auc"] > 0.7  # darker
    assert SHIFT_ADVICE in result.advice
    assert folder_digest(site) == before  # read only


def test_site_check_does_not_flag_images_like_the_training_ones(parent, demo_root, tmp_path):
    from core.evaluation.site_check import site_check

    site = copy_demo_test(demo_root, tmp_path / "same")
    result = site_check(parent, site)
    assert result.n_images == n_demo_test(demo_root)
    assert result.shift_detected is False, result.to_json()
    assert result.domain_auc < 0.64


def test_files_that_differ_only_in_colour_mode_are_not_a_new_site(parent, demo_root, tmp_path):
    """Saved as RGB, the same pictures: the model reads them as the same grayscale pixels, so the colour mode is
    reported and named but does not make the verdict (the default's own test slices of one collection were told
    apart by it alone)."""
    from core.evaluation.site_check import FILE_SIGNALS, site_check

    site = tmp_path / "rgb"
    for f in sorted((demo_root / "Testing").rglob("*")):
        if f.is_file():
            target = site / f.relative_to(demo_root / "Testing")
            target.parent.mkdir(parents=True, exist_ok=True)
            Image.open(f).convert("RGB").save(target.with_suffix(".png"))
    assert Image.open(next(site.rglob("*.png"))).mode == "RGB"
    result = site_check(parent, site)
    assert result.signals["colour_mode"]["auc"] > 0.9 and result.signals["colour_mode"]["verdict"] is False
    assert result.shift_detected is False, result.to_json()
    assert "Their files also differ in: colour mode of the files" in result.advice
    assert {k for k, v in result.signals.items() if not v["verdict"]} == FILE_SIGNALS


def test_a_batch_of_one_class_from_the_training_source_is_not_a_new_site(parent, demo_root, tmp_path, monkeypatch):
    """A tumour clinic's uploads are mostly one class: their content must not read as another site.

    The tiny model cannot tell the demo's classes apart (its class mix is near uniform, and with it
    this batch was flagged at AUC 0.71), so the model's reading is replaced by the true mix: what is
    tested is that the training sample follows the mix it is given.
    """
    import core.evaluation.site_check as sc

    one_hot = np.eye(len(parent.class_names))[parent.class_names.index("glioma")]
    monkeypatch.setattr(sc, "class_shares", lambda voters, outputs: one_hot)
    site = shutil.copytree(demo_root / "Testing" / "glioma", tmp_path / "glioma_only")
    result = sc.site_check(parent, site)
    assert result.n_images >= 20 and result.domain_auc is not None
    assert result.shift_detected is False, result.to_json()
    assert result.domain_auc < 0.55  # a training sample of all four classes: 0.61-0.68 over seeds 0-2
    assert result.class_mix["glioma"] == 1.0
    assert "Glioma 100 %" in sc.class_mix_sentence(result)


def test_the_class_mix_is_the_models_reading_of_the_site(parent, demo_root):
    from core.evaluation.site_check import site_check

    result = site_check(parent, demo_root / "Testing")
    assert set(result.class_mix) == set(parent.class_names)
    assert sum(result.class_mix.values()) == pytest.approx(1.0, abs=1e-3)
    assert all(0.0 <= v <= 1.0 for v in result.class_mix.values())


def test_matched_sample_follows_the_shares():
    from core.evaluation.site_check import matched_sample

    rng = np.random.default_rng(0)
    labels = np.repeat([0, 1, 2, 3, -1], [300, 300, 300, 5, 50])
    chosen = matched_sample(labels, np.array([0.7, 0.2, 0.05, 0.05]), 100, rng)
    counts = np.bincount(labels[chosen] + 1, minlength=5)  # shifted by one: index 0 counts the unknown folder
    assert counts[0] == 0  # an image of a class the model does not know is never drawn
    assert counts[1:].tolist() == [70, 20, 5, 5]
    assert len(set(chosen)) == len(chosen) == 100 and chosen == sorted(chosen)
    few = matched_sample(labels, np.array([0.0, 0.0, 0.0, 1.0]), 40, rng)
    assert np.bincount(labels[few] + 1, minlength=5).tolist() == [0, 0, 0, 0, 5]  # only 5 exist: all of them
    anyway = matched_sample(labels, np.zeros(4), 30, rng)  # no shares: a plain random sample
    assert len(anyway) == 30


def test_site_check_too_few_images_gives_no_verdict(parent, demo_root, tmp_path):
    from core.evaluation.site_check import MIN_IMAGES, site_check

    site = make_site(demo_root, tmp_path / "few", per_class=4)
    result = site_check(parent, site)
    assert result.n_images == 16 and result.domain_auc is None and result.shift_detected is None
    assert str(MIN_IMAGES) in result.advice and "16" in result.advice


def test_site_check_lists_unreadable_files_and_uses_the_rest(parent, demo_root, tmp_path):
    from core.evaluation.site_check import site_check

    site = make_site(demo_root, tmp_path / "site")
    (site / "broken.png").write_bytes(b"not an image")
    result = site_check(parent, site)
    assert result.n_images == n_demo_test(demo_root)
    assert [p for p, _ in result.unreadable] == ["broken.png"]


def test_site_check_refuses_missing_and_empty_folders(parent, tmp_path):
    from core.evaluation.site_check import site_check

    with pytest.raises(WorkbenchError, match="does not exist"):
        site_check(parent, tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(WorkbenchError, match="no image files"):
        site_check(parent, tmp_path / "empty")


def test_cli_site_check_json(parent, demo_root, tmp_path, capsys):
    from core.cli import main

    site = make_site(demo_root, tmp_path / "site")
    assert main(["site-check", "--model", parent.run_id, "--data", str(site), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert {"shift_detected", "domain_auc", "n_images", "signals", "advice"} <= set(out)
    assert set(out["signals"]) == {"intensity", "framing", "image_size", "colour_mode", "model_features"}
    assert all(0 <= s["auc"] <= 1 for s in out["signals"].values())
    assert [k for k, s in out["signals"].items() if not s["verdict"]] == ["image_size", "colour_mode"]
    assert main(["site-check", "--model", parent.run_id, "--data", str(site)]) == 0
    text = capsys.readouterr().out
    assert text.count("(not in the verdict: the model never sees it)") == 2
    assert main(["site-check", "--model", parent.run_id, "--data", str(tmp_path / "none")]) == 2


# --------------------------------------------------------------------------------------------
# adaptation: refusals
# --------------------------------------------------------------------------------------------


def _adapt(parent, site, **kw):
    from core.jobs import Job
    from core.training.adapt import AdaptConfig, adapt_model

    cfg = AdaptConfig(**{"epochs": 1, "replay": 40, "batch_size": 16, **kw})
    return adapt_model(parent, site, cfg, Job("adapt", "test"))


def _registry_names(parent) -> list[str]:
    return sorted(p.name for p in parent.path.parent.iterdir())


def test_adapt_refuses_one_class(parent, demo_root, tmp_path):
    site = make_site(demo_root, tmp_path / "one", classes={"glioma"})
    with pytest.raises(WorkbenchError, match="at least 2 classes"):
        _adapt(parent, site)
    assert _registry_names(parent) == [parent.run_id]


def test_adapt_refuses_class_names_the_model_does_not_know(parent, demo_root, tmp_path):
    from core.training.adapt_data import check_site_classes

    with pytest.raises(WorkbenchError, match="does not know the class.*pituitary.*it knows glioma, notumor"):
        check_site_classes(["glioma", "pituitary"], {"glioma": 9, "pituitary": 9}, ["glioma", "notumor"], "x")
    site = make_site(demo_root, tmp_path / "odd")
    shutil.copytree(site / "glioma", site / "astrocytoma")
    with pytest.raises(WorkbenchError, match="astrocytoma"):
        _adapt(parent, site)


def test_adapt_refuses_too_few_images_in_a_class(parent, demo_root, tmp_path):
    from core.training.adapt_data import MIN_PER_CLASS

    site = make_site(demo_root, tmp_path / "few")
    for f in sorted((site / "meningioma").iterdir())[MIN_PER_CLASS - 1:]:
        f.unlink()
    with pytest.raises(WorkbenchError, match=f"at least {MIN_PER_CLASS} readable images.*meningioma \\(4\\)"):
        _adapt(parent, site)
    assert _registry_names(parent) == [parent.run_id]


def test_adapt_settings_out_of_range_are_refused():
    from core.training.adapt import AdaptConfig

    for bad in ({"epochs": 0}, {"learning_rate": 0.0}, {"replay": -1}, {"batch_size": 0}):
        with pytest.raises(WorkbenchError):
            AdaptConfig(**bad)


def test_site_weights_balance_classes_and_sides():
    from core.training.adapt import site_weights

    y_site, y_rep = np.array([0, 0, 0, 1]), np.array([0, 1, 2, 3] * 10)
    w = site_weights(y_site, y_rep, 4)
    site, rep = w[:4], w[4:]
    assert np.isclose(site.sum(), rep.sum())  # each side half the weight
    assert np.isclose(site[:3].sum(), site[3])  # class 1's one image weighs as much as class 0's three
    assert np.isclose(w.mean(), 1.0)


# --------------------------------------------------------------------------------------------
# adaptation: the new run
# --------------------------------------------------------------------------------------------


def test_adapt_creates_a_new_run_and_never_changes_the_parent(parent, demo_root, tmp_path):
    from core.models.runs import best_run, list_runs, resolve_run

    site = make_site(demo_root, tmp_path / "site")
    (site / "glioma" / "broken.png").write_bytes(b"junk")
    # Two copies of the parent's own training images: said, and never in the site's test part.
    held = set(parent.card.data["val_files"]) | set(parent.card.data["test_files"])
    trained = [p for p in sorted((demo_root / "Training" / "notumor").iterdir())
               if p.relative_to(demo_root).as_posix() not in held][:2]
    for name in trained:
        shutil.copy(name, site / "notumor" / f"copy_{name.name}")
    parent_before = folder_digest(parent.path)
    result = _adapt(parent, site)
    assert folder_digest(parent.path) == parent_before
    run = resolve_run(result.run.run_id)
    assert run.run_id != parent.run_id and run.adapted
    lin = run.lineage
    assert lin["parent_run"] == parent.run_id and lin["chain"] == [parent.run_id]
    assert lin["site"]["fingerprint"] and lin["site"]["name"] == "site"
    copies = {Path(p).name for p in lin["site"]["copies_of_parent_training"]}
    assert {f"copy_{p.name}" for p in trained} <= copies
    assert not set(lin["site"]["copies_of_parent_training"]) & set(run.card.data["test_files"])
    assert [u["path"] for u in lin["site"]["unreadable"]] == ["glioma/broken.png"]
    assert {"learning_rate", "replayed_images", "epochs"} <= set(lin["recipe"])
    assert set(lin["before_after"]) == {"parent", "adapted"}
    assert f"adapted to site from {parent.run_id}" in run.label()
    assert run.card.results.conformal and run.card.results.trust
    assert run.card.data["kind"] == "site" and run.card.data["test_files"]
    # Never the default for other data, however it scores.
    assert best_run(list_runs()).run_id == parent.run_id
    assert best_run([run]) is None
    out = result.to_json()
    assert {"run_id", "before", "after"} <= set(out)
    for side in ("before", "after"):
        assert 0 <= out[side]["site"] <= 1 and 0 <= out[side]["source"] <= 1


def test_adapting_an_adapted_run_keeps_the_whole_lineage(parent, demo_root, tmp_path):
    from core.models.runs import resolve_run

    site = make_site(demo_root, tmp_path / "site")
    first = _adapt(parent, site).run
    second = _adapt(resolve_run(first.run_id), site, seed=2).run
    assert second.lineage["chain"] == [parent.run_id, first.run_id]
    assert second.lineage["parent_run"] == first.run_id


def test_adapt_cancel_leaves_no_run(parent, demo_root, tmp_path):
    from core.jobs import Job, JobCancelled
    from core.training.adapt import AdaptConfig, adapt_model

    site = make_site(demo_root, tmp_path / "site")
    job = Job("adapt", "cancel me")
    calls = {"n": 0}
    original = job.check_cancelled

    def cancel_later():
        calls["n"] += 1
        if calls["n"] == 4:  # after the model was loaded and the staging folder exists
            job.cancel()
        original()

    job.check_cancelled = cancel_later
    with pytest.raises(JobCancelled):
        adapt_model(parent, site, AdaptConfig(epochs=2, replay=20, batch_size=16), job)
    assert _registry_names(parent) == [parent.run_id]  # no run, no staging folder


def test_parent_changed_during_adaptation_publishes_nothing(parent, demo_root, tmp_path, monkeypatch):
    import core.training.adapt as adapt

    site = make_site(demo_root, tmp_path / "site")
    original = adapt._fine_tune

    def tamper(*args, **kwargs):
        out = original(*args, **kwargs)
        card = parent.path / "card.json"  # recalibrated meanwhile: its answers' probabilities change
        data = json.loads(card.read_text())
        data["results"]["temperature"] = 3.0
        card.write_text(json.dumps(data, indent=2))
        return out

    monkeypatch.setattr(adapt, "_fine_tune", tamper)
    with pytest.raises(WorkbenchError, match="deleted or changed while it was adapted"):
        _adapt(parent, site)
    assert _registry_names(parent) == [parent.run_id]


def test_parent_deleted_during_adaptation_publishes_nothing(parent, demo_root, tmp_path, monkeypatch):
    import core.training.adapt as adapt

    site = make_site(demo_root, tmp_path / "site")
    original = adapt._fine_tune

    def delete(*args, **kwargs):
        out = original(*args, **kwargs)
        shutil.rmtree(parent.path)
        return out

    monkeypatch.setattr(adapt, "_fine_tune", delete)
    with pytest.raises(WorkbenchError, match="deleted or changed"):
        _adapt(parent, site)
    assert list(parent.path.parent.iterdir()) == []


def test_cli_adapt_json(parent, demo_root, tmp_path, capsys):
    from core.cli import main

    site = make_site(demo_root, tmp_path / "site")
    code = main(["adapt", "--model", parent.run_id, "--data", str(site), "--epochs", "1", "--replay", "20",
                 "--json"])
    assert code == 0
    out = json.loads(capsys.readouterr().out)
    assert out["run_id"] != parent.run_id and out["parent_run"] == parent.run_id
    assert {"site", "source"} <= set(out["before"]) and {"site", "source"} <= set(out["after"])
    one = make_site(demo_root, tmp_path / "one", classes={"glioma"})
    assert main(["adapt", "--model", parent.run_id, "--data", str(one)]) == 2
    assert "at least 2 classes" in capsys.readouterr().err


def test_adapted_run_exports_like_any_run(parent, demo_root, tmp_path):
    from core.export.bundle import export_run

    run = _adapt(parent, make_site(demo_root, tmp_path / "site")).run
    out = export_run(run, "keras", tmp_path / "adapted.zip")
    assert out.path.is_file() and out.max_abs_diff < 1e-4


# --------------------------------------------------------------------------------------------
# real data: the committed default model
# --------------------------------------------------------------------------------------------


@pytest.mark.realdata
def test_default_models_own_held_out_test_is_not_flagged(real_data_dir):
    """The run's own held-out test images come from the training source: no shift may be reported."""
    from core.evaluation.site_check import check_paths
    from core.models.runs import best_run, list_runs

    run = best_run(list_runs(Path(__file__).resolve().parents[2] / "models"))
    rng = np.random.default_rng(3)
    files = list(run.card.data["test_files"])
    sample = [run.data_root / files[i] for i in sorted(rng.choice(len(files), 300, replace=False))]
    result = check_paths(run, sample, run.data_root)
    assert result.n_images == 300
    assert result.shift_detected is False, result.to_json()
    assert result.domain_auc < 0.6


@pytest.mark.realdata
def test_the_defaults_own_held_out_slices_of_one_class_are_not_a_new_site(real_data_dir, tmp_path):
    """198 held-out glioma slices of the default's own source: flagged at AUC 0.89 before the training
    sample followed the batch's class mix (a tumour clinic told its images came from another site)."""
    from core.evaluation.site_check import check_paths
    from core.models.runs import best_run, list_runs

    run = best_run(list_runs(Path(__file__).resolve().parents[2] / "models"))
    files = [f for f in run.card.data["test_files"] if Path(f).parent.name == "glioma"]
    result = check_paths(run, [run.data_root / f for f in files], run.data_root)
    assert result.n_images == len(files) > 150
    assert result.shift_detected is False, result.to_json()
    assert max(result.class_mix, key=result.class_mix.get) == "glioma"


def test_a_parent_trained_with_progressive_resizing_can_be_adapted():
    """A member of the default ensemble spent 20 of its 28 epochs at 64 px; its adapted card (8 epochs at
    one size) must not carry those 20 small epochs, which a config of 8 epochs refuses."""
    from core.training.adapt import AdaptConfig
    from core.training.adapt_card import adapted_train_config
    from core.training.config import TrainConfig

    parent = TrainConfig(image_size=96, epochs=28, small_epochs=20, small_image_size=64, average_epochs=2)
    out = adapted_train_config(parent, AdaptConfig(epochs=8))
    assert (out.epochs, out.small_epochs, out.average_epochs, out.image_size) == (8, 0, 0, 96)
    assert out.learning_rate == AdaptConfig().learning_rate


# --------------------------------------------------------------------------------------------
# a flagged batch marks every slice (Predict page, CLI predict)
# --------------------------------------------------------------------------------------------


def _predict_json(argv: list[str], capsys) -> tuple[int, list[dict], str]:
    from core.cli import main

    code = main(["predict", *argv, "--json"])
    out = capsys.readouterr()
    return code, json.loads(out.out), out.err


def test_cli_predict_marks_every_slice_of_a_restyled_batch(parent, demo_root, tmp_path, capsys):
    from core.inference.notices import MIN_IMAGES, SITE_SHIFT

    files = [str(p) for p in sorted(p for p in make_site(demo_root, tmp_path / "site").rglob("*") if p.is_file())]
    assert len(files) >= MIN_IMAGES
    code, rows, err = _predict_json(["--model", parent.run_id, *files], capsys)
    assert code == 0 and len(rows) == len(files)
    assert all(SITE_SHIFT in r["flags"] for r in rows) and "site check:" in err
    assert all(any("can be told apart from the model's training images" in w for w in r["warnings"]) for r in rows)

    code, rows, _ = _predict_json(["--model", parent.run_id, "--no-site-check", *files], capsys)
    assert code == 0 and not any(SITE_SHIFT in r["flags"] for r in rows)
    code, rows, err = _predict_json(["--model", parent.run_id, *files[:MIN_IMAGES - 1]], capsys)
    assert code == 0 and not any(SITE_SHIFT in r["flags"] for r in rows) and "site check" not in err


def test_cli_predict_leaves_a_batch_like_the_training_images_unmarked(parent, demo_root, tmp_path, capsys):
    from core.inference.notices import SITE_SHIFT

    files = [str(p) for p in sorted(p for p in copy_demo_test(demo_root, tmp_path / "same").rglob("*") if p.is_file())]
    code, rows, err = _predict_json(["--model", parent.run_id, *files], capsys)
    assert code == 0 and len(rows) == len(files) and "look like the training images" in err
    assert not any(SITE_SHIFT in r["flags"] for r in rows)


def test_cli_predict_still_answers_when_the_site_check_cannot_run(parent, demo_root, tmp_path, capsys, monkeypatch):
    import core.evaluation.site_check as site_check_module
    from core.errors import WorkbenchError

    def refuse(*a, **k):
        raise WorkbenchError("the model's training images are not on this machine, so there is nothing to "
                             "compare with", "x")

    monkeypatch.setattr(site_check_module, "reference_files", refuse)  # no training images, no stored sample
    files = [str(p) for p in sorted(p for p in make_site(demo_root, tmp_path / "site").rglob("*") if p.is_file())]
    code, rows, err = _predict_json(["--model", parent.run_id, *files], capsys)
    assert code == 0 and all(r["label"] for r in rows)
    assert "site check not run: " in err and "not on this machine" in err
    assert "no sample of them is kept with the model" in err

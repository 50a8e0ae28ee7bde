"""Ensembles' prediction sets calibrated on their members' averaged out-of-fold scores
(core.training.ensemble_oof), each member's scores kept in its ``oof.npz`` (core.inference.oof_store)."""

from __future__ import annotations

import json
import shutil
from collections import Counter

import numpy as np
import pytest
from fixtures_models import tiny_ensemble, tiny_run  # noqa: F401 - fixtures
from test_oof_store import stand_in_run

from core.cli import main
from core.errors import WorkbenchError
from core.inference.oof_store import OOF_FILE, OutOfFold, depends_on, load_oof
from core.training.ensemble_oof import align, check_same_training

TINY_FOLDS = {"max_train_batches": 1}  # fold models see one batch: seconds, not minutes


def test_members_are_matched_by_training_file_not_by_row(tmp_path):
    (a, oof_a), (b, oof_b) = stand_in_run(tmp_path, seed=0), stand_in_run(tmp_path, seed=1)
    order = np.random.default_rng(3).permutation(len(oof_b.files))
    shuffled = OutOfFold(tuple(np.array(oof_b.files)[order]), oof_b.labels[order], oof_b.probs[order], (1.0, 1.0))
    files, labels, stacked = align([a, b], [oof_a, shuffled])
    assert files == oof_a.files and np.array_equal(labels, oof_a.labels)
    assert np.array_equal(stacked[0], oof_a.probs) and np.array_equal(stacked[1], oof_b.probs)


def test_members_with_other_training_files_are_refused(tmp_path):
    (a, oof_a), (b, oof_b) = stand_in_run(tmp_path, seed=0), stand_in_run(tmp_path, seed=1)
    other = OutOfFold(("glioma/elsewhere.png",) + oof_b.files[1:], oof_b.labels, oof_b.probs, (1.0, 1.0))
    with pytest.raises(WorkbenchError, match="training images differ.*glioma/img0.png is a training image of run-0"):
        align([a, b], [oof_a, other])
    b.card.data["train_hashes"] = b.card.data["train_hashes"][1:]
    with pytest.raises(WorkbenchError, match="trained on different images"):
        check_same_training([a, b])
    b.data_root = tmp_path / "elsewhere"
    with pytest.raises(WorkbenchError, match="different data folders"):
        check_same_training([a, b])


# --- real runs and ensembles -----------------------------------------------------------------------


@pytest.fixture
def ensemble_copy(tiny_ensemble, tmp_path, monkeypatch):  # noqa: F811
    """A writable copy of the tiny ensemble's registry (the ensemble and both members); (ensemble, members)."""
    from core.models.ensemble import member_runs
    from core.models.runs import resolve_run

    models = tmp_path / "models"
    shutil.copytree(tiny_ensemble.path.parent, models)
    monkeypatch.setenv("WORKBENCH_MODELS_DIR", str(models))
    run = resolve_run(tiny_ensemble.run_id)
    return run, member_runs(run)


def _fake_fold_models(monkeypatch) -> list[int]:
    """Fold training replaced by random probabilities (fast); returns the images each fold scored."""
    import core.training.out_of_fold as out_of_fold

    scored: list[int] = []

    def fake(part, images, cfg, spec, n_classes, log, job):
        scored.append(len(images))
        return np.random.default_rng(len(scored)).dirichlet(np.ones(n_classes), size=len(images)), 1.0

    monkeypatch.setattr(out_of_fold, "_fold_probabilities", fake)
    return scored


def _no_fold_training(monkeypatch) -> None:
    import core.training.out_of_fold as out_of_fold

    def refuse(*_args, **_kwargs):
        raise AssertionError("a fold model was trained although stored scores fit")

    monkeypatch.setattr(out_of_fold, "_fold_probabilities", refuse)


def _train_counts(run) -> Counter:
    return Counter({c: int(n) for c, n in run.card.data["counts"]["train"].items()})


@pytest.mark.slow
def test_ensemble_scores_every_training_image_once_and_reuses_the_members_files(ensemble_copy, monkeypatch):
    from core.training.ensemble_oof import ensemble_out_of_fold

    run, members = ensemble_copy
    log: list[str] = []
    probs, labels, summary = ensemble_out_of_fold(run, 2, log.append, cfg_override=TINY_FOLDS)
    n_train = sum(_train_counts(members[0]).values())
    assert probs.shape == (n_train, len(run.class_names)) and np.allclose(probs.sum(axis=1), 1)
    assert Counter(run.class_names[k] for k in labels) == _train_counts(members[0])
    stored = [load_oof(m, depends_on(m, 2, TINY_FOLDS))[0] for m in members]
    assert all(s is not None and len(set(s.files)) == n_train for s in stored)  # every image once, per member
    _, _, member_probs = align(members, stored)
    assert np.allclose(probs, member_probs.mean(axis=0))  # the ensemble's own combination: the plain mean
    assert [m["reused"] for m in summary["members"]] == [False, False] and summary["n_images"] == n_train
    assert summary["oof_accuracy"] == pytest.approx(float((probs.argmax(axis=1) == labels).mean()))

    _no_fold_training(monkeypatch)
    log.clear()
    again, labels_again, summary = ensemble_out_of_fold(run, 2, log.append, cfg_override=TINY_FOLDS)
    assert np.array_equal(again, probs) and np.array_equal(labels_again, labels)
    assert [m["reused"] for m in summary["members"]] == [True, True]
    assert sum("reusing its stored out-of-fold scores" in line for line in log) == len(members)


@pytest.mark.slow
def test_ensemble_sets_grow_by_the_out_of_fold_images_and_still_cover(ensemble_copy, monkeypatch, capsys):
    from core.inference.calibration import softmax
    from core.inference.conformal import run_conformal
    from core.inference.ensemble_fit import ensemble_logits
    from core.inference.ensemble_predict import EnsemblePredictor
    from core.models.runs import resolve_run
    from core.training.ensemble_oof import ensemble_out_of_fold

    run, members = ensemble_copy
    registered = run_conformal(run)  # fitted at registration on the validation images
    before = registered.n_per_class
    scored = _fake_fold_models(monkeypatch)
    args = ["calibrate", "--model", run.run_id, "--conformal-only", "--conformal-folds", "2", "--json"]
    assert main(args) == 0
    out = json.loads(capsys.readouterr().out)
    assert len(scored) == 2 * len(members) and all((m.path / OOF_FILE).is_file() for m in members)

    run = resolve_run(run.run_id)
    cal = run_conformal(run)  # the staleness check passes: temperature 1 and tta "none", as the card says
    assert run.card.temperature == 1.0 and run.card.tta == "none"
    counts = _train_counts(members[0])
    assert cal.n_per_class == {c: before[c] + counts[c] for c in run.class_names} == out["n_per_class"]
    oof = out["out_of_fold"]
    assert [m["run_id"] for m in oof["members"]] == [m.run_id for m in members]
    assert all(0 <= m["oof_accuracy"] <= 1 for m in oof["members"]) and 0 <= oof["oof_accuracy"] <= 1
    assert oof["folds"] == 2 and "out of fold" in out["fitted_on"] and "member" in out["fitted_on"]

    _no_fold_training(monkeypatch)  # what the sets were fitted on, again, from the stored files
    paths, val_labels = run.validation_set()
    oof_probs, oof_labels, _ = ensemble_out_of_fold(run, 2, lambda _: None)
    probs = np.vstack([softmax(ensemble_logits(run, paths), 1.0), oof_probs])
    y = np.concatenate([val_labels, oof_labels])
    for coverage in (0.8, 0.9, 0.95):
        hit = cal.sets(probs, coverage)[np.arange(len(y)), y]
        assert all(hit[y == k].mean() >= coverage for k in range(len(run.class_names)))  # in-sample guarantee
    assert EnsemblePredictor(run).conformal.n_per_class == cal.n_per_class  # Predict reads the new sets

    assert main(args) == 0  # a second calibration trains nothing
    captured = capsys.readouterr()
    assert json.loads(captured.out)["n_per_class"] == cal.n_per_class
    assert captured.err.count("reusing its stored out-of-fold scores") == len(members)
    member = args.copy()
    member[2] = members[0].run_id  # the member calibrated alone reuses its file too
    assert main(member) == 0
    alone = json.loads(capsys.readouterr().out)
    assert alone["out_of_fold"]["reused"] is True
    assert sum(alone["n_per_class"].values()) == len(members[0].card.data["val_files"]) + sum(counts.values())

    assert main(args[:4] + ["--json"]) == 0  # validation images alone: the registration's sets again
    capsys.readouterr()
    refit = run_conformal(resolve_run(run.run_id))
    assert refit.n_per_class == before and refit.score == registered.score
    assert all(np.allclose(a, b, atol=1e-9) for a, b in zip(refit.sorted_scores, registered.sorted_scores))


@pytest.mark.slow
@pytest.mark.parametrize("damage", ["truncated", "other-folds"])
def test_a_stale_member_file_is_computed_again_and_replaced(ensemble_copy, monkeypatch, capsys, damage):
    from core.training.out_of_fold import stored_or_computed

    run, members = ensemble_copy
    member = members[0]
    scored = _fake_fold_models(monkeypatch)
    stored_or_computed(member, 3 if damage == "other-folds" else 2, lambda _: None)
    path = member.path / OOF_FILE
    if damage == "truncated":
        path.write_bytes(path.read_bytes()[:100])
    scored.clear()
    log: list[str] = []
    oof, reused = stored_or_computed(member, 2, log.append)
    assert not reused and len(scored) == 2 and oof.folds == 2
    assert any(("damaged" if damage == "truncated" else "another number of folds") in line for line in log)
    assert load_oof(member, depends_on(member, 2))[0] is not None  # replaced by a file that fits


@pytest.mark.slow
def test_members_trained_on_other_images_are_refused_before_any_training(ensemble_copy, monkeypatch, capsys):
    run, members = ensemble_copy
    card_path = members[1].path / "card.json"
    card = json.loads(card_path.read_text())
    card["data"]["train_hashes"] = card["data"]["train_hashes"][1:]
    card_path.write_text(json.dumps(card))
    _no_fold_training(monkeypatch)
    assert main(["calibrate", "--model", run.run_id, "--conformal-only", "--conformal-folds", "2"]) == 2
    err = capsys.readouterr().err
    assert "trained on different images" in err and members[1].run_id in err
    assert not any((m.path / OOF_FILE).exists() for m in members)


@pytest.mark.slow
def test_a_changed_member_model_is_refused(ensemble_copy, capsys):
    run, members = ensemble_copy
    with open(members[0].model_path, "ab") as fh:
        fh.write(b"\0")
    assert main(["calibrate", "--model", run.run_id, "--conformal-only", "--conformal-folds", "2"]) == 2
    assert "checksum differs" in capsys.readouterr().err

"""The training sample kept beside a model for the site check (``site_reference.npz``), and the batch check
that reuses a prediction's own images and network features (``check_results``).

A clinic has the model but not the training collection: with the stored sample the check must still run
there, give the verdict the training images would give, and never use a sample that describes other
networks. The tiny ensemble (a 32-px head-crop member and a 48-px whole-frame member) is the model.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from core.errors import WorkbenchError

pytestmark = pytest.mark.slow


@pytest.fixture
def ensemble(tiny_ensemble_copy):
    return tiny_ensemble_copy

EVERY_IMAGE = 10**6  # a pool per class larger than the tiny dataset: the stored sample is the whole training set


@pytest.fixture
def site(demo_root, tmp_path):
    from test_site import make_site

    return make_site(demo_root, tmp_path / "site")  # the demo's Testing images, darker and resized


@pytest.fixture
def no_training_images(monkeypatch):
    """The model's training folder is not on this machine (a clinic's computer)."""
    import core.evaluation.site_check as site_check_module

    def refuse(run):
        raise WorkbenchError("the model's training images are not on this machine, so there is nothing to compare "
                             "with", str(run.data_root))

    monkeypatch.setattr(site_check_module, "reference_files", refuse)


def _keep(run, per_class: int = EVERY_IMAGE):
    from core.evaluation.site_reference import build_reference, save_reference

    reference = build_reference(run, per_class)
    return reference, save_reference(run, reference)


def _predicted(run, folder):
    from core.inference.ensemble_predict import load_predictor
    from core.inference.predict import predict_files

    items = [(p.name, p.read_bytes()) for p in sorted(folder.rglob("*")) if p.is_file()]
    return predict_files(load_predictor(run.run_id), items)


# --- the stored sample ---------------------------------------------------------------------------


def test_the_stored_sample_holds_numbers_of_every_network_and_no_pixels(ensemble):
    from core.classes import folder_class_indices
    from core.evaluation.site_reference import REFERENCE_FILE, load_reference
    from core.models.ensemble import member_runs
    from core.models.lineage import reference_files

    reference, path = _keep(ensemble, per_class=3)
    assert path == ensemble.path / REFERENCE_FILE
    labels = folder_class_indices(reference_files(ensemble), ensemble.class_names)
    assert len(reference.table) == 3 * len(set(labels.tolist())) and reference.drawn_from == len(labels)
    assert np.bincount(reference.labels).tolist() == [3] * len(ensemble.class_names)
    members = member_runs(ensemble)
    assert reference.networks == {m.run_id: m.card.model_sha256 for m in members}
    with np.load(path, allow_pickle=False) as z:  # plain arrays: nothing pickled, nothing image-shaped
        assert all(z[k].ndim <= 2 for k in z.files), {k: z[k].shape for k in z.files}
    loaded, problem = load_reference(ensemble, reference.networks)
    assert problem is None and loaded is not None
    assert loaded.labels.tolist() == reference.labels.tolist()
    assert np.allclose(loaded.table.stats.to_numpy(), reference.table.stats.to_numpy())
    for run_id, feats in reference.table.features.items():
        assert feats.shape[0] == len(reference.table) and np.array_equal(loaded.table.features[run_id], feats)


def test_the_stored_sample_gives_the_verdict_the_training_images_give(ensemble, site):
    from core.evaluation.site_check import site_check

    live = site_check(ensemble, site)
    _keep(ensemble)  # every training image: the same draw in the batch's class mix, from numbers instead
    stored = site_check(ensemble, site)
    assert live.shift_detected is True and "training folder" in live.reference
    assert "kept with the model" in stored.reference
    assert stored.domain_auc == pytest.approx(live.domain_auc, abs=1e-9)
    assert {k: s["auc"] for k, s in stored.signals.items()} == {k: s["auc"] for k, s in live.signals.items()}


def test_the_check_runs_without_the_training_images_when_a_sample_is_kept(ensemble, site, no_training_images):
    from core.evaluation.site_check import site_check

    _keep(ensemble)  # (reads the training folder itself: the fixture hides it from the check only)
    result = site_check(ensemble, site)
    assert result.shift_detected is True and result.n_reference > 0 and "kept with the model" in result.reference


def test_without_a_sample_or_the_training_images_the_check_says_both(ensemble, site, no_training_images):
    from core.evaluation.site_check import site_check

    with pytest.raises(WorkbenchError, match="not on this machine.*no sample of them is kept with the model"):
        site_check(ensemble, site)


def test_a_sample_of_other_networks_is_never_used(ensemble, site, no_training_images):
    import dataclasses

    from core.evaluation.site_check import site_check
    from core.evaluation.site_reference import build_reference, load_reference, save_reference

    real = build_reference(ensemble, 3)  # (reads the training folder itself: the fixture hides it from the check)
    first = next(iter(real.networks))  # a sample kept for an earlier version of one member
    save_reference(ensemble, dataclasses.replace(real, networks={**real.networks, first: "0" * 64}))
    loaded, problem = load_reference(ensemble, real.networks)
    assert loaded is None and "another version of the model's networks" in problem
    with pytest.raises(WorkbenchError, match="its stored sample of them cannot be used"):
        site_check(ensemble, site)


@pytest.mark.parametrize("damage", ["garbage", "truncated", "other_classes", "float_hashes", "nan_stats"])
def test_a_damaged_or_foreign_sample_is_refused_not_read(ensemble, damage):
    import dataclasses

    from core.evaluation.site_reference import REFERENCE_FILE, load_reference, save_reference

    reference, path = _keep(ensemble, per_class=3)
    table = reference.table
    if damage == "garbage":
        path.write_bytes(b"not a numpy archive")
    elif damage == "truncated":
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    elif damage == "other_classes":
        save_reference(ensemble, dataclasses.replace(reference, class_names=tuple(reversed(reference.class_names))))
    elif damage == "float_hashes":  # the near-copy grouping would fail on them, deep inside the check
        save_reference(ensemble, dataclasses.replace(reference, table=dataclasses.replace(
            table, hashes=table.hashes.astype(np.float64))))
    else:
        stats = table.stats.copy()
        stats.iloc[0, 0] = np.nan
        save_reference(ensemble, dataclasses.replace(reference, table=dataclasses.replace(table, stats=stats)))
    loaded, problem = load_reference(ensemble, reference.networks)
    assert loaded is None and problem and "training images" in problem
    assert (ensemble.path / REFERENCE_FILE).is_file()  # refused, never deleted: a person decides


# --- the batch check reuses the prediction ------------------------------------------------------


def test_predictions_carry_each_networks_features_as_the_site_check_computes_them(ensemble, site):
    from core.data.site_images import list_site_files, read_sample
    from core.evaluation.site_features import feature_runs, model_inputs, network_outputs

    results = _predicted(ensemble, site)
    nets = feature_runs(ensemble)
    assert all(set(r.features) == {n.run_id for n in nets} for r in results)
    sample = read_sample(list_site_files(site), model_inputs(nets))
    for net, out in zip(nets, network_outputs(nets, sample)):
        shared = np.stack([r.features[net.run_id] for r in results])
        assert shared.shape == out.features.shape
        assert np.allclose(shared, out.features, rtol=1e-4, atol=1e-4)


def test_the_batch_check_of_a_prediction_runs_no_network_when_a_sample_is_kept(ensemble, site, forward_inputs):
    from core.evaluation.site_check import check_results, site_check

    _keep(ensemble)
    results = _predicted(ensemble, site)
    forward_inputs.clear()
    check = check_results(ensemble, results)
    assert forward_inputs == []  # neither the batch nor the training sample was run again
    assert check.shift_detected is True and check.n_images == len(results)
    assert check.domain_auc == pytest.approx(site_check(ensemble, site).domain_auc, abs=0.05)


def test_the_batch_check_refuses_answers_another_model_made(ensemble, site):
    from core.evaluation.site_check import check_results

    results = _predicted(ensemble, site)
    for r in results:
        r.features = {"some-other-run": next(iter(r.features.values()))}
    with pytest.raises(WorkbenchError, match="not made by this model"):
        check_results(ensemble, results)


# --- kept at the end of training ------------------------------------------------------------------


def test_a_training_job_keeps_the_sample_as_its_last_step(ensemble):
    from core.evaluation.site_reference import keep_after_training, kept_reference
    from core.jobs import Job

    job = Job("train", "t")
    assert keep_after_training(ensemble, job) is ensemble
    assert kept_reference(ensemble)[0] is not None
    assert "kept a sample of" in job.snapshot().log[-1]
    assert keep_after_training(None, job) is None  # another worker's share of a multi-worker run: nothing to keep


def test_a_sample_that_cannot_be_kept_is_said_and_the_model_stays(ensemble, monkeypatch):
    import core.models.lineage as lineage
    from core.evaluation.site_reference import REFERENCE_FILE, keep_after_training
    from core.jobs import Job

    def gone(run):
        raise WorkbenchError("the model's training images are not on this machine", str(run.data_root))

    monkeypatch.setattr(lineage, "reference_files", gone)
    job = Job("train", "t")
    assert keep_after_training(ensemble, job) is ensemble  # no exception: the model itself is complete
    line = job.snapshot().log[-1]
    assert "was not kept" in line and "training images are not on this machine" in line
    assert "python -m core site-reference" in line and not (ensemble.path / REFERENCE_FILE).exists()


def test_a_cancel_before_the_last_step_skips_the_sample(ensemble):
    from core.evaluation.site_reference import REFERENCE_FILE, keep_after_training
    from core.jobs import Job

    job = Job("train", "t")
    job.cancel()
    assert keep_after_training(ensemble, job) is ensemble
    assert "not kept (cancelled)" in job.snapshot().log[-1] and not (ensemble.path / REFERENCE_FILE).exists()


# --- the command line ----------------------------------------------------------------------------


def test_cli_site_reference_json_and_its_bounds(ensemble, capsys):
    from core.cli import main

    assert main(["site-reference", "--model", ensemble.run_id, "--per-class", "20", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["run_id"] == ensemble.run_id and out["images"] > 0 and out["bytes"] > 0
    assert (ensemble.path / "site_reference.npz").is_file()
    assert main(["site-reference", "--model", ensemble.run_id, "--per-class", "5"]) == 2
    assert "--per-class" in capsys.readouterr().err


def test_a_sample_whose_features_cannot_be_the_networks_is_refused_with_words(ensemble, site, no_training_images):
    import dataclasses

    from core.evaluation.site_check import site_check
    from core.evaluation.site_reference import save_reference

    reference, _ = _keep(ensemble)
    table = reference.table
    narrow = {k: f[:, :3] for k, f in table.features.items()}  # the checksums still match; the numbers cannot
    save_reference(ensemble, dataclasses.replace(reference, table=dataclasses.replace(table, features=narrow)))
    with pytest.raises(WorkbenchError, match="does not fit this model's networks"):
        site_check(ensemble, site)

"""Site adaptation of an ENSEMBLE run: every member adapted on one site split, a new ensemble of them.

Two tiny members (a head-crop 32-px and a whole-frame 40-px custom CNN) are trained once for the
module and registered as an ensemble; the site is the demo's Testing images re-styled
(tests/training/test_site.py). One adaptation, run once through the CLI, serves the tests that
only read its result; the others adapt in a private copy of the registry.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import shutil
from pathlib import Path

import pytest

from core.errors import WorkbenchError

pytestmark = pytest.mark.slow

SIZES = ((32, "head-v2", 1), (40, "gray-uint8-resize-area-v1", 2))


def folder_digest(folder: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(folder.rglob("*")):
        if p.is_file():
            h.update(p.relative_to(folder).as_posix().encode() + p.read_bytes())
    return h.hexdigest()


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory, demo_root: Path):
    """(models folder, ensemble run id, site folder): two tiny members and their ensemble."""
    return build_ensemble_source(tmp_path_factory.mktemp("adapt_ensemble"), demo_root)


def build_ensemble_source(base: Path, demo_root: Path) -> tuple[Path, str, Path]:
    """Train two tiny members under ``base``, register their ensemble and write a re-styled site."""
    from fixtures_models import train_members
    from test_site import make_site

    from core.inference.ensemble_fit import register_ensemble

    members = train_members(base, demo_root, SIZES)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("WORKBENCH_CACHE_DIR", str(base / "cache"))
        ensemble = register_ensemble([m.run_id for m in members], root=base / "models")
    site = make_site(demo_root, base / "site")
    return base / "models", ensemble.run_id, site


@pytest.fixture
def registry(source, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private copy of the registry (tests adapt, cancel and tamper in it)."""
    root = tmp_path / "models"
    shutil.copytree(source[0], root)
    monkeypatch.setenv("WORKBENCH_MODELS_DIR", str(root))
    return root


@pytest.fixture(scope="module")
def adapted(source, tmp_path_factory: pytest.TempPathFactory):
    """One adaptation of the ensemble through ``python -m core adapt --json``, in its own registry copy:
    (registry, the parsed JSON, the original registry's folder digests before)."""
    from core.cli import main

    models, ens_id, site = source
    root = tmp_path_factory.mktemp("adapted") / "models"
    shutil.copytree(models, root)
    before = {p.name: folder_digest(p) for p in root.iterdir()}
    out = io.StringIO()
    with pytest.MonkeyPatch.context() as mp, contextlib.redirect_stdout(out):
        mp.setenv("WORKBENCH_MODELS_DIR", str(root))
        mp.setenv("WORKBENCH_CACHE_DIR", str(root.parent / "cache"))
        code = main(["adapt", "--model", ens_id, "--data", str(site), "--epochs", "1", "--replay", "20", "--json"])
    assert code == 0
    return root, json.loads(out.getvalue()), before


def _adapt(parent, site, job=None, **kw):
    from core.jobs import Job
    from core.training.adapt import AdaptConfig
    from core.training.adapt_ensemble import adapt_run

    cfg = AdaptConfig(**{"epochs": 1, "replay": 20, "batch_size": 16, "source_check": 40, **kw})
    return adapt_run(parent, site, cfg, job or Job("adapt", "test"))


def _names(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir())


# --- the split: once, read by each member its own way ---------------------------------------------


def test_one_split_is_read_by_each_member_with_its_own_size_and_preprocessing(source):
    from core.models.ensemble import member_runs
    from core.models.runs import resolve_run
    from core.training.adapt_data import prepare_site, split_site

    models, ens_id, site_dir = source
    ens = resolve_run(ens_id, root=models)
    members = member_runs(ens)
    site = split_site(site_dir, ens, seed=1)
    assert site.x == {} and site.read_as is None  # split only: no image read yet
    read = [site.read_for(m) for m in members]
    for m, r in zip(members, read):
        assert r.read_as == (m.image_size, m.preprocessing)
        for part in ("adapt", "val", "test"):
            assert r.x[part].shape == (len(site.y[part]), m.image_size, m.image_size, 1)
            assert (r.y[part] == site.y[part]).all() and r.paths(part) == site.paths(part)
    assert site.x == {}  # reading gave new objects; the split itself is unchanged
    # a single run: prepare_site is the split read for that run, as before
    single = prepare_site(site_dir, members[0], seed=1)
    assert single.paths("test") == site.paths("test") and (single.x["test"] == read[0].x["test"]).all()


def test_a_run_with_other_classes_cannot_read_the_split(source):
    from core.models.ensemble import member_runs
    from core.models.runs import resolve_run
    from core.training.adapt_data import split_site

    models, ens_id, site_dir = source
    member = member_runs(resolve_run(ens_id, root=models))[0]
    site = split_site(site_dir, member, seed=1)
    site.class_names = list(reversed(site.class_names))
    with pytest.raises(WorkbenchError, match="classes differ"):
        site.read_for(member)


# --- the adapted ensemble ---------------------------------------------------------------------------


def test_adapt_an_ensemble_creates_an_adapted_ensemble_of_adapted_members(adapted, source):
    from core.models.ensemble import member_runs
    from core.models.runs import resolve_run

    root, out, before = adapted
    _, ens_id, _ = source
    assert set(out) == {"run_id", "parent_run", "before", "after", "site", "members", "kept", "verdict"}
    assert out["parent_run"] == ens_id
    # one line per adapted member: which weights its adaptation kept, and why
    assert [k.split(":")[0] for k in out["kept"]] == out["members"] and all("kept " in k for k in out["kept"])
    assert out["verdict"]["use"] in ("adapted", "original", "unclear") and out["verdict"]["text"]
    for side in ("before", "after"):
        assert {"site", "source"} <= set(out[side])
        assert 0 <= out[side]["site"] <= 1 and 0 <= out[side]["source"] <= 1
    ens = resolve_run(out["run_id"], root=root)
    parent = resolve_run(ens_id, root=root)
    old_members = [m.run_id for m in member_runs(parent)]
    assert ens.card.is_ensemble and ens.adapted and ens.run_id not in before
    members = member_runs(ens)  # checksums verified
    assert [m.run_id for m in members] == out["members"] and not set(out["members"]) & set(before)
    assert _names(root) == sorted([*before, ens.run_id, *out["members"]])  # nothing else, no staging folder
    lin = ens.lineage
    assert lin["parent_run"] == ens_id and lin["chain"] == [ens_id]
    assert lin["members"] == {"parent": old_members, "adapted": out["members"]}
    assert set(lin["before_after"]) == {"parent", "adapted"}
    for side, key in (("parent", "before"), ("adapted", "after")):  # recorded like a single adapted run's table
        for part in ("site", "source"):
            assert lin["before_after"][side][part]["accuracy"] == out[key][part]
            assert lin["before_after"][side][part]["n"] == out[key][f"{part}_n"]
    assert lin["site"]["name"] == "site" and lin["site"]["fingerprint"]
    for old, new in zip(old_members, members):
        assert new.adapted and new.lineage["parent_run"] == old
        assert new.lineage["site"]["fingerprint"] == lin["site"]["fingerprint"]
        assert (new.image_size, new.preprocessing) == (resolve_run(old, root=root).image_size,
                                                       resolve_run(old, root=root).preprocessing)
    assert f"adapted to site from {ens_id}" in ens.label()
    # the parent ensemble and its members are untouched
    assert {name: folder_digest(root / name) for name in before} == before


def test_all_members_were_tested_and_validated_on_the_same_site_files(adapted):
    from core.models.ensemble import member_runs
    from core.models.runs import resolve_run

    root, out, _ = adapted
    ens = resolve_run(out["run_id"], root=root)
    members = member_runs(ens)
    site = ens.lineage["site"]
    n_test, n_val = (sum(site["counts"][p].values()) for p in ("test", "val"))
    for key, n in (("test_files", n_test), ("val_files", n_val)):
        files = [m.card.data[key] for m in members]
        assert all(f == files[0] for f in files) and len(files[0]) == n > 0
        assert ens.card.data[key] == files[0]  # the ensemble's common files are the site's parts
    assert not set(site["copies_of_parent_training"]) & set(ens.card.data["test_files"])
    assert out["after"]["site_n"] == out["before"]["site_n"] == n_test
    for m in members:
        assert m.lineage["before_after"]["adapted"]["site"]["n"] == n_test


def test_the_adapted_ensembles_warnings_and_prediction_sets_are_fitted_on_the_site_validation_part(adapted):
    from core.models.runs import resolve_run

    root, out, _ = adapted
    ens = resolve_run(out["run_id"], root=root)
    n_val = sum(ens.lineage["site"]["counts"]["val"].values())
    res = ens.card.results
    assert res.to_json()["n_val"] == n_val
    assert res.disagreement["fitted_on"].startswith(f"{n_val} validation images")
    assert sum(res.conformal["n_per_class"].values() if isinstance(res.conformal["n_per_class"], dict)
               else res.conformal["n_per_class"]) == n_val
    paths, labels = ens.validation_set()
    site_root = Path(ens.lineage["site"]["root"])
    assert len(paths) == n_val and all(site_root in p.parents for p in paths)
    assert (ens.path / "conformal.npz").is_file()


def test_best_run_never_picks_the_adapted_ensemble_or_its_members(adapted):
    from core.models.runs import best_run, list_runs, resolve_run

    root, out, _ = adapted
    best = best_run(list_runs(root))
    assert best is not None and not best.adapted
    assert best.run_id not in [out["run_id"], *out["members"]]
    assert best_run([resolve_run(out["run_id"], root=root)]) is None


def test_the_adapted_ensemble_is_labelled_as_adapted_wherever_runs_are_listed(adapted, source):
    from core.models.runs import list_runs, resolve_run
    from core.reports.run_summary import model_facts, runs_table

    root, out, _ = adapted
    _, ens_id, _ = source
    ens = resolve_run(out["run_id"], root=root)
    note = f"adapted to site from {ens_id}"
    assert note in ens.label() and model_facts(ens)["Adapted"].startswith(note)
    table = runs_table(list_runs(root)).set_index("model")
    assert table.loc[out["run_id"], "dataset"].startswith(note)
    assert not table.loc[ens_id, "dataset"].startswith("adapted")


def test_cli_prints_the_same_table_for_an_ensemble(adapted, capsys):
    from core.cli.site import print_adapt

    _, out, _ = adapted
    print_adapt(out)
    text = capsys.readouterr().out
    assert f"New ensemble: {out['run_id']}" in text and all(m in text for m in out["members"])
    assert "site test part" in text and "parent's own test" in text


# --- nothing half-done --------------------------------------------------------------------------------


@pytest.mark.parametrize("when", ["Model 1 of 2: Adapting", "Model 2 of 2: Reading", "Ensemble: Fitting"])
def test_cancel_at_any_point_leaves_the_registry_unchanged(registry, source, when):
    from core.jobs import Job, JobCancelled
    from core.models.runs import resolve_run

    _, ens_id, site = source
    names = _names(registry)
    job = Job("adapt", "cancel me")
    update = job.update

    def cancel_on(**changes):
        update(**changes)
        if str(changes.get("phase", "")).startswith(when):
            job.cancel()

    job.update = cancel_on
    with pytest.raises(JobCancelled):
        _adapt(resolve_run(ens_id), site, job)
    assert any(when in line or "cancel requested" in line for line in job.snapshot().log)
    assert _names(registry) == names  # no member, no ensemble, no staging folder


def test_adapt_model_alone_refuses_an_ensemble_before_reading_anything(registry, source, monkeypatch):
    import core.training.adapt_data as adapt_data
    from core.jobs import Job
    from core.models.runs import resolve_run
    from core.training.adapt import AdaptConfig, adapt_model

    _, ens_id, site = source
    monkeypatch.setattr(adapt_data, "split_site", lambda *a, **k: pytest.fail("the site was read"))
    with pytest.raises(WorkbenchError, match="is an ensemble: it is adapted as a whole"):
        adapt_model(resolve_run(ens_id), site, AdaptConfig(epochs=1), Job("adapt", "t"))


def test_a_tampered_member_is_refused_before_anything_is_done(registry, source):
    from core.models.ensemble import member_runs
    from core.models.runs import resolve_run

    _, ens_id, site = source
    ens = resolve_run(ens_id)
    member = member_runs(ens)[1]
    with open(member.model_path, "ab") as fh:
        fh.write(b"\0")
    names = _names(registry)
    with pytest.raises(WorkbenchError, match=f"member {member.run_id}.*changed"):
        _adapt(ens, site)
    assert _names(registry) == names


def test_a_member_changed_during_adaptation_publishes_nothing(registry, source, monkeypatch):
    import core.training.adapt_ensemble as ae
    from core.models.ensemble import member_runs
    from core.models.runs import resolve_run

    _, ens_id, site = source
    ens = resolve_run(ens_id)
    second = member_runs(ens)[1]
    original = ae.adapt_staged

    def tamper(member, *args, **kwargs):
        out = original(member, *args, **kwargs)
        if member.run_id == second.run_id:  # after its adaptation, before the ensemble is published
            card = second.path / "card.json"  # recalibrated meanwhile: its answers' probabilities change
            data = json.loads(card.read_text())
            data["results"]["temperature"] = 3.0
            card.write_text(json.dumps(data, indent=2))
        return out

    monkeypatch.setattr(ae, "adapt_staged", tamper)
    names = _names(registry)
    with pytest.raises(WorkbenchError, match=f"model {second.run_id}, one of the ensemble's members, was deleted "
                                             "or changed"):
        _adapt(ens, site)
    assert _names(registry) == names


def test_a_member_deleted_while_another_is_adapted_is_said_in_plain_words(registry, source, monkeypatch):
    import core.training.adapt_ensemble as ae
    from core.models.ensemble import member_runs
    from core.models.runs import resolve_run

    _, ens_id, site = source
    ens = resolve_run(ens_id)
    first, second = member_runs(ens)
    original = ae.adapt_staged

    def delete_second(member, *args, **kwargs):
        out = original(member, *args, **kwargs)
        shutil.rmtree(second.path)
        return out

    monkeypatch.setattr(ae, "adapt_staged", delete_second)
    names = [n for n in _names(registry) if n != second.run_id]
    with pytest.raises(WorkbenchError, match=f"model {second.run_id}, one of the ensemble's members, was deleted"):
        _adapt(ens, site)
    assert _names(registry) == names  # the first adapted member was not published either


def test_a_failure_after_the_first_member_is_published_leaves_no_new_run(registry, source, monkeypatch):
    import core.models.publish_group as group
    from core.models.runs import list_runs, resolve_run

    _, ens_id, site = source
    names, in_view = _names(registry), [r.run_id for r in list_runs()]
    original = group.publish
    published: list[Path] = []

    def publish_once(*args, **kwargs):
        if published:  # the first adapted member is in the registry: the second rename fails
            raise OSError("injected: no space left on device")
        run = original(*args, **kwargs)
        published.append(run.path)
        assert run.run_id not in [r.run_id for r in list_runs()]  # in the folder, not yet in view
        return run

    monkeypatch.setattr(group, "publish", publish_once)
    with pytest.raises(OSError, match="injected"):  # the original error, as a single run's publish raises it
        _adapt(resolve_run(ens_id), site)
    assert len(published) == 1 and not published[0].exists()  # it was in, and was taken out again
    assert _names(registry) == names and [r.run_id for r in list_runs()] == in_view  # no run, stage or journal


def test_the_parent_ensemble_deleted_or_a_member_file_changed_is_said_in_plain_words(registry, source):
    from core.models.ensemble import member_runs
    from core.models.runs import resolve_run
    from core.training.adapt import card_digest
    from core.training.adapt_ensemble import check_ensemble_unchanged

    _, ens_id, _ = source
    ens = resolve_run(ens_id)
    members = member_runs(ens)
    digests = [card_digest(ens)] + [card_digest(m) for m in members]
    check_ensemble_unchanged(ens, members, digests)  # unchanged: no error
    # an evaluation of a member stored meanwhile (the Evaluate page, `python -m core evaluate`) changes nothing
    card = json.loads((members[1].path / "card.json").read_text())
    card["evaluations"] = {"folder:abc": {"accuracy": 0.5, "n_images": 4}}
    (members[1].path / "card.json").write_text(json.dumps(card, indent=2))
    check_ensemble_unchanged(ens, members, digests)
    card["results"]["temperature"] = 2.5  # a recalibration does
    (members[1].path / "card.json").write_text(json.dumps(card, indent=2))
    with pytest.raises(WorkbenchError, match="one of the ensemble's members, was deleted or changed"):
        check_ensemble_unchanged(ens, members, digests)
    (members[1].path / "card.json").write_text("{ damaged")
    with pytest.raises(WorkbenchError, match="one of the ensemble's members, was deleted or changed"):
        check_ensemble_unchanged(ens, members, digests)
    with open(members[0].model_path, "ab") as fh:
        fh.write(b"\0")
    with pytest.raises(WorkbenchError, match="one of the ensemble's members, was deleted or changed"):
        check_ensemble_unchanged(ens, members, digests)
    shutil.rmtree(ens.path)
    with pytest.raises(WorkbenchError, match="the ensemble being adapted was deleted or changed"):
        check_ensemble_unchanged(ens, members, digests)


def test_adapting_an_adapted_ensemble_keeps_the_whole_lineage(adapted, source, tmp_path, monkeypatch):
    from core.models.runs import resolve_run

    root, out, _ = adapted
    _, ens_id, site = source
    private = tmp_path / "models"
    shutil.copytree(root, private)
    monkeypatch.setenv("WORKBENCH_MODELS_DIR", str(private))
    second = _adapt(resolve_run(out["run_id"]), site, seed=2)
    assert second.run.lineage["chain"] == [ens_id, out["run_id"]]
    assert second.run.lineage["parent_run"] == out["run_id"]
    for member, first in zip(second.members, out["members"]):
        assert resolve_run(member).lineage["parent_run"] == first
        assert resolve_run(member).lineage["chain"][-1] == first


def test_a_sentinel_is_carried_over_unadapted_and_refitted_on_the_site(source, tmp_path, demo_root, monkeypatch):
    """The adapted ensemble keeps the parent's sentinel (same file, same checksum) beside its adapted
    members; its warning fit on the site decides whether the sentinel still warns."""
    from fixtures_models import train_members

    from core.inference.ensemble_fit import register_ensemble
    from core.models.ensemble import member_runs, sentinel_runs

    models, ens_id, site = source
    root = tmp_path / "models"
    shutil.copytree(models, root)
    monkeypatch.setenv("WORKBENCH_MODELS_DIR", str(root))
    monkeypatch.setenv("WORKBENCH_CACHE_DIR", str(tmp_path / "cache"))
    watch = train_members(tmp_path / "watch", demo_root, ((36, "gray-uint8-resize-area-v1", 3),))[0]
    shutil.copytree(watch.path, root / watch.run_id)
    parent = register_ensemble([ens_id], root=root, sentinels=[watch.run_id])  # flattened, sentinel added
    result = _adapt(parent, site)
    new = result.run
    assert [s["run_id"] for s in new.card.sentinels] == [watch.run_id]
    assert new.card.sentinels[0]["model_sha256"] == watch.card.model_sha256
    assert [m.run_id for m in member_runs(new)] == result.members
    assert [s.run_id for s in sentinel_runs(new)] == [watch.run_id]
    assert new.card.data["val_files"]  # the site's own validation part, not narrowed away by the sentinel
    assert isinstance(new.card.results.disagreement["sentinel_warns"], bool)
    assert new.card.extra["lineage"]["members"]["sentinels"] == [watch.run_id]


def test_scoring_before_and_after_loads_each_network_once(source, tmp_path, monkeypatch):
    """The site part and the source test run the same members: each model file is read (and verified) once."""
    from collections import Counter

    import core.inference.ensemble_fit as ef
    from core.models.ensemble import member_runs
    from core.models.runs import resolve_run
    from core.training.adapt_data import split_site
    from core.training.adapt_ensemble import ensemble_table

    models, ens_id, site_dir = source
    monkeypatch.setenv("WORKBENCH_CACHE_DIR", str(tmp_path / "cache"))
    ens = resolve_run(ens_id, root=models)
    members = member_runs(ens)
    site = split_site(site_dir, ens, seed=1)
    loads: Counter = Counter()
    real = ef.load_model
    monkeypatch.setattr(ef, "load_model", lambda run: (loads.update([run.run_id]), real(run))[1])
    table = ensemble_table(ens, members, site)
    assert loads == Counter({m.run_id: 1 for m in members})
    assert set(table) == {"site", "source"}

"""An ensemble published together with its new members: all of the group in view, or none of it.

Runs are fakes (a few bytes for model.keras), so no TensorFlow is needed. The crash is a real one:
a child process dies (``os._exit``) between two renames.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_registry import fake_run

from core.errors import WorkbenchError
from core.models.group_journal import hidden_members, journal_path, reclaim_groups
from core.models.publish_group import publish_group
from core.models.runs import file_sha256, list_runs, remove_stale_staging, resolve_run, staging_dir

ENSEMBLE = "20260101-000000-ensemble2-beef"
MEMBERS = ("20260101-000000-custom_cnn-aaaa", "20260101-000000-custom_cnn-bbbb")


@pytest.fixture
def models(isolated_workbench_dirs: dict) -> Path:
    """A registry holding one earlier run, which nothing here may touch."""
    root = isolated_workbench_dirs["models"]
    root.mkdir(parents=True, exist_ok=True)
    fake_run(root / "earlier")
    return root


def stage_group(root: Path) -> tuple[list[tuple[Path, str]], Path]:
    """Two members and their ensemble, each in its own staging folder, as adapting an ensemble leaves them."""
    members = []
    for i, run_id in enumerate(MEMBERS):
        stage = staging_dir(run_id, root)
        stage.rmdir()  # fake_run makes the folder itself
        fake_run(stage, model=f"weights {i}".encode(), run_id=run_id)
        members.append((stage, run_id))
    ensemble = staging_dir(ENSEMBLE, root)
    ensemble.rmdir()
    card_members = [{"run_id": run_id, "model_sha256": file_sha256(stage / "model.keras")} for stage, run_id in members]
    fake_run(ensemble, model=None, run_id=ENSEMBLE, kind="ensemble", members=card_members, model_sha256="0" * 64)
    return members, ensemble


def in_view(root: Path) -> list[str]:
    return sorted(r.run_id for r in list_runs(root))


def test_a_group_appears_whole_and_leaves_no_journal(models):
    members, ensemble = stage_group(models)
    run = publish_group(members, ensemble, ENSEMBLE)
    assert run.run_id == ENSEMBLE and run.card.is_ensemble and run.path == models / ENSEMBLE
    assert in_view(models) == sorted(["earlier", ENSEMBLE, *MEMBERS])
    assert all(resolve_run(m, root=models).run_id == m for m in MEMBERS)
    assert sorted(p.name for p in models.iterdir()) == sorted(["earlier", ENSEMBLE, *MEMBERS])  # no journal, no stage


@pytest.mark.parametrize("fail_at", [1, 2])  # the second member's rename; the ensemble read back
def test_a_failure_part_way_removes_what_was_published_and_reaches_the_caller(models, monkeypatch, fail_at):
    import core.models.publish_group as group

    members, ensemble = stage_group(models)
    before = in_view(models)
    calls = {"publish": 0, "resolve": 0}
    original_publish, original_resolve = group.publish, group.resolve_run

    def publish(*args, **kwargs):
        calls["publish"] += 1
        if fail_at == 1 and calls["publish"] == 2:  # the first member is in the registry by now
            assert (models / MEMBERS[0]).is_dir()
            raise OSError("injected: disk full")
        return original_publish(*args, **kwargs)

    def resolve(*args, **kwargs):
        calls["resolve"] += 1
        if fail_at == 2:  # every rename done, the ensemble included
            assert all((models / name).is_dir() for name in (ENSEMBLE, *MEMBERS))
            raise WorkbenchError("injected: unreadable card")
        return original_resolve(*args, **kwargs)

    monkeypatch.setattr(group, "publish", publish)
    monkeypatch.setattr(group, "resolve_run", resolve)
    with pytest.raises(OSError if fail_at == 1 else WorkbenchError, match="injected"):
        publish_group(members, ensemble, ENSEMBLE)
    assert in_view(models) == before
    assert not any((models / name).exists() for name in (ENSEMBLE, *MEMBERS))
    assert not journal_path(models, ENSEMBLE).exists()


CRASH = """
import os, sys
from pathlib import Path
import core.models.publish_group as group

original = group.publish
def publish_then_die(*args, **kwargs):
    original(*args, **kwargs)
    os._exit(9)  # killed right after the first member's rename: no clean-up runs
group.publish = publish_then_die
root = Path(sys.argv[1])
members = [(root / f".tmp-{m}", m) for m in sys.argv[3:]]
group.publish_group(members, root / f".tmp-{sys.argv[2]}", sys.argv[2])
"""


def test_a_crash_part_way_leaves_no_new_run_in_view_and_its_leftovers_are_reclaimed(models):
    members, ensemble = stage_group(models)
    before = in_view(models)
    project = Path(__file__).resolve().parents[2]
    done = subprocess.run([sys.executable, "-c", CRASH, str(models), ENSEMBLE, *MEMBERS], cwd=project,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 9, done.stderr
    assert (models / MEMBERS[0]).is_dir()  # the crash did leave a member folder behind ...
    assert in_view(models) == before  # ... but nobody sees it
    assert hidden_members(models) == set(MEMBERS)
    with pytest.raises(WorkbenchError, match="no complete model run"):
        resolve_run(MEMBERS[0], root=models)
    # a fresh journal may belong to a publish in progress: kept; an old one is cleared with its members
    assert reclaim_groups(models) == [] and (models / MEMBERS[0]).is_dir()
    past = time.time() - 7 * 3600
    os.utime(journal_path(models, ENSEMBLE), (past, past))
    for stage, _ in members[1:]:
        os.utime(stage, (past, past))
    os.utime(ensemble, (past, past))
    remove_stale_staging(models)
    assert sorted(p.name for p in models.iterdir()) == ["earlier"]


def test_a_journal_whose_ensemble_arrived_hides_nothing_and_is_cleared(models):
    members, ensemble = stage_group(models)
    run = publish_group(members, ensemble, ENSEMBLE)
    journal = journal_path(models, ENSEMBLE)
    journal.write_text(json.dumps({"ensemble": ENSEMBLE, "members": list(MEMBERS)}))  # as a crash after the last rename
    assert hidden_members(models) == set() and run.run_id in in_view(models)
    assert reclaim_groups(models) == [] and not journal.exists()
    assert in_view(models) == sorted(["earlier", ENSEMBLE, *MEMBERS])


@pytest.mark.parametrize("names", [["../outside"], [".tmp-x"], ["earlier/.."], [""], [3]])
def test_a_journal_never_reaches_outside_the_registry_or_hidden_folders(models, names):
    outside = models.parent / "outside"
    fake_run(outside)
    journal = journal_path(models, ENSEMBLE)
    journal.write_text(json.dumps({"ensemble": ENSEMBLE, "members": names}))
    past = time.time() - 7 * 3600
    os.utime(journal, (past, past))
    assert hidden_members(models) == set()
    reclaim_groups(models)
    assert outside.is_dir() and in_view(models) == ["earlier"] and not journal.exists()

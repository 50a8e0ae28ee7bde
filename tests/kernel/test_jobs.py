"""Background jobs: outcomes, one running job per kind, cancellation and thread-safe records."""

from __future__ import annotations

import threading

import pytest

from core.errors import WorkbenchError
from core.jobs import CANCELLED, DONE, FAILED, FINISHED, Job, JobCancelled, JobRegistry, job_registry


@pytest.fixture
def registry() -> JobRegistry:
    return JobRegistry()


def run_to_end(registry: JobRegistry, work, kind: str = "train") -> Job:
    job = registry.submit(kind, f"{kind} job", work)
    registry.wait(job, 10)
    assert job.status in FINISHED
    return job


def blocker(registry: JobRegistry, kind: str = "train") -> tuple[Job, threading.Event]:
    """A running job that ends (cancelled) once the returned event is set or it is cancelled."""
    release = threading.Event()

    def work(job: Job):
        while not release.wait(0.01):
            job.check_cancelled()
        return "released"

    return registry.submit(kind, "blocking job", work), release


# --- outcomes --------------------------------------------------------------------------------------

def test_finished_work_is_done_with_its_result(registry):
    job = run_to_end(registry, lambda j: 42)
    assert (job.status, job.result, job.progress, job.error) == (DONE, 42, 1.0, None)
    assert job.started is not None and job.finished >= job.started


def test_workbench_error_fails_with_its_readable_message(registry):
    def work(job):
        raise WorkbenchError("the split left no training images", "demo")

    job = run_to_end(registry, work)
    assert job.status == FAILED
    assert job.error == "demo: the split left no training images"
    assert "WorkbenchError" in job.error_traceback


def test_unexpected_exception_fails_with_type_and_message(registry):
    def work(job):
        raise ValueError("shapes do not match")

    job = run_to_end(registry, work)
    assert (job.status, job.error) == (FAILED, "ValueError: shapes do not match")


def test_job_cancelled_is_its_own_outcome(registry):
    def work(job):
        raise JobCancelled()

    job = run_to_end(registry, work)
    assert job.status == CANCELLED and job.error is None


def test_work_that_completes_after_a_late_cancel_is_done(registry):
    """A model saved after the last cancel check is saved: the job must not claim otherwise."""
    def work(job):
        job.cancel()  # arrives after the work's last check
        return "saved run"

    job = run_to_end(registry, work)
    assert (job.status, job.result) == (DONE, "saved run")
    assert "after the work was complete" in job.log[-1]


def test_a_worker_that_exits_does_not_block_its_kind(registry):
    def work(job):
        raise SystemExit(3)

    job = run_to_end(registry, work)
    assert job.status == FAILED
    assert run_to_end(registry, lambda j: "next").status == DONE


# --- one running job per kind ---------------------------------------------------------------------------

def test_second_job_of_the_same_kind_is_refused_while_one_runs(registry):
    first, release = blocker(registry)
    try:
        with pytest.raises(WorkbenchError, match="blocking job.*still running"):
            registry.submit("train", "second", lambda j: None)
        other = run_to_end(registry, lambda j: "ok", kind="evaluate")  # other kinds are independent
        assert other.status == DONE
        assert registry.active("train") is first
    finally:
        release.set()
        registry.wait(first, 10)
    assert first.status == DONE and registry.active("train") is None
    assert run_to_end(registry, lambda j: "after").status == DONE


def test_cancel_reaches_the_worker(registry):
    job, _ = blocker(registry)
    job.cancel()
    registry.wait(job, 10)
    assert job.status == CANCELLED and job.snapshot().cancel_requested
    assert "cancel requested" in " ".join(job.log)


def test_jobs_are_listed_newest_first_and_by_kind(registry):
    a = run_to_end(registry, lambda j: 1)
    b = run_to_end(registry, lambda j: 2, kind="evaluate")
    c = run_to_end(registry, lambda j: 3)
    assert registry.jobs("train") == [c, a]
    assert registry.jobs() == [c, b, a]
    assert registry.get(b.id) is b and registry.get("nope") is None


def test_process_wide_registry_is_one_object():
    assert job_registry() is job_registry()


# --- records -----------------------------------------------------------------------------------------------

def test_records_and_snapshots_are_copies():
    job = Job("train", "t")
    row = {"epoch": 1, "val_loss": 1.0}
    job.add_epoch(row)
    row["epoch"] = 7  # the worker may reuse its dict
    snap = job.snapshot()
    snap.history.append({"epoch": 99})
    snap.log.append("not in the job")
    assert [h["epoch"] for h in job.snapshot().history] == [1]
    assert job.snapshot().log == []


def test_records_are_thread_safe_and_bounded():
    job = Job("train", "t")

    def writer(offset: int) -> None:
        for i in range(1500):
            job.add_batch({"step": offset + i})
            job.add_log(f"line {offset + i}")
            job.snapshot()

    threads = [threading.Thread(target=writer, args=(k * 10_000,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    snap = job.snapshot()
    assert len(snap.batch_log) == 2000 and len(snap.log) == 500
    assert len({row["step"] for row in snap.batch_log}) == 2000  # no row lost or duplicated


def test_update_takes_only_known_fields_so_a_typo_raises() -> None:
    from core.jobs import Job

    job = Job(kind="train", title="t")
    job.update(phase="Loading", progress=0.5, eta_s=None)
    assert (job.phase, job.progress, job.eta_s) == ("Loading", 0.5, None)
    with pytest.raises(TypeError, match="phse"):
        job.update(phse="typo")
    assert not hasattr(job, "phse")


def test_snapshot_is_frozen_and_typed() -> None:
    import dataclasses

    from core.jobs import Job, JobSnapshot

    job = Job(kind="train", title="t")
    snap = job.snapshot()
    assert isinstance(snap, JobSnapshot) and snap.status == "pending" and not snap.cancel_requested
    with pytest.raises(dataclasses.FrozenInstanceError):
        snap.status = "done"  # type: ignore[misc]


def test_one_progress_adapter_maps_nested_stages_and_counts() -> None:
    from core.jobs import Job, JobCancelled, counter

    job = Job(kind="evaluate", title="t")
    run2 = job.stage(0.5, 1.0, "[2/2] ")
    run2.stage(0.0, 0.5).counter("Loading images")(3, 4)
    assert job.phase == "[2/2] Loading images 3/4" and job.progress == pytest.approx(0.5 + 0.5 * 0.5 * 0.75)
    job.stage(0.98, 1.0, template="Fitting ({})").update(phase="shifted 1/2", progress=2.0)  # clipped
    assert job.phase == "Fitting (shifted 1/2)" and job.progress == pytest.approx(1.0)
    counter(job, 0.0, 0.05, "Decoding", thousands=True)(1200, 2400)
    assert job.phase == "Decoding 1,200/2,400" and job.progress == pytest.approx(0.025)
    counter(None, 0.0, 1.0, "nothing")(1, 2)  # no job: a no-op
    job.cancel()
    with pytest.raises(JobCancelled):
        run2.counter("Predicting")(1, 2)


def test_a_stage_passes_training_fields_through_and_maps_only_the_progress() -> None:
    """A training loop (epochs, batches, curves) can run inside a stage of a longer job."""
    from core.jobs import Job

    job = Job(kind="adapt", title="t")
    member = job.stage(0.5, 1.0, "[2/2] ")
    member.update(phase="Adapting", progress=0.5, epoch=3, batches=7)
    assert (job.phase, job.progress, job.epoch, job.batches) == ("[2/2] Adapting", pytest.approx(0.75), 3, 7)
    member.update(batch=2, eta_s=4.0)  # no phase or progress given: both left as they were
    assert (job.phase, job.progress, job.batch, job.eta_s) == ("[2/2] Adapting", pytest.approx(0.75), 2, 4.0)
    member.add_epoch({"epoch": 1.0})
    assert member.epoch == 3 and member.snapshot().history == [{"epoch": 1.0}]
    member.clear_curves()
    assert job.history == []
    with pytest.raises(AttributeError):
        member.no_such_field  # noqa: B018 - a misspelt name is still an error

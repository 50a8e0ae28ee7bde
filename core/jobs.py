"""Thread-safe background jobs and a process-wide registry that runs one at a time.

The worker thread never touches the UI. It writes into a :class:`Job` under a lock; pages
poll :meth:`Job.snapshot` on an interval. Cancellation is a first-class outcome: the worker
checks :attr:`Job.cancel_event` between batches.
"""

from __future__ import annotations

import threading
import time
import traceback
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from core.errors import WorkbenchError

PENDING, RUNNING, DONE, FAILED, CANCELLED = "pending", "running", "done", "failed", "cancelled"
FINISHED = {DONE, FAILED, CANCELLED}


class JobCancelled(Exception):
    """Raised inside a worker to unwind after the user cancelled."""


_UNSET: Any = object()  # "not given" for Job.update, where None is a real value (eta_s, error)


@dataclass(frozen=True)
class JobSnapshot:
    """A consistent, read-only copy of a :class:`Job` for readers (pages, the CLI, tests)."""

    id: str
    kind: str
    title: str
    status: str
    created: float
    started: float | None
    finished: float | None
    progress: float
    phase: str
    epoch: int
    epochs: int
    batch: int
    batches: int
    eta_s: float | None
    history: list[dict[str, float]]  # copies: a reader may change them without touching the job
    batch_log: list[dict[str, float]]
    log: list[str]
    error: str | None
    error_traceback: str | None
    result: Any
    cancel_requested: bool
    settings: Any  # what the job was started with, e.g. core.training.train_feedback.TrainSettings

    @property
    def finished_ok(self) -> bool:
        return self.status == DONE


@dataclass
class Job:
    """State of one background job, shared between the worker and any number of readers."""

    kind: str  # "train" | "evaluate"
    title: str
    id: str = field(default_factory=lambda: uuid.uuid4().hex[:10])
    status: str = PENDING
    created: float = field(default_factory=time.time)
    started: float | None = None
    finished: float | None = None
    # Progress: fraction in [0, 1], the phase label and per-batch/epoch detail.
    progress: float = 0.0
    phase: str = ""
    epoch: int = 0
    epochs: int = 0
    batch: int = 0
    batches: int = 0
    eta_s: float | None = None
    history: list[dict[str, float]] = field(default_factory=list)  # one row per epoch
    batch_log: list[dict[str, float]] = field(default_factory=list)  # recent batches (live curve)
    log: list[str] = field(default_factory=list)
    error: str | None = None
    error_traceback: str | None = None
    result: Any = None
    settings: Any = None  # what it was started with (shown on reattach), e.g. a TrainSettings
    cancel_event: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def update(self, *, status: str = _UNSET, started: float | None = _UNSET, finished: float | None = _UNSET,
               progress: float = _UNSET, phase: str = _UNSET, epoch: int = _UNSET, epochs: int = _UNSET,
               batch: int = _UNSET, batches: int = _UNSET, eta_s: float | None = _UNSET, error: str | None = _UNSET,
               error_traceback: str | None = _UNSET, result: Any = _UNSET, settings: Any = _UNSET) -> None:
        """Change the named fields together, under the lock (a misspelt name is a TypeError)."""
        changes = {k: v for k, v in locals().items() if k != "self" and v is not _UNSET}
        with self._lock:
            for key, value in changes.items():
                setattr(self, key, value)

    def stage(self, lo: float, hi: float, prefix: str = "", template: str = "{}") -> JobStage:
        """This job seen by one part of the work: its progress 0..1 maps onto [lo, hi] of the bar
        and its phase text becomes ``prefix + template.format(phase)``."""
        return JobStage(self, lo, hi, prefix, template)

    def add_log(self, line: str) -> None:
        with self._lock:
            self.log.append(f"{time.strftime('%H:%M:%S')} {line}")
            del self.log[:-500]

    def clear_curves(self) -> None:
        """Forget the epoch history and batch log (a job that trains several models, one after another)."""
        with self._lock:
            self.history.clear()
            self.batch_log.clear()

    def add_epoch(self, row: dict[str, float]) -> None:
        with self._lock:
            self.history.append(dict(row))

    def add_batch(self, row: dict[str, float]) -> None:
        with self._lock:
            self.batch_log.append(dict(row))
            del self.batch_log[:-2000]

    def cancel(self) -> None:
        """Ask the worker to stop; it does so within one batch."""
        self.cancel_event.set()
        self.add_log("cancel requested")

    @property
    def cancelled(self) -> bool:
        return self.cancel_event.is_set()

    @property
    def running(self) -> bool:
        return self.status in (PENDING, RUNNING)

    def check_cancelled(self) -> None:
        if self.cancel_event.is_set():
            raise JobCancelled()

    def snapshot(self) -> JobSnapshot:
        """A consistent copy for readers (lists are copied under the lock)."""
        with self._lock:
            return JobSnapshot(
                id=self.id, kind=self.kind, title=self.title, status=self.status, created=self.created,
                started=self.started, finished=self.finished, progress=self.progress, phase=self.phase,
                epoch=self.epoch, epochs=self.epochs, batch=self.batch, batches=self.batches, eta_s=self.eta_s,
                history=[dict(r) for r in self.history], batch_log=[dict(r) for r in self.batch_log],
                log=list(self.log), error=self.error, error_traceback=self.error_traceback, result=self.result,
                cancel_requested=self.cancel_event.is_set(), settings=self.settings,
            )


class JobStage:
    """The one progress adapter: a part of a job, [lo, hi] of its bar, with its own phase text.

    Work that reports progress 0..1 (or done/total counts, :meth:`counter`) through a stage
    never needs to know where in the whole job it runs. Stages nest (:meth:`stage`).
    """

    def __init__(self, job: Job | JobStage, lo: float = 0.0, hi: float = 1.0, prefix: str = "",
                 template: str = "{}") -> None:
        self.job, self.lo, self.hi, self.prefix, self.template = job, lo, hi, prefix, template

    def update(self, *, phase: str | None = None, progress: float | None = None, **other: Any) -> None:
        """Set the phase text and this stage's progress in [0, 1] (clipped); other fields (epoch,
        batch, eta_s, ...) go to the job unchanged, so a training loop can run inside a stage."""
        if phase is not None:
            other["phase"] = self.prefix + self.template.format(phase)
        if progress is not None:
            other["progress"] = self.lo + (self.hi - self.lo) * min(1.0, max(0.0, progress))
        self.job.update(**other)

    def __getattr__(self, name: str) -> Any:
        # The rest of the job's API (epoch, add_epoch, add_batch, snapshot, clear_curves) is the job's own.
        if name.startswith("_") or name == "job":
            raise AttributeError(name)
        return getattr(self.job, name)

    def stage(self, lo: float, hi: float, prefix: str = "", template: str = "{}") -> JobStage:
        return JobStage(self, lo, hi, prefix, template)

    def counter(self, phase: str, thousands: bool = False) -> Callable[[int, int], None]:
        """A ``progress(done, total)`` callback (scans, image loading, prediction) that shows
        ``phase done/total``, moves the bar and stops the work on a cancel."""
        def progress(done: int, total: int) -> None:
            text = f"{phase} {done:,}/{total:,}" if thousands else f"{phase} {done}/{total}"
            self.update(phase=text, progress=done / max(total, 1))
            self.check_cancelled()
        return progress

    def add_log(self, line: str) -> None:
        self.job.add_log(line)

    def check_cancelled(self) -> None:
        self.job.check_cancelled()

    @property
    def cancelled(self) -> bool:
        return self.job.cancelled


def counter(job: Job | JobStage | None, lo: float, hi: float, phase: str,
            thousands: bool = False) -> Callable[[int, int], None]:
    """``job.stage(lo, hi).counter(phase)``, or a callback that does nothing when there is no job."""
    if job is None:
        return lambda done, total: None
    return job.stage(lo, hi).counter(phase, thousands)


class JobRegistry:
    """Process-wide registry: at most one running job per kind; finished jobs are kept."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._jobs: dict[str, Job] = {}
        self._threads: dict[str, threading.Thread] = {}

    def active(self, kind: str) -> Job | None:
        with self._lock:
            return next((j for j in self._jobs.values() if j.kind == kind and j.running), None)

    def get(self, job_id: str) -> Job | None:
        with self._lock:
            return self._jobs.get(job_id)

    def jobs(self, kind: str | None = None) -> list[Job]:
        with self._lock:
            return sorted((j for j in self._jobs.values() if kind is None or j.kind == kind),
                          key=lambda j: j.created, reverse=True)

    def submit(self, kind: str, title: str, work: Callable[[Job], Any]) -> Job:
        """Start ``work(job)`` in a daemon thread; refuse if a job of this kind is running.

        Raises:
            WorkbenchError: another job of the same kind is still running.
        """
        with self._lock:
            busy = next((j for j in self._jobs.values() if j.kind == kind and j.running), None)
            if busy is not None:
                raise WorkbenchError(
                    f"'{busy.title}' is still running on this server; wait for it to finish or cancel it "
                    "(one job of each kind runs at a time so training does not starve everyone else)",
                    f"{kind} job",
                )
            job = Job(kind=kind, title=title)
            self._jobs[job.id] = job
            thread = threading.Thread(target=self._run, args=(job, work), name=f"{kind}-{job.id}", daemon=True)
            self._threads[job.id] = thread
        thread.start()
        return job

    def wait(self, job: Job, timeout: float | None = None) -> None:
        thread = self._threads.get(job.id)
        if thread is not None:
            thread.join(timeout)

    @staticmethod
    def _run(job: Job, work: Callable[[Job], Any]) -> None:
        job.update(status=RUNNING, started=time.time())
        try:
            result = work(job)
        except JobCancelled:
            job.update(status=CANCELLED, finished=time.time())
            job.add_log("cancelled")
        except WorkbenchError as exc:
            job.update(status=FAILED, error=str(exc), error_traceback=traceback.format_exc(), finished=time.time())
            job.add_log(f"failed: {exc}")
        except Exception as exc:  # noqa: BLE001 - a worker must never die silently
            message = f"{type(exc).__name__}: {exc}"
            job.update(status=FAILED, error=message, error_traceback=traceback.format_exc(), finished=time.time())
            job.add_log(f"failed: {message}")
        except BaseException as exc:  # noqa: BLE001 - SystemExit & co. must not leave a job blocking its kind
            job.update(status=FAILED, error=f"the worker stopped unexpectedly ({type(exc).__name__})",
                       error_traceback=traceback.format_exc(), finished=time.time())
        else:
            # A worker that stops on cancel raises JobCancelled; returning means the work is complete
            # (a model saved after the last check is a saved model, not a cancelled one).
            job.update(status=DONE, progress=1.0, finished=time.time(), result=result)
            job.add_log("finished" + (" (the cancel request came after the work was complete)"
                                      if job.cancelled else ""))


_REGISTRY: JobRegistry | None = None
_REGISTRY_LOCK = threading.Lock()


def job_registry() -> JobRegistry:
    """The process-wide registry (pages also wrap it in st.cache_resource)."""
    global _REGISTRY
    with _REGISTRY_LOCK:
        if _REGISTRY is None:
            _REGISTRY = JobRegistry()
        return _REGISTRY

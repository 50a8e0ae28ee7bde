"""Training on several machines: ``tf.distribute.MultiWorkerMirroredStrategy`` set up from ``TF_CONFIG``.

Every worker runs the same ``python -m core train --strategy multiworker ...`` command with its
own ``TF_CONFIG``. Each trains one replica on its slice of every global batch; gradients are
summed across workers after each step, so all workers hold the same weights. Only the chief
(task ``chief``, or ``worker`` 0 when the cluster has no chief) calibrates, saves and publishes
the run; the others save into a temporary folder that they remove (Keras's multi-worker save
recipe: every worker saves, only the chief's copy is kept).

A dead worker is noticed by TensorFlow's coordination service (its heartbeat times out after
about 10 s), which aborts the pending all-reduce on the others: their ``fit`` raises, the chief
removes its staging folder and nothing is published.

Only :mod:`core.errors` and :mod:`core.lazy_tensorflow` are imported: the strategy registry
(:mod:`core.training.options`) builds the strategy from here, and config imports that registry.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import re
import tempfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.errors import WorkbenchError

ENV = "TF_CONFIG"
EXAMPLE = ('{"cluster": {"worker": ["10.0.0.1:12345", "10.0.0.2:12345"]}, '
           '"task": {"type": "worker", "index": 0}}')
JOBS = ("chief", "worker")  # the task types that train; "ps" and "evaluator" belong to other strategies


@dataclass(frozen=True)
class ClusterTask:
    """This process's place in the cluster that ``TF_CONFIG`` describes."""

    cluster: Mapping[str, tuple[str, ...]]  # job ("chief" | "worker") -> host:port of each task
    task_type: str
    index: int

    @property
    def num_workers(self) -> int:
        """Training processes in the cluster (the chief counts: it trains too)."""
        return sum(len(v) for v in self.cluster.values())

    @property
    def is_chief(self) -> bool:
        """True for the one task that publishes: the chief, or worker 0 when there is no chief."""
        return self.task_type == "chief" or ("chief" not in self.cluster and self.index == 0)


def _refuse(reason: str) -> WorkbenchError:
    return WorkbenchError(f"{reason}. Set it on every machine, for example (this is worker 0 of two): "
                          f"{ENV}='{EXAMPLE}'", ENV)


def _addresses(job: str, value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not value:
        raise _refuse(f"cluster '{job}' must be a non-empty list of host:port addresses")
    for address in value:
        host, _, port = address.rpartition(":") if isinstance(address, str) else ("", "", "")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise _refuse(f"'{address}' in cluster '{job}' is not a host:port address")
    return tuple(value)


def parse_tf_config(text: str | None) -> ClusterTask:
    """Check ``TF_CONFIG`` text and say where this process stands in the cluster.

    Raises:
        WorkbenchError: missing, not JSON, or not a cluster of chief/worker addresses with a task in it;
            the message carries an example.
    """
    if not text or not text.strip():
        raise _refuse(f"{ENV} is not set: training with the 'multiworker' strategy needs it to know the "
                      "other machines and which one this is")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise _refuse(f"{ENV} is not valid JSON ({exc.msg} at character {exc.pos})") from None
    cluster, task = (data.get("cluster"), data.get("task")) if isinstance(data, dict) else (None, None)
    if not isinstance(cluster, dict) or not isinstance(task, dict):
        raise _refuse(f"{ENV} needs a 'cluster' object and a 'task' object")
    unknown = sorted(set(cluster) - set(JOBS))
    if unknown or not cluster:
        raise _refuse(f"the cluster may only list {' and '.join(JOBS)} tasks (found: {', '.join(unknown) or 'none'})")
    jobs = {job: _addresses(job, value) for job, value in cluster.items()}
    if len(jobs.get("chief", ())) > 1:
        raise _refuse("a cluster has at most one chief")
    everyone = [a for v in jobs.values() for a in v]
    if len(set(everyone)) != len(everyone):
        raise _refuse("two tasks share one host:port address")
    task_type, index = task.get("type"), task.get("index")
    if task_type not in jobs:
        raise _refuse(f"task type '{task_type}' is not one of the cluster's jobs ({', '.join(jobs)})")
    if not isinstance(index, int) or isinstance(index, bool) or not 0 <= index < len(jobs[task_type]):
        raise _refuse(f"task index {index!r} is not between 0 and {len(jobs[task_type]) - 1}")
    return ClusterTask(jobs, task_type, index)


def read_tf_config(env: Mapping[str, str] = os.environ) -> ClusterTask:
    """:func:`parse_tf_config` of this process's ``TF_CONFIG``."""
    return parse_tf_config(env.get(ENV))


def multiworker_strategy() -> Any:
    """The process's MultiWorkerMirroredStrategy (one per process: TensorFlow configures its
    collectives once). Call it before TensorFlow runs anything else (the CLI does, at start):
    creating it joins the cluster and waits until every worker has started.

    Raises:
        WorkbenchError: ``TF_CONFIG`` is missing or malformed (checked before TensorFlow sees it).
    """
    read_tf_config()
    return _strategy(os.environ[ENV])


@functools.cache
def _strategy(tf_config: str) -> Any:
    """Built once per TF_CONFIG text (MultiWorkerMirroredStrategy reads the variable itself)."""
    from core.lazy_tensorflow import tf

    tf_ = tf()

    class MultiWorker(tf_.distribute.MultiWorkerMirroredStrategy):
        """Works around two Keras 3.15 calls that only MirroredStrategy accepts: ``fit`` reduces a
        whole (x, y, weights) batch at once to learn its shapes ("Attempt to convert a value
        (PerReplica...)"), and averages each scalar metric across workers with ``axis=0``
        ("Invalid reduction dimension 0 for input with 0 dimensions"). Reduced one tensor at a
        time, a scalar across workers only."""

        def reduce(self, reduce_op, value, axis):
            def one(v):
                rank = getattr(self.experimental_local_results(v)[0], "shape", tf_.TensorShape(None)).rank
                return super(MultiWorker, self).reduce(reduce_op, v, None if rank == 0 else axis)

            return tf_.nest.map_structure(one, value)

    # AUTO picks ring all-reduce on CPUs, NCCL on GPUs. No collective timeout: the first all-reduce
    # waits for the slowest worker to decode its images, which can take minutes; a dead worker is
    # caught by the coordination service's heartbeat instead.
    return MultiWorker(communication_options=tf_.distribute.experimental.CommunicationOptions())


def is_multiworker(strategy: Any) -> bool:
    """True for a MultiWorkerMirroredStrategy (TensorFlow is loaded already: it built ``strategy``)."""
    from core.lazy_tensorflow import tf

    return isinstance(strategy, tf().distribute.MultiWorkerMirroredStrategy)


def is_chief(strategy: Any) -> bool:
    """Whether this process writes and publishes the run (always, outside multi-worker training)."""
    if not is_multiworker(strategy):
        return True
    resolver = strategy.cluster_resolver
    has_chief = "chief" in resolver.cluster_spec().jobs
    return resolver.task_type == "chief" or (not has_chief and resolver.task_id == 0)


def worker_name(strategy: Any) -> str:
    """'worker 1', 'chief': how logs name this process."""
    resolver = strategy.cluster_resolver
    return resolver.task_type if resolver.task_type == "chief" else f"{resolver.task_type} {resolver.task_id}"


def worker_folder(strategy: Any) -> Path:
    """A private temporary folder for a non-chief worker's checkpoints and model copy.

    Never inside the models folder: it may be shared by every machine, and only the chief writes there.
    """
    return Path(tempfile.mkdtemp(prefix=f"workbench-{worker_name(strategy).replace(' ', '')}-"))


def shard_by_data(strategy: Any, dataset: Any) -> Any:
    """``dataset`` set to be split by element across workers (unchanged outside multi-worker training).

    How the global batch is split: Keras hands the dataset, batched by ``cfg.batch_size``, to
    ``strategy.experimental_distribute_dataset``, which cuts each batch into one slice per
    replica, and DATA auto-sharding keeps slice *i* on worker *i*. So step *k* trains on exactly
    the ``cfg.batch_size`` images (and augmentation) a single process sees at step *k*, each worker
    on ``batch_size / workers`` of them. FILE sharding cannot apply: the images are in-memory
    arrays (``from_tensor_slices``), and AUTO would only fall back to DATA with a warning. The
    price: every worker runs the whole input pipeline (shuffle, augmentation) and drops the other
    slices; sharding before ``batch`` would save that work but change every batch's content.
    """
    if not is_multiworker(strategy):
        return dataset
    from core.lazy_tensorflow import tf

    tf_ = tf()
    options = tf_.data.Options()
    options.experimental_distribute.auto_shard_policy = tf_.data.experimental.AutoShardPolicy.DATA
    return dataset.with_options(options)


@contextlib.contextmanager
def lost_workers(strategy: Any) -> Iterator[None]:
    """Turn the error TensorFlow raises when a peer dies or cannot be reached into one plain
    WorkbenchError (its first line kept); a no-op outside multi-worker training."""
    if not is_multiworker(strategy):
        yield
        return
    from core.lazy_tensorflow import tf

    errors = tf().errors
    try:
        yield
    except (errors.UnavailableError, errors.AbortedError, errors.DeadlineExceededError,
            errors.CancelledError, errors.InternalError) as exc:
        raise WorkbenchError(f"another worker stopped or cannot be reached ({type(exc).__name__}: {_gist(exc)}); "
                             "nothing was published. Read the other machines' output, then start every worker "
                             "again", worker_name(strategy)) from None


def _gist(exc: Exception) -> str:
    """The telling line of a TensorFlow error (its message starts with "Graph execution error" and a traceback)."""
    lines = [line.strip() for line in str(getattr(exc, "message", "") or exc).splitlines() if line.strip()]
    telling = [line for line in lines if not line.startswith(("File ", "[[")) and re.search(
        r"abort|unavailable|heartbeat|timed out|deadline|connection|peer", line, re.IGNORECASE)]
    return (telling or lines or [""])[0][:300]


def wait_for_all(strategy: Any) -> None:
    """Block until every worker has called this (one all-reduce of a scalar); no-op in one process.

    The chief calls it after publishing and the other workers after saving, so no worker leaves
    the cluster while the chief still works; if the chief fails first, the others' wait ends in an
    error once its heartbeat stops.
    """
    if not is_multiworker(strategy):
        return
    from core.lazy_tensorflow import tf

    tf_ = tf()
    with lost_workers(strategy):
        arrived = strategy.reduce(tf_.distribute.ReduceOp.SUM, strategy.run(lambda: tf_.constant(1.0)), axis=None)
    if int(arrived) != strategy.num_replicas_in_sync:
        raise WorkbenchError(f"only {int(arrived)} of {strategy.num_replicas_in_sync} workers finished", ENV)


def release_workers(strategy: Any, log: Callable[[str], None]) -> None:
    """The chief's :func:`wait_for_all` after publishing: the run is complete whatever happens
    here, so a worker that died since training ended is logged, not raised."""
    try:
        wait_for_all(strategy)
    except Exception as exc:  # noqa: BLE001 - TensorFlow raises several error types for a lost peer
        log(f"the run is published, but not every worker confirmed the end ({type(exc).__name__})")


def finish_worker(strategy: Any, folder: Path, save: Callable[[Path], None]) -> None:
    """A non-chief worker's end of a run: save into its temporary ``folder``, remove it, wait for the chief."""
    import shutil

    try:
        save(folder)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    wait_for_all(strategy)

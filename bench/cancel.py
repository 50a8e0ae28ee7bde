"""Cancel latency and time to first progress of a training job (issue 14, items 7 and 8).

    python -m bench.cancel [--tries 10] [--out bench/RESULTS.md]

Trains a tiny custom CNN on the synthetic demo through the real engine (core.training.train in a
core.jobs background job, as the Train page does) and presses Cancel at four moments:

- ``loading``: while images are decoded (a fresh cache each try);
- ``first batch``: as soon as the model starts its first batch (graph tracing);
- ``mid-epoch``: after the third training batch of epoch 2;
- ``validation``: as soon as epoch 1's last training batch ends, i.e. during its validation pass.

Latency is the time from ``job.cancel()`` to the job reporting *cancelled*. Time to first
progress is the time from submitting the job to its first finished batch (the bar moving), and
to its first time estimate. The figures go into RESULTS.md between the ``cancel`` markers, which
``python -m bench`` keeps when it rewrites the file.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from bench.sections import write_section

ROOT = Path(__file__).resolve().parent.parent
BEGIN, END = "<!-- cancel: written by python -m bench.cancel -->", "<!-- /cancel -->"
IMAGE_SIZE, WIDTH, BATCH = 64, 0.25, 16


def _config():
    from core.config import AUGMENT_PRESETS
    from core.training.config import TrainConfig

    return TrainConfig(arch="custom_cnn", image_size=IMAGE_SIZE, width=WIDTH, epochs=3, batch_size=BATCH,
                       augment=AUGMENT_PRESETS["standard"], patience=5, seed=1)


def _moments() -> dict[str, tuple[float, Callable]]:
    """Moment name -> (delay after it is first seen, predicate on a job snapshot).

    The predicates read only counters, so the same script measures an older engine too. The
    delays put the press inside the slow part: a second into the first batch's graph tracing,
    0.3 s into epoch 1's first validation pass (which traces the evaluation graph).
    """
    return {
        "loading": (0.0, lambda s: "images" in s.phase.lower() and s.batches == 0),
        "first batch": (1.0, lambda s: s.epoch == 1 and s.batches > 0 and s.batch == 0),
        "mid-epoch": (0.0, lambda s: s.epoch == 2 and s.batch >= 3),
        "validation": (0.3, lambda s: s.epoch == 1 and s.batches > 0 and s.batch == s.batches),
    }


def one_try(ds, report, when: Callable | None, cache: Path, delay: float = 0.0) -> dict[str, float | str | None]:
    """Run one job; cancel ``delay`` s after ``when(snapshot)`` first holds (None: at epoch 2)."""
    from core.jobs import FINISHED, JobRegistry
    from core.training.train import train_model

    os.environ["WORKBENCH_CACHE_DIR"] = str(cache)
    registry = JobRegistry()
    cfg = _config()
    t0 = time.perf_counter()
    job = registry.submit("train", "bench", lambda j: train_model(ds, report, cfg, j))
    first_text = first_batch = first_eta = cancelled_at = seen_at = None
    while True:
        s = job.snapshot()
        now = time.perf_counter() - t0
        first_text = first_text if first_text is not None or not s.phase else now
        first_batch = first_batch if first_batch is not None or s.batch < 1 else now
        first_eta = first_eta if first_eta is not None or s.eta_s is None else now
        if s.status in FINISHED:
            break
        if seen_at is None and (when(s) if when else s.epoch >= 2):
            seen_at = now
        if cancelled_at is None and seen_at is not None and now >= seen_at + delay:
            job.cancel()
            cancelled_at = now
        time.sleep(0.005)
    registry.wait(job, 60)
    end = time.perf_counter() - t0
    return {"status": s.status, "latency_s": None if cancelled_at is None else end - cancelled_at,
            "first_text_s": first_text, "first_batch_s": first_batch, "first_eta_s": first_eta}


def run(tries: int) -> dict:
    from core.data.datasets import open_demo
    from core.data.scan import scan_dataset

    base = Path(tempfile.mkdtemp(prefix="bench-cancel-"))
    os.environ["WORKBENCH_MODELS_DIR"] = str(base / "models")
    os.environ["WORKBENCH_CACHE_DIR"] = str(base / "shared-cache")
    ds = open_demo()
    report = scan_dataset(ds)
    one_try(ds, report, lambda s: s.batch >= 1, base / "warm")  # imports and first tracing out of the way
    out: dict = {"tries": tries, "images": len(report.readable), "image_size": IMAGE_SIZE, "width": WIDTH,
                 "batch": BATCH, "latency": {}, "first_progress": []}
    for name, (delay, when) in _moments().items():
        rows = [one_try(ds, report, when, base / f"{name}-{i}", delay) for i in range(tries)]
        lat = [r["latency_s"] for r in rows if r["latency_s"] is not None]
        out["latency"][name] = {"delay_s": delay, "median_s": statistics.median(lat), "worst_s": max(lat),
                                "cancelled": sum(r["status"] == "cancelled" for r in rows), "tries": len(rows)}
        out["first_progress"] += [r for r in rows if r["first_batch_s"] is not None]
        print(name, out["latency"][name], flush=True)
    fp = out["first_progress"]
    out["time_to_first_progress"] = {
        key: {"median_s": statistics.median(v), "worst_s": max(v)} for key in ("first_text_s", "first_batch_s",
                                                                             "first_eta_s")
        if (v := [r[key] for r in fp if r[key] is not None])}
    return out


def markdown(res: dict) -> str:
    lines = [BEGIN, "## 6. Cancel latency and time to first progress", "",
             f"`python -m bench.cancel` on {time.strftime('%Y-%m-%d %H:%M %Z')}: a custom CNN (width {res['width']}, "
             f"{res['image_size']} px, batch {res['batch']}) on the synthetic demo ({res['images']} images) trained "
             f"through core.training.train in a background job, as the Train page runs it; {res['tries']} tries per moment, "
             "on a machine also running a long training job.", "",
             "| Cancel pressed | median | worst | ended as cancelled |", "|---|---|---|---|"]
    for name, r in res["latency"].items():
        when = f"{name} (+{r['delay_s']:.1f} s)" if r["delay_s"] else name
        lines.append(f"| {when} | {r['median_s']:.2f} s | {r['worst_s']:.2f} s | {r['cancelled']} of {r['tries']} |")
    names = {"first_text_s": "a phase text (\"Preparing: decoding images…\")",
             "first_batch_s": "the first finished batch (the bar moves)",
             "first_eta_s": "the first time estimate (after 2 measured batches)"}
    lines += ["", "| From Start to | median | worst |", "|---|---|---|"]
    for key, r in res["time_to_first_progress"].items():
        lines.append(f"| {names[key]} | {r['median_s']:.2f} s | {r['worst_s']:.2f} s |")
    lines += ["", "A cancel is checked before and after every training and validation batch, between image "
              "decodes, in batch-norm re-estimation, calibration and the warnings fit, and raises out of "
              "Keras's `fit` at once (a cancelled epoch writes no checkpoint and runs no validation). What "
              "remains is the step in flight: the first batch's graph tracing cannot be interrupted.", END]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sys.path.insert(0, str(ROOT))
    parser = argparse.ArgumentParser(prog="python -m bench.cancel", description=__doc__.split("\n\n")[0])
    parser.add_argument("--tries", type=int, default=10)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "RESULTS.md")
    args = parser.parse_args(argv)
    res = run(args.tries)
    write_section(markdown(res), args.out, BEGIN, END)
    args.out.with_name("cancel.json").write_text(json.dumps(res, indent=2, default=float))
    print(markdown(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())

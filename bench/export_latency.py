"""Inference latency of each export format against the workbench's Keras path (issue 16).

    python -m bench.export_latency [--model RUN] [--reps 30] [--out bench/RESULTS.md]

Exports the run in every format through ``core.export.bundle`` (each export verified as the
CLI verifies it), unpacks the bundles and times, in the same process and interleaved round by
round so that load on a shared machine hits every format alike:

- ``keras (workbench)``: the run's own model.keras through core.inference.runner.ModelRunner
  plus the temperature softmax, i.e. what Predict & Explain runs;
- each exported file through the runtime a user would use (Keras, TensorFlow, LiteRT, onnxruntime).

One prepared image, and a batch of 100 (the run's held-out test images), medians of ``--reps``
rounds (batch: a third as many). Every format computes the same thing: calibrated
probabilities with the run's mirror averaging. The section goes into RESULTS.md between the
``export`` markers, which ``python -m bench`` keeps when it rewrites the file.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
import zipfile
from pathlib import Path

from bench.sections import write_section

ROOT = Path(__file__).resolve().parent.parent
BEGIN, END = "<!-- export: written by python -m bench.export_latency -->", "<!-- /export -->"
BASELINE = "keras (workbench)"
BATCH = 100


def _timed(fn, x) -> float:
    start = time.perf_counter()
    fn(x)
    return time.perf_counter() - start


def run(model: str | None, reps: int) -> dict:
    import numpy as np

    from core.export.bundle import (
        N_VERIFY,
        export_run,
        verification_images,
    )
    from core.export.formats import EXPORT_FORMATS
    from core.inference.calibration import softmax
    from core.inference.runner import ModelRunner
    from core.models.runs import best_run, list_runs, load_model, resolve_run

    run_ = resolve_run(model) if model else best_run(list_runs())
    images, source = verification_images(run_, BATCH)
    keras_model = load_model(run_)
    tta, temp = run_.card.tta, run_.card.temperature
    workbench = ModelRunner(keras_model, tta, features=False)  # built once, as Predict & Explain does
    runners = {BASELINE: lambda x: softmax(workbench.logits(x), temp)}
    exports = {}
    with tempfile.TemporaryDirectory(prefix="bench-export-") as tmp:
        for fmt, spec in EXPORT_FORMATS.items():
            made = export_run(run_, fmt, Path(tmp) / f"{fmt}.zip")
            folder = Path(tmp) / fmt
            with zipfile.ZipFile(made.path) as zf:
                zf.extractall(folder)
            runners[spec.key] = spec.load(folder / spec.artifact)
            exports[fmt] = {"max_abs_diff": made.max_abs_diff, "n_images": made.n_images,
                            "verified_on": made.image_source, "export_s": made.seconds,
                            "bytes": made.path.stat().st_size}
        x1, xb = images[:1].astype(np.float32), images[:BATCH].astype(np.float32)
        expected = runners[BASELINE](xb)
        for name, fn in runners.items():  # warm-up (tracing, memory planning) and a batch-100 agreement check
            fn(x1)
            exports.setdefault(name, {})["batch_max_abs_diff"] = float(np.abs(fn(xb) - expected).max())
        times: dict[str, dict[str, list[float]]] = {n: {"one": [], "batch": []} for n in runners}
        for i in range(reps):
            for name, fn in runners.items():
                times[name]["one"].append(_timed(fn, x1))
                if i % 3 == 0:
                    times[name]["batch"].append(_timed(fn, xb))
    medians = {n: {k: statistics.median(v) for k, v in t.items()} for n, t in times.items()}
    return {"run_id": run_.run_id, "image_size": run_.image_size, "tta": tta, "temperature": temp,
            "images": source, "n_verify": N_VERIFY, "batch": len(xb), "reps": reps, "cpus": os.cpu_count(),
            "medians_s": medians, "exports": exports}


def markdown(res: dict) -> str:
    base = res["medians_s"][BASELINE]
    lines = [BEGIN, "## 7. Exported models: inference latency", "",
             f"`python -m bench.export_latency` on {time.strftime('%Y-%m-%d %H:%M %Z')}: model `{res['run_id']}` "
             f"({res['image_size']} px, test-time augmentation `{res['tta']}` and T = {res['temperature']:.3f} baked "
             f"into every export), inputs {res['images']}; medians of {res['reps']} rounds for one image and "
             f"{len(range(0, res['reps'], 3))} for a batch of {res['batch']}, formats interleaved in each round, "
             f"{res['cpus']} CPUs shared with other work. Ratio = the format's time ÷ the workbench's Keras time "
             "(below 1: faster).", "",
             "| format | 1 image | ratio | batch of 100 | ratio | max \\|Δp\\| vs Keras (32 verify / 100 batch) | bundle |",
             "|---|---|---|---|---|---|---|"]
    for name, m in res["medians_s"].items():
        e = res["exports"].get(name, {})
        diff = (f"{e['max_abs_diff']:.1e} / {e['batch_max_abs_diff']:.1e}" if "max_abs_diff" in e
                else f"— / {e.get('batch_max_abs_diff', 0):.1e}")
        size = f"{e['bytes'] / 1e6:.1f} MB" if "bytes" in e else "—"
        lines.append(f"| {name} | {m['one'] * 1e3:.1f} ms | {m['one'] / base['one']:.2f} | {m['batch'] * 1e3:.0f} ms | "
                     f"{m['batch'] / base['batch']:.2f} | {diff} | {size} |")
    lines += ["", "Every export must match the workbench's probabilities within 1e-4 on the verification images or it "
              "is not written; the batch column repeats the check on 100 images. Each row runs the mirrored pass "
              "too (two forward passes per image). ONNX and LiteRT use as many threads as there are CPUs.", END]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sys.path.insert(0, str(ROOT))
    parser = argparse.ArgumentParser(prog="python -m bench.export_latency", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=None, help="run id (default: the best registered model)")
    parser.add_argument("--reps", type=int, default=30)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "RESULTS.md")
    args = parser.parse_args(argv)
    res = run(args.model, args.reps)
    write_section(markdown(res), args.out, BEGIN, END)
    args.out.with_name("export_latency.json").write_text(json.dumps(res, indent=2, default=float))
    print(markdown(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())

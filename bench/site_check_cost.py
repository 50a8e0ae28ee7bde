"""What the batch site check adds to a prediction, three ways, measured in one run.

``python -m bench.site_check_cost [--model RUN] [--sizes 20 100 500] [--repeats 3]``

Batches are random draws of the model's held-out test images, held in memory as bytes (as uploads are).
For each batch: the prediction alone (``predict_files``, no heat maps), then its site check

- **as it was**: the files decoded again, every network run on them and on a sample of training images read
  from the training folder (``check_paths`` with the kept sample hidden);
- **files, kept sample**: decoded again and run again, but the training side read from ``site_reference.npz``;
- **the prediction's own, kept sample**: ``check_results``: the prediction's decoded images and network
  features, the training side from the kept sample; no network runs.

Medians of ``--repeats`` interleaved rounds, and the ratio of each way to the old one; the verdicts' AUCs
are printed beside them (the kept sample is a smaller pool, so the draws differ).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
WAYS = ("as_it_was", "files_kept_sample", "prediction_kept_sample")


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sys.path.insert(0, str(ROOT))
    parser = argparse.ArgumentParser(prog="python -m bench.site_check_cost", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=None, help="run id (default: the best registered model)")
    parser.add_argument("--sizes", type=int, nargs="+", default=[20, 100, 500])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=None, help="also write the figures as JSON")
    args = parser.parse_args(argv)

    import core.evaluation.site_check as site_check_module
    from core.evaluation.site_reference import kept_reference
    from core.inference.ensemble_predict import load_predictor
    from core.inference.predict import predict_files
    from core.models.runs import best_run, list_runs, resolve_run

    run = resolve_run(args.model) if args.model else best_run(list_runs())
    if kept_reference(run)[0] is None:
        print(f"{run.run_id} keeps no sample of its training images: python -m core site-reference --model "
              f"{run.run_id}", file=sys.stderr)
        return 2
    predictor = load_predictor(run.run_id)
    files = list(run.card.data["test_files"])
    real_load = site_check_module.load_reference

    def hidden(*_a, **_k):
        return None, None

    def timed(work, *args):
        t0 = time.perf_counter()
        out = work(*args)
        return time.perf_counter() - t0, out

    rows = []
    for size in args.sizes:
        rng = np.random.default_rng(size)
        pick = sorted(rng.choice(len(files), min(size, len(files)), replace=False))
        items = [(files[i], (run.data_root / files[i]).read_bytes()) for i in pick]
        times: dict[str, list[float]] = {w: [] for w in ("predict", *WAYS)}
        aucs: dict[str, float] = {}
        predict_files(predictor, items[:2])  # warm: the graphs traced before any timing
        for _ in range(args.repeats):
            t, results = timed(predict_files, predictor, items)
            times["predict"].append(t)
            site_check_module.load_reference = hidden
            try:
                t, check = timed(site_check_module.check_paths, run, items)
            finally:
                site_check_module.load_reference = real_load
            times["as_it_was"].append(t)
            aucs["as_it_was"] = check.domain_auc
            t, check = timed(site_check_module.check_paths, run, items)
            times["files_kept_sample"].append(t)
            aucs["files_kept_sample"] = check.domain_auc
            t, check = timed(site_check_module.check_results, run, results)
            times["prediction_kept_sample"].append(t)
            aucs["prediction_kept_sample"] = check.domain_auc
        med = {k: statistics.median(v) for k, v in times.items()}
        row = {"size": len(items), "median_s": med, "all_s": times, "auc": aucs,
               "ratio_to_as_it_was": {w: med[w] / med["as_it_was"] for w in WAYS}}
        rows.append(row)
        print(json.dumps({"size": row["size"], **{k: round(v, 2) for k, v in med.items()},
                          "auc": aucs}), flush=True)
    load = os.getloadavg()[0]
    print(f"load average at the end: {load:.1f}")
    if args.out:
        args.out.write_text(json.dumps({"model": run.run_id, "repeats": args.repeats, "load_end": load,
                                        "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

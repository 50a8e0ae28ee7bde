"""Behaviour check for refactors: the committed default model's probabilities and heat maps on
32 of its held-out real images, saved to an .npz so two checkouts can be compared bit for bit.

    cd <checkout> && python /path/to/bench/behaviour_check.py out.npz
    python bench/behaviour_check.py --compare a.npz b.npz
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np


def compute(out: str) -> None:
    sys.path.insert(0, str(Path.cwd()))  # the checkout being measured, not this file's
    try:
        from core.models.runs import best_run, list_runs
    except ImportError:  # the checkout before the run-folder module was renamed
        from core.models.registry import best_run, list_runs
    from core.inference.predict import Predictor, predict_files

    data = Path.cwd().parent / "shared" / "data" / "brain-tumor-mri"
    if not data.is_dir():
        data = Path("/work/shared/data/brain-tumor-mri")
    run = best_run(list_runs(Path.cwd() / "models"))
    test_files = json.loads((run.path / "card.json").read_text())["data"]["test_files"]
    paths = [data / f for f in sorted(test_files)[::max(1, len(test_files) // 32)][:32]]
    items = [(p.name, p.read_bytes()) for p in paths]
    predictor = Predictor(run)
    arrays = {}
    for method in ("gradcam", "gradcam++", "layercam"):
        results = predict_files(predictor, items, gradcam=True, method=method)
        assert all(r.ok for r in results), [r.error for r in results if not r.ok]
        arrays[f"heat_{method}"] = np.stack([r.heatmap for r in results])
    arrays["probs"] = np.array([[r.probabilities[c] for c in run.class_names] for r in results])
    arrays["sets"] = np.array([",".join(r.prediction_set or []) for r in results])
    np.savez(out, **arrays)
    print(f"{len(paths)} images from {run.run_id}; saved {sorted(arrays)} to {out}")


def compare(a: str, b: str) -> float:
    x, y = np.load(a), np.load(b)
    assert sorted(x.files) == sorted(y.files), (x.files, y.files)
    worst = 0.0
    for key in sorted(x.files):
        if x[key].dtype.kind in "fc":
            d = float(np.max(np.abs(x[key] - y[key])))
            worst = max(worst, d)
            print(f"{key}: shape {x[key].shape} max |delta| = {d}")
        else:
            same = bool(np.array_equal(x[key], y[key]))
            worst = worst if same else float("inf")
            print(f"{key}: identical = {same}")
    return worst


if __name__ == "__main__":
    if sys.argv[1] == "--compare":
        print("max |delta| overall:", compare(sys.argv[2], sys.argv[3]))
    else:
        compute(sys.argv[1])

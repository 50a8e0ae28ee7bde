"""A simulated new site from real data: site check and adaptation of the committed default model.

``python -m bench.site_adapt [--model RUN] [--n 400] [--shift reframe_histogram] [--epochs 8]``

The site is N of the default model's *validation* images (never its test images, which stay
the "source" test), whole frames at 256 px, altered by a style shift of the robustness test
(core.evaluation.robustness: by default re-framed to the head and given another class's
intensities, "as in a new hospital's images"), written as PNG into class folders. Reported:
the site check on the site and on the model's own held-out test images, then ``adapt`` with
its before/after table and wall time. The model (by default the committed default model; an
ensemble run with its members) is copied into a scratch registry, so models/ is never written.
An ensemble is adapted member by member into a new ensemble; its site check reads every member's
features, each on its own input.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np


def build_site(run, out: Path, n: int, shift: str, seed: int = 0) -> Path:
    """Write the simulated site (class folders of PNGs) into ``out``."""
    from PIL import Image

    from core.classes import canonical_class
    from core.data.preprocess import WHOLE_FRAME_ID, load_many
    from core.data.shifts import RAW_SCALE, shift_images

    files = list(run.card.data["val_files"])
    rng = np.random.default_rng(seed)
    picked = [files[i] for i in sorted(rng.choice(len(files), min(n, len(files)), replace=False))]
    labels = np.array([run.class_names.index(canonical_class(Path(f).parent.name)) for f in picked])
    raw = load_many([run.data_root / f for f in picked], RAW_SCALE * run.image_size, preprocessing=WHOLE_FRAME_ID)
    shifted = shift_images(raw, shift, seed=seed, labels=labels, scale=RAW_SCALE)
    for f, lab, img in zip(picked, labels, shifted):
        target = out / run.class_names[lab] / (Path(f).stem + ".png")
        target.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img[..., 0]).save(target)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default=None, help="run id in models/, an ensemble too (default: the default model)")
    parser.add_argument("--n", type=int, default=400)
    parser.add_argument("--shift", default="reframe_histogram")
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--out", default=None, help="write the figures as JSON here")
    args = parser.parse_args()

    from core import paths
    from core.evaluation.site_check import check_paths, site_check
    from core.jobs import Job
    from core.models.ensemble import member_runs, sentinel_runs
    from core.models.runs import best_run, list_runs, resolve_run
    from core.training.adapt import AdaptConfig
    from core.training.adapt_ensemble import adapt_run

    source = paths.PROJECT_ROOT / "models"
    chosen = resolve_run(args.model, root=source) if args.model else best_run(list_runs(source))
    scratch = Path(tempfile.mkdtemp(prefix="site-bench-"))
    for r in [chosen, *(member_runs(chosen) + sentinel_runs(chosen) if chosen.card.is_ensemble else [])]:
        shutil.copytree(r.path, scratch / "models" / r.run_id)
    os.environ["WORKBENCH_MODELS_DIR"] = str(scratch / "models")

    run = resolve_run(chosen.run_id)
    site = build_site(run, scratch / "site", args.n, args.shift)
    figures: dict = {"model": run.run_id, "shift": args.shift, "n_site": args.n}
    t = time.perf_counter()
    check = site_check(run, site)
    figures["site_check_site"] = {**check.to_json(), "wall_s": round(time.perf_counter() - t, 1)}
    rng = np.random.default_rng(1)
    test = list(run.card.data["test_files"])
    sample = [run.data_root / test[i] for i in sorted(rng.choice(len(test), min(500, len(test)), replace=False))]
    t = time.perf_counter()
    own = check_paths(run, sample, run.data_root)
    figures["site_check_own_test"] = {**own.to_json(), "wall_s": round(time.perf_counter() - t, 1)}
    print(json.dumps({k: figures[k] for k in ("site_check_site", "site_check_own_test")}, indent=1), flush=True)
    t = time.perf_counter()
    job = Job("adapt", "bench")
    result = adapt_run(run, site, AdaptConfig(epochs=args.epochs), job)
    figures["adapt"] = {**result.to_json(), "wall_s": round(time.perf_counter() - t, 1),
                        "history": job.snapshot().history}
    adapted = result.run
    figures["adapted_conformal"] = adapted.card.results.to_json().get("conformal")
    print(json.dumps(figures["adapt"], indent=1), flush=True)
    if args.out:
        Path(args.out).write_text(json.dumps(figures, indent=1, default=str))
    shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()

"""Ensemble latency: predict + heat map for one slice, and a batch of 100, against a single model.

`python -m bench.ensemble [--models RUN RUN RUN] [--sentinels RUN] [--reps 30]` registers a 3-member
ensemble in a temporary registry and times, interleaved in one process (so all see the same machine
load): the single model (the first member), the ensemble and, when it has sentinels (check models
that only warn), the ensemble with them, each through ``predict_files`` as the
Predict page calls it (decode, every member's own preprocessing, forward passes, warnings,
prediction sets; with the heat map for the single-slice figure). Writes section 10 of
``bench/RESULTS.md``.

Without ``--models`` the members (and sentinels) are those of the default model when it is an ensemble (the
single model timed beside it is its first member); for a single default model, it and two
copies of its network whose last bias is nudged by 1e-7 (distinct checksums, the same compute). The warnings are not fitted for the timing ensemble (fitting does not change
the work done per slice).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from statistics import median

import numpy as np

from bench.sections import write_section

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "brain-tumor-mri" / "Training"
BEGIN, END = "<!-- ensemble: written by python -m bench.ensemble -->", "<!-- /ensemble -->"
TARGET_SINGLE_MS, TARGET_BATCH_S = 60.0, 2.0


def nudged_copies(run, root: Path, n: int) -> list[str]:
    """``n`` copies of ``run`` in ``root`` whose last bias is nudged (distinct files and checksums)."""
    from core.models.card import ModelCard
    from core.models.runs import CARD_FILE, file_sha256, load_model, write_card

    ids = []
    for j in range(1, n + 1):
        model = load_model(run)
        layer = next(la for la in reversed(model.layers) if la.weights)
        weights = layer.get_weights()
        weights[-1] = weights[-1] + np.float32(1e-7 * j)
        layer.set_weights(weights)
        run_id = f"{run.run_id}-copy{j}"
        folder = root / run_id
        shutil.copytree(run.path, folder)
        model.save(folder / "model.keras")
        card = run.card.replace(run_id=run_id, model_sha256=file_sha256(folder / "model.keras"),
                                model_bytes=(folder / "model.keras").stat().st_size)
        write_card(folder / CARD_FILE, ModelCard.from_json(card.to_json()))
        ids.append(run_id)
    return ids


def sample_files(n: int = 24) -> list[Path]:
    """Real slices from every class of the shared training folder, or demo phantoms without it."""
    if DATA.is_dir():
        per = [sorted(d.glob("*.jpg"))[:n // 4] for d in sorted(DATA.iterdir()) if d.is_dir()]
        return [p for group in per for p in group]
    from core.data.demo import generate_demo

    demo = generate_demo(Path(tempfile.mkdtemp(prefix="bench-demo-")) / "demo")
    return sorted((demo / "Testing").rglob("*.png"))[:n]


def time_both(single, ensemble, files: list[Path], reps: int, watched=None) -> dict:
    """Median single-slice predict + heat map and batch-100 seconds, interleaved single / ensemble
    (/ the ensemble with its sentinels, ``watched``, when given)."""
    from core.inference.predict import predict_files

    blobs = [(p.name, p.read_bytes()) for p in files]
    timed = [("single", single), ("ensemble", ensemble)] + ([("watched", watched)] if watched is not None else [])
    for name, data in blobs[:3]:  # warm-up: traces the forward and gradient functions of every member
        for _, predictor in timed:
            predict_files(predictor, [(name, data)], gradcam=True)
    times: dict[str, list[float]] = {k + tail: [] for k, _ in timed for tail in ("", "_batch")}
    for i in range(reps):
        item = [blobs[i % len(blobs)]]
        for key, predictor in timed:
            t = time.perf_counter()
            res = predict_files(predictor, item, gradcam=True)
            times[key].append(time.perf_counter() - t)
            assert res[0].ok and res[0].heatmap is not None
    batch = [blobs[i % len(blobs)] for i in range(100)]
    for _ in range(max(1, min(5, reps // 6))):
        for key, predictor in timed:
            t = time.perf_counter()
            res = predict_files(predictor, batch)
            times[key + "_batch"].append(time.perf_counter() - t)
            assert all(r.ok for r in res)
    s, e = median(times["single"]), median(times["ensemble"])
    sb, eb = median(times["single_batch"]), median(times["ensemble_batch"])
    out = {"reps": reps, "batch_reps": len(times["single_batch"]), "n_files": len(files),
           "single_ms": 1000 * s, "ensemble_ms": 1000 * e, "ratio_single": e / s,
           "single_batch100_s": sb, "ensemble_batch100_s": eb, "ratio_batch": eb / sb,
           "ensemble_p95_ms": 1000 * float(np.percentile(times["ensemble"], 95))}
    if watched is not None:
        w, wb = median(times["watched"]), median(times["watched_batch"])
        out.update(watched_ms=1000 * w, watched_batch100_s=wb, ratio_watched=w / s, ratio_watched_batch=wb / sb,
                   watched_p95_ms=1000 * float(np.percentile(times["watched"], 95)))
    return out


def markdown(result: dict) -> str:
    ok1 = "met" if result["ensemble_ms"] <= TARGET_SINGLE_MS else "missed"
    ok2 = "met" if result["ensemble_batch100_s"] <= TARGET_BATCH_S else "missed"
    watched = []
    if result.get("watched_ms") is not None:
        ok3 = "met" if result["watched_ms"] <= TARGET_SINGLE_MS else "missed"
        ok4 = "met" if result["watched_batch100_s"] <= TARGET_BATCH_S else "missed"
        watched = [f"| the same ensemble with its check model ({', '.join(result['sentinels'])}), one slice | "
                   f"{result['single_ms']:.1f} ms | {result['watched_ms']:.1f} ms | {result['ratio_watched']:.2f}× | "
                   f"≤ {TARGET_SINGLE_MS:.0f} ms: {ok3} |",
                   f"| the same, batch of 100 | {result['single_batch100_s']:.2f} s | "
                   f"{result['watched_batch100_s']:.2f} s | {result['ratio_watched_batch']:.2f}× | "
                   f"≤ {TARGET_BATCH_S:.0f} s: {ok4} |"]
    lines = [BEGIN, "## 10. Ensemble latency: three members against one model", "",
             f"Members: {', '.join(result['members'])} ({result['members_note']}). "
             f"{result['n_files']} slices ({result['files_note']}), {result['reps']} interleaved repetitions "
             f"(batch: {result['batch_reps']}), `predict_files` as the Predict page calls it, on {os.cpu_count()} "
             "cores shared with other work.", "",
             "| | single model | 3-member ensemble | ratio | target |", "|---|---|---|---|---|",
             f"| predict + heat map, one slice (median) | {result['single_ms']:.1f} ms | {result['ensemble_ms']:.1f} ms "
             f"| {result['ratio_single']:.2f}× | ≤ {TARGET_SINGLE_MS:.0f} ms: {ok1} |",
             f"| batch of 100, no heat maps (median) | {result['single_batch100_s']:.2f} s | "
             f"{result['ensemble_batch100_s']:.2f} s | {result['ratio_batch']:.2f}× | ≤ {TARGET_BATCH_S:.0f} s: {ok2} |",
             *watched, "", f"Ensemble single-slice p95: {result['ensemble_p95_ms']:.1f} ms.", "",
             "Written by `python -m bench.ensemble`.", END]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sys.path.insert(0, str(ROOT))
    parser = argparse.ArgumentParser(prog="python -m bench.ensemble", description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="*", default=None, metavar="RUN",
                        help="the members (default: the default model's members when it is an ensemble, else "
                             "it and two nudged copies of it)")
    parser.add_argument("--sentinels", nargs="*", default=None, metavar="RUN",
                        help="check models timed with the ensemble as well (default: the default model's, if any)")
    parser.add_argument("--reps", type=int, default=30)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "RESULTS.md")
    parser.add_argument("--no-write", action="store_true", help="print only (smoke runs)")
    args = parser.parse_args(argv)
    from core.inference.ensemble_fit import register_ensemble
    from core.inference.ensemble_predict import predictor_for
    from core.inference.predict import Predictor
    from core.models.ensemble import member_runs, sentinel_runs
    from core.models.runs import best_run, list_runs, resolve_run

    with tempfile.TemporaryDirectory(prefix="bench-ensemble-") as tmp:
        root = Path(tmp)
        default = None if args.models else best_run(list_runs())
        watch = [resolve_run(m) for m in args.sentinels or []]
        if default is not None and default.card.is_ensemble and args.sentinels is None:
            watch = sentinel_runs(default)
        if args.models:
            runs = [resolve_run(m) for m in args.models]
            note = "as given"
        elif default.card.is_ensemble:
            runs = member_runs(default)
            note = "the members of the default model, an ensemble"
        else:
            runs = [default]
            note = "the default model and two copies of its network, last bias nudged by 1e-7"
        for r in (*runs, *watch):
            shutil.copytree(r.path, root / r.run_id)
        names = [r.run_id for r in runs]
        if len(names) == 1:
            names += nudged_copies(resolve_run(runs[0].run_id, root=root), root, 2)
        ens = register_ensemble(names, root=root, fit=False)
        single = Predictor(resolve_run(names[0], root=root))
        ensemble = predictor_for(ens)
        watched = predictor_for(register_ensemble(names, root=root, fit=False, sentinels=[w.run_id for w in watch])) \
            if watch else None
        files = sample_files()
        result = time_both(single, ensemble, files, args.reps, watched)
    result.update(members=names, members_note=note, sentinels=[w.run_id for w in watch],
                  files_note="real slices of the shared training folder" if DATA.is_dir() else "demo phantoms")
    print(json.dumps(result, indent=2))
    section = markdown(result)
    if not args.no_write:
        write_section(section, args.out, BEGIN, END)
    print(section)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

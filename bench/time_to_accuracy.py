"""Time to accuracy, float32 against bfloat16: ``python -m bench.time_to_accuracy [--epochs 12] [--cap-min 25]``.

1. Training-step throughput of the default custom CNN in each precision, the two precisions
   interleaved rep by rep (the machine is shared: a ratio measured side by side travels better
   than seconds), with the FLOPs of a step counted analytically (:mod:`bench.flops`: forward
   conv/dense multiply-adds × 3 for forward + backward) and each precision's matmul peak
   measured the same way as ``bench.run.matmul_peak`` (``tf.matmul`` of large square matrices).
2. One training run per precision, one after the other in fresh subprocesses, with the recipe
   of the committed default model (its card's ``train_config``) except the epochs (``--epochs``,
   the cosine schedule spans them) and the epochs averaged (scaled with them). Each run records
   the wall time, counted from the start of ``fit``, at which validation accuracy (plain
   forward pass, as Keras reports it per epoch) first reaches ``--target``; a run is stopped at
   the end of the epoch that passes ``--cap-min`` and is then saved as usual.
3. Each saved run is evaluated with ``python -m core evaluate --model RUN --json`` (the held-out,
   leakage-free test split of its card): accuracy and ECE.

Results go to ``bench/tta_results.json`` (``--out``); runs are registered in ``--models-dir``
(a temporary folder by default, so the project's registry is not touched).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench import sections
from bench.common import DEFAULT_DATA, ROOT, machine_info, median

DEFAULT_CARD = ROOT / "models" / "20261201-135406-custom_cnn-a305" / "card.json"
PRECISIONS = ("float32", "bfloat16")


# ---------------------------------------------------------------- 1. step throughput and peak
def matmul_timer(dtype: str, n: int = 2048):
    """A function timing one n×n matmul in ``dtype`` (seconds), as bench.run.matmul_peak does for float32."""
    import tensorflow as tf

    a = tf.cast(tf.random.normal((n, n)), dtype)
    b = tf.cast(tf.random.normal((n, n)), dtype)
    tf.linalg.matmul(a, b).numpy()

    def once() -> float:
        t = time.perf_counter()
        tf.linalg.matmul(a, b).numpy()
        return time.perf_counter() - t

    return once


def step_throughput(cfg: dict, reps: int = 5, steps: int = 5) -> dict:
    """Images/s of ``train_on_batch`` for each precision and each precision's matmul peak, all interleaved
    rep by rep (so they share the machine's load); the step's FLOP share of that peak."""
    import keras
    import numpy as np

    from bench.flops import forward_flops
    from core.training.config import TrainConfig
    from core.training.loop import compile_model
    from core.training.precision import build_with_precision

    batch, size, width = cfg["batch_size"], cfg["image_size"], cfg["width"]
    rng = np.random.default_rng(0)
    x = (rng.random((batch, size, size, 1)) * 255).astype("float32")
    y = keras.utils.to_categorical(rng.integers(0, 4, batch), 4)
    models, flops = {}, 0
    for p in PRECISIONS:
        keras.utils.set_random_seed(0)
        m = build_with_precision("custom_cnn", 4, size, "none", width, p)
        compile_model(m, TrainConfig(precision=p, width=width), 1e-3)
        m.train_on_batch(x, y)  # trace
        models[p] = m
        flops = forward_flops(m)
    n = 2048
    matmuls = {p: matmul_timer(p, n) for p in PRECISIONS}
    times: dict[str, list[float]] = {p: [] for p in PRECISIONS}
    mm: dict[str, list[float]] = {p: [] for p in PRECISIONS}
    for _ in range(reps):
        for p in PRECISIONS:
            t = time.perf_counter()
            for _ in range(steps):
                models[p].train_on_batch(x, y)
            times[p].append((time.perf_counter() - t) / steps)
            mm[p].append(min(matmuls[p]() for _ in range(2)))
    out: dict = {"batch": batch, "image_size": size, "width": width, "forward_gflop_per_image": flops / 1e9,
                 "train_gflop_per_image": 3 * flops / 1e9, "flop_count": "analytic (bench.flops: conv/dense MACs x2, x3 for training)"}
    for p in PRECISIONS:
        step_s = median(times[p])
        peak = 2 * n**3 / median(mm[p]) / 1e9
        achieved = 3 * flops * batch / step_s / 1e9
        out[p] = {"step_s_median": step_s, "step_s_all": times[p], "images_per_s": batch / step_s,
                  "achieved_gflop_s": achieved, "matmul_peak_gflop_s": peak, "share_of_peak": achieved / peak}
    out["speedup_bf16_over_f32"] = out["float32"]["step_s_median"] / out["bfloat16"]["step_s_median"]
    out["share_of_f32_peak_bf16"] = out["bfloat16"]["achieved_gflop_s"] / out["float32"]["matmul_peak_gflop_s"]
    return out


# ---------------------------------------------------------------- 2. one training run (child process)
def recipe(card: Path, epochs: int, precision: str) -> dict:
    """The default model's train_config with ``epochs`` (average_epochs scaled with them) and ``precision``."""
    cfg = json.loads(card.read_text())["train_config"]
    scale = epochs / cfg["epochs"]
    cfg.update(epochs=epochs, precision=precision,
               average_epochs=min(epochs, max(1, round(cfg["average_epochs"] * scale))) if cfg["average_epochs"] else 0)
    return cfg


def train_child(args: argparse.Namespace) -> int:
    """Train one precision; print a JSON line with the timings, the run and its per-epoch history."""
    import core.training.loop as loop
    import core.training.train as train_module
    from core.config import DataConfig
    from core.data.datasets import open_folder
    from core.data.scan import scan_dataset
    from core.jobs import Job
    from core.training.config import TrainConfig

    cfg = TrainConfig.from_dict({**recipe(Path(args.card), args.epochs, args.child),
                                 "max_train_batches": args.max_batches})
    clock: dict = {"fit_start": None, "reached_s": None, "reached_epoch": None, "capped": False, "epochs": []}
    original = loop.progress_callback

    def timed_progress(*a, **kw):
        # The engine's own callback, plus the clock: time from the start of fit to each epoch's end,
        # and a stop (weights kept, run saved as usual) once the cap has passed.
        cb = original(*a, **kw)
        begin, end = cb.on_train_begin, cb.on_epoch_end

        def on_train_begin(logs=None):
            clock["fit_start"] = clock["fit_start"] or time.perf_counter()
            begin(logs)

        def on_epoch_end(epoch, logs=None):
            end(epoch, logs)
            t = time.perf_counter() - clock["fit_start"]
            acc = float((logs or {}).get("val_accuracy", float("nan")))
            clock["epochs"].append({"epoch": epoch + 1, "t_s": t, "val_accuracy": acc,
                                    "val_loss": float((logs or {}).get("val_loss", float("nan")))})
            if clock["reached_s"] is None and acc >= args.target:
                clock["reached_s"], clock["reached_epoch"] = t, epoch + 1
            if t > args.cap_min * 60:
                clock["capped"] = True
                cb.model.stop_training = True

        cb.on_train_begin, cb.on_epoch_end = on_train_begin, on_epoch_end
        return cb

    loop.progress_callback = timed_progress
    # The warning thresholds (minutes of shifted-image predictions on a busy machine) play no part in
    # accuracy or ECE: the run keeps its basic thresholds, as a run whose warnings fit failed does.
    train_module._fit_warnings = lambda run, model, job: run
    data_cfg = DataConfig()
    ds = open_folder(args.data)
    report = scan_dataset(ds, threshold=data_cfg.near_dup_threshold)
    job = Job("train", f"time to accuracy, {args.child}")
    t0 = time.perf_counter()
    run = train_module.train_model(ds, report, cfg, job, data_cfg)
    total = time.perf_counter() - t0
    fit_end = clock["epochs"][-1]["t_s"] if clock["epochs"] else None
    best = max(clock["epochs"], key=lambda r: r["val_accuracy"]) if clock["epochs"] else None
    print("RESULT " + json.dumps({
        "precision": args.child, "run_id": run.run_id, "path": str(run.path), "train_config": cfg.to_dict(),
        "target": args.target, "reached_s": clock["reached_s"], "reached_epoch": clock["reached_epoch"],
        "best_val_accuracy": best and best["val_accuracy"], "best_epoch": best and best["epoch"],
        "best_t_s": best and best["t_s"], "fit_s": fit_end, "capped": clock["capped"],
        "epochs_run": len(clock["epochs"]), "epochs": clock["epochs"], "train_model_s": total,
        "card_val_accuracy": run.card.to_json()["results"].get("val_accuracy"),
        "n_val": run.card.to_json()["results"].get("n_val")}), flush=True)
    return 0


def evaluate(run_path: str, env: dict, boxes: Path | None = None) -> dict:
    """``python -m core evaluate --model RUN --json [--boxes CSV]``: the card's held-out test split, with the
    heat maps' localisation when a box file is given."""
    cmd = [sys.executable, "-m", "core", "evaluate", "--model", run_path, "--json"]
    out = subprocess.run(cmd + (["--boxes", str(boxes)] if boxes else []), env=env, capture_output=True, text=True,
                         cwd=ROOT, check=True)
    return json.loads(out.stdout)


def validation_localisation(run_path: str, boxes: Path) -> dict:
    """Pointing game and heat in box on the run's validation slices with a box: a figure a recipe may be
    chosen on, beside validation accuracy (the test split's figure is only reported)."""
    from core.evaluation.localisation import validation_localisation as localise
    from core.models.runs import resolve_run

    path = Path(run_path)
    return localise(resolve_run(path.name, path.parent), boxes)


def box_file(data: str) -> Path | None:
    """The dataset's tumour boxes (``tumour_boxes.csv`` beside its class folders), when it has them."""
    path = Path(data) / "tumour_boxes.csv"
    return path if path.is_file() else None


# ---------------------------------------------------------------- 2b. a preset from a cold command line
def preset_run(preset: str, data: str, target: float, env: dict) -> dict:
    """``python -m core train --preset PRESET`` from a cold start: a fresh process and an empty cache folder, so
    TensorFlow's import, the dataset scan and the decoding are all counted. Timed to the run's registration
    (the "saved" line) and to the command's exit (which also fits the warning thresholds); each epoch's
    validation accuracy is read from the log as it arrives."""
    cache = tempfile.mkdtemp(prefix="tta_cold_cache_")
    cmd = [sys.executable, "-m", "core", "train", "--data", data, "--preset", preset, "--json"]
    out: dict = {"preset": preset, "command": "python -m core train --data DATA --preset " + preset,
                 "load_avg_start": os.getloadavg(), "epochs": [], "reached_s": None, "reached_epoch": None}
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env={**env, "WORKBENCH_CACHE_DIR": cache}, cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    log = []
    for line in proc.stderr:  # --json: the progress log goes to stderr, the summary to stdout
        t = time.perf_counter() - t0
        log.append(line.rstrip())
        words = line.split()
        if "epoch" in words and "val_accuracy=" in line:
            epoch = int(line.split("epoch ", 1)[1].split(":", 1)[0])
            acc = float(line.split("val_accuracy=", 1)[1].split(",", 1)[0])
            out["epochs"].append({"epoch": epoch, "t_s": t, "val_accuracy": acc})
            if out["reached_s"] is None and acc >= target:
                out["reached_s"], out["reached_epoch"] = t, epoch
        elif "saved" in words:
            out["registered_s"] = t
    stdout = proc.stdout.read()
    proc.wait()
    out["wall_s"] = time.perf_counter() - t0
    out["load_avg_end"] = os.getloadavg()
    shutil.rmtree(cache, ignore_errors=True)
    if proc.returncode:
        return {**out, "error": "\n".join(log[-30:])}
    summary = json.loads(stdout)
    best = max(out["epochs"], key=lambda r: r["val_accuracy"]) if out["epochs"] else None
    out.update(run_id=summary["run_id"], path=summary["path"], card_val_accuracy=summary["results"].get("val_accuracy"),
               best_val_accuracy=best and best["val_accuracy"], best_epoch=best and best["epoch"],
               train_config=json.loads((Path(summary["path"]) / "card.json").read_text())["train_config"])
    return out


# ---------------------------------------------------------------- RESULTS.md section
BEGIN, END = "<!-- tta: written by python -m bench.time_to_accuracy -->", "<!-- /tta -->"


def _fmt_s(t: float | None) -> str:
    return "—" if t is None else f"{t / 60:.1f} min"


def markdown(res: dict) -> str:
    """Section 8 of bench/RESULTS.md from the results dict."""
    m, runs = res["machine"], res["runs"]
    target = res["target"]
    lines = [BEGIN, "## 8. Time to accuracy: float32 vs bfloat16", "",
             f"Written by `python -m bench.time_to_accuracy --epochs {res['epochs']} --cap-min {res['cap_min']:g}` on "
             f"{m['date']} ({m['cpu']}, {m['cores']} cores, TensorFlow {m['tensorflow']}, Keras {m['keras']}). "
             f"Load average at the start {res['load_avg_start'][0]:.1f}, at the end "
             f"{res.get('load_avg_end', [float('nan')])[0]:.1f}, on 2 cores shared with other jobs: seconds are "
             "noisy, the ratios measured side by side (the step table) are the figures to trust.", ""]
    if "steps" in res:
        st = res["steps"]
        lines += ["### Training step (interleaved, same load)", "",
                  f"Default custom CNN (width {st['width']}, {st['image_size']} px, batch {st['batch']}), "
                  f"`train_on_batch` timed rep by rep alternating the precisions, each rep followed by a "
                  f"2048² `tf.matmul` in the same dtype (the peak, measured like `bench.run.matmul_peak`). "
                  f"FLOPs: {st['flop_count']}; {st['train_gflop_per_image']:.3f} GFLOP per image per step.", "",
                  "| precision | images/s (median) | achieved GFLOP/s | matmul peak, same dtype | share of that peak |",
                  "|---|---|---|---|---|"]
        for p in PRECISIONS:
            r = st[p]
            lines.append(f"| {p} | {r['images_per_s']:.1f} | {r['achieved_gflop_s']:.1f} | "
                         f"{r['matmul_peak_gflop_s']:.1f} GFLOP/s | {r['share_of_peak']:.0%} |")
        lines += ["", f"bfloat16 / float32 steps per second: **{st['speedup_bf16_over_f32']:.2f}×**; the bfloat16 "
                  f"step reaches {st['share_of_f32_peak_bf16']:.0%} of the float32 matmul peak.", ""]
    lines += ["### Training runs (sequential, one subprocess each)", "",
              f"Recipe: the committed default model's `train_config` "
              f"(`models/20261201-135406-custom_cnn-a305`), except **{res['epochs']} epochs instead of 45** "
              "(the cosine schedule spans them) and the epochs averaged scaled with them; each run stops at "
              f"the end of the epoch that passes {res['cap_min']:g} min. Time is counted from the start of "
              f"`fit`; validation accuracy is Keras's per-epoch figure (one forward pass, no TTA) on the "
              "856 leakage-free validation images. Test: `python -m core evaluate --model RUN --json`, "
              "the card's held-out test split, leakage-free figures (flip TTA and temperature as saved).", "",
              f"| precision | time to ≥ {target:.0%} val | best val accuracy (epoch, time) | epochs run | "
              "fit time | s / epoch (median) | test accuracy (leakage-free) | test ECE |",
              "|---|---|---|---|---|---|---|---|"]
    tests = {}
    for p in PRECISIONS:
        r = runs.get(p)
        if not r or "error" in r:
            lines.append(f"| {p} | {'failed' if r else 'not run'} | | | | | | |")
            continue
        epoch_s = [b["t_s"] - a["t_s"] for a, b in zip(r["epochs"], r["epochs"][1:])]
        t = r.get("test", {})
        lf = t.get("leakage_free") or {}
        acc, ece, n = lf.get("accuracy", t.get("accuracy")), lf.get("ece", t.get("ece")), lf.get("n_images",
                                                                                              t.get("n_images"))
        tests[p] = (acc, n)
        reached = (f"**{_fmt_s(r['reached_s'])}** (epoch {r['reached_epoch']})" if r["reached_s"] is not None
                   else f"not reached{' (capped)' if r['capped'] else ''}")
        lines.append(
            f"| {p} | {reached} | {r['best_val_accuracy']:.2%} ({r['best_epoch']}, {_fmt_s(r['best_t_s'])}) | "
            f"{r['epochs_run']} of {res['epochs']}{' (capped)' if r['capped'] else ''} | {_fmt_s(r['fit_s'])} | "
            f"{median(epoch_s) if epoch_s else float('nan'):.0f} s | "
            + (f"{acc:.2%} of {n} | {ece:.3f} |" if acc is not None else "— | — |"))
    if all(tests.get(p, (None, None))[0] is not None for p in PRECISIONS):
        (a32, n32), (a16, n16) = tests["float32"], tests["bfloat16"]
        diff = a16 - a32
        lines += ["", f"Test accuracy difference bfloat16 − float32: {diff * 100:+.1f} pt = "
                  f"{round(a16 * n16) - round(a32 * n32):+d} of {n32} images."]
    if res.get("notes"):  # the reading, written by hand into the results file after a run
        lines += ["", *[f"- {note}" for note in res["notes"]]]
    lines += preset_markdown(res)
    lines += ["", "Raw numbers: `bench/tta_results.json`.", END]
    return "\n".join(lines)


def preset_markdown(res: dict) -> list[str]:
    """The presets' rows (``--preset``): cold command line to a registered run, and the held-out test."""
    presets = res.get("presets") or {}
    if not presets:
        return []
    target = res["target"]
    lines = ["", "### Presets from a cold command line (`python -m bench.time_to_accuracy --preset NAME`)", "",
             "`python -m core train --data DATA --preset NAME` in a fresh process with an empty cache folder: "
             "TensorFlow's import, the dataset scan (perceptual hashes) and the decoding are counted. "
             "*Registered*: the run is saved and listed (calibrated, with its prediction sets); *command done*: "
             "the warning thresholds are fitted too. Test: `python -m core evaluate --model RUN --json`, the "
             "card's held-out test split, leakage-free figures.", "",
             f"| preset | cold start to registered run | command done | time to ≥ {target:.0%} val (epoch) | "
             "best val accuracy (epoch) | test accuracy (leakage-free) | test ECE | pointing game val / test "
             "(heat in box) | load average start → end |",
             "|---|---|---|---|---|---|---|---|---|"]
    for name, r in presets.items():
        if "error" in r:
            lines.append(f"| {name} | failed | | | | | | | |")
            continue
        lf = (r.get("test") or {}).get("leakage_free") or {}
        acc, ece, n = lf.get("accuracy"), lf.get("ece"), lf.get("n_images")
        reached = f"{_fmt_s(r['reached_s'])} ({r['reached_epoch']})" if r["reached_s"] is not None else "not reached"
        lines.append(
            f"| {name} | **{_fmt_s(r.get('registered_s'))}** | {_fmt_s(r['wall_s'])} | {reached} | "
            f"{r['best_val_accuracy']:.2%} ({r['best_epoch']}) | "
            + (f"**{acc:.2%}** of {n} | {ece:.3f} |" if acc is not None else "— | — |")
            + f" {_localisation_cell(r)} | {r['load_avg_start'][0]:.1f} → {r['load_avg_end'][0]:.1f} |")
    lines += ["", *[f"- {note}" for note in res.get("preset_notes", [])]] if res.get("preset_notes") else []
    return lines


def _localisation_cell(r: dict) -> str:
    """"val % / test % (val× / test×)" from the run's validation and test localisation blocks ("—" where absent)."""
    blocks = [r.get("val_localisation") or {}, (r.get("test") or {}).get("localisation") or {}]
    if not any(b.get("n_images") for b in blocks):
        return "—"
    games = " / ".join(f"{b['pointing_game']:.1%}" if b.get("n_images") else "—" for b in blocks)
    ratios = " / ".join(f"{b['heat_in_box_ratio']:.2f}×" if b.get("n_images") else "—" for b in blocks)
    n = " / ".join(str(b.get("n_images") or 0) for b in blocks)
    return f"{games} ({ratios}; {n} slices)"


def write_section(section: str, path: Path) -> None:
    """Replace the time-to-accuracy section of ``path`` (or append it)."""
    sections.write_section(section, path, BEGIN, END)


# ---------------------------------------------------------------- driver
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.time_to_accuracy", description=__doc__.split("\n")[0])
    p.add_argument("--data", default=str(DEFAULT_DATA))
    p.add_argument("--card", default=str(DEFAULT_CARD), help="card whose train_config is the recipe")
    p.add_argument("--epochs", type=int, default=12, help="epochs of each run (the default model had 45)")
    p.add_argument("--cap-min", type=float, default=25.0, help="stop a run after the epoch that passes this")
    p.add_argument("--target", type=float, default=0.97)
    p.add_argument("--models-dir", default=None, help="registry for the runs (default: a temporary folder)")
    p.add_argument("--out", default=str(ROOT / "bench" / "tta_results.json"))
    p.add_argument("--skip-steps", action="store_true", help="skip the step-throughput part")
    p.add_argument("--precisions", nargs="+", choices=PRECISIONS, default=list(PRECISIONS),
                   help="which precisions to train (both by default)")
    p.add_argument("--max-batches", type=int, default=None, help="cap batches per epoch (smoke runs only)")
    p.add_argument("--preset", default=None, metavar="NAME",
                   help="train one preset (core.training.presets) from a cold command line and add its row beside "
                        "the precisions already in --out (the step and precision runs are skipped)")
    p.add_argument("--child", choices=PRECISIONS, help=argparse.SUPPRESS)
    p.add_argument("--results-md", default=str(ROOT / "bench" / "RESULTS.md"), help="where section 8 goes")
    p.add_argument("--from-json", default=None, help="only rewrite section 8 from an earlier results file")
    args = p.parse_args(argv)
    if args.child:
        return train_child(args)
    if args.from_json:
        write_section(markdown(json.loads(Path(args.from_json).read_text())), Path(args.results_md))
        return 0

    out_path = Path(args.out)
    if args.preset:
        return main_preset(args, out_path)
    results: dict = {"machine": machine_info(), "load_avg_start": os.getloadavg(), "epochs": args.epochs,
                     "cap_min": args.cap_min, "target": args.target, "runs": {}}

    def save() -> None:
        out_path.write_text(json.dumps(results, indent=2))

    if not args.skip_steps:
        print("step throughput ...", flush=True)
        results["steps"] = step_throughput(recipe(Path(args.card), args.epochs, "float32"))
        print(json.dumps({k: v for k, v in results["steps"].items() if not isinstance(v, dict)}), flush=True)
        for prec in PRECISIONS:
            s = results["steps"][prec]
            print(f"  {prec}: {s['images_per_s']:.1f} img/s, {s['achieved_gflop_s']:.1f} GFLOP/s of "
                  f"{s['matmul_peak_gflop_s']:.1f} peak = {s['share_of_peak']:.1%}", flush=True)
        save()
    models_dir = args.models_dir or tempfile.mkdtemp(prefix="tta_models_")
    env = {**os.environ, "WORKBENCH_MODELS_DIR": models_dir, "PYTHONPATH": str(ROOT)}
    for prec in args.precisions:
        print(f"training {prec} ({args.epochs} epochs, cap {args.cap_min} min) ...", flush=True)
        t = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "bench.time_to_accuracy", "--child", prec, "--data", args.data,
                               "--card", args.card, "--epochs", str(args.epochs), "--cap-min", str(args.cap_min),
                               "--target", str(args.target),
                               *(["--max-batches", str(args.max_batches)] if args.max_batches else [])], env=env, cwd=ROOT, capture_output=True, text=True)
        line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")), None)
        if proc.returncode or line is None:
            results["runs"][prec] = {"error": proc.stderr[-3000:]}
            print(f"  failed: {proc.stderr[-1500:]}", flush=True)
            save()
            continue
        run = json.loads(line[len("RESULT "):])
        run["wall_s"] = time.perf_counter() - t
        run["load_avg_end"] = os.getloadavg()
        print(f"  reached {args.target:.0%} at {run['reached_s']} s (epoch {run['reached_epoch']}); best "
              f"{run['best_val_accuracy']:.4f} at epoch {run['best_epoch']} ({run['best_t_s']:.0f} s); "
              f"{run['epochs_run']} epochs in {run['fit_s']:.0f} s, capped={run['capped']}", flush=True)
        results["runs"][prec] = run
        save()
        try:
            run["test"] = evaluate(run["path"], env)
            print(f"  test: {json.dumps({k: v for k, v in run['test'].items() if not isinstance(v, (dict, list))})}",
                  flush=True)
        except subprocess.CalledProcessError as exc:
            run["test"] = {"error": exc.stderr[-3000:]}
        save()
    results["load_avg_end"] = os.getloadavg()
    save()
    write_section(markdown(results), Path(args.results_md))
    print(f"wrote {out_path}", flush=True)
    return 0


def main_preset(args: argparse.Namespace, out_path: Path) -> int:
    """``--preset NAME``: one cold command-line run of the preset, evaluated, added to the results file."""
    from core.training.presets import PRESETS

    PRESETS.check(args.preset, "--preset")  # an unknown name lists the presets before any work
    results = json.loads(out_path.read_text()) if out_path.exists() else {
        "machine": machine_info(), "load_avg_start": os.getloadavg(), "epochs": args.epochs, "cap_min": args.cap_min,
        "target": args.target, "runs": {}}
    models_dir = args.models_dir or tempfile.mkdtemp(prefix="tta_models_")
    env = {**os.environ, "WORKBENCH_MODELS_DIR": models_dir, "PYTHONPATH": str(ROOT)}
    print(f"training preset {args.preset} from a cold command line ...", flush=True)
    run = preset_run(args.preset, args.data, results.get("target", args.target), env)
    if "error" not in run:
        boxes = box_file(args.data)
        run["test"] = evaluate(run["path"], env, boxes)
        if boxes is not None:
            run["val_localisation"] = validation_localisation(run["path"], boxes)
        print(f"  registered after {run['registered_s']:.0f} s, done after {run['wall_s']:.0f} s; test "
              f"{json.dumps(run['test'].get('leakage_free', {}).get('accuracy'))}", flush=True)
    else:
        print(f"  failed: {run['error'][-1500:]}", flush=True)
    results.setdefault("presets", {})[args.preset] = {**run, "machine": machine_info()}
    out_path.write_text(json.dumps(results, indent=2))
    write_section(markdown(results), Path(args.results_md))
    print(f"wrote {out_path}", flush=True)
    return 0 if "error" not in run else 2


if __name__ == "__main__":
    raise SystemExit(main())

"""The first training batch with the cosine schedule: inside the optimizer, or set by a callback
(a section of bench/RESULTS.md).

The first batch of a training run is mostly graph tracing, and that is the wait between Start and
the first movement of the Train page's bar. Keras's AdamW asks for the learning rate once per
weight in its weight decay, so a schedule handed to the optimizer is traced into the graph once per
weight; :func:`core.training.options.scheduled_rate` sets one rate variable from the same schedule
before each batch instead. Both are timed here, interleaved try by try in one process (the machine
is shared: ratios measured side by side are the figures to trust), on a freshly built network each
time, with the preset's own optimizer, batch size and image size; random pixels (tracing does not
depend on them).

    python -m bench.first_step [--preset fast] [--tries 5]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from bench.common import machine_info, median
from bench.sections import write_section

ROOT = Path(__file__).resolve().parents[1]
BEGIN = "<!-- first-step: written by python -m bench.first_step -->"
END = "<!-- /first-step -->"
WAYS = ("schedule in the optimizer", "rate set by a callback")


STEADY = 10  # batches after the first, timed for the per-batch cost


def first_step(cfg, way: str) -> tuple[float, float]:
    """(first batch, median of the next STEADY batches) seconds of a new network of ``cfg`` compiled the given way."""
    import numpy as np

    from core.lazy_tensorflow import keras
    from core.models.architectures import build_model
    from core.training.loop import compile_model
    from core.training.options import scheduled_rate, warmup_cosine
    from core.training.precision import precision_scope

    k = keras()
    steps = 63
    schedule = warmup_cosine(cfg.learning_rate, steps * cfg.epochs, steps)
    with precision_scope(cfg.precision):
        model = build_model(cfg.arch, 4, cfg.image_size, "none", cfg.width)
    callback = None
    if way == WAYS[0]:
        compile_model(model, cfg, schedule)
    else:
        compile_model(model, cfg, float(schedule(0)))
        callback = scheduled_rate(schedule)
        callback.set_model(model)
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, (cfg.batch_size, cfg.image_size, cfg.image_size, 1)).astype("float32")
    y = k.utils.to_categorical(rng.integers(0, 4, cfg.batch_size), 4)
    times = []
    for batch in range(1 + STEADY):
        t = time.perf_counter()
        if callback is not None:
            callback.on_train_batch_begin(batch)
        model.train_on_batch(x, y)
        times.append(time.perf_counter() - t)
    return times[0], median(times[1:])


def measure(preset: str, tries: int, **overrides) -> dict:
    """Both ways' first and later batch times, ``tries`` times each, on ``preset``'s network (with
    ``overrides``: TrainConfig fields, e.g. a smaller image for tests)."""
    from core.training.presets import preset_config

    cfg = preset_config(preset, **overrides)
    first_step(cfg, WAYS[1])  # warm-up: TensorFlow's own first-use costs fall on neither way
    out: dict = {w: {"first": [], "second": []} for w in WAYS}
    for _ in range(tries):
        for way in WAYS:
            a, b = first_step(cfg, way)
            out[way]["first"].append(a)
            out[way]["second"].append(b)
    return {"preset": preset, "tries": tries, "image_size": cfg.image_size, "batch_size": cfg.batch_size,
            "optimizer": cfg.optimizer, "precision": cfg.precision, "raw": out}


def markdown(figures: dict, info: dict) -> str:
    raw = figures["raw"]
    first = {w: median(raw[w]["first"]) for w in WAYS}
    second = {w: median(raw[w]["second"]) for w in WAYS}
    lines = [BEGIN, "## 18. The first training batch: the cosine schedule inside the optimizer or set by a callback", "",
             f"`python -m bench.first_step --preset {figures['preset']} --tries {figures['tries']}` on "
             f"{info.get('date', '?')} ({info.get('cpu', '?')}, {info.get('cores', '?')} cores; load average "
             f"{info.get('load_start', '?')} at the start, {info.get('load_end', '?')} at the end). A new network of the "
             f"`{figures['preset']}` preset ({figures['image_size']} px, batch {figures['batch_size']}, "
             f"{figures['optimizer']}, {figures['precision']}) each try, the two ways interleaved; medians of "
             f"{figures['tries']} tries.", "",
             f"| learning rate | first batch (graph tracing), median | each later batch (median of {STEADY} per try, then of the tries) | first batches, every try |",
             "|---|---|---|---|"]
    for w in WAYS:
        tries = ", ".join(f"{s:.1f}" for s in raw[w]["first"])
        lines.append(f"| {w} | {first[w]:.2f} s | {second[w]:.3f} s | {tries} |")
    ratio = first[WAYS[0]] / first[WAYS[1]] if first[WAYS[1]] else float("nan")
    later = second[WAYS[0]] / second[WAYS[1]] if second[WAYS[1]] else float("nan")
    lines += ["", f"With the schedule inside the optimizer the first batch takes **{ratio:.2f}×** as long as with the "
              f"callback, and each later batch **{later:.2f}×** (medians). AdamW's weight decay asks for the rate once per weight, and each ask traces the "
              "schedule's warm-up branch into the graph again; the callback (`core.training.options.scheduled_rate`) "
              "sets one rate variable from the same Keras `CosineDecay` before each batch (its own cost is inside the "
              "callback row's batch times). What a user sees: the Train page's bar moves sooner after Start, most of "
              "all on a busy machine, where tracing is the longest wait.",
              END]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    import os

    sys.path.insert(0, str(ROOT))
    parser = argparse.ArgumentParser(prog="python -m bench.first_step", description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="fast")
    parser.add_argument("--tries", type=int, default=5)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "RESULTS.md")
    args = parser.parse_args(argv)
    if args.tries < 1:
        print("--tries must be at least 1", file=sys.stderr)
        return 2
    load_start = f"{os.getloadavg()[0]:.1f}"
    figures = measure(args.preset, args.tries)
    info = {**machine_info(), "load_start": load_start, "load_end": f"{os.getloadavg()[0]:.1f}",
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    section = markdown(figures, info)
    write_section(section, args.out, BEGIN, END)
    print(section)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

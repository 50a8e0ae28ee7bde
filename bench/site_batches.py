"""How often does a batch get the per-slice "site_shift" warning? In source, and under each simulated shift.

``python -m bench.site_batches [--model RUN] [--sizes 20 50 100] [--draws 5] [--out bench/site_batches.json]``

Batches are random draws of the model's *held-out test* images (the default's 858), at their own size and
colour mode, written as PNG, unchanged or altered by one shift of the stress test
(:data:`core.data.shifts.SHIFTS`, the same strengths, stated at the model's input size). Each batch goes
through :func:`core.evaluation.site_check.check_paths`, as ``python -m core predict`` and the Predict page do
with 20 or more images. Reported per condition and batch size: the share of batches flagged (every slice
then carries the warning) and the median domain AUC.

What it shows and what it does not: "unchanged" measures false alarms on batches from the model's own
source; the shifted rows measure whether a simulated change of scanner is noticed. Neither is another
hospital's images: the site check's power on real new sites is not measured here.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

#: the unchanged batch first: its false-alarm rate is the row a reader needs before the others
#: "one_part": unchanged, but neighbours by file name within one class (one corner of the collection, often
#: the same patients) instead of a random draw: the false alarm the check is known to raise
CONDITIONS = ("none", "one_part", "darker", "brighter", "low_contrast", "bias_field", "noise", "blur", "low_resolution",
              "jpeg", "reframe", "histogram", "reframe_histogram")


def shifted_copy(src: Path, key: str, label: int, partner: tuple[Path, int] | None, seed: int,
                 input_size: int) -> np.ndarray:
    """``src`` (grayscale, its own size) altered by shift ``key``; a style shift borrows ``partner``'s intensities.

    The shift sees the image and its partner (of another class) side by side, so its partner draw can only
    pick that one: the stress test's "another class's image", at this image's own size.
    """
    import cv2
    from PIL import Image

    from core.data.shifts import shift_images

    img = np.asarray(Image.open(src).convert("L"))
    stack, labels = [img], [label]
    if partner is not None:
        other = np.asarray(Image.open(partner[0]).convert("L"))
        stack.append(cv2.resize(other, img.shape[::-1], interpolation=cv2.INTER_AREA))
        labels.append(partner[1])
    out = shift_images(np.stack(stack)[..., None], key, seed=seed, labels=np.array(labels),
                       scale=img.shape[0] / input_size)
    return out[0, ..., 0]


def write_batch(run, files: list[str], key: str, folder: Path, rng: np.random.Generator, seed: int) -> list[Path]:
    """The batch as PNG files in the originals' colour modes (a grayscale JPEG stays grayscale)."""
    from PIL import Image

    from core.classes import canonical_class

    labels = [run.class_names.index(canonical_class(Path(f).parent.name)) for f in files]
    every = list(run.card.data["test_files"])
    every_labels = [run.class_names.index(canonical_class(Path(f).parent.name)) for f in every]
    paths = []
    for i, (f, lab) in enumerate(zip(files, labels)):
        src = run.data_root / f
        partner = None
        if key in ("histogram", "reframe_histogram"):
            j = rng.choice([k for k, other in enumerate(every_labels) if other != lab])
            partner = (run.data_root / every[j], every_labels[j])
        px = shifted_copy(src, key, lab, partner, seed + i, run.image_size)
        mode = Image.open(src).mode
        target = folder / f"{i:04d}.png"
        Image.fromarray(px).convert(mode if mode in ("L", "RGB") else "L").save(target)
        paths.append(target)
    return paths


def neighbours(files: list[str], size: int, rng: np.random.Generator) -> list[str]:
    """``size`` files of one class that follow each other by name, from a random class and start."""
    by_class: dict[str, list[str]] = {}
    for f in sorted(files):
        by_class.setdefault(Path(f).parent.name, []).append(f)
    pool = by_class[sorted(by_class)[rng.integers(len(by_class))]]
    start = int(rng.integers(0, len(pool) - size + 1))
    return pool[start:start + size]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default=None, help="run id (default: the default model)")
    parser.add_argument("--sizes", type=int, nargs="+", default=[20, 50, 100])
    parser.add_argument("--draws", type=int, default=5, help="random batches per condition and size")
    parser.add_argument("--conditions", nargs="+", default=list(CONDITIONS), choices=CONDITIONS)
    parser.add_argument("--out", default="bench/site_batches.json")
    args = parser.parse_args()

    from core.evaluation.site_check import check_paths
    from core.models.runs import best_run, list_runs, resolve_run

    run = resolve_run(args.model) if args.model else best_run(list_runs())  # the CLI's default
    files = list(run.card.data["test_files"])
    rows = []
    for key in args.conditions:
        for size in args.sizes:
            for draw in range(args.draws):
                rng = np.random.default_rng(1000 * size + draw)  # the same batches under every condition
                picked = (neighbours(files, size, rng) if key == "one_part" else
                          [files[i] for i in sorted(rng.choice(len(files), size, replace=False))])
                with tempfile.TemporaryDirectory() as tmp:
                    paths = write_batch(run, picked, "none" if key == "one_part" else key, Path(tmp),
                                        np.random.default_rng(draw), seed=draw)
                    t0 = time.perf_counter()
                    check = check_paths(run, paths, Path(tmp), seed=draw)
                rows.append({"condition": key, "size": size, "draw": draw, "auc": check.domain_auc,
                             "flagged": bool(check.shift_detected), "seconds": round(time.perf_counter() - t0, 1)})
                print(json.dumps(rows[-1]), flush=True)
    out_path = Path(args.out)
    if out_path.exists():  # a run of some conditions keeps the other conditions' rows (same model)
        earlier = json.loads(out_path.read_text())
        if earlier.get("model") == run.run_id:
            rows = [r for r in earlier["rows"] if r["condition"] not in args.conditions] + rows
    rows.sort(key=lambda r: (CONDITIONS.index(r["condition"]), r["size"], r["draw"]))
    out = {"model": run.run_id, "test_images": len(files), "rows": rows, "summary": summarise(rows)}
    out_path.write_text(json.dumps(out, indent=2) + "\n")
    for s in out["summary"]:
        print(f"{s['condition']:<20} n={s['size']:<4} flagged {s['flagged']}/{s['draws']}  median AUC {s['median_auc']}")


def summarise(rows: list[dict]) -> list[dict]:
    """Per condition and batch size: batches flagged, and the median and range of the domain AUC."""
    out = []
    for key in dict.fromkeys(r["condition"] for r in rows):
        for size in sorted({r["size"] for r in rows if r["condition"] == key}):
            sel = [r for r in rows if r["condition"] == key and r["size"] == size]
            aucs = [r["auc"] for r in sel]
            out.append({"condition": key, "size": size, "draws": len(sel), "flagged": sum(r["flagged"] for r in sel),
                        "median_auc": round(float(np.median(aucs)), 3), "min_auc": min(aucs), "max_auc": max(aucs),
                        "median_seconds": float(np.median([r["seconds"] for r in sel]))})
    return out


if __name__ == "__main__":
    main()

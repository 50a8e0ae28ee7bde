"""What intensity-style mixing does to the background, by method (a section of bench/RESULTS.md).

Random pairs of real training slices (any classes), each slice restyled onto its partner by every
method of :data:`core.data.style_mix.STYLE_METHODS`. Per method: how many pairs have their background
(outside the head, :func:`core.data.style_mix.head_mask`) lifted by more than 15 grey levels, and how
close the restyled head's mean comes to the partner head's. No model is involved.

    python -m bench.style_background [--pairs 300] [--seed 0] [--data DIR]
"""

from __future__ import annotations

import argparse
import random
import sys
from pathlib import Path

import numpy as np

from bench.common import DEFAULT_DATA
from bench.sections import write_section

ROOT = Path(__file__).resolve().parents[1]
BEGIN = "<!-- style-background: written by python -m bench.style_background -->"
END = "<!-- /style-background -->"
LIFT = 15  # grey levels: well above JPEG noise in a black background (its mean is about 3)


def measure(paths: list[Path], pairs: int, seed: int) -> dict[str, dict[str, float]]:
    """Per method: pairs with the background lifted by more than LIFT levels, the median and 90th
    percentile background change, and the median |restyled head mean - partner head mean|."""
    from core.data.imageio import decode_image
    from core.data.style_mix import STYLE_METHODS, head_mask, restyle

    rng = random.Random(seed)
    drawn = [(rng.choice(paths), rng.choice(paths)) for _ in range(pairs)]
    lifts: dict[str, list[float]] = {m: [] for m in STYLE_METHODS}
    gaps: dict[str, list[float]] = {m: [] for m in STYLE_METHODS}
    for a, b in drawn:
        src, ref = decode_image(a).pixels, decode_image(b).pixels
        mine, theirs = head_mask(src), head_mask(ref)
        for method in STYLE_METHODS:
            out = restyle(src, ref, method)
            lifts[method].append(float(out[~mine].mean() - src[~mine].mean()) if (~mine).any() else 0.0)
            gaps[method].append(abs(float(out[mine].mean()) - float(ref[theirs].mean())))
    return {m: {"lifted": int((np.array(lifts[m]) > LIFT).sum()), "median_lift": float(np.median(lifts[m])),
                "p90_lift": float(np.percentile(lifts[m], 90)), "median_head_gap": float(np.median(gaps[m]))}
            for m in STYLE_METHODS}


def markdown(figures: dict[str, dict[str, float]], pairs: int, seed: int, n_files: int) -> str:
    from core.data.style_mix import STYLE_METHODS

    lines = [BEGIN, "## 17. Intensity-style mixing: what each method does to the background", "",
             f"{pairs} random pairs (seed {seed}) of the {n_files} training slices, any classes; each slice "
             "restyled onto its partner by each method. Background: the pixels outside the head "
             "(`core.data.style_mix.head_mask`).", "",
             f"| method | background lifted by > {LIFT} grey levels | background change, median / 90th percentile "
             "| head's mean against the partner head's (median gap) |", "|---|---|---|---|"]
    for key, f in figures.items():
        lines.append(f"| `{key}`: {STYLE_METHODS[key].title} | {f['lifted']} of {pairs} | {f['median_lift']:+.1f} / "
                     f"{f['p90_lift']:+.1f} | {f['median_head_gap']:.1f} |")
    lines += ["", "Written by `python -m bench.style_background`.", END]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    sys.path.insert(0, str(ROOT))
    parser = argparse.ArgumentParser(prog="python -m bench.style_background", description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "RESULTS.md")
    args = parser.parse_args(argv)
    paths = sorted((args.data / "Training").glob("*/*.jpg"))
    if not paths:
        print(f"no training slices under {args.data / 'Training'}", file=sys.stderr)
        return 2
    figures = measure(paths, args.pairs, args.seed)
    section = markdown(figures, args.pairs, args.seed, len(paths))
    write_section(section, args.out, BEGIN, END)
    print(section)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

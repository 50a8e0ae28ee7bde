"""Which heat-map method points at the tumour best? Measured on a run's own split with boxes.

    python -m bench.cam_choice --model RUN [--split val|test] [--boxes CSV]

Scores every candidate (method × layers) with the pointing game and the heat-in-box ratio
(core.evaluation.localisation) on the run's validation files that have a tumour box, so the default
is chosen without looking at the test split. Prints a table and writes JSON to --out.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import pandas as pd

from core.evaluation.localisation import BoxScore, read_boxes, score_files, summarise

DEFAULT_BOXES = Path(__file__).resolve().parents[1].parent / "shared/data/brain-tumor-mri/tumour_boxes.csv"


def candidates(model) -> list[tuple[str, str, list[str] | str | None]]:
    """(label, method, layer_name) pairs: the last layer, a finer one, and fusions."""
    from core.inference.gradcam import multiscale_layers

    three = multiscale_layers(model, 3)
    out = [("Grad-CAM, last layer", "gradcam", None), ("Grad-CAM++, last layer", "gradcam++", None),
           ("LayerCAM, last layer", "layercam", three[0])]
    if len(three) > 1:
        out += [("Grad-CAM, one resolution finer", "gradcam", three[1]),
                ("LayerCAM, one resolution finer", "layercam", three[1]),
                ("LayerCAM, last two resolutions", "layercam", three[:2])]
    if len(three) > 2:
        out += [("LayerCAM, last three resolutions", "layercam", three[:3])]
    return out


def main(argv: list[str] | None = None) -> int:
    from core.models.runs import load_model, resolve_run

    p = argparse.ArgumentParser(prog="python -m bench.cam_choice", description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True)
    p.add_argument("--split", default="val", choices=["val", "test"])
    p.add_argument("--boxes", default=str(DEFAULT_BOXES))
    p.add_argument("--out", default=None, help="write the table as JSON here")
    args = p.parse_args(argv)
    run = resolve_run(args.model)
    model = load_model(run)
    files = pd.Series(run.card.data[f"{args.split}_files"], dtype=str)
    table = pd.DataFrame({"path": files, "label": files.str.split("/").str[-2]})
    boxes = read_boxes(args.boxes)
    rows = []
    for label, method, layers in candidates(model):
        t0 = time.perf_counter()
        scored = score_files(run, model, run.data_root, table, boxes, method, layers)
        s = summarise([BoxScore(bool(h), float(r)) for h, r in zip(scored["hit"], scored["ratio"])])
        rows.append({"candidate": label, "method": method, "layers": layers, **s,
                     "ms_per_map": 1000 * (time.perf_counter() - t0) / max(1, len(scored))})
        print(f"{label:36s} pointing {s['pointing_game']:.3f}  heat ratio {s['heat_in_box_ratio']:.2f}  "
              f"n={s['n_images']}  {rows[-1]['ms_per_map']:.0f} ms/map", flush=True)
    if args.out:
        Path(args.out).write_text(json.dumps({"run": run.run_id, "split": args.split, "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

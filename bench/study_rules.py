"""Which study rule is best? Series built from the default model's held-out real slices.

Run: ``python -m bench.study_rules [--series 400] [--slices 24] [--seed 0]``

Every slice of the card's test split (never seen in training) is scored once by the default
model; series are then drawn from those scores:

- *one class*: every slice of the series is from one class (the issue's suggestion);
- *lesion minority*: a tumour series has its tumour on 3-6 neighbouring slices, the rest no-tumour slices
  (a tumour shows on a minority of a real series' slices); a no-tumour series has no-tumour slices only.

Slices are drawn independently (the Kaggle slices come from different people), so real series,
whose neighbouring slices agree more, should disagree less than these. Reported: study accuracy,
per-class recall, and the false-tumour rate on no-tumour series, per rule. Writes section 11 of
bench/RESULTS.md and bench/study_rules.json.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from bench.sections import write_section

BEGIN, END = "<!-- study-rules:begin -->", "<!-- study-rules:end -->"
DEFAULT_RUN = "20261201-135406-custom_cnn-a305"
HERE = Path(__file__).resolve().parent


def slice_probabilities(run_id: str) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(probs (N, K), true class index (N,), class names) for the run's held-out test slices."""
    from core.data.imageio import decode_image
    from core.inference.predict import Predictor
    from core.models.runs import resolve_run

    run = resolve_run(str(HERE.parent / "models" / run_id), root=HERE.parent / "models")
    predictor = Predictor(run)
    root = (run.path / run.card.data["root"]).resolve() if not Path(run.card.data["root"]).is_absolute() else \
        Path(run.card.data["root"])
    if not root.is_dir():
        root = HERE.parent.parent / "shared" / "data" / "brain-tumor-mri"
    files = list(run.card.data["test_files"])
    inputs, labels = [], []
    for rel in files:
        cls = Path(rel).parent.name
        inputs.append(predictor.prepare(decode_image(root / rel)))
        labels.append(predictor.class_names.index(cls))
    probs = predictor.predict(np.stack(inputs)).probs
    return probs, np.array(labels), predictor.class_names


def draw_series(probs: np.ndarray, labels: np.ndarray, classes: list[str], scenario: str, n_series: int,
                n_slices: int, rng: np.random.Generator) -> list[tuple[int, np.ndarray]]:
    """(true class, (n_slices, K) probabilities) per series, ``n_series`` per class."""
    z = classes.index("notumor")
    pools = {k: np.flatnonzero(labels == k) for k in range(len(classes))}
    out = []
    for k in range(len(classes)):
        for _ in range(n_series):
            if scenario == "one class" or k == z:
                rows = rng.choice(pools[k], n_slices, replace=True)
            else:
                m = int(rng.integers(3, 7))  # a tumour on 3-6 neighbouring slices, anywhere in the stack
                rows = rng.choice(pools[z], n_slices)
                start = int(rng.integers(0, n_slices - m + 1))
                rows[start:start + m] = rng.choice(pools[k], m)
            out.append((k, probs[rows]))
    return out


def evaluate(series: list[tuple[int, np.ndarray]], classes: list[str]) -> dict[str, dict[str, float]]:
    from core.inference.study_rules import STUDY_RULES, aggregate

    z = classes.index("notumor")
    out = {}
    for rule in STUDY_RULES:
        pred = np.array([classes.index(aggregate(p, classes, rule).label) for _, p in series])
        truth = np.array([k for k, _ in series])
        row = {"accuracy": float((pred == truth).mean())}
        for k, c in enumerate(classes):
            row[f"recall_{c}"] = float((pred[truth == k] == k).mean())
        row["false_tumour_rate"] = float((pred[truth == z] != z).mean())
        out[rule] = row
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", default=DEFAULT_RUN)
    ap.add_argument("--series", type=int, default=400, help="series per class and scenario")
    ap.add_argument("--slices", type=int, nargs="+", default=[24, 60, 150], help="usable slices per series")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    probs, labels, classes = slice_probabilities(args.run)
    slice_acc = float((probs.argmax(1) == labels).mean())
    results = {"run": args.run, "test_slices": int(len(labels)), "slice_accuracy": slice_acc,
               "series_per_class": args.series, "slices_per_series": args.slices, "scenarios": {}}
    for n_slices in args.slices:
        for scenario in ("one class", "lesion minority"):
            rng = np.random.default_rng(args.seed)
            series = draw_series(probs, labels, classes, scenario, args.series, n_slices, rng)
            results["scenarios"][f"{scenario}, {n_slices} slices"] = evaluate(series, classes)
    (HERE / "study_rules.json").write_text(json.dumps(results, indent=2) + "\n")
    write_section(render(results, classes), HERE / "RESULTS.md", BEGIN, END)
    print(render(results, classes))
    return 0


def render(results: dict, classes: list[str]) -> str:
    lines = [BEGIN, "## 11. Study rules: one answer per series",
             "", f"Model `{results['run']}`; {results['test_slices']} held-out test slices (slice accuracy "
             f"{results['slice_accuracy']:.1%}), {results['series_per_class']} series per class of "
             f"{'/'.join(map(str, results['slices_per_series']))} slices, drawn from those slices' scores (`python -m bench.study_rules`).",
             "'Lesion minority': a tumour series holds its tumour on 3-6 neighbouring slices among no-tumour slices.", ""]
    for scenario, rows in results["scenarios"].items():
        lines += [f"**{scenario}**", "", "| rule | study accuracy | " + " | ".join(f"recall {c}" for c in classes)
                  + " | false tumour on no-tumour series |", "|---" * (3 + len(classes)) + "|"]
        for rule, row in rows.items():
            lines.append(f"| {rule} | {row['accuracy']:.1%} | " + " | ".join(f"{row[f'recall_{c}']:.1%}"
                                                                       for c in classes)
                         + f" | {row['false_tumour_rate']:.1%} |")
        lines.append("")
    lines.append(END)
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())

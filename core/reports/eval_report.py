"""Exports of an evaluation: a self-contained HTML report, metrics JSON and predictions CSV.

The report needs no network: numbers are HTML tables and the curves are inline SVG drawn
here from the same dataframes the page charts. It opens in any browser, offline, years later.
"""

from __future__ import annotations

import html
import json
from typing import Any

import numpy as np
import pandas as pd

from core.classes import display_name
from core.evaluation import metrics
from core.evaluation.result import EvaluationResult
from core.models.card import ModelCard

PALETTE = ["#4c78a8", "#f58518", "#54a24b", "#e45756", "#72b7b2", "#b279a2"]
W, H, PAD = 340, 260, 40  # SVG plot size and margin, pixels


def metrics_json(result: EvaluationResult) -> bytes:
    """The machine-readable summary (same content as the CLI's --json)."""
    return json.dumps(result.summary(), indent=2, default=lambda o: o.item() if isinstance(o, np.generic) else str(o)).encode()


def predictions_csv(result: EvaluationResult) -> bytes:
    """Per-image predictions: file, true, predicted, confidence, prob_<class>, overlap with training.

    Text cells a spreadsheet would run as formulas (file names starting with = + - @) are neutralised.
    """
    from core.safetext import neutralise_frame

    return neutralise_frame(result.predictions).to_csv(index=False).encode()


def _f(value: Any, pct: bool = False) -> str:
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return "n/a"
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return str(value)
    return f"{value:.1%}" if pct else f"{value:.3f}"


def _ci(ci: list[float] | None) -> str:
    return f"[{ci[0]:.1%}, {ci[1]:.1%}]" if ci else ""


def _svg_axes(xlabel: str, ylabel: str) -> list[str]:
    parts = [f'<rect x="{PAD}" y="{PAD / 2}" width="{W - 1.5 * PAD}" height="{H - 1.5 * PAD}" fill="none" stroke="#999"/>']
    for t in (0, 0.5, 1):
        x, y = _sx(t), _sy(t)
        parts.append(f'<text x="{x}" y="{H - PAD + 14}" font-size="10" text-anchor="middle">{t:g}</text>')
        parts.append(f'<text x="{PAD - 4}" y="{y + 3}" font-size="10" text-anchor="end">{t:g}</text>')
    parts.append(f'<text x="{W / 2}" y="{H - 4}" font-size="11" text-anchor="middle">{html.escape(xlabel)}</text>')
    parts.append(f'<text x="10" y="{H / 2}" font-size="11" text-anchor="middle" '
                 f'transform="rotate(-90 10 {H / 2})">{html.escape(ylabel)}</text>')
    return parts


def _sx(v: float) -> float:
    return round(PAD + v * (W - 1.5 * PAD), 1)


def _sy(v: float) -> float:
    return round(PAD / 2 + (1 - v) * (H - 1.5 * PAD), 1)


def svg_lines(curves: pd.DataFrame, x: str, y: str, xlabel: str, ylabel: str, diagonal: bool = False) -> str:
    """Inline SVG of one polyline per class (long dataframe with a ``class`` column, values in [0, 1])."""
    parts = _svg_axes(xlabel, ylabel)
    if diagonal:
        parts.append(f'<line x1="{_sx(0)}" y1="{_sy(0)}" x2="{_sx(1)}" y2="{_sy(1)}" stroke="#aaa" stroke-dasharray="4 4"/>')
    for i, (name, g) in enumerate(curves.groupby("class", sort=False)):
        colour = PALETTE[i % len(PALETTE)]
        points = " ".join(f"{_sx(a)},{_sy(b)}" for a, b in zip(g[x], g[y]))
        parts.append(f'<polyline points="{points}" fill="none" stroke="{colour}" stroke-width="2"/>')
        parts.append(f'<text x="{W - PAD}" y="{H - PAD - 8 - 13 * i}" font-size="10" text-anchor="end" '
                     f'fill="{colour}">{html.escape(display_name(str(name)))}</text>')
    return f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}">{"".join(parts)}</svg>'


def svg_reliability(table: pd.DataFrame) -> str:
    """Inline SVG reliability diagram: accuracy per confidence bin against the diagonal."""
    parts = _svg_axes("confidence", "accuracy in bin")
    for row in table[table["count"] > 0].itertuples():
        x0, x1, top = _sx(row.bin_low), _sx(row.bin_high), _sy(row.accuracy)
        parts.append(f'<rect x="{x0}" y="{top}" width="{x1 - x0 - 1}" height="{_sy(0) - top}" fill="#4c78a8" '
                     f'opacity="0.75"><title>{row.count} images, confidence {row.confidence:.2f}, '
                     f'accuracy {row.accuracy:.2f}</title></rect>')
    parts.append(f'<line x1="{_sx(0)}" y1="{_sy(0)}" x2="{_sx(1)}" y2="{_sy(1)}" stroke="#666" stroke-dasharray="4 4"/>')
    return f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}">{"".join(parts)}</svg>'


def _confusion_html(cm: pd.DataFrame) -> str:
    """A confusion matrix as an HTML table, cells shaded by row share (readable without colour too)."""
    shares = cm.div(cm.sum(axis=1).replace(0, np.nan), axis=0)
    head = "".join(f"<th>{html.escape(display_name(c))}</th>" for c in cm.columns)
    rows = []
    for true, row in cm.iterrows():
        cells = []
        for pred, count in row.items():
            s = shares.loc[true, pred]
            s = 0.0 if pd.isna(s) else float(s)
            colour = "white" if s > 0.5 else "black"
            cells.append(f'<td style="background:rgba(49,130,189,{s:.2f});color:{colour}">{int(count)}'
                         f'<br><small>{s:.0%}</small></td>')
        rows.append(f"<tr><th>{html.escape(display_name(str(true)))}</th>{''.join(cells)}</tr>")
    return (f'<table class="cm"><tr><th>true ↓ / predicted →</th>{head}</tr>{"".join(rows)}</table>')


def _per_class_html(summary: dict[str, Any]) -> str:
    rows = "".join(
        f"<tr><td>{html.escape(display_name(c))}</td><td>{_f(r['precision'])}</td><td>{_f(r['recall'])} "
        f"{_ci(r['recall_ci'])}</td><td>{_f(r['specificity'])}</td><td>{_f(r['f1'])}</td><td>{r['support']}</td>"
        f"<td>{_f(r['roc_auc'])}</td></tr>"
        for c, r in summary["per_class"].items())
    return ("<table><tr><th>class</th><th>precision</th><th>recall (sensitivity) [95% CI]</th><th>specificity</th>"
            f"<th>F1</th><th>images</th><th>ROC AUC</th></tr>{rows}</table>")


def _headline_html(result: EvaluationResult) -> str:
    a, lf = result.metrics, result.leakage_free
    rows = [("images", a["n_images"], lf["n_images"]),
            ("accuracy [95% CI]", f"{_f(a['accuracy'], True)} {_ci(a['accuracy_ci'])}",
             f"{_f(lf['accuracy'], True)} {_ci(lf['accuracy_ci'])}"),
            ("balanced accuracy", _f(a["balanced_accuracy"]), _f(lf["balanced_accuracy"])),
            ("macro-F1", _f(a["macro_f1"]), _f(lf["macro_f1"])),
            ("weighted F1", _f(a["weighted_f1"]), _f(lf["weighted_f1"])),
            ("macro ROC AUC", _f(a["macro_roc_auc"]), _f(lf["macro_roc_auc"])),
            ("expected calibration error", _f(a["ece"]), _f(lf["ece"]))]
    body = "".join(f"<tr><td>{k}</td><td>{v}</td><td>{w}</td></tr>" for k, v, w in rows)
    return f"<table><tr><th></th><th>all images</th><th>leakage-free subset</th></tr>{body}</table>"


def _mistakes_html(result: EvaluationResult, n: int = 15) -> str:
    from core.evaluation.compare import worst_mistakes

    worst = worst_mistakes(result.predictions, n)
    if worst.empty:
        return "<p>No wrong predictions.</p>"
    rows = "".join(f"<tr><td>{html.escape(str(r.file))}</td><td>{html.escape(display_name(r.true))}</td>"
                   f"<td>{html.escape(display_name(r.predicted))}</td><td>{r.confidence:.1%}</td>"
                   f"<td>{'yes' if r.overlap else ''}</td></tr>" for r in worst.itertuples())
    return ("<table><tr><th>file</th><th>true</th><th>predicted</th><th>confidence</th>"
            f"<th>near-copy of a training image</th></tr>{rows}</table>")


CSS = """body{font-family:system-ui,sans-serif;max-width:1000px;margin:2em auto;color:#222}
table{border-collapse:collapse;margin:.5em 0 1.5em}td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}
th:first-child,td:first-child{text-align:left}.cm td{text-align:center;min-width:70px}
.figs{display:flex;flex-wrap:wrap;gap:1em}.note{background:#fff4e0;padding:.5em 1em;border-left:4px solid #f58518}
small{opacity:.8}"""


def html_report(result: EvaluationResult, card: ModelCard | None = None) -> str:
    """A standalone HTML page with every number of the evaluation and offline SVG charts."""
    card = card or ModelCard()
    y, pred, probs = result.arrays()
    names = result.class_names
    roc, _ = metrics.roc_curves(y, probs, names)
    pr, _ = metrics.pr_curves(y, probs, names)
    ece, table = metrics.calibration(probs, y)
    cm = metrics.confusion(y, pred, names)
    notes = list(result.notes)
    if result.n_overlapping:
        notes.insert(0, f"{result.n_overlapping} test images are near-copies of training images; accuracy on them "
                        "measures memory, not generalisation. The leakage-free column leaves them out.")
    arch = card.title
    synthetic = " (SYNTHETIC demo data, not patient images)" if card.synthetic else ""
    rel = table.assign(confidence=table["confidence"].round(3), accuracy=table["accuracy"].round(3))
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>Evaluation {html.escape(result.run_id)}</title>
<style>{CSS}</style></head><body>
<h1>Evaluation report</h1>
<p><b>Model</b> {html.escape(result.run_id)} · {html.escape(str(arch))} · sha256 {result.model_sha256[:12]}…<br>
<b>Images</b> {html.escape(result.description)}{synthetic}<br><b>Folder</b> {html.escape(result.root)}
(fingerprint {result.dataset_fingerprint})<br><b>Temperature</b> {result.temperature:.3f} · <b>evaluated</b>
{html.escape(result.created)}</p>
<p><i>Research and teaching tool: not a diagnosis.</i></p>
{"".join(f'<p class="note">{html.escape(n)}</p>' for n in notes)}
<h2>Headline metrics</h2>{_headline_html(result)}
<h2>Per class (all images)</h2>{_per_class_html(result.metrics)}
<h2>Confusion matrix (rows = true class)</h2>{_confusion_html(cm)}
<h2>Curves</h2><div class="figs">
<figure>{svg_lines(roc, "fpr", "tpr", "false-positive rate", "sensitivity", diagonal=True)}<figcaption>ROC, one class vs rest</figcaption></figure>
<figure>{svg_lines(pr, "recall", "precision", "recall", "precision")}<figcaption>Precision-recall</figcaption></figure>
<figure>{svg_reliability(table)}<figcaption>Reliability diagram (ECE {ece:.3f})</figcaption></figure></div>
<h3>Reliability table</h3>{rel.to_html(index=False, na_rep="")}
<h2>Most confident mistakes</h2>{_mistakes_html(result)}
</body></html>"""

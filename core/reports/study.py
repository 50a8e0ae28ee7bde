"""Study-level tables, the per-slice probability chart, the CSV, and the PDF's study summary.

Data first (:func:`slice_frame`), drawing apart (:func:`slice_chart` builds an Altair chart from
that frame). Only coded header fields ever reach these outputs: the study is named by its series
UID or file name, never by patient names or free-text descriptions.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence

import pandas as pd

from core.classes import display_name
from core.inference.predict import format_probability
from core.inference.study import StudyResult
from core.safetext import neutralise_cell


def slice_frame(result: StudyResult, class_names: Sequence[str]) -> pd.DataFrame:
    """One row per slice: number, source, used, label, per-class probability (NaN when skipped), reason."""
    used = set(result.used)
    rows = []
    for i, r in enumerate(result.slices, 1):
        row = {"slice": i, "source": r.file, "used": i in used, "label": r.label or "",
               "confidence": r.confidence, "shown": i in result.strip,
               "position_mm": float(r.meta["position_mm"]) if "position_mm" in r.meta else None,
               "skipped_because": "" if i in used else (r.error or "").removeprefix("skipped: "),
               "flags": ";".join(r.flags)}
        for c in class_names:
            row[f"prob_{c}"] = r.probabilities.get(c)
        rows.append(row)
    return pd.DataFrame(rows)


def long_frame(result: StudyResult, class_names: Sequence[str]) -> pd.DataFrame:
    """The used slices' probabilities in long form (slice, class, probability) for charting."""
    frame = slice_frame(result, class_names)
    frame = frame[frame["used"]]
    out = frame.melt(id_vars=["slice"], value_vars=[f"prob_{c}" for c in class_names], var_name="class",
                     value_name="probability")
    out["class"] = out["class"].str.removeprefix("prob_").map(display_name)
    return out


def slice_chart(result: StudyResult, class_names: Sequence[str], current: int | None = None):
    """Per-slice model probabilities as lines over the slice number; a rule marks ``current``."""
    import altair as alt

    data = long_frame(result, class_names)
    lines = alt.Chart(data).mark_line(point=True).encode(
        x=alt.X("slice:Q", title="slice", scale=alt.Scale(domain=[1, max(2, len(result.slices))])),
        y=alt.Y("probability:Q", title="model probability", scale=alt.Scale(domain=[0, 1]),
                axis=alt.Axis(format="%")),
        color=alt.Color("class:N", title=None),
        tooltip=["slice:Q", "class:N", alt.Tooltip("probability:Q", format=".1%")])
    if current is None:
        return lines.properties(height=220)
    rule = alt.Chart(pd.DataFrame({"slice": [current]})).mark_rule(color="black", strokeDash=[4, 3]).encode(
        x="slice:Q")
    return (lines + rule).properties(height=220)


def summary_rows(result: StudyResult) -> list[tuple[str, str]]:
    """(label, text) rows that summarise the study for a table or the PDF."""
    s = result.study
    rows = [("Study", f"{s.get('kind', '')} {s.get('series', '')}".strip()),
            ("Read from", str(s.get("source", ""))),
            ("Slices", f"{s.get('n_slices', len(result.slices))} ({s.get('orientation', '')}, ordered by "
                       f"{s.get('order', '')})"),
            ("Used", f"{len(result.used)} (skipped {len(result.skipped)})")]
    if result.label:
        rows += [("Study answer", f"{display_name(result.label)} (evidence {format_probability(result.probabilities[result.label])})"),
                 ("Rule", str(s.get("rule_title", result.rule))),
                 ("Prediction set", ", ".join(map(display_name, result.prediction_set))
                  if result.prediction_set else "not available"),
                 ("Slices behind it", ", ".join(str(n) for n in result.strip))]
    if result.error:
        rows.append(("Problem", result.error))
    return rows


def study_csv(result: StudyResult, class_names: Sequence[str]) -> bytes:
    """One row per slice plus a final ``summary`` row with the study answer (UTF-8 CSV)."""
    frame = slice_frame(result, class_names)
    columns = ["row", "slice", "source", "used", "label", "confidence", *[f"prob_{c}" for c in class_names],
               "position_mm", "skipped_because", "flags", "warnings", "prediction_set"]
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(columns)
    for rec, r in zip(frame.to_dict("records"), result.slices):
        values = {**rec, "row": "slice", "warnings": " | ".join(r.warnings),
                  "prediction_set": ";".join(r.prediction_set or [])}
        writer.writerow([neutralise_cell(_cell(values.get(c))) for c in columns])
    summary = {"row": "summary", "slice": "", "source": f"{result.study.get('source', '')} "
                                                       f"{result.study.get('series', '')}".strip(),
               "used": len(result.used), "label": result.label or "",
               "confidence": result.probabilities.get(result.label) if result.label else None,
               **{f"prob_{c}": result.probabilities.get(c) for c in class_names},
               "skipped_because": f"{len(result.skipped)} skipped", "flags": ";".join(result.flags),
               "warnings": " | ".join(result.warnings), "prediction_set": ";".join(result.prediction_set or [])}
    writer.writerow([neutralise_cell(_cell(summary.get(c))) for c in columns])
    return buf.getvalue().encode("utf-8")


def _cell(value: object) -> object:
    if value is None or (isinstance(value, float) and value != value):
        return ""
    if isinstance(value, float):
        return f"{value:.6f}"
    return value


def study_summary_pdf(result: StudyResult, model: dict[str, str], alpha: float = 0.4, colormap: str = "jet",
                      created: str | None = None) -> bytes:
    """A study report: the study answer, its warnings, the strip's slices with heat maps, then the model.

    The single-slice :func:`core.reports.case_report.case_report_pdf` is left as it is; this reuses its
    writer and overlay helpers.
    """
    import time

    from core.reports.case_report import CALIBRATION_NOTE, DISCLAIMER, overlay_for
    from core.reports.pdf_writer import PdfWriter

    w = PdfWriter()
    w.line("Brain MRI classification — study report", size=15, bold=True, h=8)
    w.line(f"Generated {created or time.strftime('%Y-%m-%d %H:%M:%S %Z')}", size=8)
    w.line(DISCLAIMER, size=10, bold=True, colour=(170, 0, 0))
    w.pdf.ln(2)
    w.table(summary_rows(result))
    w.pdf.ln(2)
    if result.label:
        w.line("Study evidence per class (see the rule above)", size=10, bold=True)
        w.table([(display_name(c), format_probability(p))
                 for c, p in sorted(result.probabilities.items(), key=lambda kv: -kv[1])], widths=(50, 40))
        w.line(CALIBRATION_NOTE + " Study evidence combines slices by the rule; it is not a calibrated probability.",
               size=8, colour=(90, 90, 90))
    w.line("Warnings", size=10, bold=True)
    for text in result.warnings or ["None."]:
        w.line(f"• {text}" if result.warnings else text, size=9)
    pictures = []
    for n in result.strip:
        r = result.slice(n)
        picture = overlay_for(r, alpha, colormap)
        if picture is not None:
            pictures.append((f"Slice {n}: {display_name(r.label)} {format_probability(r.confidence)}", picture))
    for i in range(0, len(pictures), 2):
        w.images(pictures[i:i + 2])
    w.line("Model", size=10, bold=True)
    w.table(list(model.items()))
    return bytes(w.pdf.output())

"""Exports of prediction results, built in memory: a PDF case report, a CSV, a zip of overlays.

Nothing here touches the disk: uploads are processed in memory and the exports are bytes
handed straight to a download button (or written by the CLI where the user asked).
"""

from __future__ import annotations

import csv
import io
import re
import time
import zipfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from core.classes import display_name
from core.inference.notices import SITE_SHIFT
from core.inference.overlay import overlay
from core.inference.predict import PredictionResult, format_probability
from core.reports.conformal import GUARANTEE_NOTE, describe_set
from core.reports.disclaimer import DISCLAIMER
from core.reports.pdf_writer import MISSING_GLYPH_NOTE, PdfWriter
from core.safetext import neutralise_cell

CALIBRATION_NOTE = ("Model probability: among validation images the model scored this confidently, about this "
                    "share were right. It is not the chance that the patient has this tumour.")
UNLIKELY = 0.05  # below this model probability, a heat map explains a class the model all but rules out
PDF_IMAGE_PX = 512  # longest side of images embedded in the PDF: sharp enough, small file


def overlay_for(result: PredictionResult, alpha: float = 0.4, colormap: str = "jet") -> np.ndarray | None:
    """The heatmap blended onto the full-resolution decoded slice (None without a heatmap)."""
    if result.heatmap is None or result.image is None:
        return None
    heat = result.heatmap
    if result.framing is not None:  # the model saw a crop: put the map back where that crop came from
        heat = result.framing.place(heat, result.image.pixels.shape[:2])
    return overlay(result.image.pixels, heat, alpha=alpha, colormap=colormap)


def heatmap_note(result: PredictionResult) -> str | None:
    """A plain caution when the heat map explains a class the model gives almost no weight (None otherwise).

    Each map is scaled to its own maximum, so a map for an unlikely class looks as hot as one
    for the predicted class; the reader must be told.
    """
    if result.heatmap is None or result.heatmap_class is None or result.heatmap_class == result.label:
        return None
    p = result.probabilities.get(result.heatmap_class, 0.0)
    if p >= UNLIKELY:
        return None
    return (f"The model gives {display_name(result.heatmap_class)} almost no weight (model probability "
            f"{format_probability(p)}). The map shows the faint evidence it found, scaled to look as bright as "
            "any other; it is not a sign of that tumour.")


def png_bytes(rgb_or_gray: np.ndarray) -> bytes:
    """A uint8 image encoded as PNG."""
    buf = io.BytesIO()
    Image.fromarray(rgb_or_gray).save(buf, format="PNG")
    return buf.getvalue()


def overlay_filename(result: PredictionResult, used: set[str]) -> str:
    """``<file stem>_<method>_<class>.png``, made safe and unique within ``used`` (which it updates)."""
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(result.file.replace("\\", "/")).stem or "image")[:80]
    base = f"{stem}_{(result.method or 'cam').replace('++', 'pp')}_{result.heatmap_class}"
    name, n = f"{base}.png", 1
    while name in used:  # two uploads may share a name
        n += 1
        name = f"{base}_{n}.png"
    used.add(name)
    return name


# --- batch exports ----------------------------------------------------------------------------

def results_csv(results: Sequence[PredictionResult], class_names: Sequence[str]) -> bytes:
    """One row per file: label, confidence, per-class probabilities, prediction set and its coverage, flags
    (``empty_set``, ``synthetic_model``, ...), warnings, notes, error (UTF-8 CSV).

    Text that a spreadsheet would run as a formula (a file named ``=HYPERLINK(...)``) is neutralised.
    """
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(["file", "label", "confidence", *[f"prob_{c}" for c in class_names], "prediction_set",
                     "coverage", "flags", "warnings", "notes", "error"])
    for r in results:
        probs = [f"{r.probabilities[c]:.6f}" if c in r.probabilities else "" for c in class_names]
        # an empty set is written as "{}" so it never reads like a missing value
        sets = "" if r.prediction_set is None else "{" + ";".join(r.prediction_set) + "}"
        writer.writerow(map(neutralise_cell, [
            r.file, r.label or "", f"{r.confidence:.6f}" if r.confidence is not None else "", *probs,
            sets, f"{r.coverage:g}" if r.coverage is not None and r.ok else "",
            ";".join(r.flags), " | ".join(r.warnings), " | ".join(r.notes), r.error or ""]))
    return buf.getvalue().encode("utf-8")


def overlays_zip(results: Sequence[PredictionResult], alpha: float = 0.4, colormap: str = "jet") -> bytes:
    """A zip of ``<file>_<method>_<class>.png`` overlays for every result that has a heatmap."""
    buf = io.BytesIO()
    used: set[str] = set()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for r in results:
            picture = overlay_for(r, alpha, colormap)
            if picture is None:
                continue
            zf.writestr(overlay_filename(r, used), png_bytes(picture))
    return buf.getvalue()


# --- the PDF ----------------------------------------------------------------------------------

def _picture_rows(result: PredictionResult, alpha: float, colormap: str) -> list[tuple[str, np.ndarray]]:
    from core.reports.reading import heatmap_caption

    pictures = []
    if result.image is not None:
        pictures.append(("The slice as uploaded", result.image.pixels))
    picture = overlay_for(result, alpha, colormap)
    if picture is not None:
        pictures.append((f"{heatmap_caption(result)}; opacity {alpha:.0%}, {colormap}", picture))
    return pictures


def case_report_pdf(result: PredictionResult, model: dict[str, str], alpha: float = 0.4,
                    colormap: str = "jet", created: str | None = None, case_id: str = "",
                    reader: str = "") -> bytes:
    """A case report for one slice, fit for a chart: one A4 page for an ordinary slice, numbered pages.

    It carries the same states as the page (empty prediction set, synthetic model, every warning),
    a case/accession field and a reader field with agree / disagree / unsure boxes (filled by hand,
    or pre-filled from ``case_id`` / ``reader``).

    Args:
        result: a prediction (with the decoded image; the heatmap is optional); a rejected file
            gives a report that says why.
        model: the model summary, label -> text (see :func:`core.reports.run_summary.model_facts`).
        alpha: heatmap opacity in the overlay.
        colormap: a key of :data:`core.inference.overlay.COLORMAPS`.
        created: the timestamp printed on the report (default: now, local time).
        case_id: the case or accession number, printed in its field (blank: written by hand).
        reader: the reader's name, printed in its field (blank: written by hand).
    Returns:
        The PDF file's bytes.
    """
    from core.inference.predict import EMPTY_SET
    from core.reports.reading import colour_bar, colour_scale_note, reading_note

    # Stays whole: it is the printed page read top to bottom, one or two lines per element.
    w = PdfWriter()
    w.line("Brain MRI slice: model output for a reader", size=13, bold=True, h=6.5)
    w.line(f"Generated {created or time.strftime('%Y-%m-%d %H:%M:%S %Z')}", size=7, colour=(90, 90, 90))
    w.line(DISCLAIMER, size=8.5, bold=True, colour=(150, 0, 0))
    w.pdf.ln(1)
    w.blank(f"Case / accession no.: {case_id}" if case_id else "Case / accession no.:")
    w.line(f"File: {result.file}", size=9, bold=True)
    if w.replaced:
        w.line(MISSING_GLYPH_NOTE, size=7, colour=(90, 90, 90))
    w.line(f"Model: {model.get('Model run', '')}, {model.get('Architecture', '')}, trained on "
           f"{model.get('Training data', 'unknown data')}", size=7.5, colour=(60, 60, 60))
    if result.meta:
        w.line("DICOM (no patient data): " + ", ".join(f"{k} {v}" for k, v in result.meta.items()), size=7.5)
    w.pdf.ln(1)
    if result.error:
        w.line(f"This file could not be analysed: {result.error}", size=10, bold=True, colour=(150, 0, 0),
               fill=(252, 232, 232))
    else:
        w.images(_picture_rows(result, alpha, colormap), box=52)
        if result.heatmap is not None:  # the colour scale sits under the heat map
            x = w.pdf.l_margin + 56
            w.pdf.image(Image.fromarray(colour_bar(colormap, 256, 8)), x=x, y=w.pdf.get_y() - 0.5, w=52, h=2.5)
            w.pdf.set_font(w.family, "", 6.5)
            w.pdf.set_xy(x, w.pdf.get_y() + 2.2)
            w.pdf.cell(26, 3, w.text("least"))
            w.pdf.cell(26, 3, w.text("most"), align="R")
            w.pdf.set_xy(w.pdf.l_margin, w.pdf.get_y() + 4)
        w.line(f"Model's top class: {display_name(result.label)} (model probability "
               f"{format_probability(result.confidence)})", size=11, bold=True, h=5.5)
        w.line("  ·  ".join(f"{display_name(c)} {format_probability(p)}"
                            for c, p in sorted(result.probabilities.items(), key=lambda kv: -kv[1])), size=8)
        if result.coverage is not None and EMPTY_SET not in result.flags:  # an empty set is said as a warning
            w.line(describe_set(result.prediction_set, result.coverage, len(result.probabilities),
                                result.set_problem, SITE_SHIFT in result.flags), size=8.5)
        w.pdf.ln(0.8)
        w.line(f"Warnings ({len(result.warnings)})" if result.warnings else "Warnings: none.", size=9, bold=True)
        for text in result.warnings:
            w.line(f"• {text}", size=8, colour=(120, 60, 0), fill=(255, 243, 224))
            w.pdf.ln(0.4)
        note = reading_note(result)
        if note:
            w.line(note, size=8, bold=True, colour=(120, 60, 0))
        for text in result.notes:
            w.line(f"Note: {text}", size=7.5, colour=(40, 60, 110))
    w.pdf.ln(1.5)
    w.line("Reader", size=9, bold=True)
    w.blank(f"Name: {reader}" if reader else "Name:", width=110)
    w.boxes("The model's answer:", ["agree", "disagree", "unsure"])
    w.blank("Comment:")
    if not result.error:  # the small print, for those who want the figures
        w.line(CALIBRATION_NOTE, size=6.5, colour=(90, 90, 90))
        if result.heatmap is not None:
            extra = heatmap_note(result)
            w.line(colour_scale_note(result, colormap) + (f" {extra}" if extra else ""), size=6.5,
                   colour=(90, 90, 90))
        if result.coverage is not None and result.prediction_set is not None:
            w.line(GUARANTEE_NOTE, size=6.5, colour=(90, 90, 90))
        if result.details:
            w.table(list(result.details.items()), widths=(125, 61), size=6.5)
    rest = [(k, v) for k, v in model.items() if k not in ("Model run", "Architecture", "Training data")]
    if rest:  # the run, architecture and training data are in the "Model:" line at the top
        w.pdf.ln(0.5)
        w.table(rest, widths=(45, 141), size=6.5)
    return bytes(w.pdf.output())

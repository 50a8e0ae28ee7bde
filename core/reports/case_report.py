"""Exports of prediction results, built in memory: a PDF case report, a CSV, a zip of overlays.

Nothing here touches the disk: uploads are processed in memory and the exports are bytes
handed straight to a download button (or written by the CLI where the user asked).
"""

from __future__ import annotations

import csv
import io
import re
import time
import unicodedata
import zipfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from core.classes import display_name
from core.inference.gradcam import CAM_METHODS
from core.inference.overlay import overlay
from core.inference.predict import PredictionResult, format_probability
from core.reports.conformal import GUARANTEE_NOTE, describe_set
from core.safetext import neutralise_cell

DISCLAIMER = ("Decision support for research and education only — not a diagnosis. "
              "A qualified clinician must interpret every result.")
FONT_DIR = Path("/usr/share/fonts/truetype/dejavu")
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
    """One row per file: label, confidence, per-class probabilities, warnings, error (UTF-8 CSV).

    Text that a spreadsheet would run as a formula (a file named ``=HYPERLINK(...)``) is neutralised.
    """
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(["file", "label", "confidence", *[f"prob_{c}" for c in class_names], "flags", "warnings",
                     "error"])
    for r in results:
        probs = [f"{r.probabilities[c]:.6f}" if c in r.probabilities else "" for c in class_names]
        writer.writerow(map(neutralise_cell, [
            r.file, r.label or "", f"{r.confidence:.6f}" if r.confidence is not None else "", *probs,
            ";".join(r.flags), " | ".join(r.warnings), r.error or ""]))
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

class _Writer:
    """fpdf2 with DejaVu (Unicode) when installed, else core Helvetica with ASCII-folded text."""

    def __init__(self) -> None:
        from fpdf import FPDF

        self.pdf = FPDF(format="A4")
        self.pdf.set_auto_page_break(True, margin=15)
        self.pdf.add_page()
        regular, bold = FONT_DIR / "DejaVuSans.ttf", FONT_DIR / "DejaVuSans-Bold.ttf"
        self.unicode = False
        if regular.is_file() and bold.is_file():
            try:
                self.pdf.add_font("DejaVu", "", str(regular))
                self.pdf.add_font("DejaVu", "B", str(bold))
                self.unicode = True
            except Exception:  # noqa: BLE001 - a damaged font file must not stop the report
                self.unicode = False
        self.family = "DejaVu" if self.unicode else "Helvetica"

    def text(self, value: object) -> str:
        s = str(value)
        if self.unicode:
            return s
        # Core fonts only know Latin-1: spell out the few symbols we use, drop what is left.
        for a, b in (("—", "-"), ("–", "-"), ("≤", "<="), ("≥", ">="), ("×", "x"), ("…", "..."), ("•", "-")):
            s = s.replace(a, b)
        s = unicodedata.normalize("NFKD", s)
        return s.encode("latin-1", "replace").decode("latin-1")

    def line(self, value: object, size: float = 10, bold: bool = False, h: float = 5.5,
             colour: tuple[int, int, int] = (0, 0, 0)) -> None:
        self.pdf.set_font(self.family, "B" if bold else "", size)
        self.pdf.set_text_color(*colour)
        self.pdf.multi_cell(0, h, self.text(value), new_x="LMARGIN", new_y="NEXT")
        self.pdf.set_text_color(0, 0, 0)

    def table(self, rows: Sequence[tuple[str, str]], widths: tuple[float, float] = (60, 120)) -> None:
        self.pdf.set_font(self.family, "", 9)
        for key, value in rows:
            y = self.pdf.get_y()
            self.pdf.set_font(self.family, "B", 9)
            self.pdf.multi_cell(widths[0], 5, self.text(key), border=0, new_x="RIGHT", new_y="TOP")
            self.pdf.set_font(self.family, "", 9)
            self.pdf.multi_cell(widths[1], 5, self.text(value), border=0, new_x="LMARGIN", new_y="NEXT")
            self.pdf.set_y(max(self.pdf.get_y(), y + 5))

    def images(self, pictures: Sequence[tuple[str, np.ndarray]], width: float = 85) -> None:
        x0, y0 = self.pdf.l_margin, self.pdf.get_y()
        heights = []
        for i, (caption, arr) in enumerate(pictures):
            img = Image.fromarray(arr)
            img.thumbnail((PDF_IMAGE_PX, PDF_IMAGE_PX))
            h = width * img.height / img.width
            x = x0 + i * (width + 5)
            self.pdf.set_xy(x, y0)
            self.pdf.set_font(self.family, "", 8)
            self.pdf.cell(width, 4, self.text(caption))
            self.pdf.image(img, x=x, y=y0 + 5, w=width, h=h)
            heights.append(h)
        self.pdf.set_xy(x0, y0 + 7 + max(heights, default=0))


def case_report_pdf(result: PredictionResult, model: dict[str, str], alpha: float = 0.4,
                    colormap: str = "jet", created: str | None = None) -> bytes:
    """A one-image case report as PDF bytes.

    Args:
        result: a successful prediction (with the decoded image; the heatmap is optional).
        model: the model summary, label -> text (see :func:`core.reports.run_summary.model_facts`).
        alpha: heatmap opacity in the overlay.
        colormap: a key of :data:`core.inference.overlay.COLORMAPS`.
        created: the timestamp printed on the report (default: now, local time).
    Returns:
        The PDF file's bytes.
    """
    # Stays whole: it is the printed page read top to bottom, one or two lines per element.
    w = _Writer()
    w.line("Brain MRI classification — case report", size=15, bold=True, h=8)
    w.line(f"Generated {created or time.strftime('%Y-%m-%d %H:%M:%S %Z')}", size=8)
    w.pdf.ln(1)
    w.line(DISCLAIMER, size=10, bold=True, colour=(170, 0, 0))
    w.pdf.ln(2)
    w.line(f"File: {result.file}", size=10, bold=True)
    if result.meta:
        w.line("DICOM: " + ", ".join(f"{k} {v}" for k, v in result.meta.items()), size=8)
    if result.error:
        w.line(f"This file could not be analysed: {result.error}", colour=(170, 0, 0))
        return bytes(w.pdf.output())
    pictures = []
    if result.image is not None:
        pictures.append(("Input slice", result.image.pixels))
    picture = overlay_for(result, alpha, colormap)
    if picture is not None:
        title = CAM_METHODS[result.method].title if result.method in CAM_METHODS else "Heat map"
        pictures.append((f"{title} for {display_name(result.heatmap_class)} (opacity {alpha:.0%}, {colormap})",
                         picture))
    if pictures:
        w.images(pictures)
    w.pdf.ln(2)
    w.line(f"Predicted class: {display_name(result.label)}   (model probability "
           f"{format_probability(result.confidence)})", size=12, bold=True)
    if result.coverage is not None:
        w.line(describe_set(result.prediction_set, result.coverage, len(result.probabilities)), size=10)
        w.line(GUARANTEE_NOTE, size=8, colour=(90, 90, 90))
    note = heatmap_note(result)
    if note:
        w.line(note, size=9, colour=(150, 80, 0))
    w.pdf.ln(1)
    w.line("Model probabilities", size=10, bold=True)
    w.table([(display_name(c), format_probability(p))
             for c, p in sorted(result.probabilities.items(), key=lambda kv: -kv[1])], widths=(50, 40))
    w.line(CALIBRATION_NOTE, size=8, colour=(90, 90, 90))
    w.pdf.ln(2)
    w.line("Warnings", size=10, bold=True)
    for text in result.warnings or ["None."]:
        w.line(f"• {text}" if result.warnings else text, size=9, colour=(150, 80, 0) if result.warnings else (0, 0, 0))
    if result.details:
        w.line("The figures behind the warnings", size=8, bold=True)
        w.table(list(result.details.items()), widths=(90, 90))
    w.pdf.ln(2)
    w.line("Model", size=10, bold=True)
    w.table(list(model.items()))
    w.pdf.ln(3)
    w.line(DISCLAIMER, size=8, colour=(90, 90, 90))
    return bytes(w.pdf.output())

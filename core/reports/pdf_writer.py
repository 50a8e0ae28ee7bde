"""A small PDF writer for the case report: fpdf2 with a Unicode font, numbered pages, tables that keep
each row whole across a page break, and hand-filled fields (issue 23 item 6, issue 24 item 10).

The font is DejaVu Sans, shipped in assets/fonts under its Bitstream Vera licence (the system copy
is the fallback, then core Helvetica). DejaVu has no CJK glyphs: such characters are written as
``<U+8111>`` so a file name still identifies its image, and the report says so.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image

FONT_DIR = Path("/usr/share/fonts/truetype/dejavu")
ASSETS_FONTS = Path(__file__).resolve().parents[2] / "assets" / "fonts"
PDF_IMAGE_PX = 512  # longest side of images embedded in the PDF: sharp enough, small file

FONT_FILES = ("DejaVuSans.ttf", "DejaVuSans-Bold.ttf")  # shipped in assets/fonts (Bitstream Vera licence)
MISSING_GLYPH_NOTE = "Characters the report's font cannot draw are written as U+ codes."


def font_dir() -> Path | None:
    """The folder with both DejaVu files: the copy shipped in assets/fonts, else the system's."""
    for folder in (ASSETS_FONTS, FONT_DIR):
        if all((folder / f).is_file() for f in FONT_FILES):
            return folder
    return None


@lru_cache(maxsize=1)
def _font_codepoints(path: str) -> frozenset[int]:
    from fontTools.ttLib import TTFont  # installed with fpdf2

    with TTFont(path, lazy=True) as font:
        return frozenset(font.getBestCmap())


class PdfWriter:
    """fpdf2 with DejaVu (Unicode) when found, else core Helvetica with ASCII-folded text.

    Characters the font has no glyph for (Chinese, Japanese, Korean: DejaVu has none) are written
    as ``<U+8111>`` so a file name still identifies its image, and the report says so.
    """

    def __init__(self) -> None:
        from fpdf import FPDF

        self.pdf = FPDF(format="A4")
        self.pdf.set_margins(12, 10, 12)
        self.pdf.set_auto_page_break(True, margin=14)
        self.pdf.alias_nb_pages()
        self.unicode, self.codepoints, self.replaced = False, frozenset(), False
        folder = font_dir()
        if folder is not None:
            try:
                self.pdf.add_font("DejaVu", "", str(folder / FONT_FILES[0]))
                self.pdf.add_font("DejaVu", "B", str(folder / FONT_FILES[1]))
                self.codepoints = _font_codepoints(str(folder / FONT_FILES[0]))
                self.unicode = True
            except Exception:  # noqa: BLE001 - a damaged font file must not stop the report
                self.unicode = False
        self.family = "DejaVu" if self.unicode else "Helvetica"
        writer = self

        def footer() -> None:  # fpdf calls this on every page: the page number and the one disclaimer
            pdf = writer.pdf
            pdf.set_y(-12)
            pdf.set_font(writer.family, "", 7)
            pdf.set_text_color(90, 90, 90)
            pdf.cell(0, 4, writer.text(f"Page {pdf.page_no()} of {{nb}}"), align="R")
            pdf.set_text_color(0, 0, 0)

        self.pdf.footer = footer
        self.pdf.add_page()

    def text(self, value: object) -> str:
        s = str(value)
        if self.unicode:
            out = []
            for ch in s:
                if ord(ch) in self.codepoints or ch in "\n\t":
                    out.append(ch)
                else:
                    out.append(f"<U+{ord(ch):04X}>")
                    self.replaced = True
            return "".join(out)
        # Core fonts only know Latin-1: spell out the few symbols we use, mark what is left.
        for a, b in (("—", "-"), ("–", "-"), ("≤", "<="), ("≥", ">="), ("×", "x"), ("…", "..."), ("•", "-"),
                     ("☐", "[ ]"), ("−", "-")):
            s = s.replace(a, b)
        s = unicodedata.normalize("NFKD", s)
        out = []
        for ch in s:
            if unicodedata.combining(ch):
                continue
            if ord(ch) < 256:
                out.append(ch)
            else:
                out.append(f"<U+{ord(ch):04X}>")
                self.replaced = True
        return "".join(out)

    def line(self, value: object, size: float = 9, bold: bool = False, h: float | None = None,
             colour: tuple[int, int, int] = (0, 0, 0), fill: tuple[int, int, int] | None = None) -> None:
        self.pdf.set_font(self.family, "B" if bold else "", size)
        self.pdf.set_text_color(*colour)
        if fill is not None:
            self.pdf.set_fill_color(*fill)
        self.pdf.multi_cell(0, h or size * 0.47, self.text(value), new_x="LMARGIN", new_y="NEXT",
                            fill=fill is not None, padding=(0.8, 1.5) if fill is not None else 0)
        self.pdf.set_text_color(0, 0, 0)

    def table(self, rows: Sequence[tuple[str, str]], widths: tuple[float, float] = (60, 126), size: float = 7.5) -> None:
        """Key/value rows; fpdf2's table keeps each row whole across a page break (no overprinting)."""
        if not rows:
            return
        self.pdf.set_font(self.family, "", size)
        with self.pdf.table(col_widths=widths, width=sum(widths), align="LEFT", first_row_as_headings=False,
                            line_height=size * 0.45, borders_layout="HORIZONTAL_LINES",
                            padding=0.6) as table:
            for key, value in rows:
                row = table.row()
                self.pdf.set_font(self.family, "B", size)
                row.cell(self.text(key))
                self.pdf.set_font(self.family, "", size)
                row.cell(self.text(value))

    def images(self, pictures: Sequence[tuple[str, np.ndarray]], box: float = 62) -> None:
        """Pictures side by side, each fitted into a ``box`` mm square under its caption."""
        x0, y0 = self.pdf.l_margin, self.pdf.get_y()
        bottom = y0
        for i, (caption, arr) in enumerate(pictures):
            img = Image.fromarray(arr)
            img.thumbnail((PDF_IMAGE_PX, PDF_IMAGE_PX))
            scale = box / max(img.width, img.height)
            w, h = img.width * scale, img.height * scale
            x = x0 + i * (box + 4)
            self.pdf.set_xy(x, y0)
            self.pdf.set_font(self.family, "", 7)
            self.pdf.multi_cell(box, 3.2, self.text(caption), new_x="LEFT", new_y="NEXT")
            top = max(self.pdf.get_y(), y0 + 7)
            self.pdf.image(img, x=x, y=top, w=w, h=h)
            bottom = max(bottom, top + h)
        self.pdf.set_xy(x0, bottom + 1.5)

    def boxes(self, label: str, options: Sequence[str]) -> None:
        """``label  ☐ a   ☐ b   ☐ c``: empty square boxes a reader ticks by hand."""
        pdf = self.pdf
        pdf.set_font(self.family, "B", 9)
        pdf.cell(pdf.get_string_width(self.text(label)) + 3, 6, self.text(label))
        pdf.set_font(self.family, "", 9)
        for option in options:
            x, y = pdf.get_x(), pdf.get_y()
            pdf.rect(x, y + 1.2, 3.6, 3.6)
            pdf.set_x(x + 5)
            pdf.cell(pdf.get_string_width(self.text(option)) + 6, 6, self.text(option))
        pdf.ln(6)

    def blank(self, label: str, width: float = 0) -> None:
        """``label ________``: a field written by hand on the printed page."""
        pdf = self.pdf
        pdf.set_font(self.family, "B", 9)
        lw = pdf.get_string_width(self.text(label)) + 2
        pdf.cell(lw, 6, self.text(label))
        end = pdf.l_margin + (width or pdf.epw)
        y = pdf.get_y() + 5
        pdf.line(pdf.get_x(), y, end, y)
        pdf.ln(7)

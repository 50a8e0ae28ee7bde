"""Issue 24 (clinician) and issue 23 item 6: a wrong answer never looks clean.

No TensorFlow here: results are built by hand, prediction sets come from a hand-made calibration,
and the PDF is read back with pypdfium2 (page count, text, no overprinting).
"""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path

import numpy as np
import pytest

from core.data.imageio import decode_image
from core.data.pixels import DecodedImage
from core.inference.conformal import ConformalCalibration
from core.inference.ood import image_checks
from core.inference.predict import (
    EMPTY_SET,
    NEAR_COPY_NOTE,
    SYNTHETIC_MODEL,
    SYNTHETIC_WARNING,
    PredictionResult,
    Predictor,
    empty_set_warning,
)
from core.reports import case_report
from core.reports.conformal import coverage_sentence, describe_set
from core.reports.disclaimer import DISCLAIMER
from core.reports.reading import (
    colour_bar,
    colour_scale_note,
    heatmap_caption,
    reading_note,
    set_cell,
    short_warnings,
)

pdfium = pytest.importorskip("pypdfium2")

NAMES = ("glioma", "meningioma", "notumor", "pituitary")
PROJECT = Path(__file__).resolve().parents[2]


def _predictor(n_per_class: int = 40, spread: float = 0.1) -> Predictor:
    """A Predictor with only what add_prediction_sets needs: class order and a calibration."""
    p = Predictor.__new__(Predictor)
    p.class_names = list(NAMES)
    scores = tuple(np.linspace(0.0, spread, n_per_class) for _ in NAMES)
    p.conformal = ConformalCalibration("lac", NAMES, scores, 1.0, "none")
    return p


def _result(probs=(0.05, 0.05, 0.021, 0.879), **kw) -> PredictionResult:
    yy, xx = np.mgrid[:96, :96]
    pixels = ((np.sin(xx / 7) + np.cos(yy / 9) + 2) * 60).astype(np.uint8)
    probabilities = dict(zip(NAMES, probs))
    label = max(probabilities, key=probabilities.get)
    base = dict(file="slice.png", label=label, confidence=probabilities[label], probabilities=probabilities,
                image=DecodedImage(pixels, "PNG", "L", 0.0), heatmap=np.linspace(0, 1, 32 * 32, dtype=np.float32)
                .reshape(32, 32), heatmap_class=label, method="gradcam")
    base.update(kw)
    return PredictionResult(**base)


MODEL = {"Model run": "20260101-000000-custom_cnn-abcd", "Architecture": "Custom CNN",
         "Training data": "brain-tumor-mri", "Trained": "2026-01-01", "Classes": "Glioma, Meningioma, No tumour, "
         "Pituitary tumour", "Input": "128×128 grayscale, head crop", "Validation accuracy": "96.3 % (856 images)",
         "Leakage-free test metrics": "accuracy 96.3 % on 858 images"}


def _pdf_pages(data: bytes) -> list[str]:
    doc = pdfium.PdfDocument(data)
    return [doc[i].get_textpage().get_text_range() for i in range(len(doc))]


# --- the empty prediction set is a warning everywhere ---------------------------------------------

def test_an_empty_set_becomes_a_flag_and_a_warning_that_follows_the_coverage():
    predictor = _predictor()
    r = _result()  # top class 0.879: its score 0.121 is above every class's threshold (about 0.1)
    predictor.add_prediction_sets([r], 0.95)
    assert r.prediction_set == [] and r.flags[0] == EMPTY_SET
    assert r.warnings[0] == empty_set_warning(0.95)
    assert "none of the classes fits this slice well at 95 %" in r.warnings[0].lower()
    predictor.add_prediction_sets([r], 0.95)  # again: one warning, not two
    assert r.flags.count(EMPTY_SET) == 1 and sum("fits this slice" in w for w in r.warnings) == 1
    confident = _result(probs=(0.02, 0.02, 0.01, 0.95))
    predictor.add_prediction_sets([r, confident], 0.95)
    assert confident.prediction_set == ["pituitary"] and EMPTY_SET not in confident.flags
    wide = _predictor(spread=0.9)  # wider thresholds: the same slice now gets a set, and the warning goes
    wide.add_prediction_sets([r], 0.95)
    assert r.prediction_set and EMPTY_SET not in r.flags and not any("fits this slice" in w for w in r.warnings)
    assert r.to_dict()["flags"] == r.flags


def test_a_validation_split_too_small_for_sets_says_so_instead_of_showing_them():
    small = _predictor(n_per_class=11)  # 95 % needs at least 19 images per class
    r = _result()
    small.add_prediction_sets([r], 0.95)
    assert r.prediction_set is None and "too small" in r.set_problem and "19" in r.set_problem
    assert describe_set(r.prediction_set, 0.95, 4, r.set_problem) == r.set_problem
    assert set_cell(r) == "not available" and EMPTY_SET not in r.flags
    small.add_prediction_sets([r], 0.8)  # 80 % needs 4: the sets come back
    assert r.set_problem is None and r.prediction_set is not None


def test_coverage_is_explained_without_calling_a_lower_level_alarming():
    low, high = coverage_sentence(0.8), coverage_sentence(0.99)
    assert "80 %" in low and "empty ones more often" in low and "99 %" in high
    assert "unusual" not in describe_set([], 0.8, 4)
    assert "more often at a lower coverage" in describe_set([], 0.8, 4)
    assert "fewer empty ones" in high


def test_table_cells_show_the_empty_set_and_short_warnings():
    r = _result(flags=[EMPTY_SET, SYNTHETIC_MODEL, "low_confidence", "near_duplicate"], prediction_set=[],
                coverage=0.95)
    assert set_cell(r) == "empty: no class fits"
    words = short_warnings(r)
    assert words == "no class fits (empty set); synthetic model; close call"  # a note is not a warning
    assert set_cell(_result(prediction_set=["glioma", "notumor"], coverage=0.9)) == "Glioma, No tumour"


def test_every_warning_flag_a_slice_can_carry_has_words_in_the_table():
    """A flag with no table words leaves the Warnings cell blank: a clinician scanning the table reads "no
    warning" (``not_mr`` did, for a CT exported as DICOM). Read from the code that raises the flags."""
    import re
    from pathlib import Path

    import core.inference as inference
    from core.reports.reading import FLAG_WORDS

    said_elsewhere = {"near_duplicate"}  # a note about the score, not a warning (see near_copy_note)
    with_ood = {"no_head"}  # raised with "ood" alone, whose words cover it
    raised = set()
    for path in Path(inference.__file__).parent.glob("*.py"):
        if path.name.startswith("study"):
            continue  # a whole study's flags: its own table and words (core/reports/study.py)
        raised |= set(re.findall(r'flags\.(?:append|insert)\((?:0, )?"([a-z_]+)"\)', path.read_text()))
    assert {"low_confidence", "ood", "not_mr"} <= raised  # the reading above still finds the flags
    from core.inference.ensemble_predict import DISAGREE, SENTINEL
    from core.inference.notices import SITE_SHIFT

    raised |= {EMPTY_SET, SYNTHETIC_MODEL, DISAGREE, SENTINEL, SITE_SHIFT}
    missing = raised - said_elsewhere - with_ood - set(FLAG_WORDS)
    assert not missing, f"flags without table words: {sorted(missing)}"


def test_csv_has_prediction_set_coverage_flags_and_notes():
    empty = _result(flags=[EMPTY_SET], warnings=[empty_set_warning(0.9)], prediction_set=[], coverage=0.9)
    pair = _result(file="b.png", prediction_set=["pituitary", "glioma"], coverage=0.9, notes=[NEAR_COPY_NOTE],
                   flags=["near_duplicate"])
    rows = list(csv.DictReader(io.StringIO(case_report.results_csv([empty, pair], NAMES).decode())))
    assert rows[0]["prediction_set"] == "{}" and rows[0]["coverage"] == "0.9"
    assert rows[0]["flags"] == "empty_set" and "fits this slice" in rows[0]["warnings"]
    assert rows[1]["prediction_set"] == "{pituitary;glioma}" and rows[1]["notes"] == NEAR_COPY_NOTE
    assert rows[1]["warnings"] == ""


# --- which signal wins, heat maps, the near-copy note ----------------------------------------------

def test_when_signals_disagree_the_note_says_which_one_wins():
    sure = (0.0003, 0.0003, 0.0004, 0.999)
    assert reading_note(_result(probs=sure, prediction_set=["pituitary"], coverage=0.95)) is None
    synthetic = reading_note(_result(probs=sure, flags=[SYNTHETIC_MODEL, "ood"],
                                     warnings=[SYNTHETIC_WARNING, "Probably not a brain MRI: x"]))
    assert synthetic.startswith("Which signal wins: the synthetic-model warning")
    ood = reading_note(_result(probs=sure, flags=["ood"], warnings=["Probably not a brain MRI: it is blank"]))
    assert ood.startswith("Which signal wins: the image check") and "high probability" in ood
    full = reading_note(_result(probs=sure, prediction_set=list(NAMES), coverage=0.95))
    assert "the prediction set" in full and "holds all 4 classes" in full
    empty = reading_note(_result(flags=[EMPTY_SET], prediction_set=[], coverage=0.95))
    assert "is empty" in empty
    assert reading_note(PredictionResult(file="x", error="not an image")) is None


def test_heat_maps_get_a_colour_scale_and_no_tumour_maps_are_explained():
    r = _result(heatmap_class="glioma")
    assert heatmap_caption(r) == "Regions that pushed the score towards Glioma (Grad-CAM)"
    note = colour_scale_note(r, "jet")
    assert "red" in note and "dark blue" in note and "not an outline of a lesion" in note
    assert "argued against a tumour" not in note
    no_tumour = colour_scale_note(_result(heatmap_class="notumor"), "viridis")
    assert "yellow" in no_tumour and "argued against a tumour" in no_tumour and "not a finding" in no_tumour
    bar = colour_bar("jet", 64, 4)
    assert bar.shape == (4, 64, 3) and bar[0, 0, 2] > bar[0, 0, 0] and bar[0, -1, 0] > bar[0, -1, 2]  # blue -> red


def test_grey_slices_stored_as_rgb_jpeg_are_not_called_colour_but_photos_are():
    from conftest import encode

    rng = np.random.default_rng(0)
    gray = np.clip(rng.normal(90, 40, (96, 96)), 0, 255).astype(np.uint8)
    rgb = np.repeat(gray[..., None], 3, axis=2)
    rgb[40:44, 10:90, 0] = np.clip(rgb[40:44, 10:90, 0].astype(int) + 90, 0, 255)  # chroma noise on an edge
    rgb[40:44, 10:90, 2] = np.clip(rgb[40:44, 10:90, 2].astype(int) - 90, 0, 255)
    noisy = decode_image(encode(rgb, "PNG"), "noisy.png")
    assert noisy.colourfulness > 0 and noisy.colour_share < 0.15
    assert not any("colour" in t for t in image_checks(noisy))
    photo = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    assert any("colour" in t for t in image_checks(decode_image(encode(photo, "PNG"), "photo.png")))


@pytest.mark.realdata
def test_the_kaggle_slices_stored_as_rgb_are_not_called_colour(real_data_dir):
    names = ["Tr-no_0448.jpg", "Tr-no_0528.jpg", "Tr-no_0721.jpg", "Tr-no_1397.jpg"]  # colourfulness 13-15
    for name in names:
        image = decode_image(real_data_dir / "Training" / "notumor" / name)
        assert image.source_mode == "RGB" and image.colourfulness > 12
        assert not any("colour" in t for t in image_checks(image)), name


def test_one_disclaimer_everywhere():
    assert case_report.DISCLAIMER is DISCLAIMER
    for path in [*PROJECT.glob("pages/*.py"), PROJECT / "Home.py", *PROJECT.glob("core/**/*.py")]:
        text = path.read_text(encoding="utf-8")
        for old in ("may be used to make clinical decisions", "A qualified clinician must interpret"):
            assert old not in text, path
    overview = (PROJECT / "pages" / "0_Overview.py").read_text(encoding="utf-8")
    assert "st.warning(DISCLAIMER" in overview


# --- the case report --------------------------------------------------------------------------------

def _no_overprinting(data: bytes) -> None:
    """No two text lines on a page share space (a wrapped key over the next heading, as in issue 23)."""
    doc = pdfium.PdfDocument(data)
    for i in range(len(doc)):
        tp = doc[i].get_textpage()
        rects = [tp.get_rect(k) for k in range(tp.count_rects())]
        for a in range(len(rects)):
            for b in range(a + 1, len(rects)):
                l1, b1, r1, t1 = rects[a]
                l2, b2, r2, t2 = rects[b]
                w, h = min(r1, r2) - max(l1, l2), min(t1, t2) - max(b1, b2)
                smaller = min(t1 - b1, t2 - b2)
                assert not (w > 1 and h > 0.4 * smaller), f"page {i + 1}: text overlaps {rects[a]} / {rects[b]}"


def test_an_ordinary_slice_gives_one_page_with_the_chart_fields():
    r = _result(prediction_set=["pituitary"], coverage=0.95,
                details={"Model probability of the top class": "87.9 % (a close call below 40.0 %)"})
    data = case_report.case_report_pdf(r, MODEL, created="2026-01-01 12:00", case_id="ACC-2026-0042",
                                       reader="Dr Rivera")
    pages = _pdf_pages(data)
    assert len(pages) == 1
    text = re.sub(r"\s+", " ", pages[0])
    for words in ("Page 1 of 1", "Case / accession no.: ACC-2026-0042", "Name: Dr Rivera", "agree", "disagree",
                  "unsure", "Warnings: none.", "Pituitary tumour alone", "Regions that pushed the score towards",
                  "least", "most", "Colour scale"):
        assert words in text, words
    assert re.sub(r"\s+", " ", DISCLAIMER) in text
    _no_overprinting(data)


def test_the_worst_case_still_fits_one_page_and_carries_every_state_of_the_page():
    r = _result(flags=[EMPTY_SET, SYNTHETIC_MODEL, "low_confidence", "ood", "near_duplicate"],
                warnings=[empty_set_warning(0.95), SYNTHETIC_WARNING, "Close call: the model is not confident "
                          "about this slice. Do not rely on this result.", "Probably not a brain MRI: This is a "
                          "colour image; MRI slices are grayscale."],
                notes=[NEAR_COPY_NOTE], prediction_set=[], coverage=0.95, heatmap_class="notumor",
                details={f"figure {k}": "1.0 (limit 2.0)" for k in range(4)})
    data = case_report.case_report_pdf(r, {**MODEL, "Training data": "demo (SYNTHETIC demo, not patient data)"})
    pages = _pdf_pages(data)
    assert len(pages) == 1
    text = re.sub(r"\s+", " ", pages[0])
    assert "Warnings (4)" in text and "Warnings: none" not in text and "Warnings: None" not in text
    assert "None of the classes fits this slice well at 95 %" in text
    assert "synthetic pictures" in text and "SYNTHETIC" in text
    assert "Which signal wins: the synthetic-model warning" in text
    assert "About the score, not the patient" in text and "argued against a tumour" in text
    _no_overprinting(data)


def test_a_long_report_breaks_pages_cleanly_and_numbers_them():
    r = _result(details={f"figure number {k} with a long name that wraps " * 3: "value " * 12 for k in range(40)})
    data = case_report.case_report_pdf(r, MODEL)
    pages = _pdf_pages(data)
    assert len(pages) >= 2
    for i, text in enumerate(pages, 1):
        assert f"Page {i} of {len(pages)}" in text
    _no_overprinting(data)


def test_non_latin_file_names_stay_identifiable():
    r = _result(file="脑部扫描_患者01.jpg")
    text = re.sub(r"\s+", " ", _pdf_pages(case_report.case_report_pdf(r, MODEL))[0])
    # DejaVu has no CJK glyphs: each such character is written as its code point, and the report says so.
    assert "<U+8111><U+90E8><U+626B><U+63CF>_<U+60A3><U+8005>01.jpg" in text
    assert case_report.MISSING_GLYPH_NOTE in text
    accents = re.sub(r"\s+", " ", _pdf_pages(case_report.case_report_pdf(_result(file="Ωmega_çé.png"), MODEL))[0])
    assert "Ωmega_çé.png" in accents and case_report.MISSING_GLYPH_NOTE not in accents


def test_the_shipped_font_is_used_and_its_licence_travels_with_it(monkeypatch):
    from core.reports import pdf_writer

    assert pdf_writer.font_dir() == pdf_writer.ASSETS_FONTS
    assert (pdf_writer.ASSETS_FONTS / "LICENSE-DejaVu.txt").read_text().count("Bitstream") >= 2
    monkeypatch.setattr(pdf_writer, "ASSETS_FONTS", Path("/nonexistent-fonts"))
    monkeypatch.setattr(pdf_writer, "FONT_DIR", Path("/nonexistent-fonts"))
    data = case_report.case_report_pdf(_result(file="脑部01.jpg"), MODEL)  # Helvetica, Latin-1, still whole
    assert b"Helvetica" in data
    assert "<U+8111><U+90E8>01.jpg" in re.sub(r"\s+", " ", _pdf_pages(data)[0])


def test_a_rejected_file_gets_a_report_that_says_why():
    r = PredictionResult(file="broken.jpg", error="this is not an image file")
    text = re.sub(r"\s+", " ", _pdf_pages(case_report.case_report_pdf(r, MODEL))[0])
    assert "could not be analysed: this is not an image file" in text and "agree" in text


def test_the_measured_share_of_empty_and_multi_class_sets_comes_from_the_evaluation(monkeypatch):
    import pandas as pd

    from core.evaluation import conformal_eval, evaluate
    from core.evaluation.result import EvaluationResult
    from core.reports.conformal import measured_set_shapes, set_shapes_sentence

    cal = ConformalCalibration("lac", NAMES, tuple(np.linspace(0.0, 0.3, 40) for _ in NAMES), 1.0, "none")
    probs = np.array([[0.97, 0.01, 0.01, 0.01], [0.5, 0.45, 0.03, 0.02], [0.4, 0.3, 0.2, 0.1], [0.01, 0.01, 0.97, 0.01]])
    frame = pd.DataFrame({"file": list("abcd"), "true": ["glioma", "glioma", "notumor", "notumor"],
                          "predicted": ["glioma", "glioma", "glioma", "notumor"], "overlap": False,
                          **{f"prob_{c}": probs[:, k] for k, c in enumerate(NAMES)}})
    result = EvaluationResult("r", "sha", "card_test", "d", "/", "fp", list(NAMES), frame, {}, {}, 0, 1.0)
    monkeypatch.setattr(evaluate, "cached_evaluation", lambda run, eval_set: None)
    assert measured_set_shapes(object(), 0.9) is None  # not evaluated yet: no figure, never a prediction
    monkeypatch.setattr(evaluate, "cached_evaluation", lambda run, eval_set: result)
    monkeypatch.setattr(conformal_eval, "try_run_conformal", lambda run: (cal, None))
    n, empty, multi = measured_set_shapes(object(), 0.9)
    member = cal.sets(probs, 0.9).sum(axis=1)
    assert n == 4 and empty == pytest.approx((member == 0).mean()) and multi == pytest.approx((member > 1).mean())
    words = set_shapes_sentence((858, 0.021, 0.034), 0.95)
    assert "858 held-out test images at 95 %" in words and "2.1 % of the sets were empty" in words
    assert "3.4 % held more than one class" in words

"""core.inference.predict and core.reports.case_report against a tiny model trained by the real engine.

Covers: one preprocessing path (bit-identical to training), calibration, per-file errors,
DICOM end to end, 'not a brain MRI' and near-duplicate warnings, thread safety, Grad-CAM
settings, and the PDF / CSV / zip exports.
"""

from __future__ import annotations

import csv
import io
import struct
import threading
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
from conftest import encode, smooth_image
from PIL import Image
from test_dicom import make_dicom

from core.data.hashing import hash_to_hex, perceptual_hash
from core.data.imageio import decode_image
from core.errors import WorkbenchError
from core.inference.calibration import softmax
from core.inference.predict import PredictionResult, Predictor, predict_files
from core.reports import case_report
from core.reports.run_summary import model_facts as card_summary

pytestmark = pytest.mark.slow


def _training_file(run, demo_root: Path) -> Path:
    """A demo file whose perceptual hash is among the card's training hashes."""
    hashes = set(run.card.data["train_hashes"])
    for path in sorted((demo_root / "Training").rglob("*.png")):
        if hash_to_hex(perceptual_hash(decode_image(path).pixels)) in hashes:
            return path
    raise AssertionError("no training image found")


def _good(run, demo_root: Path) -> tuple[str, bytes]:
    path = _training_file(run, demo_root)
    return path.name, path.read_bytes()


def _png_header(width: int, height: int) -> bytes:
    """A PNG that claims a huge size (a decompression bomb's header) with no real data."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    chunk = b"IHDR" + ihdr
    return (b"\x89PNG\r\n\x1a\n" + struct.pack(">I", len(ihdr)) + chunk
            + struct.pack(">I", zlib.crc32(chunk)) + b"\x00\x00\x00\x00IEND\xaeB`\x82")


# --- one preprocessing path -------------------------------------------------------------------

def test_predict_time_array_equals_the_training_pipeline_array(tiny_predictor, tiny_run, demo_root):
    from core.data.image_cache import cached_images
    from core.data.preprocess import load_many

    path = _training_file(tiny_run, demo_root)
    size = tiny_run.image_size
    recipe = tiny_run.preprocessing
    trained = cached_images([path], size, "fingerprint-for-test", preprocessing=recipe)[0]
    loaded = load_many([path], size, preprocessing=recipe)[0]
    result = predict_files(tiny_predictor, [(path.name, path.read_bytes())])[0]
    assert result.ok and result.model_input.dtype == np.uint8
    assert result.model_input.shape == (size, size, 1)
    np.testing.assert_array_equal(result.model_input, trained)
    np.testing.assert_array_equal(result.model_input, loaded)
    from core.data.preprocess import PREPROCESSING_ID

    assert tiny_run.card.preprocessing_id == PREPROCESSING_ID


def test_probabilities_are_temperature_calibrated(tiny_predictor, tiny_run, demo_root):
    from core.lazy_tensorflow import keras

    name, data = _good(tiny_run, demo_root)
    r = predict_files(tiny_predictor, [(name, data)])[0]
    model = tiny_predictor.model
    logits_model = keras().Model(model.inputs, model.get_layer("logits").output)
    x = r.model_input[None].astype(np.float32)
    logits = np.asarray(logits_model([x], training=False), dtype=np.float64)
    if tiny_run.card.results.tta == "hflip":  # the card asks for flip averaging
        logits = (logits + np.asarray(logits_model([x[:, :, ::-1, :].copy()], training=False))) / 2
    expected = softmax(logits, tiny_run.card.results.temperature)[0]
    assert tiny_predictor.temperature == pytest.approx(tiny_run.card.results.temperature)
    got = np.array([r.probabilities[c] for c in tiny_run.class_names])
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    assert list(r.probabilities) == tiny_run.class_names
    assert r.label == tiny_run.class_names[int(expected.argmax())]
    assert r.confidence == pytest.approx(float(expected.max()))


# --- bad files never stop the batch -------------------------------------------------------------

def test_each_bad_file_gets_its_own_error_and_the_good_one_succeeds(tiny_predictor, tiny_run, demo_root):
    name, good = _good(tiny_run, demo_root)
    jpeg = encode(smooth_image(5, 64), "JPEG", quality=90)
    items = [
        ("empty.png", b""),
        ("notes.jpg", b"this is a text file, not a picture\n"),
        (name, good),
        ("truncated.jpg", jpeg[: len(jpeg) // 2]),
        ("one_pixel.png", encode(np.zeros((1, 1), np.uint8))),
        ("bomb.png", _png_header(60000, 60000)),
    ]
    results = predict_files(tiny_predictor, items)
    assert [r.file for r in results] == [n for n, _ in items]
    by_name = {r.file: r for r in results}
    assert by_name[name].ok and by_name[name].label in tiny_run.class_names
    expected = {"empty.png": "empty", "notes.jpg": "not an image", "truncated.jpg": "truncated",
                "one_pixel.png": "too small", "bomb.png": "too large"}
    for file, reason in expected.items():
        r = by_name[file]
        assert not r.ok and reason in r.error, (file, r.error)
        assert r.label is None and r.probabilities == {} and r.heatmap is None


def test_all_files_bad_returns_errors_without_calling_the_model(tiny_predictor):
    results = predict_files(tiny_predictor, [("a.png", b""), ("b.dcm", b"DICM")], gradcam=True)
    assert [r.ok for r in results] == [False, False]


def test_settings_errors_raise_before_any_file(tiny_predictor, tiny_run, demo_root):
    item = [_good(tiny_run, demo_root)]
    with pytest.raises(WorkbenchError, match="unknown class 'astrocytoma'"):
        predict_files(tiny_predictor, item, gradcam=True, target_class="astrocytoma")
    with pytest.raises(WorkbenchError, match="unknown CAM method"):
        predict_files(tiny_predictor, item, gradcam=True, method="scorecam")


# --- DICOM ------------------------------------------------------------------------------------

def test_dicom_upload_end_to_end(tiny_predictor):
    """MONOCHROME1 with a window: decoded, windowed, inverted, predicted, explained; no patient data."""
    values = np.tile(np.linspace(0, 2000, 48), (48, 1)).astype(np.uint16)
    values[8:20, 8:20] = 3000  # above the window: clipped to the top, then inverted to black
    data = make_dicom(values, photometric="MONOCHROME1", window=(1000, 2000))
    r = predict_files(tiny_predictor, [("slice_without_extension", data)], gradcam=True, method="gradcam++")[0]
    assert r.ok, r.error
    assert r.image.source_format == "DICOM"
    assert r.image.pixels[10, 10] == 0  # MONOCHROME1: the brightest values are shown dark
    assert r.image.pixels[30, 0] == 255 and r.image.pixels[30, -1] < 5  # low end bright, high end dark
    assert r.meta["Modality"] == "MR" and "SeriesDescription" not in r.meta  # free text is never read out
    assert r.meta["window"] == "1000/2000"
    text = repr(r.to_dict())
    assert "Doe" not in text and "SECRET" not in text and "19700101" not in text  # full date: floats may hold "1970"
    assert r.heatmap.shape == (32, 32) and r.method == "gradcam++" and r.heatmap_class == r.label


# --- warnings ---------------------------------------------------------------------------------

def test_colour_photo_and_blank_image_are_flagged_not_mri(tiny_predictor):
    rng = np.random.default_rng(0)
    colourful = rng.integers(0, 256, (48, 48, 3), dtype=np.uint8)
    colourful[..., 0] = 255 - colourful[..., 2]  # make sure the channels disagree strongly
    blank = np.full((48, 48), 128, np.uint8)
    results = predict_files(tiny_predictor, [("photo.jpg", encode(colourful, "JPEG", quality=95)),
                                             ("blank.png", encode(blank))])
    photo, empty = results
    assert "ood" in photo.flags and any("colour" in w for w in photo.warnings)
    assert "ood" in empty.flags and any("blank" in w for w in empty.warnings)
    assert all(w.startswith("Probably not a brain MRI") for w in photo.warnings if "colour" in w)


def test_a_picture_that_is_not_an_mri_gets_no_prediction_set(tiny_predictor, tiny_run, demo_root):
    """A set like "this one class alone" would contradict the not-an-MRI warning beside it."""
    from core.inference.notices import NOT_MRI_SET_PROBLEM
    from core.reports.conformal import describe_set

    assert tiny_predictor.conformal is not None  # else the contrast below would test nothing
    rng = np.random.default_rng(1)
    colourful = rng.integers(0, 256, (48, 48, 3), dtype=np.uint8)
    colourful[..., 0] = 255 - colourful[..., 2]
    photo, slice_ = predict_files(tiny_predictor, [("photo.jpg", encode(colourful, "JPEG", quality=95)),
                                                   _good(tiny_run, demo_root)], coverage=0.5)
    assert "ood" in photo.flags and photo.label is not None  # still scored: the page shows the warning with it
    assert photo.prediction_set is None and photo.set_problem == NOT_MRI_SET_PROBLEM
    assert describe_set(photo.prediction_set, 0.5, 4, photo.set_problem) == NOT_MRI_SET_PROBLEM
    assert "ood" not in slice_.flags and slice_.set_problem is None and slice_.prediction_set is not None
    tiny_predictor.add_prediction_sets([photo], 0.8)  # a new coverage keeps the reason
    assert photo.prediction_set is None and photo.set_problem == NOT_MRI_SET_PROBLEM


def test_near_duplicate_of_training_image_is_flagged(tiny_predictor, tiny_run, demo_root):
    name, data = _good(tiny_run, demo_root)
    unrelated = encode(smooth_image(12345, 64))
    seen, fresh = predict_files(tiny_predictor, [(name, data), ("fresh.png", unrelated)])
    # Said as a note about the score's meaning, not as a warning about the patient (issue 24, item 8).
    assert "near_duplicate" in seen.flags and any("training images" in n for n in seen.notes)
    assert not any("training" in w for w in seen.warnings if "synthetic" not in w)
    assert "near_duplicate" not in fresh.flags and not fresh.notes
    # A re-encoded, slightly shifted copy is still the same picture.
    shifted = np.roll(decode_image(data).pixels, 1, axis=1)
    copy = predict_files(tiny_predictor, [("copy.jpg", encode(shifted, "JPEG", quality=85))])[0]
    assert "near_duplicate" in copy.flags


def test_low_confidence_threshold_comes_from_the_card(tiny_predictor, tiny_run, demo_root):
    item = [_good(tiny_run, demo_root)]
    strict = Predictor(tiny_run, model=tiny_predictor.model)
    strict.low_confidence = 1.0
    lenient = Predictor(tiny_run, model=tiny_predictor.model)
    lenient.low_confidence = 0.0
    assert "low_confidence" in predict_files(strict, item)[0].flags
    assert "low_confidence" not in predict_files(lenient, item)[0].flags
    from core.inference.trust import card_thresholds

    assert tiny_predictor.low_confidence == card_thresholds(tiny_run.card).min_confidence
    assert tiny_run.card.results.trust  # fitted at the end of training


JARGON = ("mahalanobis", "energy", "phash", "fingerprint", "threshold", "distance", "quantile")


def test_warnings_speak_plain_language_and_keep_their_figures_apart(tiny_predictor, tiny_run, demo_root):
    strict = Predictor(tiny_run, model=tiny_predictor.model)
    strict.low_confidence, strict.maha_threshold, strict.flag_unstable = 1.0, 0.0, True
    blank = encode(np.zeros((48, 48), np.uint8))
    results = predict_files(strict, [_good(tiny_run, demo_root), ("blank.png", blank)])
    good, empty = results
    assert {"low_confidence", "unfamiliar", "near_duplicate"} <= set(good.flags)
    assert "no_head" in empty.flags
    for r in results:
        for text in r.warnings:
            assert not any(word in text.lower() for word in JARGON), text
            assert "%" not in text or text.startswith("None of the classes fits")  # the coverage level
    assert any("looks unlike the images the model learned from" in w for w in good.warnings)
    # The figures are still there for the curious.
    assert "Model probability of the top class" in good.details
    assert any("distance" in k for k in good.details) and good.to_dict()["details"] == good.details
    assert not good.synthetic and "synthetic_model" not in good.flags  # the fixture opened the demo as a folder


def test_a_synthetic_model_flags_every_result(tiny_predictor, tiny_run, demo_root, monkeypatch):
    from core.models.run import Run

    monkeypatch.setattr(Run, "synthetic", property(lambda self: True))
    (r,) = predict_files(tiny_predictor, [_good(tiny_run, demo_root)])
    assert r.synthetic and r.flags[0] == "synthetic_model" and "synthetic pictures" in r.warnings[0]
    assert r.to_dict()["synthetic_model"] is True


def test_mirrored_views_that_disagree_are_flagged_when_the_card_says_so(tiny_predictor, tiny_run):
    from core.inference.predict import Scores

    p = Predictor(tiny_run, model=tiny_predictor.model)
    p.low_confidence, p.maha_threshold, p.flag_unstable = 0.0, None, True
    plain, mirror = np.array([[2.0, 0, 0, 0]]), np.array([[0, 2.0, 0, 0]])
    scores = Scores(logits=(plain + mirror) / 2, probs=np.array([[0.5, 0.5, 0, 0]]), features=None,
                    mahalanobis=None, energy=np.zeros(1), view_logits=[plain, mirror])
    image = decode_image(encode(smooth_image(3, 64)))
    _, flags, details = p.warnings_for(image, scores, 0)
    assert "unstable" in flags and details["Same answer for the mirrored slice"] == "no"
    p.flag_unstable = False
    assert "unstable" not in p.warnings_for(image, scores, 0)[1]


@pytest.mark.parametrize("p, text", [(1.0, "> 99.9 %"), (0.9996, "> 99.9 %"), (0.999, "99.9 %"), (0.5, "50.0 %"),
                                     (0.0004, "< 0.1 %"), (0.0, "0.0 %")])
def test_probabilities_are_never_shown_as_certain(p, text):
    from core.inference.predict import format_probability

    assert format_probability(p) == text


# --- Grad-CAM ---------------------------------------------------------------------------------

def test_heatmap_for_a_chosen_class(tiny_predictor, tiny_run, demo_root):
    item = [_good(tiny_run, demo_root)]
    r = predict_files(tiny_predictor, item, gradcam=True, target_class="meningioma")[0]
    from core.inference.gradcam import DEFAULT_CAM_METHOD

    assert r.heatmap_class == "meningioma" and r.method == DEFAULT_CAM_METHOD
    assert r.heatmap.shape == (32, 32) and r.heatmap.dtype == np.float32
    assert 0.0 <= r.heatmap.min() and r.heatmap.max() <= 1.0
    plain = predict_files(tiny_predictor, item)[0]
    assert plain.heatmap is None and plain.heatmap_class is None


# --- thread safety ----------------------------------------------------------------------------

def test_eight_threads_match_sequential(tiny_predictor, demo_root):
    files = sorted((demo_root / "Testing").rglob("*.png"))[::10][:6]
    items = [(p.name, p.read_bytes()) for p in files]
    sequential = [[(r.label, r.probabilities, r.warnings) for r in predict_files(tiny_predictor, items)]
                  for _ in range(2)]
    assert sequential[0] == sequential[1]  # deterministic to begin with
    outputs: list = [None] * 8
    errors: list = []
    barrier = threading.Barrier(8)

    def work(i: int) -> None:
        try:
            barrier.wait()
            mine = items[i % len(items):] + items[: i % len(items)]  # different orders and batches
            res = predict_files(tiny_predictor, mine, gradcam=(i % 2 == 0))
            outputs[i] = {r.file: (r.label, r.probabilities, r.warnings) for r in res}
        except Exception as exc:  # noqa: BLE001 - surfaced by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors
    expected = dict(zip([n for n, _ in items], sequential[0]))
    for out in outputs:
        assert out.keys() == expected.keys()
        for name, (label, probs, warnings) in out.items():
            assert label == expected[name][0] and warnings == expected[name][2]
            np.testing.assert_allclose([probs[c] for c in probs], [expected[name][1][c] for c in probs],
                                       rtol=1e-5, atol=1e-7)


# --- loading ----------------------------------------------------------------------------------

def test_no_model_yet_is_a_clear_error():
    with pytest.raises(WorkbenchError, match="no trained model yet"):
        Predictor.load()


def test_load_best_run_from_the_registry(tiny_registry):
    predictor = Predictor.load()
    assert predictor.run.run_id == tiny_registry.run_id and predictor.image_size == 32


def test_card_summary_shows_leakage_free_metrics_only_when_evaluated(tiny_run):
    from core.models.runs import Run

    summary = card_summary(tiny_run)
    assert summary["Leakage-free test metrics"] == "not evaluated yet"
    assert summary["Architecture"].startswith("Custom CNN")
    assert summary["Input"] == "32×32 grayscale, head crop + intensity standardisation"
    assert summary["Classes"] == "Glioma, Meningioma, No tumour, Pituitary tumour"  # display names, not ids
    card = tiny_run.card.replace(evaluation={"description": "held-out test split",
                                             "leakage_free": {"accuracy": 0.91, "macro_f1": 0.9, "n_images": 57}})
    text = card_summary(Run(tiny_run.run_id, tiny_run.path, card))["Leakage-free test metrics"]
    # One format per figure: accuracy as a percentage, macro-F1 as a 0–1 score.
    assert "accuracy 91.0 %" in text and "macro-F1 0.900" in text and "57 images" in text
    card = card.replace(evaluation={"description": "held-out test split recorded at training (57 images)",
                                    "leakage_free": {"accuracy": 0.91, "n_images": 57}})
    text = card_summary(Run(tiny_run.run_id, tiny_run.path, card))["Leakage-free test metrics"]
    assert text.count("57 images") == 1, text  # the count is said once, not beside a description giving it


# --- exports ----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def batch(tiny_predictor, tiny_run, demo_root) -> list[PredictionResult]:
    name, data = _good(tiny_run, demo_root)
    return predict_files(tiny_predictor, [(name, data), ("bad.jpg", b"nope"), (name, data)], gradcam=True)


def test_case_report_pdf(batch, tiny_run, monkeypatch):
    pdf = case_report.case_report_pdf(batch[0], card_summary(tiny_run), created="2026-01-01 12:00")
    assert pdf.startswith(b"%PDF-") and pdf.rstrip().endswith(b"%%EOF")
    assert b"/Image" in pdf  # the slice and the overlay are embedded
    error_pdf = case_report.case_report_pdf(batch[1], card_summary(tiny_run))
    assert error_pdf.startswith(b"%PDF-")
    # Without the DejaVu font the report falls back to Helvetica and ASCII, never crashes.
    from core.reports import pdf_writer

    monkeypatch.setattr(pdf_writer, "FONT_DIR", Path("/nonexistent-fonts"))
    monkeypatch.setattr(pdf_writer, "ASSETS_FONTS", Path("/nonexistent-fonts"))
    fallback = case_report.case_report_pdf(batch[0], card_summary(tiny_run))
    assert fallback.startswith(b"%PDF-") and b"Helvetica" in fallback


def test_results_csv(batch, tiny_run):
    rows = list(csv.DictReader(io.StringIO(case_report.results_csv(batch, tiny_run.class_names).decode())))
    assert [r["file"] for r in rows] == [r.file for r in batch]
    assert rows[1]["error"] and not rows[1]["label"]
    assert rows[0]["label"] == batch[0].label
    assert float(rows[0][f"prob_{batch[0].label}"]) == pytest.approx(batch[0].confidence, abs=1e-6)


def test_overlays_zip(batch):
    data = case_report.overlays_zip(batch, alpha=0.5, colormap="viridis")
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        names = zf.namelist()
        assert len(names) == 2 and len(set(names)) == 2  # the bad file has none; same names kept apart
        img = Image.open(io.BytesIO(zf.read(names[0])))
        assert img.mode == "RGB" and img.size == batch[0].image.size


def test_a_heat_map_for_a_class_the_model_rules_out_says_so():
    from core.reports.case_report import heatmap_note

    r = PredictionResult(file="x.png", label="pituitary", confidence=0.999,
                         probabilities={"glioma": 0.0004, "meningioma": 0.0003, "notumor": 0.0003, "pituitary": 0.999},
                         heatmap=np.ones((8, 8), np.float32), heatmap_class="meningioma")
    note = heatmap_note(r)
    assert note and "Meningioma" in note and "almost no weight" in note and "< 0.1 %" in note
    assert heatmap_note(PredictionResult(**{**r.__dict__, "heatmap_class": "pituitary"})) is None
    likely = {**r.probabilities, "meningioma": 0.2}
    assert heatmap_note(PredictionResult(**{**r.__dict__, "probabilities": likely})) is None

"""A batch the site check tells apart from the training images: every analysed slice carries it (flag
``site_shift``, its warning and the AUC behind it), in the table and the CSV too; any other verdict leaves the
slices unmarked. (The check itself: tests/training/test_site.py.)"""

from __future__ import annotations


def _check(shift: bool | None, n: int = 30):
    from core.evaluation.site_check import SiteCheck

    auc = None if shift is None else (0.91 if shift else 0.52)
    return SiteCheck(n, 200, auc, None if auc is None else (auc - 0.05, auc + 0.05), shift, {}, "advice")


def test_mark_batch_warns_every_analysed_slice_of_a_flagged_batch_and_only_then():
    from core.evaluation.site_check import mark_batch
    from core.inference.notices import SITE_SHIFT, SITE_SHIFT_DETAIL
    from core.inference.records import PredictionResult

    ok = [PredictionResult(file=f"{i}.png", label="glioma", warnings=["A close call."], flags=["low_confidence"])
          for i in range(24)]
    bad = PredictionResult(file="x.png", error="not an image")
    # the check read a sample of 20 (a batch over the check's cap is sampled); the warning counts the batch
    assert mark_batch([*ok, bad], _check(True, 20)) == 24
    for r in ok:
        assert r.flags == ["low_confidence", SITE_SHIFT]
        assert r.warnings[0] == "A close call." and "batch of 24 images" in r.warnings[1]
        assert "0.91" in r.details[SITE_SHIFT_DETAIL] and "on 20 images" in r.details[SITE_SHIFT_DETAIL]
    assert bad.flags == [] and bad.warnings == []  # a rejected file has no answer to warn about

    assert mark_batch(ok[:22], _check(True, 22)) == 22  # checked again: one warning, the new batch's figures
    assert all(r.flags.count(SITE_SHIFT) == 1 and len(r.warnings) == 2 and "batch of 22" in r.warnings[1]
               and "on 22 images" in r.details[SITE_SHIFT_DETAIL] for r in ok[:22])
    for verdict in (_check(False), _check(None), None):  # not told apart, too few to judge, no check
        assert mark_batch(ok, verdict) == 0
        assert all(r.flags == ["low_confidence"] and r.warnings == ["A close call."] and not r.details for r in ok)


def test_a_flagged_batch_reads_as_such_in_the_table_and_csv():
    from core.evaluation.site_check import mark_batch
    from core.inference.records import PredictionResult
    from core.reports.case_report import results_csv
    from core.reports.prediction_charts import batch_table

    r = PredictionResult(file="a.png", label="glioma", confidence=0.9, probabilities={"glioma": 0.9})
    mark_batch([r], _check(True))
    assert batch_table([r])["Warnings"].iloc[0] == "batch unlike the training images"
    assert "site_shift" in results_csv([r], ["glioma"]).decode()


def test_a_flagged_slice_says_the_set_and_the_probability_may_not_hold_in_its_box_and_report():
    import re

    import pytest

    from core.evaluation.site_check import mark_batch
    from core.inference.records import PredictionResult
    from core.reports import case_report
    from core.reports.conformal import describe_set
    from core.reports.reading import reading_note

    pdfium = pytest.importorskip("pypdfium2")
    sure = PredictionResult(file="a.png", label="glioma", confidence=0.97, coverage=0.95, prediction_set=["glioma"],
                            probabilities={"glioma": 0.97, "meningioma": 0.01, "notumor": 0.01, "pituitary": 0.01})
    plain = describe_set(sure.prediction_set, 0.95, 4)
    assert reading_note(sure) is None
    others = [PredictionResult(file=f"{i}.png", label="glioma") for i in range(29)]
    mark_batch([sure, *others], _check(True))
    shifted = describe_set(sure.prediction_set, 0.95, 4, None, True)
    assert shifted.startswith(plain) and "promise may not hold" in shifted
    assert describe_set(None, 0.95, 4, "too few images", True) == "too few images"  # no set: nothing to qualify
    assert reading_note(sure).startswith("Which signal wins: the site check")
    unsure = PredictionResult(file="b.png", label="glioma", confidence=0.6, flags=["site_shift"],
                              probabilities={"glioma": 0.6, "meningioma": 0.4})
    assert reading_note(unsure) is None  # the warning box says it; "which wins" is for a sure answer

    doc = pdfium.PdfDocument(case_report.case_report_pdf(sure, {"Model run": "r1"}))
    text = re.sub(r"\s+", " ", doc[0].get_textpage().get_text_range())
    assert "batch of 30 images that can be told apart" in text and "promise may not hold" in text

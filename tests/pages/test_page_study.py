"""Predict & Explain, whole-study mode (AppTest): a zip of two series, the picker, strip, slider and chart."""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest
from study_builders import FREE_TEXT, PATIENT, phantom_volume, series_files, zip_of

PROJECT_ROOT = Path(__file__).resolve().parents[2]
PAGE = str(PROJECT_ROOT / "pages" / "5_Predict_and_Explain.py")

pytestmark = pytest.mark.slow


@pytest.fixture(autouse=True)
def _project_on_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(PROJECT_ROOT))


def test_study_mode_end_to_end(tiny_registry):
    vol = phantom_volume(12, size=48)
    data = zip_of(series_files(vol, uid="1.2.3.1", prefix="A") + series_files(vol[:7], uid="1.2.3.2", prefix="B"))
    at = AppTest.from_file(PAGE, default_timeout=180)
    at.session_state["predict_input"] = "Whole study"
    at.run()
    assert not at.exception, at.exception
    assert not any(u.key == "predict_uploads" for u in at.file_uploader)  # the slice uploader is replaced
    at.file_uploader(key="study_uploads").set_value([("two.zip", data, "application/zip")])
    at.run()
    assert not at.exception, at.exception
    series = at.selectbox(key="study_series")
    assert len(series.options) == 2
    result = at.session_state["study_result"][1]
    assert result.study["series"] == "1.2.3.1" and len(result.slices) == 12
    assert any("Study answer" in m.value for m in at.markdown)
    shown = [r for r in result.slices if r.heatmap is not None]
    assert len(shown) == len(result.strip)  # heat maps only for the strip
    at.slider(key="study_slice").set_value(result.used[-1])
    at.toggle(key="study_slice_cam").set_value(True)
    at.run()
    assert not at.exception, at.exception
    assert at.session_state["study_result"][1].slice(result.used[-1]).heatmap is not None
    labels = [b.label for b in at.download_button]
    assert "Study results (CSV)" in labels and "Study report (PDF)" in labels
    at.selectbox(key="study_series").set_value(1)
    at.run()
    assert not at.exception, at.exception
    assert at.session_state["study_result"][1].study["series"] == "1.2.3.2"
    page_text = " ".join(str(e.value) for e in [*at.markdown, *at.caption, *at.warning, *at.info])
    assert PATIENT not in page_text and FREE_TEXT not in page_text

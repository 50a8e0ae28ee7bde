"""The Dataset Explorer's teaching sections: can the class be guessed from image style alone, and
short notes on each tumour type. Each is a function of the open dataset and its scan."""

from __future__ import annotations

import numpy as np
import streamlit as st

from core.classes import display_name
from core.data.datasets import Dataset
from core.data.scan import ScanReport
from core.data.teaching import CLASS_NOTES
from core.reports import charts
from pages import _shared as sh
from pages import _site as site


def tumour_types_section(report: ScanReport) -> None:
    st.caption("Short educational summaries of typical appearance; not diagnostic criteria.")
    cols = st.columns(len(CLASS_NOTES))
    for col, (label, (summary, points)) in zip(cols, CLASS_NOTES.items()):
        with col.container(border=True):
            st.markdown(f"#### {display_name(label)}")
            if label in report.class_means:
                mean = np.clip(report.class_means[label], 0, 255).astype(np.uint8)
                st.image(mean, caption="mean image of this dataset", width=128)
            st.markdown(summary)
            st.markdown("\n".join(f"- {p}" for p in points))


@st.cache_data(show_spinner=False, max_entries=8)
def _shortcut(fingerprint: str, _ds, _report):
    from core.data.shortcut import dataset_shortcut

    return dataset_shortcut(_ds, _report)


def shortcut_section(ds: Dataset, report: ScanReport) -> None:
    st.markdown("**Can the class be guessed from image style alone?**")
    st.caption("A simple classifier sees only twelve numbers per image — brightness and contrast inside the "
               "head, how much of the frame is background, how much the head fills, and how the file was "
               "stored: colour or grayscale, file size, image size, JPEG quality — never the anatomy. "
               "Its accuracy is measured on images it did not learn from (5-fold cross-validation, "
               "near-copies kept together).")
    with st.spinner("Measuring image statistics (about a minute for 5,000 images the first time)…"), \
            sh.shown_errors(stop=True):
        result = _shortcut(ds.fingerprint, ds, report)
    if result.accuracy is None:
        st.info(result.verdict)
    else:
        m = st.columns(4)
        m[0].metric("Accuracy from style alone", f"{result.accuracy:.0%}")
        if result.file_accuracy is not None:
            m[1].metric("From the file facts alone", f"{result.file_accuracy:.0%}",
                        help="Colour mode, file size, image size and JPEG quality only.")
        m[2].metric("Chance (most common class)", f"{result.chance:.0%}",
                    help="Accuracy of always answering the most common class.")
        m[3].metric("Images", f"{result.n_images:,}")
        (st.warning if result.accuracy >= result.chance + 0.10 else st.success)(result.verdict)
    st.markdown("**Average of each statistic per class**")
    st.altair_chart(charts.shortcut_chart(result.per_class), width="content")
    st.caption("Bars far apart mean the classes look different before any tumour is considered: e.g. one "
               "collection's scans are brighter, or frame the head more tightly.")
    site.teaching_story()

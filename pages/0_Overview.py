"""Home: what the workbench is, the workflow, the active dataset and the saved models."""

import streamlit as st

from core.classes import display_name
from core.models.runs import list_runs
from core.reports.disclaimer import DISCLAIMER
from core.reports.run_summary import runs_table
from pages import _nav as nav
from pages import _shared as sh

nav.require_navigation()  # first: a deep link may have started this page without Home.py

st.warning(DISCLAIMER, icon=":material/medical_information:")
st.title("MRI Workbench")
st.markdown(
    "Train, evaluate and explain brain-tumour classifiers on MRI slices, from the browser. "
    "Four classes: **glioma**, **meningioma**, **pituitary tumour** and **no tumour**. "
    "Every step shows its data, so you can see *why* a model scores what it scores."
)

st.subheader("Workflow")
STEPS = [
    ("pages/1_Dataset_Explorer.py", "1 · Explore", ":material/dataset:",
     "Class balance, sample images, duplicates and train/test leakage."),
    ("pages/2_Augmentation_Preview.py", "2 · Augment", ":material/tune:",
     "See exactly what the network is fed; pick plausible transforms."),
    ("pages/3_Train.py", "3 · Train", ":material/model_training:",
     "Train a small CNN or a transfer model on a leakage-free split."),
    ("pages/4_Evaluate.py", "4 · Evaluate", ":material/analytics:",
     "Confusion matrix, per-class metrics and calibration on held-out data."),
    ("pages/5_Predict_and_Explain.py", "5 · Explain", ":material/neurology:",
     "Classify a new slice and see where the model looked (Grad-CAM)."),
]
for row in (STEPS[:3], STEPS[3:]):  # three cards a row: at tablet width (768 px) five cut their titles
    for col, (page, label, icon, text) in zip(st.columns(3), row):
        with col.container(border=True):
            nav.page_link(page, label, icon)
            st.caption(text)

left, right = st.columns(2)
with left:
    st.subheader("Active dataset")
    with sh.shown_errors():
        ds = sh.show_active_dataset_badge()
        if ds.synthetic:
            st.info("The demo holds synthetic phantom slices drawn by code, so every page can be tried "
                    "without patient data. Open a real dataset on the Dataset Explorer page.")
        st.dataframe(sh.listing_counts(ds).rename(columns=display_name), width="content")
with right:
    st.subheader("Saved models")
    runs = list_runs(include_broken=True)  # unusable runs too, with why ("status")
    if not runs:
        st.caption("No trained models yet: train one on the Train page.")
    else:
        # The figure people look for comes first, so a narrow column never hides it off-screen.
        table = runs_table(runs)[["model", "val accuracy", "architecture", "dataset", "split", "status", "created"]]
        st.dataframe(table, hide_index=True, width="stretch",
                     column_config={"model": st.column_config.TextColumn(width="medium"),
                                    "val accuracy": st.column_config.NumberColumn(width="small", format="percent")})
        st.caption("Accuracy on validation data only; see the Evaluate page for held-out test results.")

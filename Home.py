"""Entry point: `streamlit run Home.py`. Declares the pages; each page is its own short script.

Nothing here imports TensorFlow, so the first page paints before TensorFlow has loaded.
"""

from pathlib import Path

import streamlit as st

ASSETS = Path(__file__).parent / "assets"

st.set_page_config(page_title="MRI Workbench", page_icon=str(ASSETS / "icon.svg"), layout="wide")
st.logo(str(ASSETS / "logo.svg"), icon_image=str(ASSETS / "icon.svg"))

pages = {
    "Overview": [
        st.Page("pages/0_Overview.py", title="Home", icon=":material/home:", default=True),
    ],
    "Data": [
        st.Page("pages/1_Dataset_Explorer.py", title="Dataset Explorer", icon=":material/dataset:"),
        st.Page("pages/2_Augmentation_Preview.py", title="Augmentation Preview", icon=":material/tune:"),
    ],
    "Models": [
        st.Page("pages/3_Train.py", title="Train", icon=":material/model_training:"),
        st.Page("pages/4_Evaluate.py", title="Evaluate", icon=":material/analytics:"),
        st.Page("pages/5_Predict_and_Explain.py", title="Predict & Explain", icon=":material/neurology:"),
    ],
}
st.navigation(pages).run()

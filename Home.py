"""Entry point: `streamlit run Home.py`. The frame around every page (title, icon, layout, logo),
then st.navigation over the pages listed in pages/_nav.py; each page is its own short script.

Nothing here imports TensorFlow, so the first page paints before TensorFlow has loaded.
"""

from pathlib import Path

import streamlit as st

from pages._nav import run_navigation

ASSETS = Path(__file__).parent / "assets"

st.set_page_config(page_title="MRI Workbench", page_icon=str(ASSETS / "icon.svg"), layout="wide")
st.logo(str(ASSETS / "logo.svg"), icon_image=str(ASSETS / "icon.svg"))

run_navigation()

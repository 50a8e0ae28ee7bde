"""The app's navigation: its pages by sidebar section, and links between them (public st.navigation API)."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import streamlit as st
from streamlit.errors import StreamlitAPIException

_PAGES_DIR = Path(__file__).parent
_APP_ICON = _PAGES_DIR.parent / "assets" / "icon.svg"
# Set once st.navigation has run in this server process: Streamlit has then left its legacy
# pages/-folder mode for good, and every page run goes through Home.py.
_NAVIGATION_DECLARED = threading.Event()


def app_pages() -> dict[str, list[Any]]:
    """The app's pages by sidebar section; the URL of each comes from its file name
    (``5_Predict_and_Explain.py`` -> ``/Predict_and_Explain``)."""
    def page(file: str, title: str, icon: str, **kwargs: Any) -> Any:
        return st.Page(_PAGES_DIR / file, title=title, icon=icon, **kwargs)

    return {
        "Overview": [page("0_Overview.py", "Home", ":material/home:", default=True)],
        "Data": [
            page("1_Dataset_Explorer.py", "Dataset Explorer", ":material/dataset:"),
            page("2_Augmentation_Preview.py", "Augmentation Preview", ":material/tune:"),
        ],
        "Models": [
            page("3_Train.py", "Train", ":material/model_training:"),
            page("4_Evaluate.py", "Evaluate", ":material/analytics:"),
            page("5_Predict_and_Explain.py", "Predict & Explain", ":material/neurology:"),
        ],
    }


def run_navigation() -> None:
    """Home.py's job: declare the pages (st.navigation) and run the one the address names."""
    current = st.navigation(app_pages())
    _NAVIGATION_DECLARED.set()
    current.run()


def require_navigation() -> None:
    """Every page's first call: send a page that started without Home.py back through it.

    Streamlit serves an app that has a pages/ folder in its legacy multipage mode until some
    session has called st.navigation; from then on it ignores pages/ for every session. So a
    deep link as the first request after a server start runs the page alone: the legacy sidebar
    (every file, no sections), no wide layout. Declaring the app's navigation here switches the
    server over (the documented effect of st.navigation), and the rerun goes through Home.py to
    the same address. A run without a browser address (AppTest runs page files on their own)
    is left alone.
    """
    if _NAVIGATION_DECLARED.is_set() or not st.context.url:
        return
    # The app's own icon first: without one, the browser takes the page's icon as its favicon and
    # fetches ":material/..." icons from fonts.gstatic.com, a request that leaves the server.
    st.set_page_config(page_icon=str(_APP_ICON))
    st.navigation(app_pages())
    _NAVIGATION_DECLARED.set()
    st.rerun()


def page_link(page: str, label: str, icon: str | None = None) -> None:
    """st.page_link, degrading to plain text when the page runs outside the navigation (tests)."""
    try:
        st.page_link(page, label=label, icon=icon)
    except StreamlitAPIException:  # the page is not registered: no st.navigation ran (AppTest)
        st.markdown(f"**{label}**")

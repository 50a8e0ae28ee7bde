"""Browser (end-to-end) tests: a real Streamlit server driven by headless Chromium."""

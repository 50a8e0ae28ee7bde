"""Altair charts and the HTML and PDF reports."""

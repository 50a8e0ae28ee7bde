"""Scoring models: evaluation sets and caches, metrics, robustness to shifts, heat-map localisation."""

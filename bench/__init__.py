"""Benchmarks: ``python -m bench`` measures this machine and writes bench/RESULTS.md."""

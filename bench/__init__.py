"""Benchmarks that print figures (not tests). ``python -m bench`` runs every bench_*.py module."""

"""Fixtures of the collector tests (loaded by conftest.py)."""

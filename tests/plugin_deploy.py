"""Fixtures of the deploy tests (loaded by conftest.py)."""

"""Fixtures of the demo tests (loaded by conftest.py)."""

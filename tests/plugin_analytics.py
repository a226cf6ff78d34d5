"""Fixtures of the analytics tests (loaded by conftest.py)."""

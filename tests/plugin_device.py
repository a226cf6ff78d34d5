"""Fixtures of the device tests (loaded by conftest.py)."""

"""Fixtures of the web tests (loaded by conftest.py)."""

"""Shared fixtures: a real mosquitto on a free port, temp dirs, a fake clock.

Fixtures start real components (mosquitto, SQLite in tmp_path); nothing here is a mock.
Part-specific fixtures live beside their tests or in this file under a heading.
"""

from __future__ import annotations

import pytest

from demo.broker import Mosquitto, find_mosquitto
from manyi.clock import FakeClock

# Each part keeps its shared fixtures in its own plugin module, so parts never edit the same file.
pytest_plugins = ["plugin_device", "plugin_collector", "plugin_analytics", "plugin_web", "plugin_deploy", "plugin_demo",
                  "plugin_faults", "plugin_adversary"]


def pytest_collection_modifyitems(config, items):
    """Fail loudly rather than skip when mosquitto is missing: the suite needs a real broker."""
    if find_mosquitto() is None:
        raise pytest.UsageError("mosquitto is not installed; `.ci/run` installs it (apt-get install mosquitto)")


@pytest.fixture
def broker(tmp_path):
    """A running anonymous mosquitto on a free port; ``broker.port``, ``.stop()``, ``.start()``, ``.kill()``."""
    server = Mosquitto(tmp_path / "mosquitto").start()
    yield server
    server.stop()


@pytest.fixture
def clock():
    """A fake clock at 2026-11-23 09:30 China time that moves only when told."""
    return FakeClock()

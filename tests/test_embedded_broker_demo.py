"""`manyi run` without mosquitto: the embedded amqtt broker, MQTT 3.1.1, votes flow, nothing left behind."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from demo.broker import find_mosquitto
from plugin_collector import count_stored

pytestmark = pytest.mark.slow


def test_find_mosquitto_can_be_told_it_is_missing(monkeypatch):
    monkeypatch.setenv("MANYI_MOSQUITTO", "")
    assert find_mosquitto() is None
    monkeypatch.setenv("MANYI_MOSQUITTO", sys.executable)
    assert find_mosquitto() == sys.executable


def test_broker_mosquitto_without_mosquitto_fails_clearly(tmp_path, monkeypatch):
    monkeypatch.setenv("MANYI_MOSQUITTO", "")
    result = subprocess.run([sys.executable, "-m", "manyi", "run", "--workdir", str(tmp_path / "w"),
                             "--broker", "mosquitto"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "mosquitto is not installed" in result.stderr and "--broker embedded" in result.stderr


@pytest.mark.parametrize("how", ["mosquitto missing, --broker auto", "--broker embedded"])
def test_manyi_run_without_mosquitto_uses_the_embedded_broker_and_votes_flow(how, demo_run, tmp_path, monkeypatch):
    started = time.monotonic()
    extra = ["--broker", "embedded"] if how == "--broker embedded" else []
    if not extra:
        monkeypatch.setenv("MANYI_MOSQUITTO", "")    # as on a machine without mosquitto
    workdir = tmp_path / "city"
    run = demo_run(workdir, "--speed", "60", "--terminals", "60", *extra)
    run.wait_for_line(r"login\s+admin / \S+", timeout=60)
    assert any("EMBEDDED MQTT broker" in line and "FOR THE DEMO ONLY" in line for line in run.lines), run.lines
    run.wait_for_line(r"MQTT broker\s+amqtt at 127\.0\.0\.1:\d+, MQTT 3\.1\.1", timeout=1)
    run.remember_descendants()
    names = " ".join(run.descendants.values())
    assert "demo.embedded_broker" in names and "mosquitto" not in names, names

    seeded = json.loads((workdir / "seeded.json").read_text())["votes"]
    deadline = time.monotonic() + 25
    while time.monotonic() < deadline and count_stored(workdir / "votes.db") < seeded + 30:
        time.sleep(0.5)
    live = count_stored(workdir / "votes.db") - seeded
    assert live >= 30, f"only {live} live votes through the embedded broker"

    run.remember_descendants()
    assert run.interrupt() == 0, "\n".join(run.lines)
    assert run.survivors() == []
    collector_log = (workdir / "logs" / "collector.log").read_text()
    assert "(MQTT 3.1.1)" in collector_log and "'duplicates': 0" in collector_log
    assert "--mqtt-version 3.1.1" in (workdir / "logs" / "simulator.log").read_text()
    assert time.monotonic() - started < 60

"""A real terminal process (``manyi device`` on mock pins) killed with kill -9 keeps its vote."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from device.outbox import Outbox


def start_terminal(config, *presses):
    """Start ``manyi device`` on mock pins; return the process once it has pressed ``presses``."""
    env = dict(os.environ, GPIOZERO_PIN_FACTORY="mock", PYTHONUNBUFFERED="1")
    cmd = [sys.executable, "-m", "manyi", "device", "--config", str(config)]
    for rating in presses:
        cmd += ["--mock-press", rating]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    for _ in presses:
        line = proc.stdout.readline()
        assert line.startswith("pressed "), (line, proc.stderr.read() if proc.poll() is not None else "")
    return proc


@pytest.mark.slow
def test_vote_survives_kill_9_between_press_and_publish(broker, recorder, tmp_path):
    config = tmp_path / "terminal.toml"
    outbox = tmp_path / "outbox.db"
    config.write_text(f'[terminal]\ndevice_id = "hz-crash-w01"\nbroker_port = {broker.port}\n'
                      f'outbox_path = "{outbox}"\nreconnect_max_seconds = 1\n')
    recorder.close()
    broker.stop()          # nothing listens: the vote must wait in the outbox

    first = start_terminal(config, "unsatisfied")
    first.send_signal(signal.SIGKILL)
    first.wait(10)
    first.stdout.close()
    first.stderr.close()
    box = Outbox(outbox, "hz-crash-w01")
    assert (box.depth, box.last_seq) == (1, 1)
    box.close()

    broker.start()
    from plugin_device import Recorder
    rec = Recorder(broker.port, client_id="after-crash")
    second = start_terminal(config, "basic")     # the restarted terminal continues at seq 2
    try:
        assert rec.wait_for(lambda r: {v["seq"] for v in r.votes()} == {1, 2}, timeout=20)
        votes = {v["seq"]: v for v in rec.votes()}
        assert votes[1]["rating"] == "unsatisfied" and votes[2]["rating"] == "basic"
        assert all(v["device"] == "hz-crash-w01" for v in votes.values())
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and Outbox(outbox, "hz-crash-w01").depth:
            time.sleep(0.05)
    finally:
        second.send_signal(signal.SIGTERM)
        second.wait(15)
        second.stdout.close()
        second.stderr.close()
    # A clean stop leaves the retained status offline.
    assert rec.wait_for(lambda r: json.loads(r.payloads("manyi/v1/status/hz-crash-w01")[-1])["online"] is False)
    rec.close()
    assert second.returncode == 0
    box = Outbox(outbox, "hz-crash-w01")
    assert (box.depth, box.last_seq) == (0, 2)

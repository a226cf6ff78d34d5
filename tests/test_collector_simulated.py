"""The collector fed by the real terminal simulator (``manyi simulate``: real terminal code on
gpiozero mock pins, real outboxes) through a real mosquitto, with the collector as a child
process: N votes → exactly N stored; replayed → N duplicates; kill -9 mid-stream of 20,000."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from datetime import datetime, timezone

import pytest
from plugin_collector import ROOT, Publisher, count_stored, stats_json, wait_until

from collector.stores.sqlite import SQLiteStore
from manyi import protocol


def simulate(broker, workdir, terminals: int, votes: int, seed: int = 1) -> subprocess.Popen:
    """Start ``manyi simulate --votes N`` (exits 0 once the broker acknowledged all of them)."""
    return subprocess.Popen(
        [sys.executable, "-m", "manyi", "simulate", "--broker", broker.address, "--terminals", str(terminals),
         "--votes", str(votes), "--seed", str(seed), "--workdir", str(workdir), "--timeout", "300"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finished(proc: subprocess.Popen, timeout: float = 300) -> dict:
    """Wait for the simulator; return its final JSON summary line."""
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, f"simulator failed ({proc.returncode}): {err[-2000:]}"
    return json.loads(out.strip().splitlines()[-1])


def test_n_simulated_votes_stored_exactly_and_a_replay_only_counts_duplicates(broker, collector_process, tmp_path):
    path = tmp_path / "votes.db"
    url = f"sqlite:///{path}"
    collector = collector_process(url)
    summary = finished(simulate(broker, tmp_path / "sim", terminals=25, votes=3000))
    assert summary["votes"] == 3000 and summary["acked"] == 3000
    wait_until(lambda: count_stored(path) == 3000, 30, message="3000 simulated votes stored")
    time.sleep(0.5)
    data = stats_json(url)
    assert data["votes"] == 3000 and data["duplicates"] == 0 and data["missing"] == 0
    assert len(data["terminal_list"]) == 25
    assert sum(t["votes"] for t in data["terminal_list"]) == 3000
    # The very same messages again (rebuilt from what was stored: same device, seq, time text, clock flag).
    with SQLiteStore(path) as store:
        stored = list(store.votes(datetime(1970, 1, 1, tzinfo=timezone.utc), datetime(2100, 1, 1, tzinfo=timezone.utc)))
    replay = [protocol.Vote(v.device, v.seq, v.rating, v.pressed_at, v.clock_ok) for v in stored]
    pub = Publisher(broker.port, "replayer")
    pub.votes(replay)
    pub.close()
    wait_until(lambda: stats_json(url)["duplicates"] == 3000, 60, interval=0.5, message="3000 duplicates")
    assert count_stored(path) == 3000
    assert collector.process.poll() is None


@pytest.mark.slow
def test_collector_killed_mid_stream_of_20000_simulated_votes(broker, collector_process, tmp_path):
    total = 20_000
    path = tmp_path / "votes.db"
    url = f"sqlite:///{path}"
    first = collector_process(url)
    sim = simulate(broker, tmp_path / "sim", terminals=100, votes=total, seed=7)
    wait_until(lambda: count_stored(path) >= total // 4, 180, message="a quarter of the stream stored")
    first.kill()
    at_kill = count_stored(path)
    assert at_kill < total, "the stream was over before the kill; the test proves nothing"
    time.sleep(1.0)                      # the simulator keeps publishing into the broker meanwhile
    collector_process(url)
    summary = finished(sim)
    assert summary["acked"] == total
    wait_until(lambda: count_stored(path) >= total, 180, interval=0.5, message=f"{total} votes stored")
    time.sleep(1.0)
    data = stats_json(url)
    assert count_stored(path) == total and data["votes"] == total
    assert data["missing"] == 0 and all(t["gaps"] == [] for t in data["terminal_list"])
    print(f"stored at kill: {at_kill}; duplicates absorbed after restart: {data['duplicates']}")

"""Nothing lost, nothing doubled: real processes, real faults, one exactly-once check at the end.

mosquitto (persistence on), ``manyi collector`` (SQLite store, shared subscription) and
``manyi simulate --votes`` run as separate processes. While votes stream, the broker is
killed -9 and restarted, the collector is killed -9 and restarted, the store is locked
by another connection for a few seconds, and the simulator is killed -9 and run again
on the same outboxes for the remaining votes. Afterwards every terminal's seqs 1..last
(as its outbox recorded them) are in the store exactly once.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from plugin_collector import ROOT, count_stored, stats_json, wait_until

TERMINALS = 40
TOTAL_VOTES = 10000
FIRST_RUN_VOTES = 9900      # more than the first run has time for: it is killed half-way
RATE = 250                  # votes per second of the first run, so the faults hit a live stream
LOCK_SECONDS = 7.0          # longer than the store's 5 s busy timeout: writes fail and are retried


class Simulator:
    """``manyi simulate --votes N`` as a child process on a fixed workdir."""

    def __init__(self, broker_address: str, workdir: Path, log_dir: Path):
        self.broker_address = broker_address
        self.workdir = workdir
        self.log_dir = log_dir
        self.process: subprocess.Popen | None = None
        self.runs = 0

    def start(self, votes: int, seed: int, rate: float | None = None) -> "Simulator":
        """Start a run that records ``votes`` more votes (each outbox continues its seq)."""
        self.runs += 1
        args = [sys.executable, "-m", "manyi", "simulate", "--broker", self.broker_address,
                "--terminals", str(TERMINALS), "--votes", str(votes), "--seed", str(seed),
                "--workdir", str(self.workdir), "--timeout", "40"]
        if rate is not None:
            args += ["--rate", str(rate)]
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        with open(self.log_dir / f"simulate-{self.runs}.out", "wb") as out, \
                open(self.log_dir / f"simulate-{self.runs}.log", "wb") as err:
            self.process = subprocess.Popen(args, stdout=out, stderr=err, env=env, cwd=self.log_dir)
        return self

    def kill(self) -> None:
        """SIGKILL, as a crash or power cut of the terminals would."""
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def summary(self) -> dict:
        """The final JSON line of the last run."""
        lines = (self.log_dir / f"simulate-{self.runs}.out").read_text().splitlines()
        return json.loads(lines[-1])

    def outboxes(self) -> dict[str, tuple[int, int, int]]:
        """Device -> (last_seq, pending, poisoned) read from each terminal's outbox file."""
        result = {}
        for path in sorted(self.workdir.glob("*.db")):
            with sqlite3.connect(path, timeout=10) as conn:
                last = conn.execute("SELECT value FROM counters WHERE name = 'last_seq'").fetchone()[0]
                pending = conn.execute("SELECT count(*) FROM pending").fetchone()[0]
                poisoned = conn.execute("SELECT count(*) FROM poisoned").fetchone()[0]
            conn.close()
            result[path.stem] = (last, pending, poisoned)
        return result


def grows(path: Path, by: int = 200, timeout: float = 20.0, what: str = "votes to be stored") -> int:
    """Wait until the store holds ``by`` more votes than now; return the new count."""
    start = count_stored(path)
    return wait_until(lambda: (n := count_stored(path)) >= start + by and n, timeout, message=what)


@pytest.mark.slow
@pytest.mark.timeout(150)
def test_every_vote_stored_exactly_once_through_broker_collector_store_and_terminal_crashes(
        broker, collector_process, tmp_path):
    db_path = tmp_path / "votes.db"
    store_url = f"sqlite:///{db_path}"
    collector = collector_process(store_url)
    sim = Simulator(broker.address, tmp_path / "outboxes", tmp_path)
    sim.start(FIRST_RUN_VOTES, seed=1, rate=RATE)
    try:
        grows(db_path, 300, what="the first votes")

        # 1. The broker crashes and comes back on the same port with the same persistence.
        #    Votes published before the collector re-subscribes get PUBACK 0x10 and stay in the outboxes.
        broker.kill()
        time.sleep(1.0)
        broker.start()
        grows(db_path, what="votes after the broker restart")

        # 2. The collector crashes; the broker queues for its persistent session meanwhile.
        collector.kill()
        time.sleep(1.5)
        collector = collector_process(store_url)
        grows(db_path, what="votes after the collector restart")

        # 3. The store is unavailable: another connection holds an exclusive lock.
        locker = sqlite3.connect(db_path, timeout=10, isolation_level=None)
        locker.execute("BEGIN EXCLUSIVE")
        time.sleep(LOCK_SECONDS)
        locker.execute("ROLLBACK")
        locker.close()
        grows(db_path, what="votes after the store lock")
        assert "store is back after" in collector.log()

        # 4. The terminals crash; a new run on the same outboxes sends their backlog and the remaining votes.
        assert sim.process.poll() is None, "the first simulator run ended before it was killed"
        sim.kill()
        recorded = sum(last for last, _p, _x in sim.outboxes().values())
        assert 0 < recorded < TOTAL_VOTES
        sim.start(TOTAL_VOTES - recorded, seed=2)
        assert sim.process.wait(60) == 0, (tmp_path / "simulate-2.log").read_text()[-3000:]
    finally:
        sim.kill()

    summary = sim.summary()
    assert summary["votes"] == TOTAL_VOTES - recorded and summary["pending"] == 0 and summary["poisoned"] == 0
    outboxes = sim.outboxes()
    assert len(outboxes) == TERMINALS
    assert all(pending == 0 and poisoned == 0 for _last, pending, poisoned in outboxes.values())
    expected = {(device, seq) for device, (last, _p, _x) in outboxes.items() for seq in range(1, last + 1)}
    assert len(expected) == TOTAL_VOTES     # the terminals recorded exactly what was asked, over both runs

    deadline = time.monotonic() + 30      # the collector may still be writing its last batches
    while count_stored(db_path) < TOTAL_VOTES and time.monotonic() < deadline:
        time.sleep(0.1)
    with sqlite3.connect(db_path, timeout=10) as conn:
        rows = conn.execute("SELECT device, seq FROM votes").fetchall()
        doubled = conn.execute("SELECT device, seq, count(*) FROM votes GROUP BY device, seq "
                               "HAVING count(*) > 1").fetchall()
    conn.close()
    stored = set(rows)
    assert not doubled and len(rows) == len(stored)
    assert not expected - stored, f"lost: {sorted(expected - stored)[:20]}"
    assert not stored - expected, f"stored but never recorded: {sorted(stored - expected)[:20]}"
    assert len(rows) == TOTAL_VOTES

    stats = stats_json(store_url)
    assert stats["votes"] == TOTAL_VOTES
    assert sum(t["missing"] for t in stats["terminal_list"]) == 0
    assert {t["device"]: t["last_seq"] for t in stats["terminal_list"]} == \
        {device: last for device, (last, _p, _x) in outboxes.items()}
    assert collector.process.poll() is None

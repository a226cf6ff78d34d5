"""A broker crash loses what it acknowledged since its last save: terminals send recent votes again.

mosquitto acknowledges a QoS 1 PUBLISH before it saves it (``autosave_interval``). When
no collector is connected to take the vote at once and the broker is then killed -9,
the votes acknowledged since its last save are gone from the broker, and the terminal
has already deleted them. The terminal keeps the last acknowledged votes (the outbox's
``sent`` table) and, after a lost connection, sends those acknowledged in the last
``REDELIVER_SECONDS`` again; the collector stores each once.
"""

from __future__ import annotations

import sqlite3
import time

import pytest

from device.outbox import Outbox
from plugin_collector import count_stored, stats_json, wait_until
from test_e2e_faults import Simulator

T0 = 1_800_000_000.0


def add(outbox: Outbox, n: int) -> None:
    """Record ``n`` votes."""
    for _ in range(n):
        outbox.add("basic", "2026-11-23T09:30:00.000+08:00", True)


def test_acknowledged_votes_are_kept_for_a_while_and_requeued_from_a_time_on(tmp_path):
    outbox = Outbox(tmp_path / "o.db", "hz-test-w01", keep_sent=3)
    add(outbox, 5)
    pending = {row.seq: row.payload for row in outbox.pending()}
    assert outbox.acknowledge_many([1, 2], at=T0) == 2
    assert outbox.acknowledge_many([3, 4], at=T0 + 60) == 2
    outbox.poison(5, 0x87, "Not authorized", "2026-11-23T09:31:00.000+08:00")
    assert outbox.depth == 0
    # keep_sent=3: seq 1 is forgotten; 2 is older than the window; 3 and 4 come back, exactly the same bytes.
    assert outbox.requeue_sent(T0 + 30) == [3, 4]
    assert {row.seq: row.payload for row in outbox.pending()} == {3: pending[3], 4: pending[4]}
    assert outbox.requeue_sent(T0) == [2]                   # already pending ones are not doubled
    assert [row.seq for row in outbox.pending()] == [2, 3, 4]
    # Acknowledged again later: the first acknowledgement time stays, so they do not come back for ever.
    assert outbox.acknowledge_many([2, 3, 4], at=T0 + 600) == 3
    assert outbox.requeue_sent(T0 + 120) == []
    assert outbox.last_seq == 5 and outbox.poisoned_count == 1
    outbox.close()


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_broker_killed_while_the_collector_is_away_loses_nothing(broker, collector_process, tmp_path):
    db_path = tmp_path / "votes.db"
    store_url = f"sqlite:///{db_path}"
    collector = collector_process(store_url)
    sim = Simulator(broker.address, tmp_path / "outboxes", tmp_path)
    sim.start(3000, seed=3, rate=300)
    try:
        wait_until(lambda: count_stored(db_path) >= 300, 20, message="the first votes")
        collector.kill()
        time.sleep(2.0)                  # the broker acknowledges and queues about 600 votes for the collector
        broker.kill()                    # ... and loses those since its last autosave (1 s)
        time.sleep(0.5)
        broker.start()
        collector = collector_process(store_url)
        assert sim.process.wait(60) == 0, (tmp_path / "simulate-1.log").read_text()[-3000:]
    finally:
        sim.kill()
    outboxes = sim.outboxes()
    expected = {(device, seq) for device, (last, _p, _x) in outboxes.items() for seq in range(1, last + 1)}
    assert len(expected) == 3000
    deadline = time.monotonic() + 30
    while count_stored(db_path) < 3000 and time.monotonic() < deadline:
        time.sleep(0.1)
    with sqlite3.connect(db_path, timeout=10) as conn:
        stored = set(conn.execute("SELECT device, seq FROM votes").fetchall())
    conn.close()
    assert not expected - stored, f"lost {len(expected - stored)}: {sorted(expected - stored)[:10]}"
    assert stored == expected
    stats = stats_json(store_url)
    assert stats["votes"] == 3000 and sum(t["missing"] for t in stats["terminal_list"]) == 0
    assert "sending again" in (tmp_path / "simulate-1.log").read_text()

"""A broker crash loses what it acknowledged since its last save: terminals send recent votes again.

mosquitto acknowledges a QoS 1 PUBLISH before it saves it (``autosave_interval``). When
no collector is connected to take the vote at once and the broker is then killed -9,
the votes acknowledged since its last save are gone from the broker, and the terminal
has already deleted them. The terminal keeps the last acknowledged votes (the outbox's
``sent`` table) and, after a lost connection, sends those acknowledged in the last
``REDELIVER_SECONDS`` again; the collector stores each once.

The end-to-end proof (broker killed -9 while the collector is away) is the fault matrix's
scenario "1 broker kill -9, collector away" in tests/test_fault_matrix.py.
"""

from __future__ import annotations

from device.outbox import Outbox

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

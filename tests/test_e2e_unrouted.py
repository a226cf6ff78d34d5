"""A vote the broker could not route (PUBACK 0x10) stays in the terminal's outbox until a subscriber appears."""

from __future__ import annotations

import json
import time

from device.publisher import NO_MATCHING_SUBSCRIBERS

from plugin_device import Recorder


def test_unrouted_vote_stays_in_the_outbox_and_reaches_a_later_subscriber_unchanged(make_rig, broker):
    rig = make_rig(reconnect_min_seconds=0.2, reconnect_max_seconds=1.0)
    publisher = rig.connect(broker.port)
    assert publisher.connected.wait(5)
    rig.tap()
    (kept,) = rig.outbox.pending()

    # Nobody subscribes to the vote topic: the broker answers 0x10, the vote must stay.
    assert rig.run_until(lambda: publisher.undelivered >= 1)
    assert NO_MATCHING_SUBSCRIBERS == 0x10
    assert rig.outbox.depth == 1 and publisher.acked == 0 and rig.outbox.poisoned_count == 0
    assert rig.outbox.pending() == [kept]

    recorder = Recorder(broker.port, topics=("manyi/v1/votes/#",))
    try:
        assert rig.run_until(lambda: rig.outbox.depth == 0, timeout=10)
        assert recorder.wait_for(lambda r: r.payloads("manyi/v1/votes/"), timeout=5)
        assert recorder.payloads("manyi/v1/votes/") == [kept.payload]   # exactly the same bytes, once
        assert publisher.acked == 1 and rig.outbox.poisoned_count == 0
    finally:
        recorder.close()


def test_unrouted_votes_back_off_instead_of_flooding_the_broker(make_rig, broker):
    rig = make_rig(reconnect_min_seconds=0.25, reconnect_max_seconds=2.0, lockout_seconds=0.5)
    publisher = rig.connect(broker.port)
    assert publisher.connected.wait(5)
    for _ in range(5):
        rig.tap()
        rig.clock.advance(1.0)
    assert rig.outbox.depth == 5
    start = time.monotonic()
    rig.run_until(lambda: time.monotonic() - start > 2.5, timeout=5)
    # Holds of 0.25, 0.5, 1, 2 s: at most 4 rounds in 2.5 s, and every vote is still pending, in order.
    assert 1 <= publisher.undelivered_retries <= 4
    assert [row.seq for row in rig.outbox.pending()] == [1, 2, 3, 4, 5]
    assert publisher.acked == 0 and rig.outbox.poisoned_count == 0

    recorder = Recorder(broker.port, topics=("$share/manyi/manyi/v1/votes/+",), client_id="test-shared")
    try:
        assert rig.run_until(lambda: rig.outbox.depth == 0, timeout=10)
        assert recorder.wait_for(lambda r: len(r.messages) >= 5, timeout=5)
        seqs = sorted(json.loads(p)["seq"] for _t, p, _r in recorder.messages)
        assert seqs[:5] == [1, 2, 3, 4, 5] and set(seqs) == {1, 2, 3, 4, 5}
        assert publisher.acked == 5
    finally:
        recorder.close()

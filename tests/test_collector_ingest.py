"""The collector against a real mosquitto: N votes in, exactly N stored; redelivery is a duplicate;
bad messages become dead letters and the loop lives on; clocks are replaced, never dropped; statuses."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from plugin_collector import make_vote, stream_of_votes, wait_until

from collector.stores import FLAG_CLOCK_REPLACED
from manyi import protocol


def test_n_votes_stored_exactly_once_and_republish_counts_duplicates(running_collector, vote_store, publisher):
    votes = stream_of_votes(500, terminals=10)
    publisher.votes(votes)
    wait_until(lambda: vote_store.stats()["votes"] == 500, 30, message="500 votes stored")
    publisher.votes(votes)
    wait_until(lambda: vote_store.stats()["duplicates"] == 500, 30, message="500 duplicates counted")
    stats = vote_store.stats()
    assert stats["votes"] == 500
    assert stats["missing"] == 0 and vote_store.gaps() == []
    assert len(vote_store.feed(limit=1000)) == 500
    assert {t.max_seq for t in vote_store.terminals()} == {50}


def test_bad_messages_become_dead_letters_and_the_loop_survives(running_collector, vote_store, publisher):
    device = "hz-371702001-w01"
    topic = protocol.vote_topic(device)
    good = make_vote(device, 1).to_dict()
    bad = {
        "bad_json": b"{not json",
        "bad_field": protocol.json.dumps({**good, "seq": "7"}).encode(),
        "bad_rating": protocol.json.dumps({**good, "rating": "great"}).encode(),
        "too_large": protocol.json.dumps({**good, "pad": "x" * 2000}).encode(),
        "bad_version": protocol.json.dumps({**good, "v": 2}).encode(),
        "missing_field": protocol.json.dumps({k: v for k, v in good.items() if k != "clock_ok"}).encode(),
    }
    for payload in bad.values():
        publisher.send(topic, payload).wait_for_publish(5)
    forged = make_vote("hz-371702002-w01", 1)
    publisher.send(topic, forged.to_json()).wait_for_publish(5)       # device in payload ≠ topic
    publisher.votes([make_vote(device, 1)])                            # a later good vote
    wait_until(lambda: vote_store.stats()["votes"] == 1, 10, message="the good vote")
    wait_until(lambda: sum(vote_store.dead_letter_counts().values()) == 7, 10, message="7 dead letters")
    counts = vote_store.dead_letter_counts()
    assert counts == {**{reason: 1 for reason in bad}, "device_mismatch": 1}
    letters = vote_store.dead_letters(reason="bad_json")
    assert letters[0].payload == b"{not json" and letters[0].topic == topic
    assert "rating" in vote_store.dead_letters(reason="bad_rating")[0].detail


def test_implausible_clock_is_replaced_by_receipt_time_and_marked(running_collector, vote_store, publisher):
    device = "hz-371702001-w01"
    before = datetime.now(timezone.utc)
    votes = [
        make_vote(device, 1, clock_ok=False, pressed_at=datetime(1970, 1, 1, 0, 5, tzinfo=timezone.utc)),
        make_vote(device, 2, pressed_at=datetime(2020, 5, 1, tzinfo=timezone.utc)),       # before 2024
        make_vote(device, 3, pressed_at=before + timedelta(hours=2)),                    # in the future
        make_vote(device, 4, pressed_at=before - timedelta(minutes=3)),                  # fine
    ]
    publisher.votes(votes)
    wait_until(lambda: vote_store.stats()["votes"] == 4, 10, message="4 votes")
    stored = {v.seq: v for v in vote_store.votes(datetime(1960, 1, 1, tzinfo=timezone.utc),
                                                 datetime(2100, 1, 1, tzinfo=timezone.utc))}
    after = datetime.now(timezone.utc)
    for seq in (1, 2, 3):
        assert FLAG_CLOCK_REPLACED in stored[seq].flags
        assert before <= stored[seq].time <= after and stored[seq].time == stored[seq].received_at
        assert stored[seq].pressed_at == votes[seq - 1].pressed_at          # the terminal's text is kept
    assert stored[1].clock_ok is False
    assert stored[4].flags == frozenset() and stored[4].time == votes[3].pressed_datetime()


def test_status_messages_and_the_will_track_online_state(running_collector, vote_store, publisher, broker):
    import subprocess
    import sys

    from plugin_collector import ROOT

    device = "hz-371702001-w01"
    online = protocol.Status(device=device, online=True, firmware="1.2.0", outbox_depth=3, last_seq=9,
                             clock_ok=True, sent_at=protocol.format_timestamp(datetime.now(timezone.utc)))
    # A terminal-like MQTT client in its own process: online status, offline will, then killed.
    script = (
        "import sys, time\n"
        "import paho.mqtt.client as mqtt\n"
        "from paho.mqtt.enums import CallbackAPIVersion\n"
        "from manyi import protocol\n"
        f"device = {device!r}\n"
        "c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=device, protocol=mqtt.MQTTv5)\n"
        "c.will_set(protocol.status_topic(device), protocol.Status(device, False).to_json(), qos=1, retain=True)\n"
        f"c.connect('127.0.0.1', {broker.port}, keepalive=5)\n"
        "c.loop_start()\n"
        f"c.publish(protocol.status_topic(device), {online.to_json()!r}, qos=1, retain=True).wait_for_publish(5)\n"
        "print('online', flush=True)\n"
        "time.sleep(60)\n")
    terminal = subprocess.Popen([sys.executable, "-c", script], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert terminal.stdout.readline().strip() == "online"

        def state():
            return {t.device: t for t in vote_store.terminals()}.get(device)

        status = wait_until(lambda: (s := state()) and s.online and s, 10, message="online status")
        assert status.firmware == "1.2.0" and status.outbox_depth == 3 and status.reported_last_seq == 9
        assert status.last_seen is not None
        terminal.kill()                                   # no DISCONNECT: the broker publishes the will
        terminal.wait()
        status = wait_until(lambda: (s := state()) and s.online is False and s, 20, message="offline via will")
        assert status.firmware == "1.2.0"                 # fields the will does not carry keep their value
    finally:
        terminal.kill()
        terminal.wait()
    # An invalid status is a dead letter too.
    publisher.send(protocol.status_topic(device), b'{"v":1,"device":"hz-371702001-w01","online":"yes"}').wait_for_publish(5)
    wait_until(lambda: vote_store.dead_letter_counts().get("bad_field") == 1, 10, message="status dead letter")


def test_skipped_seq_shows_as_gap_in_stats(running_collector, vote_store, publisher):
    from plugin_collector import stats_json

    device = "hz-371702001-w01"
    publisher.votes([make_vote(device, seq) for seq in (1, 2, 3, 6, 7, 10)])
    wait_until(lambda: vote_store.stats()["votes"] == 6, 10, message="6 votes")
    data = stats_json(vote_store.url)
    row = next(t for t in data["terminal_list"] if t["device"] == device)
    assert row["last_seq"] == 10 and row["missing"] == 4 and row["gaps"] == [[4, 5], [8, 9]]
    assert data["missing"] == 4


def test_burst_of_one_rating_is_flagged_and_excluded(running_collector, vote_store, publisher):
    device = "hz-371702001-w01"
    start = datetime.now(timezone.utc) - timedelta(minutes=10)
    votes = [make_vote(device, seq, protocol.UNSATISFIED, start + timedelta(seconds=2 * seq)) for seq in range(1, 9)]
    publisher.votes(votes)
    wait_until(lambda: vote_store.stats()["votes"] == 8, 10, message="8 votes")
    rows = vote_store.counts(start - timedelta(hours=1), start + timedelta(hours=1))
    assert sum(r.count for r in rows) == 5 and sum(r.excluded for r in rows) == 3


def test_accepted_vote_reaches_a_feed_poller_within_one_second(running_collector, vote_store, publisher):
    import time

    from collector.stores.sqlite import SQLiteStore

    reader = SQLiteStore(vote_store.path)            # the control center's own connection
    cursor = "0"
    latencies = []
    for seq in range(1, 6):
        sent = time.monotonic()
        publisher.votes([make_vote("hz-371702001-w01", seq)])
        while True:
            items = reader.feed(after=cursor)
            if items:
                cursor = items[-1].cursor
                latencies.append(time.monotonic() - sent)
                break
            assert time.monotonic() - sent < 2, "vote not in the feed after 2 s"
            time.sleep(0.3)                           # the control center's poll interval
    reader.close()
    assert max(latencies) < 1.0, latencies


def test_two_collectors_share_the_load_without_doubling(broker, collector_settings, vote_store, publisher):
    import dataclasses
    import time

    from collector.service import Collector

    collectors = [Collector(dataclasses.replace(collector_settings, client_id=f"c{i}", shared_subscription=True,
                                                shared_group="load-7c2e"), vote_store).start()
                  for i in (1, 2)]
    try:
        assert all(c.wait_connected(10) for c in collectors)
        time.sleep(0.3)
        publisher.votes(stream_of_votes(2000, terminals=20))
        wait_until(lambda: vote_store.stats()["votes"] == 2000, 30, message="2000 votes")
        time.sleep(0.5)
        assert vote_store.stats()["votes"] == 2000 and vote_store.stats()["duplicates"] == 0
        assert all(c.counters["stored"] > 0 for c in collectors), [c.counters for c in collectors]
    finally:
        for c in collectors:
            c.stop()

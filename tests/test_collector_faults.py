"""Fault tests with a real mosquitto and a real collector process: kill -9 mid-stream, store unavailable."""

from __future__ import annotations

import sqlite3
import threading
import time

import pytest
from plugin_collector import Publisher, count_stored, stats_json, stream_of_votes, wait_until

from collector.stores.sqlite import SQLiteStore

TOTAL = 20_000


@pytest.mark.slow
def test_collector_killed_mid_stream_loses_and_doubles_nothing(broker, collector_process, tmp_path):
    path = tmp_path / "votes.db"
    url = f"sqlite:///{path}"
    first = collector_process(url)
    votes = stream_of_votes(TOTAL, terminals=50)
    pub = Publisher(broker.port)
    sender = threading.Thread(target=pub.votes, args=(votes, 300), daemon=True)
    sender.start()
    wait_until(lambda: count_stored(path) >= TOTAL // 4, 120, message="a quarter of the stream stored")
    first.kill()
    at_kill = count_stored(path)
    assert at_kill < TOTAL, "the stream was over before the kill; the test proves nothing"
    time.sleep(0.5)
    collector_process(url)
    sender.join(300)
    pub.close()
    wait_until(lambda: count_stored(path) >= TOTAL, 180, interval=0.5, message=f"{TOTAL} votes stored")
    time.sleep(1.0)  # anything still in flight would show as an extra row now
    data = stats_json(url)
    assert count_stored(path) == TOTAL and data["votes"] == TOTAL
    assert data["missing"] == 0 and all(t["gaps"] == [] for t in data["terminal_list"])
    assert sum(t["votes"] for t in data["terminal_list"]) == TOTAL
    print(f"stored at kill: {at_kill}, duplicates after restart: {data['duplicates']}")


@pytest.mark.slow
def test_store_unavailable_for_a_while_then_nothing_is_lost(broker, collector_process, tmp_path):
    path = tmp_path / "votes.db"
    url = f"sqlite:///{path}"
    SQLiteStore(path).close()          # create the schema before locking it
    proc = collector_process(url)
    pub = Publisher(broker.port)
    votes = stream_of_votes(3000, terminals=10)
    pub.votes(votes[:1000])
    wait_until(lambda: count_stored(path) == 1000, 30, message="first 1000 votes")

    blocker = sqlite3.connect(path, isolation_level=None, timeout=5)
    blocker.execute("BEGIN EXCLUSIVE")        # another writer holds the database: every write fails
    try:
        pub.votes(votes[1000:])               # the broker takes them; the collector cannot store them
        wait_until(lambda: "retrying in" in proc.log(), 30, message="the collector to report store failures")
        time.sleep(2.0)
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    wait_until(lambda: count_stored(path) == 3000, 60, interval=0.2, message="the backlog after the store returned")
    assert "store is back" in proc.log()
    assert proc.process.poll() is None
    assert proc.terminate() == 0              # SIGTERM: graceful stop, exit 0
    data = stats_json(url)
    assert data["votes"] == 3000 and data["missing"] == 0
    pub.close()


@pytest.mark.parametrize("shared", [True, False])
def test_collector_reconnects_after_the_broker_restarts(broker, collector_settings, vote_store, shared):
    import dataclasses

    from collector.service import Collector

    collector = Collector(dataclasses.replace(collector_settings, shared_subscription=shared), vote_store).start()
    try:
        assert collector.wait_connected(10)
        time.sleep(0.3)
        votes = stream_of_votes(1000, terminals=10)
        pub = Publisher(broker.port, "before-restart")
        pub.votes(votes[:500])
        pub.close()
        wait_until(lambda: vote_store.stats()["votes"] == 500, 30, message="first 500 votes")
        broker.restart()                                   # same port, same persistence
        if shared:
            # mosquitto 2.0 forgets a persistent session's shared subscription over a restart:
            # only what is published after the collector re-subscribed reaches it.
            wait_until(lambda: collector.connections == 2, 30, message="the collector to reconnect")
            time.sleep(0.3)
        pub = Publisher(broker.port, "after-restart")
        pub.votes(votes[500:])
        pub.close()
        wait_until(lambda: vote_store.stats()["votes"] == 1000, 60, interval=0.2, message="votes after the restart")
        assert collector.connections == 2
    finally:
        collector.stop()


def test_votes_wait_at_the_broker_while_an_influx_store_is_unreachable(broker, collector_settings, vote_store):
    """A real InfluxStore on a port where nothing listens: nothing is acknowledged, so a later
    collector with the same session gets every vote."""
    from collector.service import Collector
    from collector.stores.influx import InfluxStore
    from manyi.broker import free_port

    dead = InfluxStore(f"http://127.0.0.1:{free_port()}", "heze", "manyi", "token", timeout_ms=1000)
    failing = Collector(collector_settings, dead).start()
    try:
        assert failing.wait_connected(10)
        time.sleep(0.3)
        pub = Publisher(broker.port)
        pub.votes(stream_of_votes(200, terminals=4))
        pub.close()
        wait_until(lambda: failing.counters["store_failures"] >= 2, 30, message="failed writes")
        assert failing.counters["acked"] == 0
    finally:
        failing.stop()
        dead.close()
    recovered = Collector(collector_settings, vote_store).start()      # same client id: same session
    try:
        wait_until(lambda: vote_store.stats()["votes"] == 200, 30, message="the backlog in the SQLite store")
    finally:
        recovered.stop()

"""Fault tests of the in-process collector: broker restart, unreachable InfluxDB.

The process-level faults (collector kill -9 mid-stream, store locked, read-only, disk full)
are in the fault matrix, tests/test_fault_matrix.py.
"""

from __future__ import annotations

import time

import pytest
from plugin_collector import Publisher, stream_of_votes, wait_until


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
    from demo.broker import free_port

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

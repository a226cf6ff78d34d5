"""Benchmark: the collector end to end and the SQLite store's write path.

1. ``store``: SQLiteStore.write() of ``--store-votes`` votes in batches of 500
   (votes per second), then the same votes again (all duplicates).
2. ``pipeline``: a real mosquitto, the real Collector (in this process, SQLite in a
   temp dir) and a plain QoS 1 publisher: ``--votes`` votes from 100 terminals;
   prints publish time, time until the last vote is stored, votes per second, and the
   feed latency of single votes (publish → visible to a separate reader polling
   every 0.3 s, like the control center).

Run: ``python -m bench.bench_collector`` (or ``python -m bench collector``).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path


def bench_store(n: int, workdir: Path) -> None:
    """Print SQLite write throughput for new votes and for duplicates."""
    from collector.stores import StoredVote
    from collector.stores.sqlite import SQLiteStore

    start = datetime(2026, 7, 1, 1, tzinfo=timezone.utc)
    votes = [StoredVote(f"hz-3717{i % 500:05d}-w01", i // 500 + 1, ("satisfied", "basic", "unsatisfied")[i % 3],
                        start + timedelta(seconds=17 * i), start, "", True) for i in range(n)]
    store = SQLiteStore(workdir / "bench-store.db")
    for label in ("new", "duplicates"):
        began = time.perf_counter()
        for i in range(0, n, 500):
            store.write(votes[i:i + 500])
        took = time.perf_counter() - began
        print(f"store write {label:<10}: {n} votes in {took:.2f} s = {n / took:,.0f} votes/s")
    stats = store.stats()
    print(f"store after: votes {stats['votes']}, duplicates {stats['duplicates']}")
    store.close()


def bench_pipeline(n: int, workdir: Path) -> None:
    """Print end-to-end figures through mosquitto and the collector."""
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    from collector.config import CollectorSettings
    from collector.service import Collector
    from collector.stores.sqlite import SQLiteStore
    from manyi import protocol
    from manyi.broker import Mosquitto

    with Mosquitto(workdir / "mosquitto") as broker:
        store = SQLiteStore(workdir / "pipeline.db")
        collector = Collector(CollectorSettings(broker=broker.address, store=store.url, client_id="bench"), store)
        collector.start()
        collector.wait_connected(10)
        time.sleep(0.3)
        pub = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bench-pub", protocol=mqtt.MQTTv5)
        pub.max_inflight_messages_set(1000)
        pub.connect("127.0.0.1", broker.port)
        pub.loop_start()
        now = datetime.now(timezone.utc) - timedelta(days=1)
        votes = [protocol.Vote(f"hz-3717{i % 100:05d}-w01", i // 100 + 1, protocol.RATINGS[i % 3],
                               protocol.format_timestamp(now + timedelta(seconds=i)), True) for i in range(n)]
        began = time.perf_counter()
        infos = [pub.publish(v.topic, v.to_json(), qos=1) for v in votes]
        for info in infos:
            info.wait_for_publish(120)
        published = time.perf_counter() - began
        while store.stats()["votes"] < n and time.perf_counter() - began < 300:
            time.sleep(0.05)
        stored = time.perf_counter() - began
        print(f"pipeline: {n} votes published in {published:.2f} s, all stored after {stored:.2f} s "
              f"= {n / stored:,.0f} votes/s (store has {store.stats()['votes']})")

        reader = SQLiteStore(store.path)
        cursor = reader.feed(limit=1)[-1].cursor
        latencies = []
        for i in range(20):
            vote = protocol.Vote("hz-371799999-w01", i + 1, protocol.SATISFIED,
                                 protocol.format_timestamp(datetime.now(timezone.utc)), True)
            sent = time.perf_counter()
            pub.publish(vote.topic, vote.to_json(), qos=1)
            while True:
                items = reader.feed(after=cursor)
                if items:
                    cursor = items[-1].cursor
                    latencies.append(time.perf_counter() - sent)
                    break
                time.sleep(0.3)
        print(f"feed latency (poll every 0.3 s): median {statistics.median(latencies) * 1000:.0f} ms, "
              f"max {max(latencies) * 1000:.0f} ms")
        pub.disconnect()
        pub.loop_stop()
        collector.stop()
        reader.close()
        store.close()


def main(argv: list[str] | None = None) -> int:
    """Run both parts and print their figures."""
    parser = argparse.ArgumentParser(prog="bench_collector")
    parser.add_argument("--store-votes", type=int, default=100_000)
    parser.add_argument("--votes", type=int, default=20_000)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        bench_store(args.store_votes, Path(tmp))
        bench_pipeline(args.votes, Path(tmp))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

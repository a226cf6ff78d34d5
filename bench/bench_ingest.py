"""Benchmark: ingest of votes through a real mosquitto into the collector and the SQLite store.

Votes are real protocol v1 payloads (``Vote.to_json``) from simulated terminals, published
with QoS 1 on ``manyi/v1/votes/<device>`` by several publishing processes (the C client
``mosquitto_pub -l``, one process and one connection per terminal; paho processes when
mosquitto_pub is missing). Three consumers, each in a process of its own, get the same
messages with the same session shape (MQTT 5, fixed client id, clean_start False, session
expiry 7 days, receive maximum 1000, a ``$share/<group>/manyi/v1/votes/+`` subscription, QoS 1):

* ``ceiling``: a bare paho subscriber that only counts (paho acks each message after the
  callback). Nothing that uses paho can be faster.
* ``common``: the common way, a paho subscriber that parses the JSON and inserts and commits
  one row per message into SQLite with Python's defaults (rollback journal, synchronous
  FULL: as durable as our store; ``--common-journal wal`` gives it our store's WAL), and
  paho acks after the callback, so it also acks after commit.
* ``collector``: the real :class:`collector.service.Collector` with the real SQLite store,
  validation, dedupe, roll-up, and acks after commit, with the default settings.

Figures (one run, same machine):

1. sustained votes/s: the consumer is connected, the publishers send ``--votes`` votes at
   full speed; rate = votes stored / (last stored - first published). The publishers must
   finish well before the consumer (the broker then holds a backlog, so the consumer is the
   bottleneck); a row where they did not is marked "publisher-bound".
2. backlog drain: every consumer's persistent session subscribes, then stops; ``--backlog``
   votes are published once (queued by mosquitto for each session: the same messages for
   all); then each consumer starts in turn; rate = votes stored / (last stored - connect).
   The publishers are done before the consumer starts, so this is the consumer alone.
   The common way is given ``--common-seconds`` per phase (it is slow) and its rate is
   over what it did in that time.
3. the publishers alone: the backlog fill (no consumer running) in votes/s; it must be well
   above every consumer's rate.
4. the store alone: ``SQLiteStore.write`` in batches of 500 (new votes, then duplicates),
   the upper bound of the collector's rate (``--store-only`` prints just this).

(This module replaces bench_collector.py: its pipeline figure is the sustained figure here,
its store figure is figure 4, and the feed latency is measured by the latency benchmark.)

Targets (issue 8): collector >= 0.8x the ceiling, >= 10x the common way.

Run: ``python -m bench ingest`` (or ``python -m bench.bench_ingest [--quick]``), ~2-3 min.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

KINDS = ("ceiling", "common", "collector")
SESSION_EXPIRY = 7 * 86400
RECEIVE_MAXIMUM = 1000          # the collector's default, given to the baselines too
# The production broker's settings that matter here (deploy/mosquitto/manyi.conf).
BROKER_CONFIG = ["autosave_interval 60", "max_inflight_messages 1000", "max_queued_bytes 0"]


# --- the messages -------------------------------------------------------------------
def make_votes(count: int, terminals: int, first_seq: int = 1) -> dict[str, list[bytes]]:
    """``count`` real wire payloads spread over ``terminals`` devices: device → payloads in seq order."""
    from manyi import protocol

    start = datetime.now(timezone.utc) - timedelta(days=20)
    out: dict[str, list[bytes]] = {}
    for i in range(count):
        device = f"hz-3717{i % terminals:05d}-w01"
        seq = first_seq + i // terminals
        # One vote a minute per terminal: realistic, and never a burst (misuse) flag.
        pressed = (start + timedelta(minutes=i // terminals)).astimezone(protocol.CHINA_TZ)
        vote = protocol.Vote(device, seq, protocol.RATINGS[(i * 7) % 3], protocol.format_timestamp(pressed), True)
        out.setdefault(device, []).append(vote.to_json())
    return out


# --- publishers ---------------------------------------------------------------------
def _paho_publish(port: int, jobs: list[tuple[str, list[bytes]]]) -> None:
    """Child process: publish each (topic, payloads) with QoS 1 and wait for every PUBACK."""
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"bench-pub-{os.getpid()}", protocol=mqtt.MQTTv5)
    client.max_inflight_messages_set(100)
    client.max_queued_messages_set(0)
    client.connect("127.0.0.1", port)
    client.loop_start()
    infos = [client.publish(topic, payload, qos=1) for topic, payloads in jobs for payload in payloads]
    for info in infos:
        info.wait_for_publish(300)
    client.disconnect()
    client.loop_stop()


class Publishers:
    """Publish a set of votes from several processes at once; ``run()`` returns the seconds it took."""

    def __init__(self, votes: dict[str, list[bytes]], workdir: Path, tool: str):
        from manyi import protocol

        self.tool = tool
        self.count = sum(len(p) for p in votes.values())
        self.jobs = [(protocol.vote_topic(device), payloads) for device, payloads in votes.items()]
        self.files: list[tuple[str, Path]] = []
        if tool == "mosquitto_pub":
            workdir.mkdir(parents=True, exist_ok=True)
            for topic, payloads in self.jobs:
                path = workdir / (topic.rsplit("/", 1)[-1] + ".lines")
                path.write_bytes(b"\n".join(payloads) + b"\n")
                self.files.append((topic, path))

    def start(self, port: int) -> list:
        """Start the publishing processes; returns them (``wait`` joins them)."""
        if self.tool == "mosquitto_pub":
            exe = shutil.which("mosquitto_pub")
            procs = []
            for topic, path in self.files:
                with path.open("rb") as lines:
                    procs.append(subprocess.Popen(
                        [exe, "-h", "127.0.0.1", "-p", str(port), "-V", "mqttv5", "-q", "1", "-M", "100",
                         "-t", topic, "-l", "-i", f"bench-pub-{topic.rsplit('/', 1)[-1]}"],
                        stdin=lines, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE))
            return procs
        ctx = multiprocessing.get_context("spawn")
        n = min(4, len(self.jobs))
        procs = [ctx.Process(target=_paho_publish, args=(port, self.jobs[i::n]), daemon=True) for i in range(n)]
        for p in procs:
            p.start()
        return procs

    @staticmethod
    def wait(procs: list) -> None:
        """Wait until every publisher has exited; raise when one failed."""
        for p in procs:
            if isinstance(p, subprocess.Popen):
                _, err = p.communicate(timeout=600)
                if p.returncode:
                    raise RuntimeError(f"mosquitto_pub failed ({p.returncode}): {err.decode(errors='replace')}")
            else:
                p.join(600)
                if p.exitcode:
                    raise RuntimeError(f"paho publisher failed with exit code {p.exitcode}")


# --- consumers (each runs in a child process) -----------------------------------------
def _baseline_client(kind: str, port: int, client_id: str, on_message):
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties
    from paho.mqtt.subscribeoptions import SubscribeOptions

    from manyi import protocol

    import threading

    subscribed = threading.Event()
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)

    def on_connect(client, userdata, flags, reason_code, properties):
        client.subscribe([(f"$share/bench-{kind}/{protocol.VOTES_SUBSCRIPTION}", SubscribeOptions(qos=1))])

    client.on_connect = on_connect
    client.on_subscribe = lambda *args: subscribed.set()
    client.on_message = on_message
    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = SESSION_EXPIRY
    props.ReceiveMaximum = RECEIVE_MAXIMUM

    def start():
        client.connect("127.0.0.1", port, clean_start=False, properties=props)
        client.loop_start()

    def stop():
        client.disconnect()
        client.loop_stop()

    return start, stop, subscribed


class _Tally:
    """What a consumer counts: messages done, and when the first and the last were done."""

    def __init__(self):
        self.count = 0
        self.first = 0.0
        self.last = 0.0

    def tick(self, n: int = 1) -> None:
        """Count ``n`` messages done now."""
        now = time.monotonic()
        if not self.count:
            self.first = now
        self.count += n
        self.last = now


def consumer_main(kind: str, port: int, workdir: str, client_id: str, target: int, limit: float,
                  register_only: bool, conn) -> None:
    """Child process: run one consumer until ``target`` messages are done (or ``limit`` s after the first)."""
    tally = _Tally()
    collector = None
    if kind == "ceiling":
        start, stop, subscribed = _baseline_client(kind, port, client_id, lambda c, u, msg: tally.tick())
    elif kind == "common":
        # As usually written: Python's sqlite3 defaults (rollback journal, synchronous FULL: durable
        # like our store). MANYI_BENCH_COMMON_JOURNAL=wal gives it our store's WAL (a stronger baseline).
        db = sqlite3.connect(os.path.join(workdir, "common.db"), check_same_thread=False)
        db.execute(f"PRAGMA journal_mode={os.environ.get('MANYI_BENCH_COMMON_JOURNAL', 'delete')}")
        db.execute("PRAGMA synchronous=FULL")
        db.execute("CREATE TABLE IF NOT EXISTS votes (device TEXT, seq INTEGER, rating TEXT, pressed_at TEXT,"
                   " clock_ok INTEGER, PRIMARY KEY (device, seq))")

        def on_message(client, userdata, msg):
            vote = json.loads(msg.payload)
            db.execute("INSERT OR IGNORE INTO votes VALUES (?, ?, ?, ?, ?)",
                       (vote["device"], vote["seq"], vote["rating"], vote["pressed_at"], vote["clock_ok"]))
            db.commit()
            tally.tick()

        start, stop, subscribed = _baseline_client(kind, port, client_id, on_message)
    else:
        from collector.config import CollectorSettings
        from collector.service import Collector
        from collector.stores.sqlite import SQLiteStore

        store = SQLiteStore(os.path.join(workdir, "collector.db"))
        collector = Collector(CollectorSettings(broker=f"127.0.0.1:{port}", store=store.url, client_id=client_id),
                              store)
        subscribed = collector.subscribed

        def start():
            collector.start()

        def stop():
            collector.stop()
            store.close()

    began, cpu = time.monotonic(), os.times()
    start()
    if not subscribed.wait(30):
        raise RuntimeError(f"{kind}: not subscribed within 30 s")
    conn.send(("ready", began))
    if register_only:
        stop()
        conn.send(("done", {}))
        return
    idle_since, last_count = time.monotonic(), 0
    while True:
        if collector is not None:
            c = collector.counters
            done = c["stored"] + c["duplicates"] + c["dead_letters"]
            if done != tally.count:
                tally.tick(done - tally.count)
        now = time.monotonic()
        if tally.count >= target or (tally.count and now - tally.first > limit) or conn.poll():
            break
        if tally.count != last_count:
            last_count, idle_since = tally.count, now
        elif now - idle_since > 60:      # no progress for a minute: report what was done
            break
        time.sleep(0.01)
    now = os.times()                   # every thread of this process: paho's, the writer, SQLite
    user, system = now.user - cpu.user, now.system - cpu.system
    stop()
    stats = {}
    if collector is not None:
        stats = dict(collector.counters)
        with SQLiteStore(os.path.join(workdir, "collector.db")) as check:
            stats["store"] = check.stats()
    conn.send(("done", {"began": began, "first": tally.first, "last": tally.last, "count": tally.count,
                        "cpu": user + system, "sys": system,
                        "stats": stats}))


class Consumer:
    """One consumer child process, driven over a pipe."""

    def __init__(self, kind: str, port: int, workdir: Path, target: int, limit: float, register_only=False,
                 profile: Path | None = None):
        ctx = multiprocessing.get_context("spawn")
        self.kind = kind
        self.conn, child = ctx.Pipe()
        workdir.mkdir(parents=True, exist_ok=True)
        self.process = ctx.Process(target=consumer_main, daemon=True, args=(
            kind, port, str(workdir), f"bench-{kind}", target, limit, register_only, child))
        self.process.start()
        self.began = self._receive("ready", 60)
        self.spy = None
        if profile:
            # py-spy samples the consumer (all threads, GIL holders only) in raw collapsed-stack format.
            profile.mkdir(parents=True, exist_ok=True)
            spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
            self.spy = subprocess.Popen([spy, "record", "-r", "250", "-g", "-f", "raw", "-o",
                                         str(profile / f"{kind}.txt"), "--pid", str(self.process.pid)],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def _receive(self, what: str, timeout: float):
        if not self.conn.poll(timeout):
            self.process.kill()
            raise RuntimeError(f"{self.kind} consumer: no {what!r} within {timeout:.0f} s")
        tag, value = self.conn.recv()
        if tag != what:
            raise RuntimeError(f"{self.kind} consumer: expected {what!r}, got {tag!r}")
        return value

    def result(self, timeout: float = 600) -> dict:
        """Wait for the consumer to finish and return its figures."""
        value = self._receive("done", timeout)
        self.process.join(30)
        if self.spy:
            self.spy.wait(30)
        return value


# --- the phases -------------------------------------------------------------------------
LABELS = {"ceiling": "ceiling: bare paho, counts", "common": "common way: row+commit",
          "collector": "manyi collector"}


@dataclass
class Row:
    """One consumer's figures in one phase."""

    kind: str
    count: int
    seconds: float
    cpu: float = 0.0          # CPU seconds of the consumer process (all its threads)
    broker_cpu: float = 0.0   # CPU seconds of mosquitto meanwhile
    note: str = ""

    @property
    def rate(self) -> float:
        """Messages per second."""
        return self.count / self.seconds if self.seconds > 0 else 0.0

    @property
    def cpu_us(self) -> float:
        """Consumer CPU microseconds per message."""
        return self.cpu / self.count * 1e6 if self.count else 0.0


def _broker(workdir: Path):
    from demo.broker import Mosquitto

    return Mosquitto(workdir, extra_config=list(BROKER_CONFIG))      # started by ``with``


def _cpu_of(pid: int) -> float:
    """CPU seconds (user + system) used so far by process ``pid``."""
    import psutil

    times = psutil.Process(pid).cpu_times()
    return times.user + times.system


def sustained(kinds, votes, workdir: Path, tool: str, common_seconds: float) -> list[Row]:
    """Phase 1: each consumer live while the publishers send every vote at full speed."""
    rows = []
    total = sum(len(p) for p in votes.values())
    for kind in kinds:
        base = workdir / f"sustained-{kind}"
        shutil.rmtree(base, ignore_errors=True)
        publishers = Publishers(votes, base / "pub", tool)
        with _broker(base / "mosquitto") as broker:
            consumer = Consumer(kind, broker.port, base, total, common_seconds if kind == "common" else 600)
            broker_cpu = _cpu_of(broker.process.pid)
            t0 = time.monotonic()
            Publishers.wait(publishers.start(broker.port))
            t_pub = time.monotonic() - t0
            result = consumer.result()
            broker_cpu = _cpu_of(broker.process.pid) - broker_cpu
        seconds = result["last"] - t0
        note = f"publishers done after {t_pub:.2f} s"
        if seconds - t_pub < 0.1 * seconds:
            note += " (publisher-bound)"
        note += _check(result, total)
        row = Row(kind, result["count"], seconds, result["cpu"], broker_cpu, note)
        rows.append(row)
        print(f"  sustained {kind:<9}: {row.count:>7} votes in {seconds:6.2f} s = {row.rate:8,.0f}/s; {note}",
              flush=True)
    return rows


def backlog(kinds, votes, workdir: Path, tool: str, common_seconds: float, profile: Path | None = None
            ) -> tuple[list[Row], Row]:
    """Phase 2: sessions subscribe and stop, the backlog is published once, then each consumer drains it."""
    rows = []
    total = sum(len(p) for p in votes.values())
    base = workdir / "backlog"
    shutil.rmtree(base, ignore_errors=True)
    with _broker(base / "mosquitto") as broker:
        for kind in kinds:
            Consumer(kind, broker.port, base / kind, total, 0, register_only=True).result(60)
        publishers = Publishers(votes, base / "pub", tool)
        t0 = time.monotonic()
        Publishers.wait(publishers.start(broker.port))
        fill = Row("publishers", total, time.monotonic() - t0,
                   note=f"{len(publishers.jobs)} terminals, {tool}, no consumer running")
        print(f"  backlog fill: {total} votes queued in {fill.seconds:.2f} s = {fill.rate:,.0f}/s "
              f"(the publishers alone)", flush=True)
        for kind in kinds:
            broker_cpu = _cpu_of(broker.process.pid)
            result = Consumer(kind, broker.port, base / kind, total,
                              common_seconds if kind == "common" else 600, profile=profile).result()
            broker_cpu = _cpu_of(broker.process.pid) - broker_cpu
            seconds = result["last"] - result["began"]
            row = Row(kind, result["count"], seconds, result["cpu"], broker_cpu, _check(result, total).lstrip("; "))
            rows.append(row)
            print(f"  drain     {kind:<9}: {row.count:>7} votes in {seconds:6.2f} s = {row.rate:8,.0f}/s; "
                  f"CPU {row.cpu_us:.0f} us/vote ({result['sys'] / max(row.count, 1) * 1e6:.0f} system); "
                  f"{row.note}", flush=True)
    return rows, fill


def _check(result: dict, total: int) -> str:
    """For the collector: the store must hold exactly the votes sent (nothing lost, nothing doubled)."""
    stats = result.get("stats") or {}
    if "store" not in stats:
        return "" if result["count"] == total else f"; {result['count']} of {total} in the time given"
    store = stats["store"]
    ok = store["votes"] == total and not sum(store["dead_letters"].values())
    return (f"; store: {store['votes']} votes, {store['duplicates']} duplicates"
            + ("" if ok else f" — EXPECTED {total}, no dead letters: {store['dead_letters']}"))


def store_alone(n: int, workdir: Path) -> list[Row]:
    """The SQLite store's own write rate: batches of 500 new votes, then the same votes again (duplicates)."""
    from collector.stores import StoredVote
    from collector.stores.sqlite import SQLiteStore

    start = datetime(2026, 7, 1, 1, tzinfo=timezone.utc)
    votes = [StoredVote(f"hz-3717{i % 500:05d}-w01", i // 500 + 1, ("satisfied", "basic", "unsatisfied")[i % 3],
                        start + timedelta(seconds=17 * i), start, "", True) for i in range(n)]
    rows = []
    with SQLiteStore(workdir / "store-alone.db") as store:
        for label in ("new votes", "duplicates"):
            began, cpu = time.perf_counter(), time.process_time()
            for i in range(0, n, 500):
                store.write(votes[i:i + 500])
            rows.append(Row(f"store.write, {label}", n, time.perf_counter() - began, time.process_time() - cpu))
    return rows


def best(runs: list[list[Row]]) -> list[Row]:
    """Per consumer, the run with the highest rate (best of N on a shared machine)."""
    by: dict[str, Row] = {}
    for rows in runs:
        for row in rows:
            if row.kind not in by or row.rate > by[row.kind].rate:
                by[row.kind] = row
    return list(by.values())


def print_table(sus: list[Row], drain: list[Row], fill: Row, store: list[Row], backlog_size: int) -> None:
    """The figures, with the collector's ratios to the ceiling and to the common way."""
    by = {"s": {r.kind: r for r in sus}, "d": {r.kind: r for r in drain}}

    def cells(kind: str) -> str:
        out = []
        for p in ("s", "d"):
            r = by[p].get(kind)
            out += [f"{r.rate:,.0f}", f"{r.cpu_us:,.0f}"] if r else ["-", "-"]
        return "".join(f"{c:>12}" for c in out)

    print()
    print(f"{'':<28}{'sustained':>24}{f'drain of {backlog_size:,} queued':>24}")
    print(f"{'consumer':<28}" + "".join(f"{c:>12}" for c in ("votes/s", "CPU us/vote") * 2))
    for kind in KINDS:
        if kind in by["s"] or kind in by["d"]:
            print(f"{LABELS[kind]:<28}{cells(kind)}")
    for base, target in (("ceiling", 0.8), ("common", 10.0)):
        ratio = []
        for p in ("s", "d"):
            r, b = by[p].get("collector"), by[p].get(base)
            ratio.append(f"{r.rate / b.rate:.2f}x" if r and b and b.rate else "-")
        print(f"{'collector / ' + base:<28}{ratio[0]:>12}{'':>12}{ratio[1]:>12}{'':>12}  target >= {target:g}x")
    print(f"{'publishers alone':<28}{'':>24}{fill.rate:>12,.0f}{'':>12}  {fill.note}")
    for row in store:
        print(f"{row.kind:<28}{row.rate:>12,.0f}{row.cpu_us:>12,.1f}  ({row.count:,} votes, batches of 500)")
    print("mosquitto CPU us/vote: " + ", ".join(
        f"{phase} {r.kind} {r.broker_cpu / r.count * 1e6:,.0f}" for phase, rows in (("sustained", sus), ("drain", drain))
        for r in rows if r.count))
    for phase, rows in (("sustained", sus), ("drain", drain)):
        for r in rows:
            if r.note:
                print(f"  {phase} {r.kind}: {r.count} votes in {r.seconds:.2f} s; {r.note}")


def main(argv: list[str] | None = None) -> int:
    """Run the ingest benchmark and print its table."""
    parser = argparse.ArgumentParser(prog="python -m bench.bench_ingest", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run with small numbers (seconds)")
    parser.add_argument("--votes", type=int, default=30_000, help="votes of the sustained phase (default 30,000)")
    parser.add_argument("--backlog", type=int, default=100_000, help="votes of the backlog (default 100,000)")
    parser.add_argument("--terminals", type=int, default=50, help="publishing terminals (default 50)")
    parser.add_argument("--common-seconds", type=float, default=10.0,
                        help="seconds the common way gets per phase (default 10)")
    parser.add_argument("--repeat", type=int, default=1, help="run both phases N times, keep each consumer's best")
    parser.add_argument("--store-votes", type=int, default=50_000, help="votes of the store-alone figure")
    parser.add_argument("--store-only", action="store_true", help="only the store-alone figure (no broker)")
    parser.add_argument("--only", choices=KINDS, action="append", help="run only this consumer (repeatable)")
    parser.add_argument("--profile", type=Path, help="record a py-spy profile of each drain into this directory")
    parser.add_argument("--publisher", choices=("auto", "mosquitto_pub", "paho"), default="auto")
    parser.add_argument("--common-journal", choices=("delete", "wal"), default="delete",
                        help="the common way's SQLite journal: delete (sqlite3's default) or wal (our store's)")
    args = parser.parse_args(argv)
    if args.quick:
        args.votes, args.backlog, args.terminals = min(args.votes, 600), min(args.backlog, 1000), min(args.terminals, 6)
        args.common_seconds, args.store_votes = min(args.common_seconds, 2.0), min(args.store_votes, 2000)
    if args.store_only:
        with tempfile.TemporaryDirectory(prefix="bench-ingest-") as tmp:
            for row in store_alone(args.store_votes, Path(tmp)):
                print(f"{row.kind:<28}{row.rate:>12,.0f} votes/s{row.cpu_us:>8,.1f} us CPU/vote  "
                      f"({row.count:,} votes, batches of 500)")
        return 0
    tool = args.publisher
    if tool == "auto":
        tool = "mosquitto_pub" if shutil.which("mosquitto_pub") else "paho"
    kinds = tuple(k for k in KINDS if not args.only or k in args.only)
    os.environ["MANYI_BENCH_COMMON_JOURNAL"] = args.common_journal      # read by the spawned consumers
    print(f"ingest: {args.votes:,} sustained + {args.backlog:,} backlog votes from {args.terminals} terminals "
          f"({tool}), QoS 1, consumers {', '.join(kinds)}; {os.cpu_count()} CPUs, "
          f"load {os.getloadavg()[0]:.1f}", flush=True)
    sus_runs, drain_runs, fills = [], [], []
    with tempfile.TemporaryDirectory(prefix="bench-ingest-") as tmp:
        work = Path(tmp)
        sus_votes, backlog_votes = make_votes(args.votes, args.terminals), make_votes(args.backlog, args.terminals)
        for _ in range(max(1, args.repeat)):
            sus_runs.append(sustained(kinds, sus_votes, work, tool, args.common_seconds))
            drain, fill = backlog(kinds, backlog_votes, work, tool, args.common_seconds, args.profile)
            drain_runs.append(drain)
            fills.append(fill)
        store = store_alone(args.store_votes, work)
    print_table(best(sus_runs), best(drain_runs), max(fills, key=lambda r: r.rate), store, args.backlog)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

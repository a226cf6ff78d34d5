"""Fixtures of the collector tests (loaded by conftest.py): a store in tmp_path, an in-process
collector, a collector child process that tests may kill -9, and a plain QoS 1 publisher."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from contextlib import closing
from datetime import datetime, timedelta, timezone
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from manyi import protocol

ROOT = Path(__file__).resolve().parent.parent


def wait_until(condition, timeout: float = 10.0, interval: float = 0.05, message: str = "condition"):
    """Poll ``condition()`` until it returns a truthy value; fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {message} (last value {value!r})")
        time.sleep(interval)


def make_vote(device: str = "hz-371702001-w01", seq: int = 1, rating: str = protocol.SATISFIED,
              pressed_at: datetime | None = None, clock_ok: bool = True) -> protocol.Vote:
    """A wire Vote pressed ``pressed_at`` (default: now)."""
    moment = pressed_at or datetime.now(timezone.utc)
    return protocol.Vote(device=device, seq=seq, rating=rating,
                         pressed_at=protocol.format_timestamp(moment.astimezone(protocol.CHINA_TZ)),
                         clock_ok=clock_ok)


def stream_of_votes(count: int, terminals: int = 20, start: datetime | None = None) -> list[protocol.Vote]:
    """``count`` votes spread over ``terminals`` devices, seqs 1.. per device, one minute apart per device."""
    start = start or datetime.now(timezone.utc) - timedelta(days=2)
    ratings = protocol.RATINGS
    votes = []
    for i in range(count):
        device = f"hz-371702{i % terminals:03d}-w01"
        seq = i // terminals + 1
        votes.append(make_vote(device, seq, ratings[(i * 7) % 3], start + timedelta(minutes=seq)))
    return votes


class Publisher:
    """A plain paho QoS 1 publisher (stands in for terminals where only the wire matters)."""

    def __init__(self, port: int, client_id: str = "test-publisher"):
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
        self.client.max_inflight_messages_set(1000)
        self.client.max_queued_messages_set(0)
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()

    def send(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False):
        """Publish one message; returns paho's MQTTMessageInfo."""
        return self.client.publish(topic, payload, qos=qos, retain=retain)

    def votes(self, votes, timeout: float = 120.0) -> None:
        """Publish votes and wait until the broker acknowledged every one."""
        infos = [self.send(v.topic, v.to_json()) for v in votes]
        deadline = time.monotonic() + timeout
        for info in infos:
            info.wait_for_publish(max(0.1, deadline - time.monotonic()))
            assert info.is_published(), "the broker did not acknowledge a vote in time"

    def close(self) -> None:
        """Disconnect."""
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def publisher(broker):
    """A connected QoS 1 publisher on the ``broker`` fixture."""
    pub = Publisher(broker.port)
    yield pub
    pub.close()


@pytest.fixture
def vote_store(tmp_path):
    """A fresh SQLiteStore in tmp_path."""
    from collector.stores.sqlite import SQLiteStore

    store = SQLiteStore(tmp_path / "votes.db")
    yield store
    store.close()


@pytest.fixture
def collector_settings(broker, tmp_path):
    """CollectorSettings for the ``broker`` fixture and a store in tmp_path."""
    from collector.config import CollectorSettings

    return CollectorSettings(broker=broker.address, store=f"sqlite:///{tmp_path / 'votes.db'}",
                             client_id="test-collector", retry_max_seconds=1.0)


@pytest.fixture
def running_collector(collector_settings, vote_store):
    """An in-process Collector on ``broker`` writing to ``vote_store``, connected and subscribed."""
    from collector.service import Collector

    collector = Collector(collector_settings, vote_store).start()
    assert collector.wait_connected(10), "collector did not connect"
    time.sleep(0.3)  # let the SUBSCRIBE reach the broker before tests publish
    yield collector
    collector.stop()


class CollectorProcess:
    """``manyi collector`` as a child process, so tests can kill -9 it."""

    def __init__(self, broker_address: str, store_url: str, workdir: Path, client_id: str = "test-collector",
                 extra: tuple[str, ...] = ()):
        self.args = [sys.executable, "-m", "manyi", "-v", "collector", "--broker", broker_address,
                     "--store", store_url, "--client-id", client_id, *extra]
        self.workdir = Path(workdir)
        self.log_path = self.workdir / "collector.log"
        self.process: subprocess.Popen | None = None

    def start(self) -> "CollectorProcess":
        """Start the process (its log appends to collector.log)."""
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        log = open(self.log_path, "ab")
        self.process = subprocess.Popen(self.args, cwd=self.workdir, stdout=log, stderr=log, env=env)
        log.close()
        wait_until(lambda: "connected to" in self.log() or self.process.poll() is not None, 15,
                   message="collector process to connect")
        assert self.process.poll() is None, f"collector exited: {self.log()}"
        return self

    def kill(self) -> None:
        """SIGKILL, as a crash or power loss would."""
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def terminate(self, timeout: float = 30.0) -> int:
        """SIGTERM and wait; returns the exit code."""
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            return self.process.wait(timeout)
        return self.process.returncode if self.process else 0

    def log(self) -> str:
        """Everything the process logged so far."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


@pytest.fixture
def collector_process(broker, tmp_path):
    """Factory: ``collector_process(store_url=None, **kw)`` starts a collector child process; all are killed at the end."""
    started: list[CollectorProcess] = []

    def start(store_url: str | None = None, **kw) -> CollectorProcess:
        proc = CollectorProcess(broker.address, store_url or f"sqlite:///{tmp_path / 'votes.db'}", tmp_path, **kw)
        started.append(proc)
        return proc.start()

    yield start
    for proc in started:
        proc.kill()


def count_stored(path) -> int:
    """Votes in the SQLite file, read through a separate connection as another process would (0 before it exists)."""
    try:
        with closing(sqlite3.connect(path, timeout=5)) as conn:     # closed: an open file would pin the db
            return conn.execute("SELECT count(*) FROM votes").fetchone()[0]
    except sqlite3.OperationalError:
        return 0


def stats_json(store_url: str) -> dict:
    """``manyi stats --json`` run as a command, parsed."""
    out = subprocess.run([sys.executable, "-m", "manyi", "stats", "--store", store_url, "--json"],
                         capture_output=True, text=True, timeout=60, cwd=ROOT, check=True)
    return json.loads(out.stdout)


__all__ = ["wait_until", "make_vote", "stream_of_votes", "Publisher", "CollectorProcess", "count_stored", "stats_json"]


def report_matrix(terminalreporter, exitstatus, section: str, title: str, text: str, artifact: Path) -> None:
    """Print a matrix table at the end of the run and write it to ``artifact`` (test-artifacts/)."""
    terminalreporter.section(section)
    for line in text.splitlines():
        terminalreporter.write_line(line)
    try:
        artifact.parent.mkdir(parents=True, exist_ok=True)
        artifact.write_text(f"# {title}\n\n{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
                            f"exit status {int(exitstatus)}\n\n{text}\n")
        terminalreporter.write_line(f"written to {artifact.relative_to(ROOT)}")
    except OSError as exc:
        terminalreporter.write_line(f"could not write {artifact}: {exc}")

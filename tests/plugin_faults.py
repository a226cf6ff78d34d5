"""Fixtures of the fault matrix (tests/test_fault_matrix.py): real processes, injected faults.

* :class:`Simulator`: ``manyi simulate --votes N`` as a child process on a fixed workdir
  (its outboxes), which tests kill -9 and run again to continue every terminal's seq.
* :class:`Collector`: ``manyi collector`` as a child process, optionally with a fault hook.
* Fault hooks (``fault=`` below): the child runs ``python -c FAULT_BOOT`` instead of
  ``python -m manyi``; the boot code wraps ONE method of the real code so that the process
  SIGKILLs itself at an exact moment (e.g. after the store's COMMIT, before the MQTT acks),
  then runs the real ``manyi`` command. Nothing of this is in the production code.
* :class:`Gate`: a TCP forwarder in front of the broker that can cut the terminals off.
* :func:`check`: the exactly-once verdict by (device, seq), recorded for the table that
  ``pytest_terminal_summary`` prints and writes to test-artifacts/fault-matrix.md.
"""

from __future__ import annotations

import json
import os
import select
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from plugin_collector import ROOT, CollectorProcess, report_matrix, wait_until

ARTIFACT = ROOT / "test-artifacts" / "fault-matrix.md"

# Runs in the child instead of `python -m manyi`: MANYI_TEST_FAULT="<hook>:<n>" kills the
# process with SIGKILL at the n-th call of the hooked method, at the moment the hook names.
FAULT_BOOT = r"""
import os, signal, sys
hook, _, n = os.environ.get("MANYI_TEST_FAULT", "").partition(":")
target, calls = int(n or 1), [0]

def due():
    calls[0] += 1
    return calls[0] == target

def die():
    sys.stderr.write(f"MANYI_TEST_FAULT {hook}: SIGKILL at call {calls[0]}\n")
    sys.stderr.flush()
    os.kill(os.getpid(), signal.SIGKILL)

if hook == "collector-before-commit":
    # Rows inserted in the open transaction; COMMIT never runs.
    from collector.stores.sqlite import SQLiteStore
    inner = SQLiteStore._write
    def _write(self, votes, *args, **kwargs):
        result = inner(self, votes, *args, **kwargs)
        if votes and due():
            die()
        return result
    SQLiteStore._write = _write
elif hook == "collector-after-commit":
    # Committed to disk; the writer thread never sends the PUBACKs.
    from collector.stores.sqlite import SQLiteStore
    outer = SQLiteStore.write
    def write(self, votes=(), *args, **kwargs):
        result = outer(self, votes, *args, **kwargs)
        if votes and due():
            die()
        return result
    SQLiteStore.write = write
elif hook == "terminal-after-press":
    # The vote is committed to the outbox (the citizen saw the confirmation); not yet published.
    from device.outbox import Outbox
    add = Outbox.add
    def add_then_die(self, *args, **kwargs):
        vote = add(self, *args, **kwargs)
        if due():
            die()
        return vote
    Outbox.add = add_then_die
elif hook == "terminal-before-delete":
    # The broker acknowledged these votes; the outbox never deletes them.
    from device.outbox import Outbox
    ack = Outbox.acknowledge_many
    def die_then_ack(self, seqs, *args, **kwargs):
        if due():
            die()
        return ack(self, seqs, *args, **kwargs)
    Outbox.acknowledge_many = die_then_ack
elif hook == "redeliver-seconds":
    # Not a kill: the terminals' resend window scaled down (production: 120 s) so that a broker
    # outage longer than the window fits in a test.
    import device.publisher
    device.publisher.REDELIVER_SECONDS = float(target)
elif hook:
    raise SystemExit(f"unknown MANYI_TEST_FAULT hook {hook!r}")
from manyi.cli import main
sys.exit(main(sys.argv[1:]))
"""


def child_command(args: list[str], fault: str | None) -> tuple[list[str], dict]:
    """The command line and environment of a ``manyi`` child, with the fault hook when given."""
    env = dict(os.environ, PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1")
    if fault:
        env["MANYI_TEST_FAULT"] = fault
        return [sys.executable, "-c", FAULT_BOOT, *args], env
    env.pop("MANYI_TEST_FAULT", None)
    return [sys.executable, "-m", "manyi", *args], env


class Collector(CollectorProcess):
    """``manyi collector`` child process with its own log, an optional fault hook and extra options."""

    def __init__(self, broker_address: str, store_url: str, workdir: Path, client_id: str = "test-collector",
                 extra: tuple[str, ...] = (), fault: str | None = None, name: str = "collector"):
        super().__init__(broker_address, store_url, workdir, client_id, extra)
        self.log_path = Path(workdir) / f"{name}.log"
        self.fault = fault

    def start(self, wait: bool = True) -> "Collector":
        """Start the process (its log appends to <name>.log); with ``wait``, until it connected."""
        args, env = child_command(self.args[3:], self.fault)
        log = open(self.log_path, "ab")
        self.process = subprocess.Popen(args, cwd=self.workdir, stdout=log, stderr=log, env=env)
        log.close()
        if wait:
            wait_until(lambda: "connected to" in self.log() or self.process.poll() is not None, 20,
                       message="collector process to connect")
            assert self.process.poll() is None, f"collector exited: {self.log()[-3000:]}"
        return self

    @property
    def pid(self) -> int:
        """The child's process id."""
        return self.process.pid


class Simulator:
    """``manyi simulate --votes N`` as a child process on a fixed workdir (the terminals' outboxes)."""

    def __init__(self, broker_address: str, workdir: Path, log_dir: Path, terminals: int = 20,
                 devices: list[str] | None = None, name: str = "simulate"):
        self.broker_address = broker_address
        self.workdir = Path(workdir)
        self.log_dir = Path(log_dir)
        self.terminals = terminals
        self.devices = devices
        self.name = name
        self.process: subprocess.Popen | None = None
        self.runs = 0

    def start(self, votes: int, seed: int, rate: float | None = None, fault: str | None = None,
              start: str | None = None, timeout: float = 60) -> "Simulator":
        """Start a run that records ``votes`` more votes (each outbox continues its seq)."""
        self.runs += 1
        args = ["simulate", "--broker", self.broker_address, "--votes", str(votes), "--seed", str(seed),
                "--workdir", str(self.workdir), "--timeout", str(timeout)]
        if self.devices:
            devices_file = self.log_dir / f"{self.name}-devices.txt"
            devices_file.write_text("\n".join(self.devices) + "\n")
            args += ["--devices", str(devices_file)]
        else:
            args += ["--terminals", str(self.terminals)]
        if rate is not None:
            args += ["--rate", str(rate)]
        if start is not None:
            args += ["--start", start]
        args, env = child_command(args, fault)
        with open(self.out_path, "wb") as out, open(self.log_path, "wb") as err:
            self.process = subprocess.Popen(args, stdout=out, stderr=err, env=env, cwd=self.log_dir)
        return self

    @property
    def out_path(self) -> Path:
        """stdout of the current run (the JSON summary)."""
        return self.log_dir / f"{self.name}-{self.runs}.out"

    @property
    def log_path(self) -> Path:
        """stderr of the current run."""
        return self.log_dir / f"{self.name}-{self.runs}.log"

    def log(self) -> str:
        """stderr of the current run."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def wait(self, timeout: float = 90) -> int:
        """Wait for the run to end; return its exit code (fails the test with the log on a timeout)."""
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            pytest.fail(f"simulate run {self.runs} did not end in {timeout} s: {self.log()[-3000:]}")

    def finish(self, timeout: float = 90) -> dict:
        """Wait for a run that must succeed; return its summary."""
        code = self.wait(timeout)
        assert code == 0, f"simulate run {self.runs} exited {code}: {self.log()[-3000:]}"
        return self.summary()

    def kill(self) -> None:
        """SIGKILL, as a crash or power cut of the terminals would."""
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def summary(self) -> dict:
        """The final JSON line of the current run."""
        return json.loads(self.out_path.read_text().splitlines()[-1])

    def recorded(self) -> int:
        """Votes recorded so far in every outbox (readable while the simulator runs)."""
        return sum(last for last, _p, _x in outboxes(self.workdir).values())


def outboxes(workdir: Path) -> dict[str, tuple[int, int, int]]:
    """Device -> (last_seq, pending, poisoned) of every outbox file in ``workdir``."""
    result = {}
    for path in sorted(Path(workdir).glob("*.db")):
        conn = sqlite3.connect(path, timeout=10)
        try:
            last = conn.execute("SELECT value FROM counters WHERE name = 'last_seq'").fetchone()[0]
            pending = conn.execute("SELECT count(*) FROM pending").fetchone()[0]
            poisoned = conn.execute("SELECT count(*) FROM poisoned").fetchone()[0]
        except sqlite3.OperationalError:
            continue                        # created but no schema yet
        finally:
            conn.close()
        result[path.stem] = (last, pending, poisoned)
    return result


def pressed_votes(*workdirs: Path) -> set[tuple[str, int]]:
    """Every (device, seq) the terminals' outboxes recorded: seqs 1..last_seq of each."""
    return {(device, seq) for workdir in workdirs for device, (last, _p, _x) in outboxes(workdir).items()
            for seq in range(1, last + 1)}


def stored_rows(db_path: Path) -> list[tuple[str, int]]:
    """Every (device, seq) row of the store's votes table."""
    conn = sqlite3.connect(db_path, timeout=10)
    try:
        return conn.execute("SELECT device, seq FROM votes").fetchall()
    finally:
        conn.close()


def count_votes(db_path: Path) -> int:
    """Votes in the store (0 before it exists); the connection is closed at once.

    plugin_collector.count_stored leaves its connection to the garbage collector, and an open
    file keeps a file system from being remounted read-only.
    """
    try:
        conn = sqlite3.connect(db_path, timeout=10)
    except sqlite3.Error:
        return 0
    try:
        return conn.execute("SELECT count(*) FROM votes").fetchone()[0]
    except sqlite3.OperationalError:
        return 0
    finally:
        conn.close()


def store_counters(db_path: Path) -> tuple[int, int]:
    """(duplicates absorbed, dead letters) as the store counted them."""
    conn = sqlite3.connect(db_path, timeout=10)
    try:
        dup = conn.execute("SELECT value FROM meta WHERE key = 'duplicates'").fetchone()
        letters = conn.execute("SELECT count(*) FROM dead_letters").fetchone()[0]
    finally:
        conn.close()
    return (dup[0] if dup else 0), letters


class Gate:
    """A TCP forwarder ``127.0.0.1:port`` -> the broker; ``cut()`` drops and refuses connections, ``open()``."""

    def __init__(self, upstream_port: int):
        self.upstream_port = upstream_port
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.is_open = True
        self._pairs: list[tuple[socket.socket, socket.socket]] = []
        self._lock = threading.Lock()
        self._closed = False
        threading.Thread(target=self._accept, name="gate-accept", daemon=True).start()

    @property
    def address(self) -> str:
        """host:port the terminals connect to."""
        return f"127.0.0.1:{self.port}"

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            if not self.is_open:
                client.close()              # the network is down: the connection dies at once
                continue
            try:
                upstream = socket.create_connection(("127.0.0.1", self.upstream_port), timeout=5)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._pairs.append((client, upstream))
            threading.Thread(target=self._pump, args=(client, upstream), daemon=True).start()

    def _pump(self, a: socket.socket, b: socket.socket) -> None:
        peers = {a: b, b: a}
        try:
            while True:
                ready, _, _ = select.select([a, b], [], [], 1.0)
                for sock in ready:
                    data = sock.recv(65536)
                    if not data:
                        return
                    peers[sock].sendall(data)
        except OSError:
            return
        finally:
            for sock in (a, b):
                try:
                    sock.close()
                except OSError:
                    pass

    def cut(self) -> None:
        """The terminals' network goes down: every connection through the gate is dropped."""
        self.is_open = False
        with self._lock:
            pairs, self._pairs = self._pairs, []
        for pair in pairs:
            for sock in pair:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def open(self) -> None:
        """The network is back."""
        self.is_open = True

    def close(self) -> None:
        """Stop forwarding."""
        self._closed = True
        self.cut()
        self.server.close()


@dataclass
class Outcome:
    """One row of the fault matrix."""

    scenario: str
    pressed: int
    stored: int
    duplicates: int
    lost: int
    dead_letters: int
    recover_s: float | None
    note: str = ""
    expected_loss: bool = False       # the contrast row: mosquitto's defaults drop votes


RESULTS: list[Outcome] = []


class Recovery:
    """Started when a fault is repaired: how long until every vote pressed by then is stored.

    ``workdirs`` are the terminals' outbox directories (read now, while they may still run).
    """

    def __init__(self, db_path: Path, *workdirs: Path, backlog: set[tuple[str, int]] | None = None,
                 timeout: float = 90.0):
        self.started = time.monotonic()
        self.backlog = backlog if backlog is not None else pressed_votes(*workdirs)
        self.db_path = Path(db_path)
        self.seconds: float | None = None
        self._deadline = self.started + timeout
        self._thread = threading.Thread(target=self._watch, name="recovery", daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        while time.monotonic() < self._deadline:
            try:
                if self.backlog <= set(stored_rows(self.db_path)):
                    self.seconds = time.monotonic() - self.started
                    return
            except sqlite3.Error:
                pass
            time.sleep(0.1)

    def result(self, timeout: float = 30.0) -> float | None:
        """Seconds from the repair until the backlog was stored (None: never, within the timeout)."""
        self._thread.join(timeout)
        return self.seconds


def check(scenario: str, db_path: Path, pressed: set[tuple[str, int]], *, recovery: Recovery | None = None,
          timeout: float = 45.0, note: str = "", expect_loss: bool = False, devices: set[str] | None = None,
          settle: float = 0.3) -> Outcome:
    """Wait until every pressed vote is stored (or ``timeout``), record the row, assert exactly once.

    ``recovery`` measured the time to recover: from the repair until every vote pressed by then
    was stored. ``devices`` restricts the check to those terminals
    (several scenarios sharing a store). With ``expect_loss`` the row is the contrast case.
    """
    assert pressed, f"{scenario}: no vote was pressed; the scenario proves nothing"
    devices = devices if devices is not None else {device for device, _seq in pressed}

    def ours():
        return [row for row in stored_rows(db_path) if row[0] in devices]

    deadline = time.monotonic() + timeout
    last, steady_since = -1, time.monotonic()
    while True:
        rows = ours() if db_path.exists() else []
        if pressed <= set(rows) or time.monotonic() > deadline:
            break
        if len(rows) != last:
            last, steady_since = len(rows), time.monotonic()
        elif expect_loss and time.monotonic() - steady_since > 1.5:
            break                       # the contrast case: nothing more is coming
        time.sleep(0.1)
    time.sleep(settle)                  # anything still in flight would show up as an extra row now
    rows = ours()
    stored = set(rows)
    duplicates, letters = store_counters(db_path)
    lost = pressed - stored
    extra = stored - pressed
    doubled = len(rows) - len(stored)
    recover = recovery.result() if recovery is not None else None
    outcome = Outcome(scenario, len(pressed), len(stored & pressed), duplicates, len(lost), letters,
                      None if recover is None else round(recover, 2), note, expect_loss)
    RESULTS.append(outcome)
    assert not doubled, f"{scenario}: {doubled} votes stored twice"
    assert not extra, f"{scenario}: stored but never pressed: {sorted(extra)[:10]}"
    if expect_loss:
        assert lost, f"{scenario}: the contrast case lost nothing; it shows nothing"
    else:
        assert not lost, f"{scenario}: lost {len(lost)} of {len(pressed)}: {sorted(lost)[:10]}"
    return outcome


def table(results: list[Outcome]) -> str:
    """The fault matrix as a Markdown table."""
    lines = ["| scenario | pressed | stored | duplicates absorbed | lost | dead letters | time to recover (s) | note |",
             "|---|---:|---:|---:|---:|---:|---:|---|"]
    for r in results:
        lost = f"{r.lost} (expected: contrast)" if r.expected_loss else str(r.lost)
        recover = "-" if r.recover_s is None else f"{r.recover_s:.2f}"
        lines.append(f"| {r.scenario} | {r.pressed} | {r.stored} | {r.duplicates} | {lost} | {r.dead_letters} | "
                     f"{recover} | {r.note} |")
    return "\n".join(lines)


def pytest_configure(config):
    """Register the ``faults`` marker (``make test-faults`` runs ``pytest -m faults``)."""
    config.addinivalue_line("markers", "faults: the fault matrix (real broker, collectors and terminals, faults injected)")


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    """Print the fault matrix and write it to test-artifacts/fault-matrix.md."""
    if not RESULTS:
        return
    report_matrix(terminalreporter, exitstatus, "fault matrix: every vote pressed, stored exactly once",
                  "Fault matrix", table(RESULTS), ARTIFACT)


def sigkill(pid: int) -> None:
    """kill -9."""
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


__all__ = ["Collector", "Simulator", "Gate", "Outcome", "RESULTS", "Recovery", "check", "pressed_votes", "stored_rows",
           "store_counters", "outboxes", "count_votes", "child_command", "sigkill", "table"]

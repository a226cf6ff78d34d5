"""``manyi run`` and ``manyi demo``: the whole system on one machine, no root, no services.

``manyi run`` starts, each as a child process in its own process group with its log
under ``WORKDIR/logs/``: an MQTT broker (``demo.broker.start_local_broker``: mosquitto
with persistence in the workdir when it is installed, otherwise the embedded
pure-Python amqtt broker, MQTT 3.1.1, demo only; ``--broker`` chooses), the collector with the SQLite store (``WORKDIR/votes.db``), a simulated Heze
(``manyi simulate --devices``: every terminal of the sample registry, the real terminal
code on mock pins) and the control center (``manyi serve``, waitress) with an admin
account whose random password is kept in ``WORKDIR/admin-password.txt``.

On the first run the workdir is seeded with SIMULATED history (demo.history, fixed
seed): past quarters of votes written through the store interface, a 12333 survey and
composite scores imported through the control center's imports, a simulated follow-up
history of the last 30 days' 不满意督办 cases (demo.history.seed_followup), and each
simulated terminal's outbox seq set after its history, so live votes continue the same seqs.
Running again continues the same city (nothing is seeded twice). Ctrl-C (SIGINT) or
SIGTERM stops the simulator, the center, the collector and the broker in that order:
SIGTERM to each process group, then SIGKILL after a grace period.

With the embedded broker the collector and the simulated terminals run in MQTT 3.1.1
compatibility mode (``--mqtt-version 3.1.1``); see docs/protocol.md for what that gives up.

``manyi demo`` is ``manyi run --speed 60``: the simulator's clock runs 60 times faster.
The simulator skips nights and weekends, so the map moves whatever the hour.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

ADMIN_USER = "admin"
MARKER = "seeded.json"


def register(subparsers) -> None:
    """Add the ``run`` and ``demo`` sub-commands."""
    for name, speed, text in (
        ("run", 1.0, "start broker, collector, simulated Heze and control center on this machine"),
        ("demo", 60.0, "like run, with the simulated clock 60 times faster (for presentations)"),
    ):
        p = subparsers.add_parser(name, help=text, description=text + ". Ctrl-C stops everything.")
        p.add_argument("--workdir", default="var/demo", help="state of the demo city (default var/demo)")
        p.add_argument("--host", default="127.0.0.1", help="control center address (default 127.0.0.1)")
        p.add_argument("--port", type=int, default=8000, help="control center port (default 8000)")
        p.add_argument("--broker-port", type=int, default=0, help="MQTT port (default: a free port)")
        p.add_argument("--broker", choices=("auto", "mosquitto", "embedded"), default="auto",
                       help="MQTT broker: mosquitto, the embedded pure-Python amqtt (MQTT 3.1.1, demo only), "
                            "or auto = mosquitto when installed, else embedded (default auto)")
        p.add_argument("--speed", type=float, default=speed, help=f"simulated clock speed (default {speed:g})")
        p.add_argument("--rate", type=float, default=None,
                       help="instead of the office-hours model: a fixed total rate of votes per second")
        p.add_argument("--terminals", type=int, default=None, help="simulate only the first N terminals")
        p.add_argument("--history-quarters", type=int, default=2,
                       help="past quarters of simulated history seeded on the first run (default 2)")
        p.add_argument("--history-votes-per-day", type=float, default=2.0,
                       help="simulated votes per terminal per office day in the history (default 2)")
        p.add_argument("--seed-only", action="store_true",
                       help="seed the workdir's simulated history (if not yet) and stop; starts nothing")
        p.set_defaults(func=cmd_run)


@dataclass
class Child:
    """One child process of the demo and its log file."""

    name: str
    argv: list[str]
    log: Path
    process: subprocess.Popen | None = None
    env: dict = field(default_factory=dict)

    def start(self) -> "Child":
        """Start in a new session (own process group), output appended to the log."""
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as out:
            out.write(f"\n===== {time.strftime('%Y-%m-%d %H:%M:%S')} {' '.join(self.argv)}\n".encode())
            out.flush()
            self.process = subprocess.Popen(self.argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                            start_new_session=True, env={**os.environ, **self.env})
        return self

    @property
    def alive(self) -> bool:
        """True while the process runs."""
        return self.process is not None and self.process.poll() is None

    def stop(self, grace: float = 10.0) -> None:
        """SIGTERM the process group, wait, then SIGKILL it; reap the process."""
        if self.process is None:
            return
        pgid = self.process.pid
        _signal_group(pgid, signal.SIGTERM)
        try:
            self.process.wait(grace)
        except subprocess.TimeoutExpired:
            pass
        # Whatever is left of the group (the process or a grandchild) is killed.
        _signal_group(pgid, signal.SIGKILL)
        try:
            self.process.wait(5)
        except subprocess.TimeoutExpired:  # pragma: no cover - a process that survives SIGKILL
            pass

    def tail(self, lines: int = 15) -> str:
        """The last lines of the log."""
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return ""


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def manyi_argv(*args: str) -> list[str]:
    """Command line of a ``manyi`` sub-command run with this interpreter."""
    return [sys.executable, "-m", "manyi", *args]


def wait_for_child(child: Child, ready, timeout: float, what: str, interval: float = 0.1) -> None:
    """Poll ``ready()`` until true; raise ManyiError (with the child's log) if it dies or time runs out."""
    from manyi.exc import ManyiError

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ready():
            return
        if not child.alive:
            raise ManyiError(f"{child.name} exited during start-up; its log {child.log} ends with:\n{child.tail()}")
        time.sleep(interval)
    raise ManyiError(f"{what} within {timeout:.0f} s; see {child.log}:\n{child.tail()}")


def wait_for_text(path: Path, text: str, child: Child, timeout: float, offset: int = 0) -> None:
    """Wait until ``text`` appears in the log after ``offset``; raise if the child died or time ran out."""
    def logged() -> bool:
        try:
            with path.open("rb") as handle:
                handle.seek(offset)
                return text.encode() in handle.read()
        except FileNotFoundError:
            return False

    wait_for_child(child, logged, timeout, f"{child.name} did not report {text!r}")


def wait_for_http(url: str, child: Child, timeout: float) -> None:
    """Wait until ``url`` answers HTTP (any status)."""
    import urllib.error
    import urllib.request

    def answers() -> bool:
        try:
            urllib.request.urlopen(url, timeout=2).close()
        except urllib.error.HTTPError:
            return True
        except OSError:
            return False
        return True

    wait_for_child(child, answers, timeout, f"{url} did not answer", interval=0.2)


def admin_password(workdir: Path, db: Path, log: Path) -> str:
    """The demo admin's password: created with ``manyi user add`` on the first run, then reused."""
    path = workdir / "admin-password.txt"
    if path.exists():
        return path.read_text().strip()
    password = "Demo-" + secrets.token_urlsafe(12) + "9"   # always three kinds of character (password policy)
    with log.open("ab") as out:
        result = subprocess.run(manyi_argv("user", "add", ADMIN_USER, "--role", "admin", "--password-stdin",
                                           "--db", str(db)), input=(password + "\n").encode(), stdout=out,
                                stderr=subprocess.STDOUT)
    if result.returncode != 0:
        from manyi.exc import ManyiError
        raise ManyiError(f"could not create the demo admin account; see {log}")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(password + "\n")
    return password


def set_outbox_seqs(directory: Path, last_seq: dict[str, int]) -> None:
    """Give each simulated terminal's outbox the seq its seeded history ended at.

    The simulator keeps one outbox per device in ``directory/<device>.db`` (device.simulate);
    its seq counter continues from here, so live votes follow the history without reusing a seq.
    """
    from device.outbox import Outbox

    directory.mkdir(parents=True, exist_ok=True)
    for device, seq in last_seq.items():
        outbox = Outbox(directory / f"{device}.db", device)
        try:
            outbox.advance_seq(seq)
        finally:
            outbox.close()


def seed(workdir: Path, registry, props: dict[str, float], args, say) -> dict:
    """Seed a fresh workdir with simulated history; return what the marker file records."""
    from dataclasses import asdict
    from datetime import datetime, timezone

    from analytics.center import CenterDB
    from collector.stores import open_store

    from demo import history
    from manyi.periods import CHINA_TZ, local_midnight

    now = datetime.now(timezone.utc)
    quarters = history.history_quarters(now, args.history_quarters)
    until = local_midnight(now.astimezone(CHINA_TZ).date())
    say(f"seeding SIMULATED history ({history.SIMULATED_NOTE}): votes {quarters[0]} .. {until.date()}, "
        f"12333 survey and composite scores {quarters[0]} .. {quarters[-1]} ...")
    started = time.monotonic()
    with open_store(f"sqlite:///{workdir / 'votes.db'}") as store:
        votes = history.seed_votes(store, props, quarters[0].start, until,
                                     votes_per_day=args.history_votes_per_day)
    set_outbox_seqs(workdir / "terminals", votes.last_seq)
    db = CenterDB(workdir / "center.db")
    try:
        reports = history.seed_center(db, registry, props, quarters, now=now)
        with open_store(f"sqlite:///{workdir / 'votes.db'}") as store:
            published = history.publish_past_quarters(store, registry, db, quarters, now=now)
            followup = history.seed_followup(store, db, registry, now)
            appeals = history.seed_appeals(store, db, registry, now)
    finally:
        db.close()
    info = {
        "simulated": True, "note": history.SIMULATED_NOTE, "seed": history.SEED, "seeded_at": now.isoformat(),
        "quarters": [str(q) for q in quarters], "votes": votes.votes, "burst_votes": votes.burst_votes,
        "terminals": len(votes.last_seq), "imports": [r.summary() for r in reports], "published_results": published,
        "followup": asdict(followup), "appeals": appeals,
    }
    say(f"seeded {votes.votes} simulated votes of {len(votes.last_seq)} terminals, "
        f"{len(reports)} imports, {len(published)} published quarters, {followup.summary()} "
        f"(simulated follow-up), {len(appeals)} simulated appeals, in {time.monotonic() - started:.1f} s")
    return info


def _reset_partial(workdir: Path) -> None:
    """Remove what an interrupted first run left, so seeding starts clean."""
    import shutil

    for name in ("votes.db", "votes.db-wal", "votes.db-shm", "center.db", "center.db-wal", "center.db-shm"):
        (workdir / name).unlink(missing_ok=True)
    for name in ("terminals", "mosquitto", "amqtt"):
        shutil.rmtree(workdir / name, ignore_errors=True)


def cmd_run(args) -> int:
    """Run the demo city until SIGINT/SIGTERM; return 0 on a clean stop, 1 when a part failed."""
    import fcntl

    from .broker import BrokerError, amqtt_available, find_mosquitto, free_port, start_local_broker
    from manyi.exc import ManyiError
    from manyi.registry import heze_sample
    from demo import history

    def say(text: str) -> None:
        print(f"manyi {args.command}: {text}", flush=True)

    workdir = Path(args.workdir).resolve()
    logs = workdir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    lock = open(workdir / ".lock", "w")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise ManyiError(f"another manyi run uses {workdir}; stop it first") from None
    broker_choice = getattr(args, "broker", "auto")
    if broker_choice == "mosquitto" and not find_mosquitto():
        raise BrokerError("mosquitto is not installed: apt-get install mosquitto (Debian/Ubuntu), "
                          "brew install mosquitto (macOS); or use --broker embedded (demo only)")
    if not find_mosquitto() and not amqtt_available():
        raise BrokerError("no MQTT broker: install mosquitto (apt-get install mosquitto, brew install mosquitto) "
                          "or the Python package amqtt for the embedded demo broker")

    # Seeding runs before any child exists: Ctrl-C simply interrupts it (KeyboardInterrupt),
    # and the next run starts the seeding over because the marker file was not written.
    registry = heze_sample()
    props = history.propensities(registry)
    if args.terminals:
        props = dict(sorted(props.items())[: args.terminals])
    devices = history.write_devices_file(workdir / "devices.txt", props)
    marker = workdir / MARKER
    if not marker.exists():
        _reset_partial(workdir)
        info = seed(workdir, registry, props, args, say)
        marker.write_text(json.dumps(info, ensure_ascii=False, indent=2) + "\n")
    else:
        say(f"continuing the city in {workdir} (seeded {json.loads(marker.read_text())['seeded_at'][:10]})")
    if getattr(args, "seed_only", False):
        say(f"seeded: {workdir / 'votes.db'} and {workdir / 'center.db'}")
        return 0
    store_url = f"sqlite:///{workdir / 'votes.db'}"
    db = workdir / "center.db"
    password = admin_password(workdir, db, logs / "setup.log")

    stop = threading.Event()

    def on_signal(signum, frame):
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    children: list[Child] = []
    broker = None
    code = 0
    try:
        broker_port = args.broker_port or free_port()
        embedded = broker_choice == "embedded" or not find_mosquitto()
        if embedded:
            say(f"starting the EMBEDDED MQTT broker (amqtt, pure Python, MQTT 3.1.1) on 127.0.0.1:{broker_port}: "
                "FOR THE DEMO ONLY (no MQTT 5 reason codes, no ACL, sessions in memory); "
                "production uses mosquitto (docs/operations.md)")
        else:
            say(f"starting mosquitto on 127.0.0.1:{broker_port}")
        broker = start_local_broker(workdir, broker_port, prefer="embedded" if embedded else "mosquitto")
        address = broker.address
        version_args = ["--mqtt-version", broker.mqtt_version] if broker.mqtt_version != "5" else []

        collector = Child("collector", manyi_argv("-v", "collector", "--broker", address, "--store", store_url,
                                                  "--client-id", "manyi-demo-collector", *version_args),
                          logs / "collector.log")
        offset = collector.log.stat().st_size if collector.log.exists() else 0
        children.append(collector.start())
        wait_for_text(collector.log, "connected to", collector, 30, offset)
        time.sleep(0.3)  # its SUBACK follows the CONNACK: the session exists before terminals publish

        sim_args = ["simulate", "--broker", address, "--devices", str(devices), "--workdir", str(workdir / "terminals"),
                    "--speed", f"{args.speed:g}", "--seed", str(int(time.time())), *version_args]
        if args.rate:
            sim_args += ["--rate", f"{args.rate:g}"]
        children.append(Child("simulator", manyi_argv(*sim_args), logs / "simulator.log").start())

        center = Child("control center", manyi_argv("serve", "--host", args.host, "--port", str(args.port),
                                                    "--store", store_url, "--db", str(db)), logs / "center.log")
        children.append(center.start())
        url = f"http://{args.host}:{args.port}/"
        wait_for_http(url + "login", center, 60)
        say("\n".join([
            "",
            f"  control center  {url}",
            f"  login           {ADMIN_USER} / {password}   (kept in {workdir / 'admin-password.txt'})",
            f"  simulated city  {len(props)} terminals of the Heze sample registry, speed x{args.speed:g}"
            + (f", {args.rate:g} votes/s" if args.rate else ""),
            f"  MQTT broker     {broker.name} at {address}, MQTT {broker.mqtt_version}"
            + ("   (embedded: FOR THE DEMO ONLY)" if embedded else ""),
            f"  data            {workdir}   logs: {logs}",
            "  NOTE            history, survey, scores and live votes are SIMULATED (模拟数据)",
            "  Ctrl-C stops everything; `manyi run` again continues the same city.",
            "",
        ]))
        while not stop.wait(0.5):
            dead = [c for c in children if not c.alive]
            if dead or not broker.running:
                for child in dead:
                    say(f"{child.name} exited with code {child.process.returncode}; log {child.log}:\n{child.tail()}")
                if not broker.running:
                    say(f"{broker.name} exited; log:\n{broker.log_tail()}")
                code = 1
                break
        else:
            say("stopping ...")
    finally:
        # Terminals first (they send their offline status), then the center, then the
        # collector (it finishes its batch; unacknowledged votes stay with the broker;
        # the embedded broker keeps nothing across a stop, the terminals' outboxes do).
        order = {"simulator": 0, "control center": 1, "collector": 2}
        for child in sorted(children, key=lambda c: order.get(c.name, 0)):
            child.stop(grace=20 if child.name == "collector" else 10)
        if broker is not None:
            broker.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        lock.close()
    say("stopped" if code == 0 else "stopped after a failure")
    return code

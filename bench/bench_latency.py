"""Benchmark: press → stored and press → live-view event, each against its floor measured in the same run.

Everything is real and runs as in production, each part in its own process: mosquitto,
``manyi collector`` (default batching) writing to SQLite, and ``manyi serve`` (the control
center under waitress) whose ``/api/v1/stream`` Server-Sent-Events stream is read by a
plain HTTP client logged in with an API token. The terminals are the real device code
(``Terminal`` + ``Publisher`` on gpiozero mock pins, outbox ``synchronous=FULL``, as
``tests/plugin_device.py``'s Rig, run by a 20 ms tick loop like ``device/run.py``) in
this process. Presses go round-robin over ``--terminals`` terminals, ``--gap-ms`` apart
(uniformly random, default 20–50 ms, so presses are independent), lock-out 0.5 s.

Every time is wall-clock (``time.time()``), taken when a key pin is driven low and when
a vote is observed:

* ``stored``: a watcher process polls the SQLite votes table every ``--watch-ms`` (2 ms):
  the moment the collector's commit became visible (resolution: the poll interval). It
  is split with the collector's own receive time (``received_us``): press → collector
  received (terminal, broker, network) and received → committed (batching and write).
  Floor, same run: the raw MQTT QoS 1 round trip, a bare paho publisher → a bare paho
  subscriber process, as many messages with the same spacing and the vote's size.
* ``live``: the SSE event's arrival at the HTTP client. Floor, same run: a bare reader
  polling ``store.feed()`` every STREAM_POLL_SECONDS (0.3 s, what the stream does) in
  its own process: the store poll interval on top of the stored latency.

Run: ``python -m bench.bench_latency [--presses N] [--quick]`` (or ``python -m bench latency``).
Targets: stored p95 <= 200 ms, live p95 <= 1 s.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import os
import random
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ENTRY = "import sys; from manyi.cli import main; sys.exit(main())"      # what the `manyi` console script runs
STREAM_POLL_SECONDS = 0.3        # analytics.web DEFAULTS["STREAM_POLL_SECONDS"]; the live path's floor
TARGET_STORED, TARGET_LIVE = 0.200, 1.0
RAW_TOPIC = "bench/raw/latency"


def percentile(values: list[float], q: float) -> float:
    """The ``q`` quantile (0..1) of ``values`` by nearest rank."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))]


def summary(values: list[float]) -> str:
    """p50 / p95 / p99 / max in milliseconds, and n."""
    if not values:
        return "no observations"
    ms = [v * 1000 for v in values]
    return (f"p50 {percentile(ms, 0.5):7.1f}  p95 {percentile(ms, 0.95):7.1f}  p99 {percentile(ms, 0.99):7.1f}  "
            f"max {max(ms):7.1f} ms  (n={len(ms)})")


# --- observer processes (``--child KIND``): each prints "ready", then one JSON line per observation ---------

def emit(record) -> None:
    """Print one observation line."""
    print(json.dumps(record), flush=True)


def child_mqtt(port: int) -> None:
    """Bare paho subscriber: time of arrival of every raw message."""
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    subscribed = threading.Event()
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bench-raw-sub", protocol=mqtt.MQTTv5)
    client.on_connect = lambda c, *a: c.subscribe(RAW_TOPIC, qos=1)
    client.on_subscribe = lambda *a: subscribed.set()
    client.on_message = lambda c, u, msg: emit({"i": json.loads(msg.payload)["i"], "t": time.time()})
    client.connect("127.0.0.1", port)
    client.loop_start()
    subscribed.wait(10)
    emit("ready")
    threading.Event().wait()


def child_store(db: str, every: float) -> None:
    """Poll the votes table every ``every`` s: when each vote's commit became visible."""
    while not Path(db).exists():
        time.sleep(0.01)
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    conn.execute("PRAGMA busy_timeout=1000")
    last = None
    while last is None:
        try:
            last = conn.execute("SELECT coalesce(max(id), 0) FROM votes").fetchone()[0]
        except sqlite3.OperationalError:       # the collector has not created the table yet
            time.sleep(0.01)
    emit("ready")
    while True:
        try:
            rows = conn.execute("SELECT id, device, seq, received_us FROM votes WHERE id > ? ORDER BY id",
                                (last,)).fetchall()
        except sqlite3.OperationalError:
            rows = []
        now = time.time()
        for row_id, device, seq, received_us in rows:
            emit({"d": device, "s": seq, "t": now, "r": received_us / 1e6})
            last = row_id
        time.sleep(every)


def child_poll(store_url: str, every: float) -> None:
    """A bare reader of ``store.feed()`` every ``every`` s, as the SSE stream polls (the live floor)."""
    from collector.stores import open_store

    while True:
        try:
            store = open_store(store_url)
            latest = store.feed(after=None, limit=1)
            break
        except Exception:  # noqa: BLE001 - the collector has not created the store yet
            time.sleep(0.05)
    cursor = latest[-1].cursor if latest else "0"
    emit("ready")
    while True:
        items = store.feed(after=cursor, limit=200)
        now = time.time()
        for item in items:
            emit({"d": item.device, "s": item.seq, "t": now})
            cursor = item.cursor
        if len(items) < 200:
            time.sleep(every)


def child_sse(port: int, token: str) -> None:
    """Read the control center's event stream with a plain HTTP client; reconnect with Last-Event-ID."""
    import http.client

    last_id, ready = None, False
    while True:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        headers = {"Authorization": f"Bearer {token}", "Accept": "text/event-stream"}
        if last_id:
            headers["Last-Event-ID"] = last_id
        conn.request("GET", "/api/v1/stream", headers=headers)
        response = conn.getresponse()
        if response.status != 200:
            raise SystemExit(f"stream answered {response.status}: {response.read()[:200]!r}")
        while True:
            line = response.readline()
            if not line:
                break
            now = time.time()
            if not ready:
                ready = True
                emit("ready")
            text = line.decode("utf-8").rstrip("\n")
            if text.startswith("id: "):
                last_id = text[4:]
            elif text.startswith("data: "):
                data = json.loads(text[6:])
                emit({"d": data["device"], "s": data["seq"], "t": now})
        conn.close()


def run_child(kind: str, args: list[str]) -> int:
    """Entry of an observer process."""
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    if kind == "mqtt":
        child_mqtt(int(args[0]))
    elif kind == "store":
        child_store(args[0], float(args[1]))
    elif kind == "poll":
        child_poll(args[0], float(args[1]))
    elif kind == "sse":
        child_sse(int(args[0]), args[1])
    else:
        raise SystemExit(f"unknown child {kind!r}")
    return 0


# --- the parent ---------------------------------------------------------------------------------------

def child_env() -> dict:
    """Environment of the child processes: this checkout on the path."""
    root = str(Path(__file__).resolve().parent.parent)
    path = os.environ.get("PYTHONPATH")
    return dict(os.environ, PYTHONPATH=f"{root}{os.pathsep}{path}" if path else root)


class Observer:
    """A child process whose stdout (one JSON line per observation) goes to a file."""

    def __init__(self, workdir: Path, kind: str, *args):
        self.kind = kind
        self.path = workdir / f"observed-{kind}.jsonl"
        self._out = self.path.open("w")
        self.proc = subprocess.Popen([sys.executable, "-m", "bench.bench_latency", "--child", kind, *map(str, args)],
                                     stdout=self._out, stderr=subprocess.DEVNULL, env=child_env())

    def records(self) -> list:
        """Everything observed so far (the ready mark excluded)."""
        lines = self.path.read_text().splitlines()
        return [json.loads(line) for line in lines if line.strip() and line.strip() != '"ready"']

    def wait_ready(self, timeout: float = 30.0) -> None:
        """Wait until the child printed its ready mark."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if '"ready"' in self.path.read_text():
                return
            if self.proc.poll() is not None:
                raise RuntimeError(f"observer {self.kind} exited with {self.proc.returncode}")
            time.sleep(0.05)
        raise RuntimeError(f"observer {self.kind} not ready after {timeout:.0f} s")

    def stop(self) -> None:
        """End the child."""
        stop_process(self.proc)
        self._out.close()


def stop_process(proc: subprocess.Popen) -> None:
    """SIGTERM, then SIGKILL after 10 s."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def manyi(*args: str, stdin: str | None = None) -> str:
    """Run a ``manyi`` command to completion; return its stdout."""
    result = subprocess.run([sys.executable, "-c", ENTRY, *args], input=stdin, capture_output=True, text=True,
                            env=child_env(), timeout=120)
    if result.returncode != 0:
        raise RuntimeError(f"manyi {' '.join(args)} failed: {result.stderr.strip()}")
    return result.stdout


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_http(port: int, token: str, timeout: float = 60.0) -> None:
    """Wait until the control center answers /api/v1/me with 200."""
    import http.client

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            conn.request("GET", "/api/v1/me", headers={"Authorization": f"Bearer {token}"})
            if conn.getresponse().status == 200:
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"control center on port {port} not up after {timeout:.0f} s")


def wait_for(predicate, timeout: float) -> bool:
    """Poll ``predicate`` every 50 ms until true or ``timeout`` s passed."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return bool(predicate())


def gaps(n: int, low: float, high: float, seed: int) -> list[float]:
    """``n`` seconds to wait between sends, uniform in [low, high]."""
    rng = random.Random(seed)
    return [rng.uniform(low, high) for _ in range(n)]


def raw_round_trip(port: int, workdir: Path, n: int, low: float, high: float, size: int) -> list[float]:
    """Seconds from a bare QoS 1 publish to a bare subscriber's receipt, for ``n`` messages."""
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    observer = Observer(workdir, "mqtt", port)
    pub = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bench-raw-pub", protocol=mqtt.MQTTv5)
    try:
        observer.wait_ready()
        pub.connect("127.0.0.1", port)
        pub.loop_start()
        sent = {}
        for i, gap in enumerate(gaps(n, low, high, seed=7)):
            payload = json.dumps({"i": i, "pad": "x" * max(0, size - 20)})
            sent[i] = time.time()
            pub.publish(RAW_TOPIC, payload, qos=1)
            time.sleep(gap)
        wait_for(lambda: len(observer.records()) >= n, 10)
        return [r["t"] - sent[r["i"]] for r in observer.records() if r["i"] in sent]
    finally:
        pub.disconnect()
        pub.loop_stop()
        observer.stop()


def heze_devices(count: int) -> list[str]:
    """The first ``count`` terminals of the Heze sample registry (so the live feed resolves their places)."""
    from manyi.registry import SAMPLE_DIR

    with (SAMPLE_DIR / "assignments.csv").open(encoding="utf-8") as handle:
        devices = list(dict.fromkeys(row["device"] for row in csv.DictReader(handle)))
    if len(devices) < count:
        raise ValueError(f"the sample registry has only {len(devices)} terminals, {count} asked")
    return devices[:count]


class Fleet:
    """Terminals on mock pins with their publishers, and the 20 ms tick loop of device/run.py."""

    def __init__(self, workdir: Path, port: int, devices: list[str]):
        from device.config import TerminalSettings
        from device.outbox import Outbox
        from device.publisher import Publisher
        from device.simulate import IsolatedMockFactory
        from device.terminal import Terminal

        self.terminals, self.publishers = [], []
        for device in devices:
            settings = TerminalSettings(device_id=device, broker_port=port, outbox_path=workdir / f"{device}.db",
                                        lockout_seconds=0.5, clock_source="trusted")
            outbox = Outbox(settings.outbox_path, device, limit=settings.outbox_limit,
                            synchronous=settings.outbox_synchronous)
            terminal = Terminal(settings, outbox, pin_factory=IsolatedMockFactory(), clock_ok=lambda: True)
            publisher = Publisher(settings, outbox, status_fields=terminal.status_fields, on_change=terminal.tick)
            terminal.on_vote = lambda _vote, p=publisher: p.wake()
            self.terminals.append(terminal)
            self.publishers.append(publisher)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._tick, daemon=True, name="fleet-tick")

    def start(self, timeout: float = 30.0) -> None:
        """Connect every publisher and start ticking."""
        for publisher in self.publishers:
            publisher.start()
        self._thread.start()
        if not all(p.connected.wait(max(0.1, timeout)) for p in self.publishers):
            raise RuntimeError("not every terminal connected to the broker")

    def _tick(self) -> None:
        while not self._stop.wait(0.02):
            for terminal, publisher in zip(self.terminals, self.publishers):
                terminal.tick()
                publisher.tick()

    def press(self, index: int, rating: str) -> tuple[str, int, float] | None:
        """Drive one key pin low and high; (device, seq, wall time of the drive) if it became a vote."""
        terminal = self.terminals[index]
        pin = terminal.keys[rating].pin
        votes = terminal.counts["vote"]
        at = time.time()
        pin.drive_low()
        pin.drive_high()
        if terminal.counts["vote"] == votes:
            return None
        return terminal.settings.device_id, terminal.outbox.last_seq, at

    def pending(self) -> int:
        """Votes not yet acknowledged by the broker, over all terminals."""
        return sum(t.outbox.depth for t in self.terminals)

    def close(self) -> None:
        """Stop ticking, disconnect, release pins and outboxes."""
        self._stop.set()
        self._thread.join(5)
        for publisher in self.publishers:
            publisher.begin_stop(timeout=0.5)
        for publisher, terminal in zip(self.publishers, self.terminals):
            publisher.finish_stop()
            terminal.close()
            terminal.outbox.close()


def press_all(fleet: Fleet, n: int, low: float, high: float, seed: int) -> dict:
    """``n`` presses round-robin over the fleet with random gaps; (device, seq) -> wall time of the press."""
    ratings = ("satisfied", "basic", "unsatisfied")
    pressed, refused = {}, 0
    count = len(fleet.terminals)
    for i, gap in enumerate(gaps(n, low, high, seed)):
        vote = fleet.press(i % count, ratings[(i // count) % 3])
        if vote is None:
            refused += 1
        else:
            pressed[vote[:2]] = vote[2]
        time.sleep(gap)
    if refused:
        print(f"warning: {refused} presses were not votes (lock-out); they are left out")
    return pressed


def latencies(pressed: dict, records: list[dict], field: str = "t") -> list[float]:
    """Seconds from press to observation for every pressed vote observed (first observation)."""
    seen = {}
    for r in records:
        seen.setdefault((r["d"], r["s"]), r[field])
    return [seen[key] - at for key, at in pressed.items() if key in seen]


def run(args, workdir: Path) -> dict:
    """Set up every process, press, observe, and print the figures."""
    from demo.broker import Mosquitto

    low, high = args.gap_ms[0] / 1000, args.gap_ms[1] / 1000
    if args.terminals * low <= 0.5 + 0.05:
        raise SystemExit(f"--terminals {args.terminals} x --gap-ms {args.gap_ms[0]} must exceed the 0.5 s lock-out")
    results: dict = {}
    procs: list[subprocess.Popen] = []
    observers: list[Observer] = []
    fleet = None
    db, center = workdir / "votes.db", workdir / "center.db"
    store_url = f"sqlite:///{db}"
    with Mosquitto(workdir / "mosquitto") as broker:
        try:
            results["raw"] = raw_round_trip(broker.port, workdir, args.presses, low, high, size=190)
            print(f"floor: raw MQTT QoS 1 publish -> bare subscriber   {summary(results['raw'])}", flush=True)

            collector = ["collector", "--broker", broker.address, "--store", store_url, "--client-id", "bench-collector"]
            if args.idle_ms is not None:
                config = workdir / "collector.toml"
                config.write_text(f"[collector]\nidle_ms = {args.idle_ms}\n", encoding="utf-8")
                collector += ["--config", str(config)]
            settings = json.loads(manyi(*collector, "--print-config"))
            print(f"collector: batch_size {settings['batch_size']}, batch_ms {settings['batch_ms']}, "
                  f"idle_ms {settings.get('idle_ms')}", flush=True)
            procs.append(subprocess.Popen([sys.executable, "-c", ENTRY, *collector],
                                          env=child_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
            store = Observer(workdir, "store", db, args.watch_ms / 1000)
            observers.append(store)
            store.wait_ready()
            poll = Observer(workdir, "poll", store_url, STREAM_POLL_SECONDS)
            observers.append(poll)
            manyi("user", "add", "bench", "--role", "admin", "--password-stdin", "--db", str(center),
                  stdin="Latency-Pass-1234\n")
            token = manyi("token", "add", "bench", "--name", "bench_latency", "--db", str(center)).strip().splitlines()[-1]
            port = free_port()
            procs.append(subprocess.Popen([sys.executable, "-c", ENTRY, "serve", "--store", store_url, "--db", str(center),
                                           "--port", str(port), "--cookie-secure", "no"],
                                          env=child_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
            wait_http(port, token)
            sse = Observer(workdir, "sse", port, token)
            observers.append(sse)
            poll.wait_ready()
            sse.wait_ready()

            fleet = Fleet(workdir / "terminals", broker.port, heze_devices(args.terminals))
            fleet.start()
            # Warm-up: one vote per terminal, all stored (the collector is subscribed), then the lock-out passes.
            warm = press_all(fleet, args.terminals, low, high, seed=1)
            if not wait_for(lambda: len(latencies(warm, store.records())) >= len(warm), 30):
                raise RuntimeError("warm-up votes were not stored within 30 s (is the collector running?)")
            time.sleep(1.0)

            began = time.monotonic()
            pressed = press_all(fleet, args.presses, low, high, seed=2)
            took = time.monotonic() - began
            wait_for(lambda: len(latencies(pressed, store.records())) >= len(pressed), 30)
            wait_for(lambda: len(latencies(pressed, sse.records())) >= len(pressed)
                     and len(latencies(pressed, poll.records())) >= len(pressed), 10)
        finally:
            if fleet is not None:
                fleet.close()
            for observer in observers:
                observer.stop()
            for proc in procs:
                stop_process(proc)

    stored_records = store.records()
    results["stored"] = latencies(pressed, stored_records)
    results["received"] = latencies(pressed, stored_records, "r")
    by_key = {(r["d"], r["s"]): r for r in stored_records}
    results["commit"] = [by_key[k]["t"] - by_key[k]["r"] for k in pressed if k in by_key]
    results["poll"] = latencies(pressed, poll.records())
    results["live"] = latencies(pressed, sse.records())
    results["pressed"] = len(pressed)
    n = len(pressed)
    print(f"{n} votes pressed on {args.terminals} terminals in {took:.1f} s "
          f"({n / took:.1f} votes/s, gaps {args.gap_ms[0]}-{args.gap_ms[1]} ms)")
    print(f"press -> stored (commit seen, {args.watch_ms:g} ms poll)    {summary(results['stored'])}  "
          f"target p95 <= {TARGET_STORED * 1000:.0f} ms: {verdict(results['stored'], TARGET_STORED)}")
    print(f"  of which press -> collector received    {summary(results['received'])}")
    print(f"  of which received -> committed          {summary(results['commit'])}")
    print(f"floor: bare store.feed() poll every {STREAM_POLL_SECONDS:g} s   {summary(results['poll'])}")
    print(f"press -> live SSE event (manyi serve)     {summary(results['live'])}  "
          f"target p95 <= {TARGET_LIVE * 1000:.0f} ms: {verdict(results['live'], TARGET_LIVE)}")
    for label, key in (("stored", "stored"), ("live", "live"), ("feed poll", "poll")):
        if len(results[key]) < n:
            print(f"MISSING: {n - len(results[key])} of {n} votes were not seen {label}")
    return results


def verdict(values: list[float], target: float) -> str:
    """'met' or 'MISSED' for a p95 target."""
    return "met" if values and percentile(values, 0.95) <= target else "MISSED"


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark (``--quick``: a smoke run of a few seconds)."""
    parser = argparse.ArgumentParser(prog="bench_latency")
    parser.add_argument("--presses", type=int, default=1000, help="measured presses (default 1,000)")
    parser.add_argument("--terminals", type=int, default=30, help="terminals pressed in turn (default 30)")
    parser.add_argument("--gap-ms", type=float, nargs=2, default=(20.0, 50.0), metavar=("LOW", "HIGH"),
                        help="random gap between presses (default 20 50)")
    parser.add_argument("--watch-ms", type=float, default=2.0, help="stored watcher's poll interval (default 2)")
    parser.add_argument("--idle-ms", type=int, default=None,
                        help="run the collector with this idle_ms (default: the collector's own default)")
    parser.add_argument("--quick", action="store_true", help="40 presses on 30 terminals (smoke test)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args, rest = parser.parse_known_args(argv)
    if args.child:
        return run_child(args.child, rest)
    if rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    if args.quick:
        args.presses = 40
    # paho logs an ERROR "Client is not connected" when a terminal's network thread ends after a clean stop.
    logging.getLogger("device.publisher.paho").setLevel(logging.CRITICAL)
    with tempfile.TemporaryDirectory(prefix="bench-latency-") as tmp:
        run(args, Path(tmp))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Benchmark: the terminal process's memory and CPU, idle and at one press per second (Pi Zero: <= 40 MB RSS).

The process measured is the terminal as it runs on a Pi: ``manyi device --config FILE``
with ``GPIOZERO_PIN_FACTORY=mock`` (no GPIO here), connected to a real mosquitto with a
``mosquitto_sub`` QoS 1 subscriber (so every vote is acknowledged with PUBACK 0x00 and
leaves the outbox, as with a collector). Phases, each a separate process measured with
psutil after a warm-up:

1. ``baseline``: ``python -c "import paho.mqtt.client, sqlite3"`` sleeping: the floor of
   the interpreter and the two libraries a terminal cannot do without.
2. ``idle``: the real entry point (the console script's body, ``manyi.cli.main``), no press.
3. ``1 press/s``: the same entry point run by :func:`press_child` (``--child-press``), a
   bench-only wrapper that imports nothing else: a thread finds the key pins in gpiozero's
   mock pin factory (``Device.pin_factory.pin(N)``, the pins the terminal itself uses)
   and presses the three keys in turn, one press per second; the lock-out is 0.5 s so
   that each press is a vote (outbox commit, publish, PUBACK, delete). The wrapper's
   own cost is seen by comparing its idle figures with phase 2 (printed too).

Figures: RSS (resident set: what ``top`` shows; shared library pages counted in full),
USS (unique: what killing the process would free), PSS (proportional: shared pages
divided among the processes sharing them), peak RSS (sampled every 0.25 s), CPU% (CPU
time / wall time over the window, 100% = one core), threads. The terminal's
``sys.modules`` is checked for server libraries (pandas, numpy, flask, ...), and
``python -X importtime`` lists the largest imports of ``manyi device``.

Run: ``python -m bench.bench_terminal [--seconds N] [--quick]`` (or ``python -m bench terminal``).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

TARGET_RSS_MB = 40.0
HEAVY = ("pandas", "numpy", "flask", "werkzeug", "jinja2", "plotly", "openpyxl", "influxdb_client", "waitress",
         "psutil")
ENTRY = "import sys; from manyi.cli import main; sys.exit(main())"      # what the `manyi` console script runs
BASELINE = "import paho.mqtt.client, sqlite3, time; print('ready', flush=True); time.sleep(3600)"
MODULES_MARK = "bench-terminal-modules "


# --- the child: the real entry point with a press thread ------------------------------------

def press_child(rate: float, argv: list[str]) -> int:
    """Run ``manyi.cli.main(argv)`` while a thread presses the mock key pins ``rate`` times per second.

    Prints the loaded modules (one JSON line) when the terminal has stopped (SIGTERM).
    """
    from manyi.cli import main as manyi_main

    done = threading.Event()
    if rate > 0:
        threading.Thread(target=_press_loop, args=(rate, argv, done), daemon=True, name="bench-presses").start()
    try:
        code = manyi_main(argv)
    finally:
        done.set()
        print(MODULES_MARK + json.dumps(sorted(sys.modules)), flush=True)
    return code


def _press_loop(rate: float, argv: list[str], done: threading.Event) -> None:
    from gpiozero import Device

    from device.config import load_settings

    settings = load_settings(argv[argv.index("--config") + 1])
    keys = list(settings.key_pins.values())
    # Wait until the terminal has built its keys on the mock factory (gpiozero creates it lazily).
    while not done.wait(0.05):
        factory = Device.pin_factory
        built = [info.names for info in getattr(factory, "pins", {})]     # keyed by gpiozero PinInfo
        if all(any(key in names for names in built) for key in keys):
            break
    presses, next_at = 0, time.monotonic()
    while not done.wait(max(0.0, next_at - time.monotonic())):
        pin = Device.pin_factory.pin(keys[presses % len(keys)])
        pin.drive_low()
        pin.drive_high()
        presses += 1
        next_at += 1.0 / rate


# --- measuring -------------------------------------------------------------------------------

def measure(proc: subprocess.Popen, warmup: float, seconds: float) -> dict:
    """Memory and CPU of ``proc`` over ``seconds`` after ``warmup`` seconds."""
    import psutil

    ps = psutil.Process(proc.pid)
    time.sleep(warmup)
    if proc.poll() is not None:
        raise RuntimeError(f"process {proc.args!r} exited with {proc.returncode} during the warm-up")
    peak = ps.memory_info().rss
    cpu0, began = ps.cpu_times(), time.monotonic()
    while time.monotonic() - began < seconds:
        time.sleep(0.25)
        peak = max(peak, ps.memory_info().rss)
    cpu1, wall = ps.cpu_times(), time.monotonic() - began
    full = ps.memory_full_info()
    return {"rss": full.rss / 2**20, "uss": full.uss / 2**20, "pss": full.pss / 2**20,
            "peak_rss": max(peak, full.rss) / 2**20, "threads": ps.num_threads(),
            "cpu": 100.0 * ((cpu1.user + cpu1.system) - (cpu0.user + cpu0.system)) / wall}


def stop(proc: subprocess.Popen, stream: int = 0) -> str:
    """SIGTERM ``proc`` (the terminal stops cleanly) and return its stdout (``stream`` 1: stderr)."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        outputs = proc.communicate(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        outputs = proc.communicate()
    return outputs[stream] or ""


def write_config(path: Path, port: int, workdir: Path, name: str) -> Path:
    """A terminal TOML for the bench broker (lock-out 0.5 s so that one press per second is one vote)."""
    path.write_text(f'[terminal]\ndevice_id = "{name}"\nbroker_host = "127.0.0.1"\nbroker_port = {port}\n'
                    f'outbox_path = "{workdir / (name + ".db")}"\nclock_source = "trusted"\n'
                    f'lockout_seconds = 0.5\n', encoding="utf-8")
    return path


def child_env() -> dict:
    """Environment of the terminal processes: mock pins, this checkout on the path."""
    root = str(Path(__file__).resolve().parent.parent)
    path = os.environ.get("PYTHONPATH")
    return dict(os.environ, GPIOZERO_PIN_FACTORY="mock", PYTHONPATH=f"{root}{os.pathsep}{path}" if path else root)


def start(argv: list[str]) -> subprocess.Popen:
    """Start a child process with stdout captured."""
    return subprocess.Popen(argv, env=child_env(), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)


def modules_of(output: str) -> list[str]:
    """The module list a press_child printed."""
    for line in output.splitlines():
        if line.startswith(MODULES_MARK):
            return json.loads(line[len(MODULES_MARK):])
    raise RuntimeError("the terminal did not print its modules (did it stop cleanly?)")


def import_times(config: Path, top: int) -> list[tuple[str, float]]:
    """The ``top`` largest top-level imports (cumulative ms) of ``manyi device``, by ``python -X importtime``."""
    proc = subprocess.Popen([sys.executable, "-X", "importtime", "-c", ENTRY, "device", "--config", str(config)],
                            env=child_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    time.sleep(3)
    err = stop(proc, stream=1)
    rows = []
    for line in err.splitlines():
        parts = line.split("|")
        if len(parts) == 3 and parts[1].strip().isdigit() and not parts[2].startswith("  "):
            rows.append((parts[2].strip(), int(parts[1]) / 1000))
    return sorted(rows, key=lambda r: -r[1])[:top]


def row(label: str, m: dict, base: dict | None) -> str:
    """One printed line of figures."""
    over = f" (+{m['rss'] - base['rss']:4.1f} MB RSS over the baseline)" if base else ""
    return (f"{label:<28} RSS {m['rss']:5.1f} MB  USS {m['uss']:5.1f} MB  PSS {m['pss']:5.1f} MB  "
            f"peak RSS {m['peak_rss']:5.1f} MB  CPU {m['cpu']:5.2f}%  threads {m['threads']:2d}{over}")


def outbox_counts(path: Path) -> dict:
    """Votes recorded (last seq), still pending, and repeat presses, from a stopped terminal's outbox."""
    import sqlite3

    db = sqlite3.connect(path)
    try:
        counters = dict(db.execute("SELECT name, value FROM counters"))
        pending = db.execute("SELECT count(*) FROM pending").fetchone()[0]
    finally:
        db.close()
    return {"votes": counters["last_seq"], "pending": pending, "repeats": counters["repeats"]}


def run(seconds: float, warmup: float, rate: float, workdir: Path) -> dict:
    """Measure the three phases; print and return the figures."""
    from demo.broker import Mosquitto

    sub_exe = shutil.which("mosquitto_sub")
    if sub_exe is None:
        raise RuntimeError("mosquitto_sub is needed (Debian package mosquitto-clients)")
    results: dict = {}
    with Mosquitto(workdir / "mosquitto") as broker:
        sub = subprocess.Popen([sub_exe, "-h", broker.host, "-p", str(broker.port), "-q", "1", "-t",
                                "manyi/v1/votes/+", "-i", "bench-terminal-sub"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            time.sleep(0.3)
            base = start([sys.executable, "-c", BASELINE])
            try:
                results["baseline"] = measure(base, warmup, seconds)
            finally:
                stop(base)
            print(row("baseline: python+paho+sqlite3", results["baseline"], None), flush=True)

            idle = start([sys.executable, "-c", ENTRY, "device", "--config",
                          str(write_config(workdir / "idle.toml", broker.port, workdir, "hz-bench-idle"))])
            try:
                results["idle"] = measure(idle, warmup, seconds)
            finally:
                stop(idle)
            print(row("manyi device, idle", results["idle"], results["baseline"]), flush=True)

            config = write_config(workdir / "press.toml", broker.port, workdir, "hz-bench-press")
            wrapper = [sys.executable, "-m", "bench.bench_terminal", "--child-press"]
            quiet = start([*wrapper, "0", "device", "--config", str(config)])
            try:
                results["wrapper_idle"] = measure(quiet, warmup, min(seconds, 5))
            finally:
                out = stop(quiet)
            print(row("bench wrapper, idle", results["wrapper_idle"], results["baseline"]), flush=True)
            busy = start([*wrapper, str(rate), "device", "--config", str(config)])
            try:
                results["press"] = measure(busy, warmup, seconds)
            finally:
                out = stop(busy)
            print(row(f"manyi device, {rate:g} press/s", results["press"], results["baseline"]), flush=True)
            modules = modules_of(out)
        finally:
            stop(sub)
    results["outbox"] = box = outbox_counts(workdir / "hz-bench-press.db")
    results["modules"] = len(modules)
    results["heavy"] = sorted({m.split(".")[0] for m in modules} & set(HEAVY))
    print(f"busy terminal: {box['votes']} votes recorded, {box['votes'] - box['pending']} acknowledged by the broker "
          f"(PUBACK 0x00), {box['pending']} pending, {box['repeats']} repeat presses")
    worst = max(results["idle"]["peak_rss"], results["press"]["peak_rss"])
    print(f"target: <= {TARGET_RSS_MB:.0f} MB RSS: {'met' if worst <= TARGET_RSS_MB else 'MISSED'} "
          f"(peak {worst:.1f} MB; x86_64 CPython, a 32-bit Pi OS build is smaller)")
    print(f"terminal sys.modules: {len(modules)} modules; server libraries loaded: "
          f"{', '.join(results['heavy']) if results['heavy'] else 'none'} (checked: {', '.join(HEAVY)})")
    results["imports"] = import_times(config, 8)
    print("largest imports of manyi device (python -X importtime, cumulative): "
          + ", ".join(f"{name} {ms:.0f} ms" for name, ms in results["imports"]))
    return results


def main(argv: list[str] | None = None) -> int:
    """Measure and print; ``--quick`` for a smoke run of a few seconds."""
    parser = argparse.ArgumentParser(prog="bench_terminal")
    parser.add_argument("--seconds", type=float, default=20.0, help="measurement window per phase (default 20)")
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds after start before measuring (default 3)")
    parser.add_argument("--rate", type=float, default=1.0, help="presses per second in the busy phase (default 1)")
    parser.add_argument("--quick", action="store_true", help="2 s windows after a 2 s warm-up (smoke test)")
    parser.add_argument("--child-press", type=float, metavar="RATE", help=argparse.SUPPRESS)
    args, rest = parser.parse_known_args(argv)
    if args.child_press is not None:
        return press_child(args.child_press, rest)
    if rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    if args.quick:
        args.seconds, args.warmup = 2.0, 2.0
    with tempfile.TemporaryDirectory(prefix="bench-terminal-") as tmp:
        run(args.seconds, args.warmup, args.rate, Path(tmp))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

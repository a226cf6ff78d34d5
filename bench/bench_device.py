"""Benchmark: the terminal's hot path and the simulator, each against a baseline in the same process.

1. ``latency``: press-to-confirmation of one terminal on gpiozero MockFactory pins with a
   fake clock: from driving the key pin low to the confirmation LED being on, which
   includes the outbox commit. ``synchronous=FULL`` (the terminal's default: a confirmed
   vote survives a power cut) against ``NORMAL`` (baseline: survives a crash of the
   process only). Median and p99 of ``--presses`` presses each.
2. ``outbox``: ``Outbox.add`` throughput (one transaction per vote, as the terminal does)
   and ``acknowledge_many`` in batches of 50 (as the publisher does), FULL against NORMAL,
   and FULL without the ``sent`` table (``keep_sent=0``, the outbox before acknowledged
   votes were kept for a resend after a broker crash).
3. ``simulate``: ``device.simulate.run_simulation`` in this process through a real
   mosquitto with a ``mosquitto_sub`` QoS 1 subscriber in its own process (a vote counts
   only on PUBACK 0x00, which needs a subscriber): ``--sim-votes`` votes from 50
   terminals (baseline) and from 300; votes/s from the first press to the last
   acknowledgement, and the peak RSS of this process during the run (psutil, sampled
   every 20 ms).

Run: ``python -m bench.bench_device [--full]`` (or ``python -m bench device``); the
default sizes finish in well under a minute.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import tempfile
import threading
import time
from contextlib import contextmanager
from pathlib import Path


def percentile(values: list[float], q: float) -> float:
    """The ``q`` quantile (0..1) of ``values`` by nearest rank."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))]


def press_latencies(workdir: Path, synchronous: str, presses: int) -> list[float]:
    """Seconds from key pin low to confirmation LED on, for ``presses`` votes."""
    from device.config import TerminalSettings
    from device.outbox import Outbox
    from device.simulate import IsolatedMockFactory
    from device.terminal import Terminal
    from manyi.clock import FakeClock

    device = f"bench-{synchronous.lower()}"
    settings = TerminalSettings(device_id=device, outbox_path=workdir / f"{device}.db",
                                outbox_synchronous=synchronous)
    outbox = Outbox(settings.outbox_path, device, synchronous=synchronous)
    clock = FakeClock()
    terminal = Terminal(settings, outbox, pin_factory=IsolatedMockFactory(), clock=clock, clock_ok=lambda: True)
    key, led = terminal.keys["satisfied"].pin, terminal.leds["satisfied"]
    elapsed = []
    try:
        for _ in range(presses):
            started = time.perf_counter()
            key.drive_low()
            if led.value > 0:
                elapsed.append(time.perf_counter() - started)
            key.drive_high()
            clock.advance(settings.lockout_seconds + 1)
            terminal.tick()
    finally:
        terminal.close()
        outbox.close()
    if len(elapsed) != presses:
        raise RuntimeError(f"only {len(elapsed)} of {presses} presses were confirmed")
    return elapsed


def bench_latency(workdir: Path, presses: int) -> None:
    """Print press-to-confirmation median and p99 for NORMAL (baseline) and FULL."""
    figures = {}
    for mode in ("NORMAL", "FULL"):
        values = press_latencies(workdir, mode, presses)
        figures[mode] = statistics.median(values)
        print(f"press to confirmation, outbox {mode:<6}: median {statistics.median(values) * 1000:6.2f} ms, "
              f"p99 {percentile(values, 0.99) * 1000:6.2f} ms, max {max(values) * 1000:6.2f} ms "
              f"({presses} presses; the budget is 50 ms)")
    print(f"press to confirmation: FULL costs {figures['FULL'] / figures['NORMAL']:.1f}x the NORMAL median")


def bench_outbox(workdir: Path, votes: int) -> None:
    """Print Outbox.add and acknowledge_many throughput: NORMAL (baseline), FULL, and FULL without ``sent``."""
    from device.outbox import Outbox

    for mode, keep in (("NORMAL", 1000), ("FULL", 1000), ("FULL", 0)):
        name = f"outbox-{mode.lower()}-{keep}"
        outbox = Outbox(workdir / f"{name}.db", name, synchronous=mode, keep_sent=keep)
        began = time.perf_counter()
        for _ in range(votes):
            outbox.add("satisfied", "2026-11-23T09:30:00.000+08:00", True)
        added = time.perf_counter() - began
        began = time.perf_counter()
        for first in range(1, votes + 1, 50):
            outbox.acknowledge_many(range(first, min(first + 50, votes + 1)))
        acked = time.perf_counter() - began
        assert outbox.depth == 0
        outbox.close()
        print(f"outbox {mode:<6} keep_sent={keep:<4}: add {votes / added:8,.0f} votes/s "
              f"({added / votes * 1000:.2f} ms each), acknowledge_many(50) {votes / acked:9,.0f} votes/s")


@contextmanager
def peak_rss():
    """Yield a dict whose ``peak`` is the highest RSS (bytes) of this process while the block ran."""
    import psutil

    process = psutil.Process()
    result = {"before": process.memory_info().rss, "peak": process.memory_info().rss}
    done = threading.Event()

    def sample():
        while not done.wait(0.02):
            result["peak"] = max(result["peak"], process.memory_info().rss)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        yield result
    finally:
        done.set()
        thread.join()
        result["peak"] = max(result["peak"], process.memory_info().rss)


def bench_simulate(workdir: Path, votes: int, fleets: tuple[int, ...]) -> None:
    """Print simulator votes/s and peak RSS through a real mosquitto, per fleet size."""
    from device.simulate import run_simulation
    from demo.broker import Mosquitto

    sub_exe = shutil.which("mosquitto_sub")
    if sub_exe is None:
        print("simulate: skipped (mosquitto_sub is not installed; Debian package mosquitto-clients)")
        return
    with Mosquitto(workdir / "mosquitto") as broker:
        # A subscriber in its own process: without one the broker answers PUBACK 0x10 and nothing is acked.
        sub = subprocess.Popen([sub_exe, "-h", broker.host, "-p", str(broker.port), "-q", "1",
                                "-t", "manyi/v1/votes/+", "-i", "bench-sub"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            time.sleep(0.5)
            baseline = None
            for terminals in fleets:
                with peak_rss() as rss:
                    summary = run_simulation(broker.address, terminals=terminals, votes=votes, seed=terminals,
                                             workdir=workdir / f"sim-{terminals}", timeout=120)
                rate = summary["votes_per_s"] or 0.0
                baseline = baseline or rate
                ok = "all acknowledged" if summary["acked"] == votes and not summary["pending"] else \
                    f"ONLY {summary['acked']} acknowledged"
                print(f"simulate {terminals:>4} terminals: {votes} votes, {ok}, {rate:7,.0f} votes/s "
                      f"({rate / baseline:.2f}x the {fleets[0]}-terminal baseline), run {summary['seconds']:.1f} s, "
                      f"peak RSS {rss['peak'] / 2**20:.0f} MiB (+{(rss['peak'] - rss['before']) / 2**20:.0f} MiB)")
        finally:
            sub.terminate()
            sub.wait(5)


def main(argv: list[str] | None = None) -> int:
    """Run the three parts and print their figures."""
    parser = argparse.ArgumentParser(prog="bench_device")
    parser.add_argument("--full", action="store_true", help="larger sizes (several minutes)")
    parser.add_argument("--presses", type=int, default=None, help="presses per outbox mode (default 200, full 1000)")
    parser.add_argument("--outbox-votes", type=int, default=None, help="default 2,000, full 20,000")
    parser.add_argument("--sim-votes", type=int, default=None, help="votes per simulator run (default 5,000, full 20,000)")
    args = parser.parse_args(argv)
    presses = args.presses or (1000 if args.full else 200)
    outbox_votes = args.outbox_votes or (20_000 if args.full else 2_000)
    sim_votes = args.sim_votes or (20_000 if args.full else 5_000)
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        bench_latency(workdir, presses)
        bench_outbox(workdir, outbox_votes)
        bench_simulate(workdir, sim_votes, (50, 300))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""``manyi simulate``: many virtual terminals in one process, for tests, benchmarks and the demo.

Each virtual terminal is the real :class:`~device.terminal.Terminal` on its own gpiozero
MockFactory pins, with its own outbox and its own paho client (client id = device id).
A citizen model presses the keys: arrivals by hour of day in office hours (Monday to
Friday, 09:00-12:00 and 13:30-17:30 China time), a satisfaction propensity per window,
and occasional repeat presses during the lock-out (counted as repeats, not votes).

Time is virtual, so the lock-out never throttles in real time:

* ``votes`` mode (``--votes N``): the virtual clock jumps from event to event as fast as
  the machine allows; ``pressed_at`` is virtual time, starting early enough (midnight
  of a past day, China time) that the last votes are not in the future. Exactly N
  votes are recorded; the run ends once the broker acknowledged all of them.
* continuous mode (no ``--votes``): virtual time runs ``speed`` times faster than real
  time and skips nights and weekends, so the demo never goes quiet; ``pressed_at`` is
  the real wall clock (so the collector sees plausible times). ``--rate`` replaces the
  model by a fixed total rate of votes per second.

Everything random comes from one ``random.Random(seed)``: the same seed, devices and
empty workdir give the same votes (device, seq, rating, pressed_at with ``--start``).
"""

from __future__ import annotations

import heapq
import json
import logging
import math
import random
import resource
import signal
import threading
import time
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from gpiozero import DigitalInputDevice
from gpiozero.pins.mock import MockFactory, MockPWMPin

from manyi.clock import SystemClock
from manyi.exc import ConfigError
from manyi.registry import DEFAULT_OPENING_HOURS, OpeningHours
from manyi.settings import parse_broker
from manyi.protocol import BASIC, CHINA_TZ, SATISFIED, UNSATISFIED, is_valid_device_id

from .config import TerminalSettings
from .netloop import NetworkLoop
from .outbox import Outbox
from .publisher import Publisher
from .terminal import REPEAT, VOTE, Terminal

log = logging.getLogger(__name__)

# Citizens per hour at one window, by hour of day (China time); absent hours are closed.
ARRIVALS_PER_HOUR = {9: 6.0, 10: 10.0, 11: 8.0, 13: 4.0, 14: 8.0, 15: 9.0, 16: 7.0, 17: 3.0}
# The sample halls' weekday opening hours (manyi.registry.DEFAULT_OPENING_HOURS) as offsets from midnight.
OPEN_SPANS = tuple((timedelta(minutes=start), timedelta(minutes=end))
                   for start, end in OpeningHours.parse(DEFAULT_OPENING_HOURS).days[0])
REPEAT_PROBABILITY = 0.08
HOLD_SECONDS = (0.08, 0.6)
SERVICE_SECONDS = 60.0          # a window serves at most about one citizen a minute


class IsolatedMockFactory(MockFactory):
    """A MockFactory with pins of its own: gpiozero's factories share one pin table per process."""

    def __init__(self):
        super().__init__(pin_class=MockPWMPin)
        self.pins = {}
        self._reservations = defaultdict(list)


class VirtualClock:
    """Virtual time for the simulated terminals.

    Manual (``speed=None``): moves only with :meth:`advance_to`. Scaled: monotonic time
    runs ``speed`` times faster than real time, plus whatever :meth:`skip` added; the wall
    clock is the real one when ``real_wall`` (continuous mode), virtual otherwise.
    """

    def __init__(self, start: datetime, speed: float | None = None, real_wall: bool = False):
        self.start = start
        self.speed = speed
        self.real_wall = real_wall
        self._real0 = time.monotonic()
        self._offset = 0.0
        self._lock = threading.Lock()

    def monotonic(self) -> float:
        """Virtual seconds since the start."""
        if self.speed is None:
            return self._offset
        return (time.monotonic() - self._real0) * self.speed + self._offset

    def now(self) -> datetime:
        """The terminals' wall clock."""
        if self.real_wall:
            return datetime.now(CHINA_TZ)
        return self.virtual_now()

    def virtual_now(self) -> datetime:
        """The virtual wall time (what the citizen model sees)."""
        return self.start + timedelta(seconds=self.monotonic())

    def advance_to(self, seconds: float) -> None:
        """Manual mode: jump to ``seconds`` after the start (never backwards)."""
        with self._lock:
            if seconds > self._offset:
                self._offset = seconds

    def skip(self, seconds: float) -> None:
        """Scaled mode: jump ahead (over a night)."""
        with self._lock:
            self._offset += seconds

    def seconds_at(self, moment: datetime) -> float:
        """Virtual seconds since the start at ``moment``."""
        return (moment - self.start).total_seconds()


def next_opening(moment: datetime) -> datetime:
    """``moment`` itself when the halls are open then, else the next opening (China time)."""
    local = moment.astimezone(CHINA_TZ)
    day = local.replace(hour=0, minute=0, second=0, microsecond=0)
    for _ in range(10):
        if day.weekday() < 5:
            for begin, end in OPEN_SPANS:
                if day + end > local:
                    return max(local, day + begin)
        day += timedelta(days=1)
        local = day
    raise AssertionError("no opening within ten days")


def arrival_rate(moment: datetime) -> float:
    """Citizens per second at one window at ``moment`` (0 when closed)."""
    local = moment.astimezone(CHINA_TZ)
    if local.weekday() >= 5 or next_opening(local) != local:
        return 0.0
    return ARRIVALS_PER_HOUR.get(local.hour, 0.0) / 3600.0


def votes_per_open_day() -> float:
    """Expected citizens per window per working day under the model."""
    total = 0.0
    for hour, rate in ARRIVALS_PER_HOUR.items():
        minutes = sum(max(0.0, min((end.total_seconds() / 60), (hour + 1) * 60) - max(begin.total_seconds() / 60, hour * 60))
                      for begin, end in OPEN_SPANS)
        total += rate * minutes / 60
    return total


def default_start(votes: int, terminals: int, today: datetime | None = None) -> datetime:
    """Votes mode: midnight of the working day far enough back that N votes end before ``today``.

    Walks back over working days (Monday to Friday) with a 50 % margin on the model's
    expected votes per day, so that the votes' times are in the past, hence plausible.
    """
    today = (today or datetime.now(CHINA_TZ)).astimezone(CHINA_TZ).replace(hour=0, minute=0, second=0, microsecond=0)
    needed = max(1, math.ceil(votes / (votes_per_open_day() * max(terminals, 1)) * 1.5))
    day = today
    while needed:
        day -= timedelta(days=1)
        if day.weekday() < 5:
            needed -= 1
    return day


def pick_rating(rng: random.Random, propensity: float) -> str:
    """Satisfied with probability ``propensity``; the rest 60 % basic, 40 % unsatisfied."""
    u = rng.random()
    if u < propensity:
        return SATISFIED
    return BASIC if u < propensity + (1 - propensity) * 0.6 else UNSATISFIED


def read_devices(path: str | Path) -> list[tuple[str, float | None]]:
    """Read a devices file: one id per line, optional second column = propensity 0..1, # comments."""
    path = Path(path)
    devices = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read devices file: {exc.strerror}") from None
    for number, line in enumerate(lines, 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        parts = line.replace(",", " ").split()
        device = parts[0]
        if not is_valid_device_id(device):
            raise ConfigError(f"{path}:{number}: device id {device!r} must match [a-z0-9][a-z0-9-]{{2,63}}")
        propensity = None
        if len(parts) > 1:
            try:
                propensity = float(parts[1])
            except ValueError:
                raise ConfigError(f"{path}:{number}: propensity {parts[1]!r} is not a number") from None
            if not 0 <= propensity <= 1:
                raise ConfigError(f"{path}:{number}: propensity {propensity} must be between 0 and 1")
        devices.append((device, propensity))
    if not devices:
        raise ConfigError(f"{path}: no device ids")
    if len({d for d, _ in devices}) != len(devices):
        raise ConfigError(f"{path}: a device id appears twice")
    return devices


def heze_devices() -> list[tuple[str, float | None]]:
    """Every device of the shipped Heze sample registry (needs manyi.registry)."""
    from manyi.registry import heze_sample
    return [(device, None) for device in sorted(heze_sample().devices())]


def raise_file_limit(needed: int) -> None:
    """Raise the soft limit of open files towards ``needed`` (each terminal holds about five)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        target = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        if target < needed:
            log.warning("only %d files may be open (hard limit); %d terminals need about %d",
                        target, needed // 6, needed)


@dataclass
class SimTerminal:
    """One virtual terminal: the real Terminal, its outbox, publisher and mock pins."""

    device: str
    propensity: float
    terminal: Terminal
    outbox: Outbox
    publisher: Publisher
    factory: IsolatedMockFactory

    def drive(self, rating: str, down: bool) -> None:
        """Press (``down``) or release the key of ``rating`` through its mock pin."""
        pin = self.terminal.keys[rating].pin
        if down:
            pin.drive_low()
        else:
            pin.drive_high()
            # MockPin keeps every state change; forget them so a long demo does not grow.
            if len(pin.states) > 64:
                pin.clear_states()
                for led in self.terminal.leds.values():
                    led.pin.clear_states()


class Simulation:
    """The simulator; see the module docstring. Build, then :meth:`run`."""

    def __init__(self, broker: str, *, terminals: int | None = None, devices=None, votes: int | None = None,
                 seed: int = 1, speed: float = 1.0, workdir: str | Path = "var/simulate", rate: float | None = None,
                 username: str | None = None, password: str | None = None, start: datetime | None = None,
                 lockout_seconds: float = 3.0, synchronous: str = "NORMAL", timeout: float = 600.0,
                 tls_ca: str | None = None, heartbeat_seconds: float = 60.0, mqtt_version: str = "5"):
        self.host, self.port = parse_broker(broker)
        if devices is None:
            if not terminals or terminals < 1:
                raise ConfigError("give --terminals N (N >= 1) or --devices FILE")
            devices = [(f"sim-{i:04d}", None) for i in range(1, terminals + 1)]
        elif terminals:
            devices = list(devices)[:terminals]
        if votes is not None and votes < 0:
            raise ConfigError(f"--votes must be >= 0, got {votes}")
        if speed <= 0:
            raise ConfigError(f"--speed must be > 0, got {speed}")
        if rate is not None and rate <= 0:
            raise ConfigError(f"--rate must be > 0, got {rate}")
        self.rng = random.Random(seed)
        self.devices = [(d, p if p is not None else round(self.rng.uniform(0.55, 0.97), 3)) for d, p in devices]
        self.votes = votes
        self.speed = speed
        self.rate = rate
        self.workdir = Path(workdir)
        self.username, self.password, self.tls_ca = username, password, tls_ca
        self.lockout_seconds = lockout_seconds
        self.heartbeat_seconds = heartbeat_seconds
        self.mqtt_version = mqtt_version
        self.synchronous = synchronous
        self.timeout = timeout
        if votes is not None:
            if start is None:
                start = default_start(votes, len(self.devices))
            self.clock = VirtualClock(start.astimezone(CHINA_TZ))
        else:
            self.clock = VirtualClock((start or datetime.now(CHINA_TZ)).astimezone(CHINA_TZ), speed=speed,
                                      real_wall=True)
        self.terminals: list[SimTerminal] = []
        self.netloop: NetworkLoop | None = None
        self.stop_event = threading.Event()
        self.pressed = self.repeats = 0

    # -- setup ----------------------------------------------------------------------------------

    def _build(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        raise_file_limit(len(self.devices) * 6 + 64)
        self.netloop = NetworkLoop()
        real = SystemClock()
        for device, propensity in self.devices:
            settings = TerminalSettings(
                device_id=device, broker_host=self.host, broker_port=self.port, username=self.username or device,
                password=self.password, tls_ca=self.tls_ca, outbox_path=self.workdir / f"{device}.db",
                outbox_synchronous=self.synchronous, lockout_seconds=self.lockout_seconds,
                heartbeat_seconds=self.heartbeat_seconds, reconnect_max_seconds=10, mqtt_version=self.mqtt_version)
            outbox = Outbox(settings.outbox_path, device, limit=settings.outbox_limit, synchronous=self.synchronous)
            factory = IsolatedMockFactory()
            terminal = Terminal(settings, outbox, pin_factory=factory, clock=self.clock, clock_ok=lambda: True,
                                key_class=DigitalInputDevice)
            publisher = Publisher(settings, outbox, clock=real, status_fields=terminal.status_fields,
                                  netloop=self.netloop)
            terminal.on_vote = lambda _vote, p=publisher: p.wake()
            self.terminals.append(SimTerminal(device, propensity, terminal, outbox, publisher, factory))

    def _connect(self, timeout: float = 30.0) -> None:
        for sim in self.terminals:
            sim.publisher.start()
        deadline = time.monotonic() + timeout
        for sim in self.terminals:
            if not sim.publisher.connected.wait(max(0.0, deadline - time.monotonic())):
                log.warning("%s: not connected to %s:%d yet; its votes wait in the outbox",
                            sim.device, self.host, self.port)

    def close(self) -> None:
        """Disconnect every client (publishing offline status) and close outboxes and pins."""
        pending = [(sim, sim.publisher.publish_offline()) for sim in self.terminals]
        deadline = time.monotonic() + 5.0
        for sim, info in pending:
            if info is not None:
                try:
                    info.wait_for_publish(max(0.0, deadline - time.monotonic()))
                except (RuntimeError, ValueError):
                    pass
        for sim in self.terminals:
            sim.publisher.begin_stop(timeout=0)
        for sim in self.terminals:
            sim.publisher.finish_stop()
        if self.netloop is not None:
            self.netloop.close()
        for sim in self.terminals:
            sim.terminal.close()
            sim.outbox.close()

    # -- the citizen model ----------------------------------------------------------------------

    def _next_arrival(self, after: float) -> float:
        """Virtual seconds of the next citizen at one window: a service time after ``after``,
        then a Poisson process thinned to the hour-of-day profile, only while the hall is open."""
        peak = max(ARRIVALS_PER_HOUR.values()) / 3600.0
        t = after + SERVICE_SECONDS * self.rng.uniform(0.5, 1.5)
        while True:
            moment = self.clock.start + timedelta(seconds=t)
            opening = next_opening(moment)
            if opening != moment.astimezone(CHINA_TZ):
                t = self.clock.seconds_at(opening)
            t += self.rng.expovariate(peak)
            if self.rng.random() * peak <= arrival_rate(self.clock.start + timedelta(seconds=t)):
                return t

    def _schedule(self) -> list:
        events = []
        now = self.clock.monotonic()
        for index in range(len(self.terminals)):
            heapq.heappush(events, (self._next_arrival(now - SERVICE_SECONDS), index, 0, None))
        return events

    def _run_events(self) -> None:
        events = self._schedule()
        real0 = time.monotonic()
        while events and not self.stop_event.is_set():
            at, index, kind, rating = heapq.heappop(events)
            if self.votes is not None and self.pressed >= self.votes and kind != 2:
                continue
            sim = self.terminals[index]
            if self.votes is None:
                self._wait_until(at)
            else:
                self.clock.advance_to(at)
                if self.rate is not None:
                    delay = real0 + self.pressed / self.rate - time.monotonic()
                    if delay > 0:
                        time.sleep(delay)
            if kind == 0:       # a citizen arrives and presses
                if self.votes is None or self.pressed + 1 < self.votes:
                    heapq.heappush(events, (self._next_arrival(at), index, 0, None))
                rating = pick_rating(self.rng, sim.propensity)
                self._press(sim, rating, at, events, index)
                if self.rng.random() < REPEAT_PROBABILITY:
                    # The citizen presses again before the lock-out ends (maybe another key).
                    again = at + self.lockout_seconds * self.rng.uniform(0.2, 0.8)
                    other = pick_rating(self.rng, sim.propensity)
                    heapq.heappush(events, (again, index, 1, other))
            elif kind == 1:     # a repeat press during the lock-out
                self._press(sim, rating, at, events, index)
            else:               # release
                sim.drive(rating, False)

    def _press(self, sim: SimTerminal, rating: str, at: float, events: list, index: int) -> None:
        sim.terminal.tick()
        before = sim.terminal.counts[VOTE]
        sim.drive(rating, True)
        if sim.terminal.counts[VOTE] > before:
            self.pressed += 1
        heapq.heappush(events, (at + self.rng.uniform(*HOLD_SECONDS), index, 2, rating))

    def _wait_until(self, at: float) -> None:
        """Continuous mode: sleep until virtual time ``at``, skipping closed hours at once."""
        while not self.stop_event.is_set():
            now = self.clock.monotonic()
            if now >= at:
                return
            virtual = self.clock.virtual_now()
            if arrival_rate(virtual) == 0.0:
                # Closed: jump the virtual clock to the next opening (or to the event).
                opening = self.clock.seconds_at(next_opening(virtual))
                self.clock.skip(max(0.0, min(opening, at) - now))
                continue
            self.stop_event.wait(min((at - now) / self.speed, 0.5))

    def _run_rate(self) -> None:
        """Continuous mode with --rate: a fixed total rate, random terminals, model ratings."""
        interval = 1.0 / self.rate
        next_at = time.monotonic()
        while not self.stop_event.is_set():
            sim = self.rng.choice(self.terminals)
            if not sim.terminal.locked:
                sim.terminal.tick()
                rating = pick_rating(self.rng, sim.propensity)
                sim.drive(rating, True)
                sim.drive(rating, False)
                self.pressed += 1
            next_at += interval
            self.stop_event.wait(max(0.0, next_at - time.monotonic()))

    def _heartbeats(self) -> None:
        while not self.stop_event.wait(1.0):
            for sim in self.terminals:
                sim.publisher.tick()

    # -- running ---------------------------------------------------------------------------------

    def run(self) -> dict:
        """Run to the end (votes mode) or until :meth:`stop`; return the summary."""
        marks = [("start", time.monotonic())]
        self._build()
        marks.append(("build", time.monotonic()))
        leftover = sum(sim.outbox.depth for sim in self.terminals)
        heart = threading.Thread(target=self._heartbeats, name="simulate-heartbeats", daemon=True)
        try:
            self._connect()
            marks.append(("connect", time.monotonic()))
            heart.start()
            if self.votes is None and self.rate is not None:
                self._run_rate()
            else:
                self._run_events()
            marks.append(("press", time.monotonic()))
            if self.votes is not None:
                self._wait_acked(deadline=marks[0][1] + self.timeout)
            marks.append(("drain", time.monotonic()))
            summary = self.summary(leftover)
        finally:
            self.stop_event.set()
            self.close()
        marks.append(("close", time.monotonic()))
        # Throughput from the first press to the last acknowledgement.
        sending = marks[4][1] - marks[2][1] if len(marks) > 4 else 0.0
        summary.update(
            seconds=round(marks[-1][1] - marks[0][1], 3),
            votes_per_s=round(summary["acked"] / sending, 1) if sending > 0 else None,
            phases={name: round(t - marks[i][1], 3) for i, (name, t) in enumerate(marks[1:])})
        return summary

    def _wait_acked(self, deadline: float) -> None:
        while time.monotonic() < deadline and not self.stop_event.is_set():
            if all(sim.outbox.depth == 0 for sim in self.terminals):
                return
            for sim in self.terminals:
                if sim.outbox.depth:
                    sim.publisher.wake()
            time.sleep(0.05)
        log.warning("not every vote was acknowledged before the deadline")

    def summary(self, leftover: int = 0) -> dict:
        """Counts so far: votes recorded this run, acknowledged, pending, poisoned, repeats."""
        return {
            "votes": self.pressed,
            "acked": sum(sim.publisher.acked for sim in self.terminals),
            "pending": sum(sim.outbox.depth for sim in self.terminals),
            "poisoned": sum(sim.outbox.poisoned_count for sim in self.terminals),
            "repeats": sum(sim.terminal.counts[REPEAT] for sim in self.terminals),
            "leftover": leftover,
            "terminals": len(self.terminals),
            "connections": sum(sim.publisher.connections for sim in self.terminals),
        }

    def stop(self) -> None:
        """Ask a running simulation to stop (from a signal handler or another thread)."""
        self.stop_event.set()


def run_simulation(broker: str, *, terminals: int | None = None, devices=None, votes: int | None = None,
                   seed: int = 1, speed: float = 1.0, workdir: str | Path = "var/simulate",
                   rate: float | None = None, username: str | None = None, password: str | None = None,
                   start: datetime | None = None, timeout: float = 600.0, install_signals: bool = False,
                   **options) -> dict:
    """Run the simulator (see :class:`Simulation`); return the summary dict.

    ``devices`` is a list of (device id, propensity or None) or a path to a devices file.
    ``install_signals`` makes SIGINT/SIGTERM stop the run cleanly (for the CLI).
    """
    if isinstance(devices, (str, Path)):
        devices = heze_devices() if str(devices) == "heze" else read_devices(devices)
    sim = Simulation(broker, terminals=terminals, devices=devices, votes=votes, seed=seed, speed=speed,
                     workdir=workdir, rate=rate, username=username, password=password, start=start,
                     timeout=timeout, **options)
    if install_signals:
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, lambda *_: sim.stop())
    return sim.run()


def print_summary(summary: dict) -> None:
    """Print the final JSON summary line."""
    print(json.dumps(summary, ensure_ascii=False), flush=True)

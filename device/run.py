"""Run one real terminal: build it from settings and loop until told to stop."""

from __future__ import annotations

import logging
import threading

from manyi.clock import SystemClock
from manyi.exc import ConfigError

from .config import TerminalSettings
from .outbox import Outbox
from .publisher import Publisher
from .terminal import ClockCheck, Terminal

log = logging.getLogger(__name__)

TICK_SECONDS = 0.02
# While the lights are dark and steady nothing needs a 20 ms refresh: presses and acknowledgements
# refresh them at once, and heartbeats, hold-offs and clock checks are timed in seconds. Waking 10
# instead of 50 times a second saves most of the idle CPU (the bench: 0.5% -> ~0.1% of one core
# here; a Pi Zero's core is some 10-20 times slower).
IDLE_TICK_SECONDS = 0.1


def run_terminal(settings: TerminalSettings, *, stop: threading.Event, pin_factory=None, clock=None,
                 clock_check: ClockCheck | None = None, mock_presses=()) -> None:
    """Run the terminal until ``stop`` is set: LEDs refreshed every 20 ms while they change (every
    100 ms while they are steady), heartbeats, clock checks.

    ``mock_presses`` (a test hook) presses those keys through mock pins once running.
    """
    clock = clock or SystemClock()
    if clock_check is None:
        fixed = {"trusted": lambda: True, "untrusted": lambda: False}.get(settings.clock_source)
        clock_check = ClockCheck(fixed) if fixed else ClockCheck()
    clock_check.refresh(clock.monotonic())
    outbox = Outbox(settings.outbox_path, settings.device_id, limit=settings.outbox_limit,
                    synchronous=settings.outbox_synchronous)
    terminal = Terminal(settings, outbox, pin_factory=pin_factory, clock=clock, clock_ok=clock_check)
    publisher = Publisher(settings, outbox, clock=clock, status_fields=terminal.status_fields,
                          on_change=terminal.tick)
    terminal.on_vote = lambda _vote: publisher.wake()
    log.info("%s: terminal running; outbox %s holds %d votes, last seq %d", settings.device_id,
             settings.outbox_path, outbox.depth, outbox.last_seq)
    publisher.start()
    try:
        for rating in mock_presses:
            key = terminal.keys.get(rating)
            if key is None or not hasattr(key.pin, "drive_low"):
                raise ConfigError(f"--mock-press {rating!r} needs GPIOZERO_PIN_FACTORY=mock and a rating "
                                  f"(satisfied, basic, unsatisfied)")
            key.pin.drive_low()
            key.pin.drive_high()
            print(f"pressed {rating}: outbox depth {outbox.depth}, last seq {outbox.last_seq}", flush=True)
        while not stop.wait(TICK_SECONDS if terminal.animating else IDLE_TICK_SECONDS):
            clock_check.refresh(clock.monotonic())
            terminal.tick()
            publisher.tick()
    finally:
        publisher.stop()
        terminal.close()
        outbox.close()

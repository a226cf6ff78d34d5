"""The terminal: three keys, three LEDs and an optional buzzer on gpiozero.

A press becomes a vote only after it is committed to the outbox; then the
confirmation light (and tone) starts, and all keys are locked for the lock-out
time. By default the confirmation is the same for every key, so the clerk at the
window cannot see how they were rated. Time comes from an injected clock: debounce
and lock-out are judged on ``clock.monotonic()`` (MockPin does not emulate bounce,
so tests move a FakeClock), ``pressed_at`` on ``clock.now()`` in China time.

LED patterns (see docs/device.md), decided in :func:`led_pattern`, a pure function:
confirmation = all three LEDs on (or the pressed key's LED with per-key confirmation);
outbox full or a vote just refused = red blinking at 4 Hz; poisoned votes kept aside =
yellow flash of 0.15 s every 2 s; otherwise dark.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
import threading
from dataclasses import dataclass, field
from typing import Callable

from manyi.clock import SystemClock
from manyi.protocol import BASIC, CHINA_TZ, RATINGS, SATISFIED, UNSATISFIED, Vote, format_timestamp

from .config import TerminalSettings
from .outbox import Outbox, OutboxFull

log = logging.getLogger(__name__)

REFUSED_SHOW_SECONDS = 2.0

VOTE, REPEAT, REFUSED, BOUNCE = "vote", "repeat", "refused", "bounce"


def timedatectl_synchronized() -> bool:
    """True when systemd says the clock is NTP-synchronised; False when it is not or cannot say."""
    tool = shutil.which("timedatectl")
    if not tool:
        return False
    try:
        out = subprocess.run([tool, "show", "-p", "NTPSynchronized", "--value"], capture_output=True,
                             text=True, timeout=2).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return False
    return out == "yes"


class ClockCheck:
    """Cached answer to "is the clock synchronised?": presses read it, ``refresh`` asks the system.

    The check runs a program, so it must not sit in the 50 ms path of a press; the run
    loop calls :meth:`refresh` every ``interval`` seconds.
    """

    def __init__(self, check: Callable[[], bool] = timedatectl_synchronized, interval: float = 30.0):
        self.check = check
        self.interval = interval
        self.value = False
        self._next = float("-inf")

    def refresh(self, monotonic: float) -> bool:
        """Ask the system again when the interval has passed; return the current answer."""
        if monotonic >= self._next:
            self._next = monotonic + self.interval
            try:
                self.value = bool(self.check())
            except Exception:  # noqa: BLE001 - a broken check means "not known to be synchronised"
                log.exception("clock check failed")
                self.value = False
        return self.value

    def __call__(self) -> bool:
        return self.value


@dataclass
class Lights:
    """What the LEDs and buzzer should show at one instant (brightness 0..1 per rating)."""

    leds: dict = field(default_factory=lambda: dict.fromkeys(RATINGS, 0.0))
    buzzer: bool = False


def led_pattern(now: float, *, confirm_until: float, confirm_started: float, confirm_rating: str | None,
                per_key: bool, brightness: float, buzzer_seconds: float, full: bool, refused_until: float,
                poisoned: int) -> Lights:
    """The pure LED logic: what to show at monotonic time ``now``."""
    lights = Lights()
    if now < confirm_until:
        for rating in RATINGS:
            if not per_key or rating == confirm_rating:
                lights.leds[rating] = brightness
        lights.buzzer = now < confirm_started + buzzer_seconds
    elif full or now < refused_until:
        if int(now * 8) % 2 == 0:
            lights.leds[UNSATISFIED] = brightness
    elif poisoned and now % 2.0 < 0.15:
        lights.leds[BASIC] = brightness
    return lights


class Terminal:
    """One button box: keys and LEDs on ``pin_factory``, votes into ``outbox``.

    ``on_vote(vote)`` is called after each committed vote (the publisher's wake-up).
    ``key_class`` is gpiozero's Button by default; the simulator passes
    DigitalInputDevice, which is the same minus an idle hold-polling thread per key.
    """

    def __init__(self, settings: TerminalSettings, outbox: Outbox, *, pin_factory=None, clock=None,
                 clock_ok: Callable[[], bool] | None = None, on_vote: Callable[[Vote], None] | None = None,
                 key_class=None):
        from gpiozero import LED, Buzzer, Button, PWMLED
        from gpiozero.exc import PinPWMUnsupported

        self.settings = settings
        self.outbox = outbox
        self.clock = clock or SystemClock()
        self.clock_ok = clock_ok or (lambda: False)
        self.on_vote = on_vote
        self.counts = dict.fromkeys((VOTE, REPEAT, REFUSED, BOUNCE), 0)
        self._lock = threading.RLock()
        self._last_edge: dict[str, float | None] = dict.fromkeys(RATINGS)
        self._locked_until = float("-inf")
        self._confirm_until = float("-inf")
        self._confirm_started = float("-inf")
        self._confirm_rating: str | None = None
        self._refused_until = float("-inf")
        self._shown: Lights | None = None
        key_class = key_class or Button
        self.keys = {}
        self.leds = {}
        self.buzzer = None
        self._pwm_class = PWMLED
        try:
            for rating, pin in settings.key_pins.items():
                key = key_class(pin, pull_up=True, bounce_time=None, pin_factory=pin_factory)
                key.when_activated = lambda _dev=None, r=rating: self._edge(r, True)
                key.when_deactivated = lambda _dev=None, r=rating: self._edge(r, False)
                self.keys[rating] = key
            for rating, pin in settings.led_pins.items():
                try:
                    self.leds[rating] = PWMLED(pin, pin_factory=pin_factory)
                except PinPWMUnsupported:
                    # No PWM on this pin factory: brightness is then only on (> 0) or off.
                    self.leds[rating] = LED(pin, pin_factory=pin_factory)
            if settings.buzzer_pin is not None:
                self.buzzer = Buzzer(settings.buzzer_pin, pin_factory=pin_factory)
        except Exception:
            self.close()
            raise
        self.tick()

    def close(self) -> None:
        """Release the pins."""
        for device in [*self.keys.values(), *self.leds.values(), self.buzzer]:
            if device is not None:
                device.close()

    # -- input ---------------------------------------------------------------------------------

    def _edge(self, rating: str, pressed: bool) -> None:
        with self._lock:
            now = self.clock.monotonic()
            last = self._last_edge[rating]
            self._last_edge[rating] = now
            # Any edge closer than the debounce time to the previous one is contact bounce.
            if last is not None and now - last < self.settings.debounce_ms / 1000.0:
                self.counts[BOUNCE] += 1
                return
            if pressed:
                try:
                    self.press(rating)
                except Exception:  # noqa: BLE001 - the pin callback thread must survive (e.g. a disk error)
                    # Not committed, so not confirmed: the citizen sees the refusal pattern.
                    log.exception("%s: press of %s could not be recorded", self.settings.device_id, rating)
                    self.counts[REFUSED] += 1
                    self._refused_until = now + REFUSED_SHOW_SECONDS
                    self.tick()

    def press(self, rating: str) -> str:
        """Handle one debounced press of ``rating``'s key; return vote, repeat or refused."""
        if rating not in RATINGS:
            raise ValueError(f"unknown rating {rating!r}")
        with self._lock:
            now = self.clock.monotonic()
            if now < self._locked_until:
                self.outbox.count_repeat()
                self.counts[REPEAT] += 1
                return REPEAT
            pressed_at = format_timestamp(self.clock.now().astimezone(CHINA_TZ))
            try:
                vote = self.outbox.add(rating, pressed_at, bool(self.clock_ok()))
            except OutboxFull as exc:
                log.warning("%s", exc)
                self.counts[REFUSED] += 1
                self._refused_until = now + REFUSED_SHOW_SECONDS
                self.tick()
                return REFUSED
            self.counts[VOTE] += 1
            self._locked_until = now + self.settings.lockout_seconds
            self._confirm_started = now
            self._confirm_until = now + self.settings.confirm_seconds
            self._confirm_rating = rating
            self.tick()
        if self.on_vote is not None:
            self.on_vote(vote)
        return VOTE

    # -- output --------------------------------------------------------------------------------

    def lights(self) -> Lights:
        """What the LEDs should show now."""
        s = self.settings
        return led_pattern(self.clock.monotonic(), confirm_until=self._confirm_until,
                           confirm_started=self._confirm_started, confirm_rating=self._confirm_rating,
                           per_key=s.per_key_confirmation, brightness=s.led_brightness,
                           buzzer_seconds=s.buzzer_seconds if self.buzzer else 0.0,
                           full=self.outbox.full, refused_until=self._refused_until,
                           poisoned=self.outbox.poisoned_count)

    def tick(self) -> None:
        """Bring the LEDs and buzzer up to date; the run loop calls this every 20 ms."""
        with self._lock:
            lights = self.lights()
            if lights == self._shown:
                return
            for rating, led in self.leds.items():
                value = lights.leds[rating]
                if isinstance(led, self._pwm_class):
                    led.value = value
                else:
                    led.value = 1 if value > 0 else 0
            if self.buzzer is not None:
                self.buzzer.value = 1 if lights.buzzer else 0
            self._shown = lights

    @property
    def animating(self) -> bool:
        """True while the lights change by themselves (confirmation, buzzer, red blink, yellow flash).

        Otherwise they stay dark until a press or an acknowledgement, each of which refreshes
        them at once, so the run loop may tick less often (see device/run.py).
        """
        now = self.clock.monotonic()
        return (now < self._confirm_until or now < self._refused_until or self.outbox.full
                or bool(self.outbox.poisoned_count))

    @property
    def locked(self) -> bool:
        """True during the lock-out after a vote."""
        return self.clock.monotonic() < self._locked_until

    def status_fields(self) -> dict:
        """The terminal's part of the status message."""
        return {
            "outbox_depth": self.outbox.depth,
            "last_seq": self.outbox.last_seq,
            "repeats_ignored": self.outbox.repeats,
            "poisoned": self.outbox.poisoned_count,
            "clock_ok": bool(self.clock_ok()),
            "outbox_full": self.outbox.full,
        }


__all__ = ["Terminal", "ClockCheck", "Lights", "led_pattern", "timedatectl_synchronized",
           "VOTE", "REPEAT", "REFUSED", "BOUNCE", "SATISFIED", "BASIC", "UNSATISFIED"]

"""Fixtures of the device tests (loaded by conftest.py): terminals on mock pins, an MQTT recorder."""

from __future__ import annotations

import json
import threading
import time

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion


class Recorder:
    """A real MQTT subscriber that keeps every message it receives (topic, payload, retain)."""

    def __init__(self, port: int, topics=("manyi/v1/#",), host: str = "127.0.0.1", client_id: str = "test-recorder"):
        self.messages: list[tuple[str, bytes, bool]] = []
        self._cond = threading.Condition()
        subscribed = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *args: subscribed.set()
        # Subscribe on every connect: after a broker restart the session (and its subscriptions)
        # is gone, and a vote without a subscriber is kept by the terminal (PUBACK 0x10), not lost.
        self.client.on_connect = lambda client, *args: [client.subscribe(topic, qos=1) for topic in topics]
        self.client.connect(host, port)
        self.client.loop_start()
        assert subscribed.wait(5), "recorder could not subscribe"

    def _on_message(self, client, userdata, msg) -> None:
        with self._cond:
            self.messages.append((msg.topic, msg.payload, bool(msg.retain)))
            self._cond.notify_all()

    def payloads(self, prefix: str) -> list[bytes]:
        """Payloads of the messages whose topic starts with ``prefix``."""
        with self._cond:
            return [p for t, p, _r in self.messages if t.startswith(prefix)]

    def wait_for(self, predicate, timeout: float = 10.0) -> bool:
        """Wait until ``predicate(self)`` is true."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not predicate(self):
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(min(left, 0.1))
        return True

    def votes(self) -> list[dict]:
        """Vote messages as dicts, in arrival order."""
        return [json.loads(p) for p in self.payloads("manyi/v1/votes/")]

    def statuses(self, device: str) -> list[dict]:
        """Status messages of ``device`` as dicts."""
        return [json.loads(p) for p in self.payloads(f"manyi/v1/status/{device}")]

    def close(self) -> None:
        """Disconnect."""
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def recorder(broker):
    """A Recorder subscribed to manyi/v1/# on the test broker."""
    rec = Recorder(broker.port)
    yield rec
    rec.close()


class Rig:
    """A terminal on its own MockFactory pins, with its outbox; ``press``/``release`` drive the pins."""

    def __init__(self, tmp_path, clock, name="hz-test-w01", **options):
        from device.config import TerminalSettings
        from device.outbox import Outbox
        from device.simulate import IsolatedMockFactory
        from device.terminal import Terminal

        clock_ok = options.pop("clock_ok", lambda: True)
        options.setdefault("outbox_path", tmp_path / f"{name}.db")
        self.settings = TerminalSettings(device_id=name, **options)
        self.outbox = Outbox(self.settings.outbox_path, name, limit=self.settings.outbox_limit,
                             synchronous=self.settings.outbox_synchronous)
        self.factory = IsolatedMockFactory()
        self.clock = clock
        self.terminal = Terminal(self.settings, self.outbox, pin_factory=self.factory, clock=clock, clock_ok=clock_ok)
        self.publisher = None

    def pin(self, rating):
        """The mock pin of ``rating``'s key."""
        return self.terminal.keys[rating].pin

    def press(self, rating="satisfied"):
        """Drive the key down (pressed = low with the pull-up)."""
        self.pin(rating).drive_low()

    def release(self, rating="satisfied"):
        """Let the key go."""
        self.pin(rating).drive_high()

    def tap(self, rating="satisfied", hold=0.2):
        """Press, hold for ``hold`` seconds of fake time, release."""
        self.press(rating)
        self.clock.advance(hold)
        self.release(rating)

    def led_values(self) -> dict:
        """Rating -> LED value (0..1)."""
        return {rating: led.value for rating, led in self.terminal.leds.items()}

    def connect(self, port: int, **options):
        """Attach a publisher to the broker on ``port`` and wait until it is connected."""
        from device.publisher import Publisher

        self.settings.broker_port = port
        for key, value in options.items():
            setattr(self.settings, key, value)
        self.publisher = Publisher(self.settings, self.outbox, status_fields=self.terminal.status_fields,
                                   on_change=self.terminal.tick)
        self.terminal.on_vote = lambda _vote: self.publisher.wake()
        self.publisher.start()
        return self.publisher

    def run_until(self, until, timeout: float = 10.0) -> bool:
        """Stand in for the terminal's run loop (device/run.py): call ``publisher.tick()`` every
        20 ms until ``until()`` is true or ``timeout`` real seconds have passed; return ``until()``.

        Without it nothing retries a vote held back after a PUBACK 0x10, as on a real terminal.
        """
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if until():
                return True
            self.publisher.tick()
            time.sleep(0.02)
        return bool(until())

    def close(self):
        """Stop the publisher and release pins and outbox."""
        if self.publisher is not None:
            self.publisher.stop(timeout=2)
        self.terminal.close()
        self.outbox.close()


@pytest.fixture
def make_rig(tmp_path, clock):
    """Factory of Rigs (terminals on MockFactory pins with a FakeClock); all are closed afterwards."""
    rigs = []

    def make(name="hz-test-w01", **options):
        rig = Rig(tmp_path, clock, name, **options)
        rigs.append(rig)
        return rig

    yield make
    for rig in rigs:
        rig.close()

"""The terminal's settings: defaults here, a TOML file, then ``MANYI_`` environment variables.

Example file: device/terminal.example.toml. Secrets (password) are never printed:
use :func:`manyi.settings.redacted` before showing the settings.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from manyi.exc import ConfigError
from manyi.protocol import CONFIG_KEYS, RATINGS, is_valid_device_id
from manyi.settings import load

SYNCHRONOUS_MODES = ("FULL", "NORMAL", "EXTRA")
CLOCK_SOURCES = ("timedatectl", "trusted", "untrusted")
MQTT_VERSIONS = ("5", "3.1.1")


@dataclass
class TerminalSettings:
    """Everything one terminal needs: identity, broker, pins, outbox and behaviour."""

    device_id: str = ""
    broker_host: str = "127.0.0.1"
    broker_port: int = 1883
    tls_ca: Path | None = None
    username: str | None = None
    password: str | None = None
    # BCM pin numbers of the three keys (满意, 基本满意, 不满意) and their LEDs.
    pin_satisfied: int = 17
    pin_basic: int = 27
    pin_unsatisfied: int = 22
    led_satisfied: int = 5
    led_basic: int = 6
    led_unsatisfied: int = 13
    buzzer_pin: int | None = None
    buzzer_seconds: float = 0.12
    outbox_path: Path = Path("var/terminal/outbox.db")
    outbox_limit: int = 100_000
    outbox_synchronous: str = "FULL"
    lockout_seconds: float = 3.0
    heartbeat_seconds: float = 60.0
    debounce_ms: float = 30.0
    confirm_seconds: float = 1.0
    per_key_confirmation: bool = False
    led_brightness: float = 1.0
    session_expiry: int = 7 * 24 * 3600
    keepalive: int = 30
    reconnect_min_seconds: float = 1.0
    reconnect_max_seconds: float = 60.0
    inflight: int = 50
    # How clock_ok is decided: ask systemd (a Pi), or fixed (a laptop with a good clock, or a test bench).
    clock_source: str = "timedatectl"
    # "3.1.1": compatibility mode for a broker without MQTT 5 (the demo's embedded amqtt). It cannot
    # tell a refused vote from a delivered one, so production uses "5" (docs/protocol.md).
    mqtt_version: str = "5"

    def __post_init__(self):
        if not is_valid_device_id(self.device_id):
            raise ConfigError(f"device_id {self.device_id!r} must match [a-z0-9][a-z0-9-]{{2,63}}")
        if self.outbox_synchronous.upper() not in SYNCHRONOUS_MODES:
            raise ConfigError(f"outbox_synchronous {self.outbox_synchronous!r} must be one of {', '.join(SYNCHRONOUS_MODES)}")
        self.outbox_synchronous = self.outbox_synchronous.upper()
        if self.clock_source not in CLOCK_SOURCES:
            raise ConfigError(f"clock_source {self.clock_source!r} must be one of {', '.join(CLOCK_SOURCES)}")
        if self.mqtt_version not in MQTT_VERSIONS:
            raise ConfigError(f"mqtt_version {self.mqtt_version!r} must be one of {', '.join(MQTT_VERSIONS)}")
        if self.inflight < 1:
            raise ConfigError(f"inflight must be at least 1, got {self.inflight}")
        if self.outbox_limit < 1:
            raise ConfigError(f"outbox_limit must be at least 1, got {self.outbox_limit}")
        for key in ("lockout_seconds", "heartbeat_seconds", "led_brightness"):
            _kind, low, high = CONFIG_KEYS[key]
            if not low <= getattr(self, key) <= high:
                raise ConfigError(f"{key} must be between {low} and {high}, got {getattr(self, key)}")
        if not 0 <= self.debounce_ms <= 500:
            raise ConfigError(f"debounce_ms must be between 0 and 500, got {self.debounce_ms}")
        if self.session_expiry < 1:
            raise ConfigError("session_expiry must be > 0 seconds: the broker must keep the session across reconnects")
        pins = [self.pin_satisfied, self.pin_basic, self.pin_unsatisfied,
                self.led_satisfied, self.led_basic, self.led_unsatisfied]
        if self.buzzer_pin is not None:
            pins.append(self.buzzer_pin)
        if len(set(pins)) != len(pins):
            raise ConfigError(f"pins must all differ, got {pins}")
        if self.username is None:
            self.username = self.device_id

    @property
    def key_pins(self) -> dict[str, int]:
        """Rating -> key pin."""
        return dict(zip(RATINGS, (self.pin_satisfied, self.pin_basic, self.pin_unsatisfied)))

    @property
    def led_pins(self) -> dict[str, int]:
        """Rating -> LED pin (green, yellow, red)."""
        return dict(zip(RATINGS, (self.led_satisfied, self.led_basic, self.led_unsatisfied)))


def load_settings(path=None, *, env=None, **overrides) -> TerminalSettings:
    """Load TerminalSettings from a TOML file (``[terminal]`` table or top level) and MANYI_ variables."""
    return load(TerminalSettings, path, section="terminal", env=env, overrides=overrides)

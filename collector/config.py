"""The collector's settings: defaults here < TOML file ``[collector]`` < ``MANYI_`` variables < command line.

Standard library only, so that ``manyi --help`` stays light.
"""

from __future__ import annotations

from dataclasses import dataclass

from manyi.exc import ConfigError
from manyi.settings import DEFAULT_STORE_URL, parse_broker

from .validate import BurstRule

MQTT_VERSIONS = ("5", "3.1.1")


@dataclass(frozen=True)
class CollectorSettings:
    """Everything ``manyi collector`` can be told (env: MANYI_COLLECTOR_<NAME> or MANYI_<NAME>)."""

    broker: str = "127.0.0.1:1883"
    store: str = DEFAULT_STORE_URL
    client_id: str = "manyi-collector"
    username: str | None = None
    password: str | None = None
    tls_ca: str | None = None                 # CA file: turns TLS on
    batch_size: int = 500                     # votes per store transaction at most
    batch_ms: int = 200                       # a batch is written at most this long after its first message
    idle_ms: int = 0                          # when the queue runs empty, wait this long for more (0: write at once)
    session_expiry: int = 7 * 86400           # seconds the broker keeps our session (and backlog) while we are away
    receive_maximum: int = 1000               # unacknowledged messages the broker may send us at once
    keepalive: int = 30
    shared_subscription: bool = False         # True: $share/<shared_group>/... so several collectors split the load
    shared_group: str = "manyi"               # ... a secret name when shared: a client in the group takes votes (docs)
    retry_max_seconds: float = 30.0           # back-off ceiling while the store fails
    burst_max_votes: int = BurstRule.max_votes                # misuse (the one burst rule, validate.BurstRule):
    burst_window_seconds: float = BurstRule.window_seconds    # more than max votes of one rating within the window
    mqtt_version: str = "5"                   # "3.1.1": compatibility mode for brokers without MQTT 5 (demo only)
    qos0_queue_limit: int = 2000              # QoS 0 messages (never a terminal's) dropped, counted, beyond this queue
    dead_letters_per_source: int = 50         # dead letters stored per terminal per hour; more are counted (0: no limit)
    log_lines_per_minute: int = 20            # dead-letter warnings logged per minute; more are counted

    def __post_init__(self):
        parse_broker(self.broker)
        if self.mqtt_version not in MQTT_VERSIONS:
            raise ConfigError(f"setting 'mqtt_version' must be one of {', '.join(MQTT_VERSIONS)}, "
                              f"got {self.mqtt_version!r}")
        for name in ("batch_size", "batch_ms", "session_expiry", "receive_maximum", "keepalive", "qos0_queue_limit",
                     "log_lines_per_minute"):
            if getattr(self, name) < 1:
                raise ConfigError(f"setting {name!r} must be >= 1, got {getattr(self, name)}")
        if not self.shared_group or any(c in self.shared_group for c in "/+#") or self.shared_group.strip() != self.shared_group:
            raise ConfigError(f"setting 'shared_group' must be a non-empty name without '/', '+', '#' or spaces at "
                              f"its ends, got {self.shared_group!r}")
        if self.dead_letters_per_source < 0:
            raise ConfigError(f"setting 'dead_letters_per_source' must be >= 0, got {self.dead_letters_per_source}")
        if self.idle_ms < 0:
            raise ConfigError(f"setting 'idle_ms' must be >= 0, got {self.idle_ms}")
        if self.batch_size > self.receive_maximum:
            # More would never arrive unacknowledged at once: the batch timeout would be hit every time.
            raise ConfigError(f"batch_size {self.batch_size} must not exceed receive_maximum {self.receive_maximum}")



"""Per-account limits of the control center: API request rate and concurrent live streams.

In memory and per process (waitress runs one process): a limit protects the threads of
this server from one account or token, and resets at restart, which is what it is for.
No third-party limiter is used: Flask-Limiter would bring its own storage layer for what
is two small counters here (docs/security.md).
"""

from __future__ import annotations

import threading
import time


class RateLimiter:
    """A token bucket per key: ``rate`` requests a second on average, bursts up to ``burst``."""

    def __init__(self, rate: float, burst: int, clock=time.monotonic, max_keys: int = 10_000):
        self.rate, self.burst, self.clock, self.max_keys = float(rate), int(burst), clock, max_keys
        self._buckets: dict[object, tuple[float, float]] = {}     # key -> (tokens, last refill)
        self._lock = threading.Lock()

    def allow(self, key) -> float:
        """0.0 when the request may go ahead, else the seconds to wait before the next one."""
        now = self.clock()
        with self._lock:
            tokens, last = self._buckets.get(key, (float(self.burst), now))
            tokens = min(float(self.burst), tokens + (now - last) * self.rate)
            if tokens >= 1.0:
                self._buckets[key] = (tokens - 1.0, now)
                return 0.0
            self._buckets[key] = (tokens, now)
            if len(self._buckets) > self.max_keys:      # forget full buckets: they are the default anyway
                for old in [k for k, (t, _) in self._buckets.items() if t >= self.burst - 1]:
                    del self._buckets[old]
            return (1.0 - tokens) / self.rate if self.rate > 0 else 60.0


class StreamSlots:
    """Concurrent live streams: at most ``per_key`` for one account or token, ``total`` in all.

    Each stream holds a server thread for minutes; the bound keeps threads free for every
    other request (the login page included) whatever one account opens.
    """

    def __init__(self, per_key: int, total: int):
        self.per_key, self.total = int(per_key), int(total)
        self._held: dict[object, int] = {}
        self._lock = threading.Lock()

    def acquire(self, key) -> str | None:
        """None when a slot was taken (release it later), else why not ("account" or "server")."""
        with self._lock:
            if self._held.get(key, 0) >= self.per_key:
                return "account"
            if sum(self._held.values()) >= self.total:
                return "server"
            self._held[key] = self._held.get(key, 0) + 1
            return None

    def release(self, key) -> None:
        """Give back a slot taken by :meth:`acquire`."""
        with self._lock:
            left = self._held.get(key, 0) - 1
            if left > 0:
                self._held[key] = left
            else:
                self._held.pop(key, None)

    def held(self) -> int:
        """Streams open now."""
        with self._lock:
            return sum(self._held.values())

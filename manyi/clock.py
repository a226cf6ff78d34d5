"""Injectable clocks: the real one, and a fake one that tests move by hand."""

from __future__ import annotations

import threading
import time
from datetime import datetime, timedelta, timezone


class SystemClock:
    """Wall time and monotonic time from the operating system."""

    def now(self) -> datetime:
        """Current wall-clock time, aware (UTC)."""
        return datetime.now(timezone.utc)

    def monotonic(self) -> float:
        """Seconds from an arbitrary start; never goes backwards."""
        return time.monotonic()


class FakeClock:
    """A clock that only moves when told to; for tests of debounce, lock-out and deadlines."""

    def __init__(self, start: datetime | None = None, monotonic: float = 1000.0):
        self._now = start or datetime(2026, 11, 23, 1, 30, tzinfo=timezone.utc)
        self._mono = monotonic
        self._lock = threading.Lock()

    def now(self) -> datetime:
        """The fake wall-clock time."""
        with self._lock:
            return self._now

    def monotonic(self) -> float:
        """The fake monotonic time."""
        with self._lock:
            return self._mono

    def advance(self, seconds: float) -> None:
        """Move both clocks forward."""
        with self._lock:
            self._mono += seconds
            self._now += timedelta(seconds=seconds)

    def set(self, moment: datetime) -> None:
        """Set the wall clock (e.g. an NTP step) without moving monotonic time."""
        with self._lock:
            self._now = moment

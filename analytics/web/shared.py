"""Results shared by concurrent requests (the live map, live rankings) and ready-made JSON bodies."""

from __future__ import annotations

import gzip
import logging
import threading
import time

from flask import (Response, current_app, request)


from .context import resources

log = logging.getLogger(__name__)


class SharedResults:
    """Expensive results shared by concurrent requests (the live map, live rankings).

    An entry is fresh while its version equals the caller's and it is younger than the
    caller's ``ttl``. A stale entry is recomputed by one request at a time (single flight):
    the requests arriving meanwhile get the previous value instead of queueing behind the
    computation (at most ``grace`` seconds older than fresh), and requests with nothing to
    show yet wait for it. ``ttl`` <= 0 turns sharing off: every request computes its own.
    """

    def __init__(self, grace: float = 60.0, max_entries: int = 64):
        self.grace = grace
        self.max_entries = max_entries    # e.g. one per quarter asked for: the oldest idle ones are dropped
        self.lock = threading.Lock()
        self.entries: dict = {}       # key -> _Shared

    def get(self, key, compute, *, ttl: float, version=None):
        """The shared value of ``key``, computing it with ``compute()`` when it is missing or stale."""
        if ttl <= 0:
            return compute()
        while True:
            now = time.monotonic()
            with self.lock:
                entry = self.entries.get(key)
                if entry is None:
                    self._evict()
                    entry = self.entries[key] = _Shared()
                has_value = entry.stamp is not None
                if has_value and entry.version == version and now - entry.stamp < ttl:
                    return entry.value
                if entry.running is None:
                    entry.running = running = threading.Event()
                    break
                if has_value and now - entry.stamp < ttl + self.grace:
                    return entry.value            # someone is recomputing it: the previous value will do
                waiting = entry.running
            waiting.wait(timeout=self.grace)
        try:
            value = compute()
        except BaseException:
            with self.lock:
                entry.running = None
                if entry.stamp is None:           # e.g. a bad parameter: keep no empty entry
                    self.entries.pop(key, None)
            running.set()
            raise
        with self.lock:
            entry.value, entry.version, entry.stamp, entry.running = value, version, time.monotonic(), None
        running.set()
        return value

    def _evict(self) -> None:
        idle = [(entry.stamp, key) for key, entry in self.entries.items()
                if entry.running is None and entry.stamp is not None]
        for _, key in sorted(idle)[:max(0, len(self.entries) + 1 - self.max_entries)]:
            del self.entries[key]

    def clear(self) -> None:
        """Forget every shared result."""
        with self.lock:
            self.entries.clear()


class _Shared:
    __slots__ = ("value", "version", "stamp", "running")

    def __init__(self):
        self.value = self.version = self.stamp = self.running = None


def shared_results(name: str) -> SharedResults:
    """The app's SharedResults called ``name`` (one per kind of result)."""
    res = resources()
    registry = res.__dict__.setdefault("shared_results", {})
    with res.lock:
        return registry.setdefault(name, SharedResults())


class JsonBody:
    """A JSON text ready to send, and its gzip form (made once, on first demand)."""

    def __init__(self, raw: bytes):
        self.raw = raw
        self._gzip: bytes | None = None

    def gzipped(self) -> bytes:
        """The text compressed with gzip (level 6)."""
        if self._gzip is None:
            self._gzip = gzip.compress(self.raw, compresslevel=6, mtime=0)
        return self._gzip


def json_body(data) -> JsonBody:
    """``data`` as the app's JSON provider writes it for jsonify (same settings)."""
    return JsonBody((current_app.json.dumps(data) + "\n").encode("utf-8"))


def json_response(body: JsonBody) -> Response:
    """A JSON response from a ready-made body; gzip-compressed when the client accepts it and it is big."""
    if len(body.raw) >= 4096 and "gzip" in request.accept_encodings:
        response = Response(body.gzipped(), mimetype=current_app.json.mimetype)
        response.headers["Content-Encoding"] = "gzip"
    else:
        response = Response(body.raw, mimetype=current_app.json.mimetype)
    response.vary.add("Accept-Encoding")
    return response

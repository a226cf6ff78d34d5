"""One network thread for many paho clients (the simulator's hundreds of terminals).

paho's ``loop_start`` gives every client a thread of its own and waits with
``select()``, which cannot watch file descriptors above 1024; a few hundred
terminals with their outboxes pass that. :class:`NetworkLoop` drives any number of
clients from one thread with :mod:`selectors` (epoll on Linux) through paho's
external-loop interface (socket callbacks, ``loop_read``/``loop_write``/``loop_misc``),
and reconnects each client with exponential back-off, as ``loop_start`` would.
"""

from __future__ import annotations

import logging
import selectors
import socket
import threading
import time
from collections import deque

import paho.mqtt.client as mqtt

log = logging.getLogger(__name__)

MISC_SECONDS = 1.0


class _Entry:
    __slots__ = ("client", "min_delay", "max_delay", "delay", "next_try", "stopped")

    def __init__(self, client, min_delay: float, max_delay: float):
        self.client = client
        self.min_delay = min_delay
        self.max_delay = max_delay
        self.delay = min_delay
        self.next_try = 0.0
        self.stopped = False


class NetworkLoop:
    """A thread that runs the network side of many paho clients."""

    def __init__(self):
        self._sel = selectors.DefaultSelector()
        self._entries: dict[int, _Entry] = {}
        self._ops: deque = deque()
        self._writers: set = set()
        self._lock = threading.Lock()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._sel.register(self._wake_r, selectors.EVENT_READ, None)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="manyi-netloop", daemon=True)
        self._started = False

    def add(self, client: mqtt.Client, *, min_delay: float = 1.0, max_delay: float = 60.0) -> None:
        """Drive ``client`` (already configured with ``connect_async``): connect it and keep it connected."""
        entry = _Entry(client, min_delay, max_delay)
        client.on_socket_open = lambda c, u, sock: self._op(("open", c, sock.fileno()))
        client.on_socket_close = lambda c, u, sock: self._op(("close", c, sock.fileno()))
        client.on_socket_register_write = lambda c, u, sock: self._want_write(c)
        client.on_socket_unregister_write = lambda c, u, sock: None
        with self._lock:
            self._entries[id(client)] = entry
        if not self._started:
            self._started = True
            self._thread.start()
        self._wake()

    def remove(self, client: mqtt.Client) -> None:
        """Stop reconnecting ``client``; its socket is dropped once paho closes it."""
        with self._lock:
            entry = self._entries.get(id(client))
            if entry:
                entry.stopped = True
        self._wake()

    def close(self, timeout: float = 5.0) -> None:
        """Stop the thread (clients should be disconnected first)."""
        self._stop.set()
        self._wake()
        if self._started:
            self._thread.join(timeout)
        self._sel.close()
        self._wake_r.close()
        self._wake_w.close()

    # -- called from any thread -----------------------------------------------------------------

    def _op(self, op) -> None:
        self._ops.append(op)
        self._wake()

    def _want_write(self, client) -> None:
        with self._lock:
            self._writers.add(client)
        self._wake()

    def _wake(self) -> None:
        try:
            self._wake_w.send(b"x")
        except (BlockingIOError, OSError):
            pass

    # -- the loop thread ------------------------------------------------------------------------

    def _apply_ops(self) -> None:
        while self._ops:
            kind, client, fd = self._ops.popleft()
            if kind == "open":
                try:
                    self._sel.register(fd, selectors.EVENT_READ, client)
                except (KeyError, ValueError):
                    self._sel.modify(fd, selectors.EVENT_READ, client)
            else:
                try:
                    self._sel.unregister(fd)
                except (KeyError, ValueError):
                    pass

    def _write_pending(self) -> None:
        with self._lock:
            writers, self._writers = self._writers, set()
        for client in writers:
            if client.socket() is not None:
                client.loop_write()
            if client.socket() is not None and client.want_write():
                with self._lock:
                    self._writers.add(client)

    def _reconnect_due(self, now: float) -> None:
        with self._lock:
            entries = list(self._entries.values())
        for entry in entries:
            client = entry.client
            if entry.stopped:
                if client.socket() is None:
                    with self._lock:
                        self._entries.pop(id(client), None)
                continue
            if client.socket() is not None:
                client.loop_misc()
                if client.is_connected():
                    entry.delay = entry.min_delay
                continue
            if now < entry.next_try:
                continue
            try:
                client.reconnect()
                entry.next_try = now + entry.delay
            except (OSError, ValueError) as exc:
                log.debug("%s: connect failed: %s", client._client_id, exc)
                entry.next_try = now + entry.delay
            entry.delay = min(entry.delay * 2, entry.max_delay)
            self._apply_ops()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._run_once()
            except Exception:  # noqa: BLE001 - one client's failure must not stop every terminal
                log.exception("network loop error; continuing")
                time.sleep(0.1)

    def _run_once(self) -> None:
        next_misc = 0.0
        while not self._stop.is_set():
            self._apply_ops()
            self._write_pending()
            timeout = 0.01 if self._writers else MISC_SECONDS / 4
            for key, mask in self._sel.select(timeout):
                if key.data is None:
                    try:
                        while self._wake_r.recv(4096):
                            pass
                    except (BlockingIOError, OSError):
                        pass
                    continue
                client = key.data
                if mask & selectors.EVENT_READ and client.socket() is not None:
                    client.loop_read()
            self._apply_ops()
            self._write_pending()
            now = time.monotonic()
            if now >= next_misc:
                next_misc = now + MISC_SECONDS / 4
                self._reconnect_due(now)

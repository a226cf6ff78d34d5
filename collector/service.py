"""The collector: MQTT 5 (or 3.1.1) subscriber that stores votes and acknowledges them only after commit.

Flow: paho's network thread puts every message into a queue (``on_message`` does
nothing else); one writer thread takes batches from the queue, validates them, writes
them in ONE ``store.write()`` and only then acknowledges each message to the broker
(paho manual acks).

Batching is adaptive (group commit): the writer takes what is queued, at most
``batch_size`` messages, and writes as soon as the queue is empty (after waiting at
most ``idle_ms`` for one more, 0 by default, and never longer than ``batch_ms`` after
the first). A single vote is therefore written at once (latency), and under load the
batches grow by themselves while the previous one commits (throughput).

Why this loses nothing and doubles nothing:

* The session is persistent (fixed client id, clean_start False, session expiry > 0),
  so a collector killed at any instant gets every unacknowledged message again on
  restart; votes are keyed by (device, seq), so a redelivered one is a duplicate.
* A failing store means no acks: the writer retries the same batch with exponential
  back-off and the broker keeps the backlog (at most ``receive_maximum`` messages
  sit unacknowledged with us; the rest wait in the broker's queue).
* Messages received on an earlier connection are never acknowledged on a later one
  (packet ids are per connection); the broker redelivers them and those copies are
  acknowledged.
* Dead letters are stored like votes and then acknowledged, so a bad message never
  blocks the queue; any exception while handling one message becomes a dead letter.

Bounded whatever arrives (docs/security.md): QoS 1 messages are bounded by the receive
maximum; QoS 0 messages (a terminal never sends one) beyond ``qos0_queue_limit`` queued
are dropped on the network thread and counted; dead letters keep a 256-byte prefix and a
hash, at most ``dead_letters_per_source`` per terminal and hour are stored and the rest
are counted into ``suppressed`` summaries (:class:`~collector.validate.DeadLetterLimiter`);
dead-letter warnings are logged at most ``log_lines_per_minute`` a minute.

MQTT 3.1.1 compatibility mode (``mqtt_version = "3.1.1"``, for the demo's embedded
amqtt broker): ``clean_session=False`` instead of the session expiry property (the
broker decides how long it keeps the session), no CONNECT properties (no receive
maximum: the broker's own in-flight limit applies), and the plain vote subscription
(no ``$share``, so a single collector). Acks are still sent only after the commit.
docs/protocol.md ("MQTT 3.1.1 compatibility mode") says what production loses with it.
"""

from __future__ import annotations

import logging
import queue
import sqlite3
import struct
import threading
import time
from datetime import datetime
from typing import NamedTuple

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from manyi import protocol
from manyi.clock import SystemClock
from manyi.exc import StoreError

from .config import CollectorSettings, parse_broker
from .stores.base import DeadLetter, StoredVote, TerminalStatus, VoteStore
from .validate import BurstRule, BurstTracker, DeadLetterLimiter, validate_message

log = logging.getLogger("manyi.collector")
_PUBACK = struct.Struct("!BBH")      # PUBACK fixed header, remaining length 2, packet id


class Received(NamedTuple):
    """One message as taken from the broker, waiting for its batch (a tuple: cheap on the network thread)."""

    topic: str
    payload: bytes
    qos: int
    mid: int
    retain: bool
    generation: int
    received_at: datetime


class LogLimiter:
    """At most ``per_minute`` warnings a minute; the rest are counted and reported in one line."""

    def __init__(self, logger: logging.Logger, per_minute: int, clock=time.monotonic):
        self.log, self.per_minute, self.clock = logger, per_minute, clock
        self._start, self._lines, self.dropped = clock(), 0, 0

    def warning(self, message: str, *args) -> None:
        """Log ``message`` unless this minute's quota is used up."""
        now = self.clock()
        if now - self._start >= 60:
            if self.dropped:
                self.log.warning("%d more dead-letter warnings in the last minute were not logged", self.dropped)
            self._start, self._lines, self.dropped = now, 0, 0
        if self._lines < self.per_minute:
            self._lines += 1
            self.log.warning(message, *args)
        else:
            self.dropped += 1


class Collector:
    """Subscribes to votes and statuses, writes them to ``store`` in batches, acks after commit."""

    def __init__(self, settings: CollectorSettings, store: VoteStore, clock=None):
        self.settings = settings
        self.store = store
        self.clock = clock or SystemClock()
        self.host, self.port = parse_broker(settings.broker)
        self.queue: queue.SimpleQueue[Received] = queue.SimpleQueue()   # C-implemented: no Condition per put
        # mosquitto 2.0 does not restore a shared subscription of a persistent session after a broker
        # restart (messages published before we re-subscribe are dropped); a single collector may use
        # the plain filter, which it does restore. docs/collector.md has the details.
        # MQTT 3.1.1 has no shared subscriptions: one collector, plain filter.
        self.mqtt5 = settings.mqtt_version == "5"
        self.votes_filter = (f"$share/{settings.shared_group}/{protocol.VOTES_SUBSCRIPTION}"
                             if settings.shared_subscription and self.mqtt5 else protocol.VOTES_SUBSCRIPTION)
        self.bursts = BurstTracker(BurstRule(settings.burst_max_votes, settings.burst_window_seconds))
        self.limiter = DeadLetterLimiter(per_window=settings.dead_letters_per_source)
        self.letter_log = LogLimiter(log, settings.log_lines_per_minute)
        self._qos0_dropped = 0                # written by the network thread only
        self._qos0_counted = 0                # how many of those the writer has handed to the limiter
        self._stop = threading.Event()
        self._connected = threading.Event()
        self.subscribed = threading.Event()   # set when the broker granted both subscriptions
        self._generation = 0
        self._gen_lock = threading.Lock()
        self._writer: threading.Thread | None = None
        self.counters = {"received": 0, "stored": 0, "duplicates": 0, "dead_letters": 0, "statuses": 0,
                         "acked": 0, "not_acked_stale": 0, "store_failures": 0, "suppressed": 0, "qos0_dropped": 0}
        self.client = self._make_client()

    # --- MQTT ---------------------------------------------------------------------
    def _make_client(self) -> mqtt.Client:
        if self.mqtt5:
            client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=self.settings.client_id,
                                 protocol=mqtt.MQTTv5, manual_ack=True)
        else:
            client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=self.settings.client_id,
                                 protocol=mqtt.MQTTv311, clean_session=False, manual_ack=True)
        if self.settings.username:
            client.username_pw_set(self.settings.username, self.settings.password)
        if self.settings.tls_ca:
            client.tls_set(ca_certs=self.settings.tls_ca)
        client.reconnect_delay_set(min_delay=1, max_delay=30)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.on_subscribe = self._on_subscribe
        return client

    def _connect_properties(self) -> Properties:
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = self.settings.session_expiry
        props.ReceiveMaximum = self.settings.receive_maximum
        return props

    def _on_connect(self, client, userdata, flags, reason_code, properties):
        if reason_code.is_failure:
            log.error("broker %s:%d refused the connection: %s", self.host, self.port, reason_code)
            return
        with self._gen_lock:
            self._generation += 1
        log.info("connected to %s:%d as %r (session present: %s)", self.host, self.port,
                 self.settings.client_id, flags.session_present)
        options = SubscribeOptions(qos=1) if self.mqtt5 else 1
        client.subscribe([(self.votes_filter, options), (protocol.STATUS_SUBSCRIPTION, options)])
        self._connected.set()

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties):
        refused = [code for code in reason_codes if code.is_failure]
        for code in refused:
            log.error("subscription refused by the broker: %s", code)
        if not refused:
            self.subscribed.set()

    def _on_disconnect(self, client, userdata, flags, reason_code, properties):
        self._connected.clear()
        self.subscribed.clear()
        if not self._stop.is_set():
            log.warning("lost the broker %s:%d (%s); reconnecting", self.host, self.port, reason_code)

    def _on_message(self, client, userdata, msg):
        # Runs on paho's network thread: only enqueue, never block or raise.
        try:
            if msg.qos == 0 and self.queue.qsize() >= self.settings.qos0_queue_limit:
                # QoS 0 skips the broker's flow control (no receive maximum): a flood would grow the
                # queue without bound. Terminals publish at QoS 1, so only a hostile client is cut.
                self._qos0_dropped += 1
                return
            self.queue.put(Received(msg.topic, msg.payload, msg.qos, msg.mid, msg.retain, self._generation,
                                    self.clock.now()))
        except Exception:  # pragma: no cover - defensive: the network thread must survive
            log.exception("could not enqueue a message on %r", getattr(msg, "topic", "?"))

    # --- lifecycle ----------------------------------------------------------------
    def start(self) -> "Collector":
        """Connect (in the background, retrying) and start the writer thread."""
        log.info("collector %r: broker %s:%d (MQTT %s), store %s", self.settings.client_id, self.host, self.port,
                 self.settings.mqtt_version, self.store.url)
        try:
            self.limiter.remember(self.store.dead_letters(limit=1000))
        except Exception as exc:  # a store that is down now is retried by the writer; this is only a hint
            log.warning("could not read the stored dead letters (replayed retained junk may be stored again): %s", exc)
        if self.mqtt5:
            self.client.connect_async(self.host, self.port, keepalive=self.settings.keepalive, clean_start=False,
                                      properties=self._connect_properties())
        else:
            # clean_session=False was given to the client: the broker keeps the session.
            self.client.connect_async(self.host, self.port, keepalive=self.settings.keepalive)
        self.client.loop_start()
        self._writer = threading.Thread(target=self._write_loop, name="collector-writer", daemon=True)
        self._writer.start()
        return self

    @property
    def connections(self) -> int:
        """How many times the collector has connected (reconnects included)."""
        return self._generation

    def wait_connected(self, timeout: float = 10.0) -> bool:
        """Block until connected and subscribed requested; True on success."""
        return self._connected.wait(timeout)

    def request_stop(self) -> None:
        """Ask the writer to finish its current batch and stop (safe from a signal handler)."""
        self._stop.set()

    def stop(self, timeout: float = 30.0) -> None:
        """Finish the current batch, then disconnect; unwritten messages stay with the broker."""
        self._stop.set()
        if self._writer:
            self._writer.join(timeout)
        try:
            summaries = self._summaries(force=True)
            if summaries:
                self.store.write([], summaries, [])
        except Exception as exc:  # the store may be the reason we stop
            log.warning("could not write the last suppressed-letter summaries: %s", exc)
        self.client.disconnect()
        self.client.loop_stop()
        log.info("collector stopped: %s", self.counters)

    def run(self) -> None:
        """Start, block until :meth:`request_stop`, then stop."""
        self.start()
        try:
            while not self._stop.wait(1.0):
                pass
        finally:
            self.stop()

    # --- the writer ---------------------------------------------------------------
    def _next_batch(self) -> list[Received]:
        """What is queued (at most batch_size), once the queue is empty; [] after 0.25 s of nothing."""
        get, size = self.queue.get, self.settings.batch_size
        try:
            batch = [get(timeout=0.25)]
        except queue.Empty:
            return []
        idle = self.settings.idle_ms / 1000
        deadline = time.monotonic() + self.settings.batch_ms / 1000
        while len(batch) < size:
            try:
                batch.append(get(False))
                continue
            except queue.Empty:
                pass
            left = deadline - time.monotonic() if idle else 0.0
            if left <= 0:
                break
            try:
                batch.append(get(timeout=min(idle, left)))
            except queue.Empty:
                break
        return batch

    def _classify(self, batch: list[Received]):
        votes: list[StoredVote] = []
        letters: list[DeadLetter] = []
        statuses: list[TerminalStatus] = []
        for item in batch:
            result = validate_message(item.topic, item.payload, item.received_at, item.retain)
            if isinstance(result, StoredVote):
                try:
                    result = self.bursts.flag(result)
                except Exception:
                    log.exception("burst check failed for %s seq %d; stored unflagged", result.device, result.seq)
                votes.append(result)
            elif isinstance(result, TerminalStatus):
                statuses.append(result)
            elif (not self.settings.dead_letters_per_source
                  or self.limiter.admit(result, item.payload, time.monotonic(), item.retain)):
                self.letter_log.warning("dead letter on %r: %s: %s", result.topic, result.reason, result.detail[:300])
                letters.append(result)
        letters += self._summaries()
        return votes, letters, statuses

    def _summaries(self, force: bool = False) -> list[DeadLetter]:
        """The limiter's ``suppressed`` letters that are due (QoS 0 drops counted in first)."""
        dropped = self._qos0_dropped - self._qos0_counted
        if dropped:
            self._qos0_counted += dropped
            self.counters["qos0_dropped"] += dropped
            self.limiter.count("qos0", "qos0_dropped", dropped)
            self.letter_log.warning("%d QoS 0 messages dropped: the queue held more than %d", dropped,
                                    self.settings.qos0_queue_limit)
        self.counters["suppressed"] = self.limiter.suppressed
        return self.limiter.summaries(time.monotonic(), self.clock.now(), force=force)

    def _commit(self, votes, letters, statuses) -> bool:
        """Write with retries; True once committed, False when asked to stop first."""
        attempt, started = 0, time.monotonic()
        while True:
            try:
                result = self.store.write(votes, letters, statuses)
            except (StoreError, sqlite3.Error, OSError) as exc:
                error = exc
            except Exception as exc:  # a bug or an unexpected backend error: same treatment, louder
                log.exception("unexpected error writing a batch")
                error = exc
            else:
                if attempt:
                    log.warning("store is back after %d failed attempts (%.1f s); batch of %d written",
                                attempt, time.monotonic() - started, len(votes) + len(letters) + len(statuses))
                c = self.counters
                c["stored"] += result.inserted
                c["duplicates"] += result.duplicates
                c["dead_letters"] += result.dead_letters
                c["statuses"] += result.statuses
                return True
            attempt += 1
            self.counters["store_failures"] += 1
            delay = min(0.5 * 2 ** (attempt - 1), self.settings.retry_max_seconds)
            log.error("store %s failed (attempt %d): %s; nothing acknowledged, retrying in %.1f s",
                      self.store.url, attempt, error, delay)
            if self._stop.wait(delay):
                log.warning("stopping with an unwritten batch; the broker will redeliver it")
                return False

    def _ack(self, batch: list[Received]) -> None:
        current = self._generation
        mids = []
        for item in batch:
            if item.qos == 0:
                continue
            if item.generation != current:
                self.counters["not_acked_stale"] += 1
            elif item.qos == 1:
                mids.append(item.mid)
            else:  # pragma: no cover - we subscribe with QoS 1, so the broker never sends QoS 2
                self.client.ack(item.mid, item.qos)
                self.counters["acked"] += 1
        if mids:
            self._send_pubacks(mids)
            self.counters["acked"] += len(mids)

    def _send_pubacks(self, mids: list[int]) -> None:
        """Acknowledge QoS 1 messages: the batch's PUBACKs as ONE write to the socket when paho allows.

        ``client.ack()`` queues one packet per message, and paho's network thread wakes up and
        calls send() once per packet: a batch of 500 costs 1,000 system calls. The PUBACKs are
        concatenated into one packet for paho's out-queue instead (a private method of paho
        2.x, checked for; without it we fall back to ``ack()``). The bytes on the wire are the
        same: PUBACK, remaining length 2, packet id (reason code 0x00 success is implied).
        """
        queue_packet = getattr(self.client, "_packet_queue", None)
        if queue_packet is None or len(mids) == 1:
            for mid in mids:
                self.client.ack(mid, 1)
            return
        pack = _PUBACK.pack
        queue_packet(mqtt.PUBACK, b"".join([pack(mqtt.PUBACK, 2, mid) for mid in mids]), 0, 0)

    def _write_loop(self) -> None:
        while not self._stop.is_set():
            try:
                batch = self._next_batch()
                if not batch:
                    summaries = self._summaries()
                    if summaries:
                        self._commit([], summaries, [])
                    continue
                self.counters["received"] += len(batch)
                votes, letters, statuses = self._classify(batch)
                if self._commit(votes, letters, statuses):
                    self._ack(batch)
                else:
                    return
            except Exception:  # never let the writer die
                log.exception("writer loop error; continuing")
                self._stop.wait(0.5)

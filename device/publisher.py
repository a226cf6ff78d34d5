"""The publisher: sends the outbox over MQTT 5 and deletes a vote only when the broker acknowledged it.

One paho client per terminal, client id = username = device id, a persistent session
(clean_start=False with a session expiry), QoS 1, reconnect with back-off. Votes go
out in seq order with a bounded number in flight. Only a PUBACK with reason code 0x00
(success) deletes the row. 0x10 "no matching subscribers" means the broker dropped the
vote because no collector was subscribed (e.g. mosquitto 2.0 does not restore a shared
subscription after a broker restart): the vote stays pending and the publisher holds off,
then sends again from the oldest pending vote, with back-off. After a lost connection
the votes the broker acknowledged in the ``REDELIVER_SECONDS`` before the loss are sent again: a
broker that crashed (kill -9, power cut) loses what it acknowledged since its last save
while no collector was there to take it; the collector dedupes the copies. The same holds
for the first connection after a run that did not stop cleanly (the terminal itself lost
power, perhaps with the broker host): the window counts back from the last acknowledgement. A reason code >= 0x80
(e.g. 0x87 not authorised by the broker's ACL) moves it to the poisoned table, where it
stays, counted in the status and shown on the LEDs. The retained status message is published on connect, on every heartbeat
and after a config change; the will publishes ``online: false``. Settings from the
retained config topic are applied at run time and reported in ``config_applied``.

MQTT 3.1.1 compatibility mode (``mqtt_version = "3.1.1"``, for the demo's embedded amqtt
broker): ``clean_session=False`` instead of the session expiry property, no properties.
A 3.1.1 PUBACK carries no reason code, so every acknowledged vote is deleted: a vote the
broker refused (ACL) or could not route is lost silently. Production uses MQTT 5.
"""

from __future__ import annotations

import logging
import ssl
import threading
from collections import deque
from datetime import datetime
from typing import Callable

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from manyi import __version__
from manyi.clock import SystemClock
from manyi.exc import ProtocolError
from manyi.protocol import CHINA_TZ, Status, config_topic, format_timestamp, parse_config, status_topic, vote_topic

from .config import TerminalSettings
from .outbox import Outbox

log = logging.getLogger(__name__)

RESEND_SECONDS = 30.0
SUCCESS = 0x00
NO_MATCHING_SUBSCRIBERS = 0x10
# Longer than the broker's autosave_interval (deploy: 60 s) plus the time to notice its crash.
REDELIVER_SECONDS = 120.0


class Publisher:
    """Moves votes from an Outbox to the broker; owns the terminal's MQTT client.

    ``status_fields()`` returns the terminal's part of the status (Terminal.status_fields);
    ``on_change()`` is called after acknowledgements, poisonings and config changes (the
    terminal's LED refresh). ``clock`` drives heartbeats and the resend watchdog.
    ``netloop`` (a :class:`~device.netloop.NetworkLoop`) shares one network thread between
    many publishers; without it the client runs paho's own thread (``loop_start``).
    """

    def __init__(self, settings: TerminalSettings, outbox: Outbox, *, clock=None,
                 status_fields: Callable[[], dict] | None = None, on_change: Callable[[], None] | None = None,
                 firmware: str = __version__, boot_time: datetime | None = None, netloop=None):
        self.netloop = netloop
        self.settings = settings
        self.outbox = outbox
        self.clock = clock or SystemClock()
        self.device = settings.device_id
        self.status_fields = status_fields or self._outbox_status
        self.on_change = on_change
        self.firmware = firmware
        self.boot_time = format_timestamp((boot_time or self.clock.now()).astimezone(CHINA_TZ))
        self.topic = vote_topic(self.device)
        self.config_topic = config_topic(self.device)
        self.acked = 0
        self.poisoned = 0
        self.duplicate_acks = 0
        self.undelivered = 0                      # PUBACKs 0x10 (and other non-success codes < 0x80): kept, sent again
        self.undelivered_retries = 0              # hold-offs after such PUBACKs
        self.redelivered = 0                      # acknowledged votes sent again after a lost connection
        self._requeued: set[int] = set()          # their seqs until acknowledged again
        self._redeliver = False
        self._unclean_start = False                # the previous run did not stop cleanly
        self._lost_at: float | None = None        # epoch seconds when the connection was lost
        self.config_applied: dict = {}
        self.config_rejected: dict = {}
        self.connected = threading.Event()
        self.subscribed = threading.Event()     # the config subscription of this connection is active
        self.connections = 0
        self._lock = threading.Lock()
        self._acks: deque = deque()
        self._dirty = False
        self._inflight: dict[int, int] = {}       # mid -> seq
        self._sent_upto = 0                       # highest seq handed to paho
        self._inflight_since = 0.0
        self._next_heartbeat = float("inf")
        self._hold_until = 0.0                    # no publishing before this (monotonic) after a PUBACK 0x10
        self._hold_seconds = 0.0                  # current back-off; 0 after a success
        self._stopping = False
        self.client = self._make_client()

    # -- client ---------------------------------------------------------------------------------

    def _make_client(self) -> mqtt.Client:
        s = self.settings
        if s.mqtt_version == "3.1.1":
            client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=self.device, protocol=mqtt.MQTTv311,
                                 clean_session=False)
        else:
            client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=self.device, protocol=mqtt.MQTTv5)
        if s.username or s.password:
            client.username_pw_set(s.username, s.password)
        if s.tls_ca:
            client.tls_set(ca_certs=str(s.tls_ca), tls_version=ssl.PROTOCOL_TLS_CLIENT)
        client.will_set(status_topic(self.device), Status(self.device, online=False).to_json(), qos=1, retain=True)
        client.reconnect_delay_set(min_delay=max(1, int(s.reconnect_min_seconds)),
                                   max_delay=max(1, int(s.reconnect_max_seconds)))
        client.max_inflight_messages_set(max(s.inflight, 1) + 10)
        # An error in one of our callbacks is logged and the network loop goes on; a vote that
        # could not be deleted stays in the outbox and is sent again.
        client.suppress_exceptions = True
        client.enable_logger(logging.getLogger(f"{__name__}.paho"))
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        client.on_message = self._on_message
        client.on_subscribe = lambda *args: self.subscribed.set()
        return client

    def start(self) -> None:
        """Connect in the background (retrying with back-off) and start the network thread."""
        if not self.outbox.begin_run():
            # The last run ended in a crash or power cut, perhaps together with the broker host's
            # (a hall blackout): treat it as a lost connection at the last acknowledgement.
            self._unclean_start = True
            self._lost_at = self.outbox.last_acked_at()
        if self.settings.mqtt_version == "3.1.1":
            # clean_session=False was given to the client; the broker decides how long it keeps the session.
            self.client.connect_async(self.settings.broker_host, self.settings.broker_port,
                                      keepalive=self.settings.keepalive)
        else:
            props = Properties(PacketTypes.CONNECT)
            props.SessionExpiryInterval = self.settings.session_expiry
            self.client.connect_async(self.settings.broker_host, self.settings.broker_port,
                                      keepalive=self.settings.keepalive, clean_start=False, properties=props)
        if self.netloop is not None:
            self.netloop.add(self.client, min_delay=self.settings.reconnect_min_seconds,
                             max_delay=self.settings.reconnect_max_seconds)
        else:
            self.client.loop_start()

    def stop(self, timeout: float = 5.0) -> None:
        """Publish the offline status, disconnect and stop the network thread."""
        self.begin_stop(timeout)
        self.finish_stop()

    def finish_stop(self) -> None:
        """Second half of :meth:`stop`: stop the network thread (or leave the shared loop)."""
        if self.netloop is not None:
            self.netloop.remove(self.client)
        else:
            self.client.loop_stop()
        self.outbox.mark_clean_stop()

    def begin_stop(self, timeout: float = 5.0) -> None:
        """First half of :meth:`stop`: offline status (unless already sent), then DISCONNECT."""
        info = self.publish_offline()
        if info is not None and timeout > 0:
            try:
                info.wait_for_publish(timeout)
            except (RuntimeError, ValueError):
                pass
        self.client.disconnect()

    def publish_offline(self):
        """Stop sending votes and publish the retained offline status once; return its MessageInfo."""
        if self._stopping:
            return None
        self._stopping = True
        if not self.connected.is_set():
            return None
        return self.client.publish(status_topic(self.device), Status(self.device, online=False).to_json(),
                                   qos=1, retain=True)

    # -- callbacks (network thread) ---------------------------------------------------------------

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            log.warning("%s: broker refused the connection: %s", self.device, reason_code)
            return
        self.connections += 1
        # Not on the first connection of a process that started after a clean stop: a clean
        # restart is not a lost connection. After a crash it is (see start()).
        self._redeliver = self.connections > 1 or self._unclean_start
        self._unclean_start = False
        self.connected.set()
        self._inflight_since = self.clock.monotonic()
        client.subscribe(self.config_topic, qos=1)
        self.publish_status()
        self.wake()

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        self.connected.clear()
        self.subscribed.clear()
        if self._lost_at is None:
            self._lost_at = self.clock.now().timestamp()
        if not self._stopping:
            log.info("%s: disconnected (%s); reconnecting with back-off", self.device, reason_code)

    def _on_publish(self, client, userdata, mid, reason_code, properties) -> None:
        # Called with paho's message lock held: only queue the ack here; see _drain for the rest.
        self._acks.append((mid, reason_code.value, str(reason_code)))
        self._drain()

    def _on_message(self, client, userdata, message) -> None:
        if message.topic != self.config_topic:
            # Only the config topic is subscribed; a broker that sends anything else (amqtt 0.12
            # sent other sessions' retained messages) must not reach apply_config.
            log.debug("%s: ignored a message on %s", self.device, message.topic)
            return
        try:
            self.apply_config(message.payload)
        except Exception:  # noqa: BLE001 - one bad message must never kill the network loop
            log.exception("%s: config message on %s could not be applied", self.device, message.topic)

    # -- the outbox pump --------------------------------------------------------------------------

    def wake(self) -> None:
        """A new vote is in the outbox: publish what the window allows."""
        self._dirty = True
        self._drain()

    def _drain(self) -> None:
        # Never block on our lock: the network thread calls this with paho's lock held, while
        # another thread may hold ours and be waiting for paho's. Whoever holds the lock loops
        # until no ack and no wake-up is left behind.
        changed = False
        while self._acks or self._dirty:
            if not self._lock.acquire(blocking=False):
                break
            try:
                self._dirty = False
                if self._redeliver:
                    self._redeliver = False
                    self._requeue_recent()
                changed |= self._process_acks()
                self._fill()
            finally:
                self._lock.release()
        if changed and self.on_change is not None:
            self.on_change()

    def _process_acks(self) -> bool:
        changed = False
        done = []
        unrouted = []
        while self._acks:
            mid, code, reason = self._acks.popleft()
            seq = self._inflight.pop(mid, None)
            if seq is None:
                continue
            if code >= 0x80:
                at = format_timestamp(self.clock.now().astimezone(CHINA_TZ))
                if self.outbox.poison(seq, code, reason, at):
                    self.poisoned += 1
                    changed = True
                    log.error("%s: broker refused vote seq %d (reason code 0x%02x %s); kept as poisoned",
                              self.device, seq, code, reason)
            elif code == SUCCESS:
                done.append(seq)
            else:
                # 0x10 "no matching subscribers": the broker accepted the PUBLISH but nobody got it.
                unrouted.append((seq, code, reason))
        if done:
            # One transaction for every ack that arrived together: fewer commits under load.
            deleted = self.outbox.acknowledge_many(done, at=self.clock.now().timestamp())
            again = min(deleted, len(self._requeued.intersection(done)))
            self._requeued.difference_update(done)
            self.acked += deleted - again
            self.duplicate_acks += len(done) - deleted
            self._inflight_since = self.clock.monotonic()
            if not unrouted:
                self._hold_seconds = 0.0
        if unrouted:
            self._hold_off(unrouted)
        return changed

    def _requeue_recent(self) -> None:
        # The window counts back from when the connection was lost, not from the reconnect: a
        # broker host that takes longer than the window to reboot must not make us skip the
        # votes it acknowledged just before its power cut (tests/test_fault_matrix.py).
        lost_at, self._lost_at = self._lost_at, None
        seqs = self.outbox.requeue_sent((lost_at or self.clock.now().timestamp()) - REDELIVER_SECONDS)
        if seqs:
            self._requeued.update(seqs)
            self.redelivered += len(seqs)
            self._sent_upto = min(self._sent_upto, seqs[0] - 1)
            log.info("%s: connection was lost; sending again %d votes the broker acknowledged in the %.0f s before "
                     "the loss (seq %d..%d), in case it crashed before saving them", self.device, len(seqs),
                     REDELIVER_SECONDS, seqs[0], seqs[-1])

    def _hold_off(self, unrouted: list) -> None:
        # Keep the votes pending, stop publishing for a while, then start again from the oldest
        # pending vote (votes still in flight are not sent twice).
        self.undelivered += len(unrouted)
        first = min(seq for seq, _code, _reason in unrouted)
        self._sent_upto = min(self._sent_upto, first - 1)
        now = self.clock.monotonic()
        if now >= self._hold_until:
            # One back-off step per hold, not per vote of a full window answered with 0x10.
            s = self.settings
            self._hold_seconds = min(max(self._hold_seconds * 2, s.reconnect_min_seconds), s.reconnect_max_seconds)
            self._hold_until = now + self._hold_seconds
            self.undelivered_retries += 1
            seq, code, reason = unrouted[0]
            log.warning("%s: broker could not route vote seq %d (reason code 0x%02x %s; %d such votes this time, "
                        "%d in total); kept in the outbox, sending again in %.1f s (retry %d)",
                        self.device, seq, code, reason, len(unrouted), self.undelivered, self._hold_seconds,
                        self.undelivered_retries)

    def _fill(self) -> None:
        if not self.connected.is_set() or self._stopping:
            return
        room = self.settings.inflight - len(self._inflight)
        if room <= 0:
            return
        if self._hold_until and self.clock.monotonic() < self._hold_until:
            return
        if not self._inflight:
            self._inflight_since = self.clock.monotonic()
        flying = set(self._inflight.values())
        for row in self.outbox.pending(after=self._sent_upto, limit=room + len(flying)):
            if row.seq in flying:
                self._sent_upto = max(self._sent_upto, row.seq)
                continue
            if room <= 0:
                break
            room -= 1
            info = self.client.publish(self.topic, row.payload, qos=1)
            if info.rc not in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN):
                log.warning("%s: publish of seq %d failed locally (%s); will retry", self.device, row.seq, info.rc)
                break
            self._inflight[info.mid] = row.seq
            self._sent_upto = row.seq

    def tick(self) -> None:
        """Heartbeat and resend watchdog; the run loop calls this often (cheap when idle)."""
        now = self.clock.monotonic()
        if self.connected.is_set() and now >= self._next_heartbeat:
            self.publish_status()
        with self._lock:
            if self._inflight and self.connected.is_set() and now - self._inflight_since > RESEND_SECONDS:
                # Unacknowledged for too long (e.g. a lost session): send again from the oldest pending vote.
                log.warning("%s: %d votes unacknowledged for %.0f s; resending", self.device,
                            len(self._inflight), now - self._inflight_since)
                self._inflight.clear()
                self._sent_upto = 0
                self._dirty = True
        self._drain()
        if self.outbox.depth and not self._inflight:
            self.wake()

    # -- status and config ------------------------------------------------------------------------

    def _outbox_status(self) -> dict:
        return {"outbox_depth": self.outbox.depth, "last_seq": self.outbox.last_seq,
                "repeats_ignored": self.outbox.repeats, "poisoned": self.outbox.poisoned_count,
                "outbox_full": self.outbox.full}

    def status(self) -> Status:
        """The current online status message."""
        fields = dict(self.status_fields())
        return Status(device=self.device, online=True, firmware=self.firmware, boot_time=self.boot_time,
                      config_applied=dict(self.config_applied),
                      sent_at=format_timestamp(self.clock.now().astimezone(CHINA_TZ)), **fields)

    def publish_status(self) -> None:
        """Publish the retained online status now and schedule the next heartbeat."""
        self._next_heartbeat = self.clock.monotonic() + self.settings.heartbeat_seconds
        self.client.publish(status_topic(self.device), self.status().to_json(), qos=1, retain=True)

    def apply_config(self, payload: bytes) -> dict:
        """Apply the valid settings of a config message; return what was applied.

        Unknown keys and out-of-range values are ignored and logged; an empty payload
        (a cleared retained message) changes nothing.
        """
        if not payload:
            return {}
        try:
            valid, rejected = parse_config(payload)
        except ProtocolError as exc:
            log.warning("%s: config message ignored: %s", self.device, exc)
            self.config_rejected = {"message": exc.reason}
            return {}
        for key, value in valid.items():
            setattr(self.settings, key, value)
        self.config_applied.update(valid)
        self.config_rejected = rejected
        if rejected:
            log.warning("%s: config keys ignored: %s", self.device, rejected)
        log.info("%s: config applied: %s", self.device, valid)
        if self.on_change is not None:
            self.on_change()
        if self.connected.is_set():
            self.publish_status()
        return valid

"""The embedded amqtt broker (demo only): its interface, and what it does and does not do for us.

These tests pin down the findings written in docs/operations.md ("Embedded broker"):
MQTT 3.1.1 only, QoS 1, persistent sessions that queue while a client is away,
retained messages, wills and '+' work; shared subscriptions do not; a message a
subscriber has not acknowledged is not redelivered on reconnect; and a new
connection would receive the retained messages matching ANY session's subscriptions,
which demo.embedded_broker.DemoBroker corrects.
"""

from __future__ import annotations

import socket
import threading
import time

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from demo.broker import BrokerError, EmbeddedBroker, Mosquitto, find_mosquitto, start_local_broker


@pytest.fixture(scope="module")
def amqtt(tmp_path_factory):
    """One embedded broker for the behaviour tests of this module (each test uses its own client ids)."""
    broker = EmbeddedBroker(tmp_path_factory.mktemp("amqtt")).start()
    yield broker
    broker.stop()


class Client:
    """A paho MQTT 3.1.1 client that records what it receives on the topics it asked for.

    amqtt also sends a new connection the retained messages of other sessions' subscriptions
    (see the last behaviour test); ``accept`` (filters; default: what this object subscribed
    to) keeps those out of ``messages``; ``everything`` keeps all.
    """

    def __init__(self, port: int, client_id: str, *, clean: bool = True, manual_ack: bool = False,
                 will: tuple[str, bytes] | None = None, accept: tuple[str, ...] = ()):
        self.messages: list[mqtt.MQTTMessage] = []
        self.everything: list[mqtt.MQTTMessage] = []
        self.accept = list(accept)
        self.connected = threading.Event()
        self.subscribed = threading.Event()
        self.session_present = None
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv311,
                                  clean_session=clean, manual_ack=manual_ack)
        if will:
            self.client.will_set(will[0], will[1], qos=1, retain=True)
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *a: self.subscribed.set()
        self.client.on_connect = self._on_connect
        self.client.connect("127.0.0.1", port, keepalive=30)
        self.client.loop_start()
        assert self.connected.wait(10), f"{client_id} did not connect"

    def _on_message(self, client, userdata, message):
        self.everything.append(message)
        if any(mqtt.topic_matches_sub(f, message.topic) for f in self.accept):
            self.messages.append(message)

    def _on_connect(self, client, userdata, flags, reason_code, properties):
        self.session_present = flags.session_present
        self.connected.set()

    def subscribe(self, *filters: str) -> None:
        """Subscribe with QoS 1 and wait for the SUBACK."""
        self.subscribed.clear()
        self.accept += filters
        self.client.subscribe([(f, 1) for f in filters])
        assert self.subscribed.wait(10)

    def publish(self, topic: str, payload: bytes, retain: bool = False) -> None:
        """QoS 1 publish, waiting for the PUBACK."""
        info = self.client.publish(topic, payload, qos=1, retain=retain)
        info.wait_for_publish(10)
        assert info.is_published()

    def payloads(self) -> list[bytes]:
        return [m.payload for m in self.messages]

    def wait_for(self, count: int, timeout: float = 10.0) -> list[bytes]:
        deadline = time.monotonic() + timeout
        while len(self.messages) < count and time.monotonic() < deadline:
            time.sleep(0.02)
        return self.payloads()

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def drop(self) -> None:
        """Lose the connection without DISCONNECT (a crash or a pulled cable)."""
        self.client.loop_stop()
        self.client.socket().close()


def test_embedded_broker_starts_refuses_mqtt5_and_stops(tmp_path):
    broker = EmbeddedBroker(tmp_path)
    assert (broker.name, broker.mqtt_version) == ("amqtt", "3.1.1")
    assert Mosquitto.mqtt_version == "5"
    broker.start()
    try:
        assert broker.running and broker.address == f"127.0.0.1:{broker.port}"
        refused = []
        v5 = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="v5", protocol=mqtt.MQTTv5)
        v5.on_connect = lambda c, u, f, rc, p: refused.append(str(rc))
        v5.connect("127.0.0.1", broker.port)
        v5.loop_start()
        deadline = time.monotonic() + 10
        while not refused and time.monotonic() < deadline:
            time.sleep(0.02)
        v5.loop_stop()
        assert refused == ["Unsupported protocol version"]
    finally:
        broker.stop()
    assert not broker.running
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", broker.port), timeout=1).close()


def test_kill_and_restart_on_the_same_port(tmp_path):
    broker = EmbeddedBroker(tmp_path).start()
    port = broker.port
    broker.kill()
    assert not broker.running
    broker.restart()
    try:
        assert broker.running and broker.port == port
        Client(port, "after-restart").close()
    finally:
        broker.stop()


def test_qos1_retained_will_and_plus_wildcard(amqtt):
    pub = Client(amqtt.port, "t1-pub")
    pub.publish("t1/status/a", b"retained-a", retain=True)
    sub = Client(amqtt.port, "t1-sub")
    sub.subscribe("t1/status/+")
    assert sub.wait_for(1) == [b"retained-a"] and sub.messages[0].retain
    pub.publish("t1/status/b", b"live-b")
    pub.publish("t1/other/b", b"not-matched")
    assert sub.wait_for(2) == [b"retained-a", b"live-b"]
    assert sub.messages[1].qos == 1 and not sub.messages[1].retain

    willer = Client(amqtt.port, "t1-willer", will=("t1/status/w", b"offline"))
    willer.drop()
    assert sub.wait_for(3)[2] == b"offline"
    late = Client(amqtt.port, "t1-late")
    late.subscribe("t1/status/w")
    assert late.wait_for(1) == [b"offline"], "the will is retained"
    for client in (pub, sub, late):
        client.close()


def test_persistent_session_queues_while_away_without_a_username(amqtt):
    collector = Client(amqtt.port, "t2-collector", clean=False)
    assert collector.session_present is False
    collector.subscribe("t2/votes/+")
    collector.close()
    pub = Client(amqtt.port, "t2-pub")
    for i in range(5):
        pub.publish("t2/votes/d1", f"v{i}".encode())
    back = Client(amqtt.port, "t2-collector", clean=False, accept=("t2/votes/+",))
    assert back.session_present is True
    # Queued messages arrive in order, flagged retain=True by amqtt (the collector ignores the flag on votes).
    assert back.wait_for(5) == [f"v{i}".encode() for i in range(5)]
    assert all(m.qos == 1 for m in back.messages)
    back.close()
    pub.close()


def test_unacknowledged_messages_are_not_redelivered(amqtt):
    """amqtt forgets a delivered message when the connection ends: at most once towards the collector."""
    sub = Client(amqtt.port, "t3-sub", clean=False, manual_ack=True)
    sub.subscribe("t3/votes/+")
    pub = Client(amqtt.port, "t3-pub")
    pub.publish("t3/votes/d1", b"never-acked")
    assert sub.wait_for(1) == [b"never-acked"]
    sub.drop()
    again = Client(amqtt.port, "t3-sub", clean=False, manual_ack=True, accept=("t3/votes/+",))
    assert again.session_present is True
    pub.publish("t3/votes/d1", b"next")
    assert again.wait_for(1) == [b"next"], "mosquitto would redeliver b'never-acked' first"
    time.sleep(0.5)
    assert again.payloads() == [b"next"]
    again.client.ack(again.messages[0].mid, 1)
    again.close()
    pub.close()


def test_shared_subscriptions_are_not_supported(amqtt):
    shared = Client(amqtt.port, "t4-shared")
    shared.subscribe("$share/g/t4/votes/+")
    plain = Client(amqtt.port, "t4-plain")
    plain.subscribe("t4/votes/+")
    pub = Client(amqtt.port, "t4-pub")
    pub.publish("t4/votes/d1", b"v")
    assert plain.wait_for(1) == [b"v"]
    time.sleep(0.3)
    assert b"v" not in [m.payload for m in shared.everything]
    for client in (shared, plain, pub):
        client.close()


def test_a_new_connection_gets_no_retained_messages_of_other_sessions_subscriptions(amqtt):
    """amqtt 0.12 would send the terminal every status the collector subscribed to; DemoBroker does not."""
    collector = Client(amqtt.port, "t5-collector", clean=False)
    collector.subscribe("t5/status/+")
    pub = Client(amqtt.port, "t5-pub")
    pub.publish("t5/status/d1", b"status-of-d1", retain=True)
    terminal = Client(amqtt.port, "t5-terminal", clean=False)
    terminal.subscribe("t5/config/d2")
    pub.publish("t5/config/d2", b"config-of-d2", retain=True)
    assert terminal.wait_for(1) == [b"config-of-d2"]
    terminal.close()
    again = Client(amqtt.port, "t5-terminal", clean=False, accept=("t5/config/d2",))
    time.sleep(0.5)
    assert [m.topic for m in again.everything] == ["t5/config/d2"], "own retained config only"
    assert "t5/status/d1" not in [m.topic for m in terminal.everything]
    again.close()
    for client in (collector, pub):
        client.close()


def test_start_local_broker_picks_and_reports_the_protocol(tmp_path):
    embedded = start_local_broker(tmp_path, prefer="embedded")
    try:
        assert isinstance(embedded, EmbeddedBroker) and embedded.mqtt_version == "3.1.1"
        assert (tmp_path / "amqtt" / "amqtt.log").exists()
    finally:
        embedded.stop()
    with pytest.raises(BrokerError, match="must be one of"):
        start_local_broker(tmp_path, prefer="rabbitmq")
    if find_mosquitto():
        auto = start_local_broker(tmp_path, prefer="auto")
        try:
            assert isinstance(auto, Mosquitto) and auto.mqtt_version == "5" and auto.running
        finally:
            auto.stop()

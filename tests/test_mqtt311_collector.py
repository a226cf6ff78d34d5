"""The collector in MQTT 3.1.1 compatibility mode: on the embedded amqtt broker and on mosquitto."""

from __future__ import annotations

import json
import sqlite3
import threading
import time

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from manyi import protocol
from demo.broker import EmbeddedBroker, Mosquitto
from manyi.exc import ConfigError
from plugin_collector import CollectorProcess, count_stored, make_vote, stream_of_votes, wait_until


@pytest.fixture
def amqtt(tmp_path):
    """An embedded broker of this test's own."""
    broker = EmbeddedBroker(tmp_path / "amqtt").start()
    yield broker
    broker.stop()


class Publisher311:
    """A plain paho MQTT 3.1.1 QoS 1 publisher."""

    def __init__(self, port: int, client_id: str = "pub-311", username: str | None = None, password: str | None = None):
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv311)
        if username:
            self.client.username_pw_set(username, password)
        self.client.max_inflight_messages_set(100)
        connected = threading.Event()
        self.client.on_connect = lambda *a: connected.set()
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        assert connected.wait(10)

    def votes(self, votes, timeout: float = 60.0) -> None:
        """Publish and wait until the broker acknowledged every vote."""
        infos = [self.client.publish(v.topic, v.to_json(), qos=1) for v in votes]
        for info in infos:
            info.wait_for_publish(timeout)
            assert info.is_published()

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def settings_for(broker, tmp_path, **kw):
    from collector.config import CollectorSettings

    return CollectorSettings(broker=broker.address, store=f"sqlite:///{tmp_path / 'votes.db'}",
                             client_id="c-311", mqtt_version="3.1.1", retry_max_seconds=1.0, **kw)


def test_mqtt_version_setting_is_checked_and_read_from_the_environment(tmp_path, capsys, monkeypatch):
    from collector.config import CollectorSettings
    from manyi.cli import main

    assert CollectorSettings().mqtt_version == "5"
    with pytest.raises(ConfigError, match="mqtt_version.*5, 3.1.1"):
        CollectorSettings(mqtt_version="4")
    monkeypatch.setenv("MANYI_MQTT_VERSION", "3.1.1")
    assert main(["collector", "--print-config"]) == 0
    assert json.loads(capsys.readouterr().out)["mqtt_version"] == "3.1.1"
    assert main(["collector", "--mqtt-version", "5", "--print-config"]) == 0
    assert json.loads(capsys.readouterr().out)["mqtt_version"] == "5"


def test_collector_on_amqtt_stores_every_vote_exactly_once(amqtt, tmp_path):
    from collector.service import Collector
    from collector.stores.sqlite import SQLiteStore

    store = SQLiteStore(tmp_path / "votes.db")
    collector = Collector(settings_for(amqtt, tmp_path), store).start()
    try:
        assert collector.votes_filter == protocol.VOTES_SUBSCRIPTION, "no $share in MQTT 3.1.1"
        assert collector.wait_connected(10)
        wait_until(lambda: collector.client.is_connected(), 5)
        time.sleep(0.3)  # SUBACK
        votes = stream_of_votes(400, terminals=20)
        pub = Publisher311(amqtt.port)
        pub.votes(votes)
        pub.close()
        wait_until(lambda: collector.counters["acked"] >= 400, 30, message="400 acks")
    finally:
        collector.stop()
    assert collector.counters["stored"] == 400 and collector.counters["duplicates"] == 0
    assert store.stats()["votes"] == 400
    store.close()


def test_collector_restart_gets_what_was_published_while_it_was_away(amqtt, tmp_path):
    store_url = f"sqlite:///{tmp_path / 'votes.db'}"
    proc = CollectorProcess(amqtt.address, store_url, tmp_path, client_id="c-311-proc",
                            extra=("--mqtt-version", "3.1.1")).start()
    time.sleep(0.5)  # SUBACK
    votes = stream_of_votes(300, terminals=10)
    pub = Publisher311(amqtt.port)
    pub.votes(votes[:100])
    wait_until(lambda: count_stored(tmp_path / "votes.db") == 100, 20, message="first 100 votes")
    assert proc.terminate() == 0
    pub.votes(votes[100:])           # the collector is away: amqtt queues these in its session
    (tmp_path / "again").mkdir()
    proc = CollectorProcess(amqtt.address, store_url, tmp_path / "again", client_id="c-311-proc",
                            extra=("--mqtt-version", "3.1.1")).start()
    assert "session present: True" in proc.log()
    wait_until(lambda: count_stored(tmp_path / "votes.db") == 300, 30, message="all 300 votes")
    pub.close()
    assert proc.terminate() == 0
    with sqlite3.connect(tmp_path / "votes.db") as conn:
        assert conn.execute("SELECT count(DISTINCT device || ':' || seq) FROM votes").fetchone()[0] == 300
    conn.close()


def test_collector_in_311_mode_on_mosquitto_uses_the_plain_subscription(broker, tmp_path):
    from collector.service import Collector
    from collector.stores.sqlite import SQLiteStore

    store = SQLiteStore(tmp_path / "votes.db")
    collector = Collector(settings_for(broker, tmp_path, shared_subscription=True), store).start()
    try:
        assert collector.votes_filter == protocol.VOTES_SUBSCRIPTION
        assert collector.wait_connected(10)
        time.sleep(0.3)
        pub = Publisher311(broker.port)
        pub.votes(stream_of_votes(50, terminals=5))
        pub.close()
        wait_until(lambda: collector.counters["acked"] >= 50, 20)
    finally:
        collector.stop()
    assert store.stats()["votes"] == 50
    store.close()


def test_mqtt311_cannot_refuse_a_publish_so_an_acl_denied_vote_is_silently_dropped(tmp_path):
    """Why production must use MQTT 5: in 3.1.1 mosquitto acknowledges a forbidden vote and drops it."""
    from collector.service import Collector
    from collector.stores.sqlite import SQLiteStore

    acl = ("user collector\ntopic read manyi/v1/#\n"
           "pattern write manyi/v1/votes/%u\npattern write manyi/v1/status/%u\npattern read manyi/v1/config/%u\n")
    device, other = "hz-371702001-w01", "hz-371702001-w02"
    with Mosquitto(tmp_path / "mq", users={device: "pw1", "collector": "pwc"}, acl=acl) as broker:
        store = SQLiteStore(tmp_path / "votes.db")
        settings = settings_for(broker, tmp_path, username="collector", password="pwc")
        collector = Collector(settings, store).start()
        try:
            assert collector.wait_connected(10)
            time.sleep(0.3)
            pub = Publisher311(broker.port, client_id=device, username=device, password="pw1")
            own = [make_vote(device, seq) for seq in range(1, 5)]
            forged = make_vote(other, 1, protocol.UNSATISFIED)
            pub.votes([forged])       # PUBACK arrives: 3.1.1 has no reason code to refuse it
            pub.votes(own)
            pub.close()
            wait_until(lambda: collector.counters["acked"] >= 4, 20)
            time.sleep(0.5)
        finally:
            collector.stop()
        store.close()
    with sqlite3.connect(tmp_path / "votes.db") as conn:
        assert conn.execute("SELECT DISTINCT device FROM votes").fetchall() == [(device,)]
        assert conn.execute("SELECT count(*) FROM votes").fetchone()[0] == 4
    conn.close()

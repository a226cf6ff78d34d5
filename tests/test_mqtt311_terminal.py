"""Terminals in MQTT 3.1.1 mode through the embedded amqtt broker to the collector: every vote exactly once."""

from __future__ import annotations

import sqlite3
import time

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from device.config import TerminalSettings
from device.outbox import Outbox
from device.publisher import Publisher
from device.simulate import run_simulation
from demo.broker import EmbeddedBroker
from manyi.exc import ConfigError
from manyi.protocol import config_topic, status_topic
from plugin_collector import wait_until


@pytest.fixture
def amqtt(tmp_path):
    """An embedded broker of this test's own."""
    broker = EmbeddedBroker(tmp_path / "amqtt").start()
    yield broker
    broker.stop()


@pytest.fixture
def collector311(amqtt, tmp_path):
    """An in-process collector in 3.1.1 mode on ``amqtt``, connected and subscribed."""
    from collector.config import CollectorSettings
    from collector.service import Collector
    from collector.stores.sqlite import SQLiteStore

    store = SQLiteStore(tmp_path / "votes.db")
    settings = CollectorSettings(broker=amqtt.address, store=f"sqlite:///{tmp_path / 'votes.db'}",
                                 client_id="c-311", mqtt_version="3.1.1")
    collector = Collector(settings, store).start()
    assert collector.wait_connected(10)
    time.sleep(0.3)  # SUBACK
    yield collector
    collector.stop()
    store.close()


def stored(path) -> list[tuple[str, int]]:
    with sqlite3.connect(path) as conn:
        rows = conn.execute("SELECT device, seq FROM votes ORDER BY device, seq").fetchall()
    conn.close()
    return rows


def test_mqtt_version_is_checked():
    assert TerminalSettings(device_id="hz-371702001-w01").mqtt_version == "5"
    with pytest.raises(ConfigError, match="mqtt_version"):
        TerminalSettings(device_id="hz-371702001-w01", mqtt_version="3")


def test_simulated_terminals_in_311_mode_deliver_every_vote_exactly_once(amqtt, collector311, tmp_path):
    summary = run_simulation(amqtt.address, terminals=12, votes=360, seed=7, workdir=tmp_path / "terminals",
                             rate=400, timeout=60, mqtt_version="3.1.1")
    assert summary["acked"] == 360 and summary["pending"] == 0 and summary["poisoned"] == 0
    wait_until(lambda: len(stored(tmp_path / "votes.db")) >= 360, 30, message="360 stored votes")
    rows = stored(tmp_path / "votes.db")
    assert len(rows) == len(set(rows)) == 360
    assert {d for d, _ in rows} == {f"sim-{i:04d}" for i in range(1, 13)}
    # Each terminal's seqs are 1..n without a gap.
    for device in {d for d, _ in rows}:
        seqs = [s for d, s in rows if d == device]
        assert seqs == list(range(1, len(seqs) + 1))
    assert collector311.counters["duplicates"] == 0


def test_terminal_in_311_mode_applies_its_config_and_ignores_other_topics(amqtt, tmp_path):
    settings = TerminalSettings(device_id="hz-371702001-w01", broker_port=amqtt.port, mqtt_version="3.1.1",
                                outbox_path=tmp_path / "outbox.db")
    outbox = Outbox(settings.outbox_path, settings.device_id)
    publisher = Publisher(settings, outbox)
    publisher.start()
    try:
        assert publisher.connected.wait(10) and publisher.subscribed.wait(10)
        admin = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="admin", protocol=mqtt.MQTTv311)
        admin.connect("127.0.0.1", amqtt.port)
        admin.loop_start()
        admin.publish(config_topic(settings.device_id), b'{"v":1,"lockout_seconds":7}', qos=1, retain=True
                      ).wait_for_publish(5)
        wait_until(lambda: publisher.config_applied.get("lockout_seconds") == 7, 10)
        # Something outside the config topic (as amqtt 0.12 sent other sessions' retained messages) is ignored.
        message = mqtt.MQTTMessage(topic=status_topic("hz-371702001-w02").encode())
        message.payload = b'{"v":1,"lockout_seconds":9}'
        publisher._on_message(publisher.client, None, message)
        assert publisher.config_applied == {"lockout_seconds": 7} and publisher.config_rejected == {}
        admin.disconnect()
        admin.loop_stop()
    finally:
        publisher.stop()
        outbox.close()

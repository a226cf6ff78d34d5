"""Terminal -> outbox -> real mosquitto -> subscriber: exact JSON, status, outages, ACL refusals, config."""

import json

import pytest

from plugin_collector import wait_until

from demo.broker import Mosquitto
from manyi.protocol import Status, parse_status


def wait(predicate, timeout=10.0):
    """Poll ``predicate`` every 20 ms until true; fail the test after ``timeout`` seconds."""
    return wait_until(predicate, timeout, interval=0.02)


def test_press_reaches_a_subscriber_as_exact_json_and_leaves_the_outbox(make_rig, broker, recorder):
    rig = make_rig()
    rig.connect(broker.port)
    assert rig.publisher.connected.wait(5)
    rig.tap("basic")
    assert rig.led_values() == {"satisfied": 1.0, "basic": 1.0, "unsatisfied": 1.0}
    assert recorder.wait_for(lambda r: r.votes())
    assert recorder.payloads("manyi/v1/votes/hz-test-w01") == [
        b'{"v":1,"device":"hz-test-w01","seq":1,"rating":"basic",'
        b'"pressed_at":"2026-11-23T09:30:00.000+08:00","clock_ok":true}']
    assert wait(lambda: rig.outbox.depth == 0)
    assert rig.publisher.acked == 1


def test_status_on_connect_and_will_when_the_terminal_dies(make_rig, broker, recorder):
    rig = make_rig(heartbeat_seconds=5)
    rig.connect(broker.port, keepalive=1)
    assert recorder.wait_for(lambda r: r.statuses("hz-test-w01"))
    status = parse_status("manyi/v1/status/hz-test-w01", recorder.payloads("manyi/v1/status/hz-test-w01")[0])
    assert status.online and status.firmware and status.last_seq == 0 and status.outbox_depth == 0
    # A dead terminal: its socket closes without DISCONNECT, the broker publishes the will.
    rig.publisher.client.loop_stop()
    rig.publisher.client.socket().close()
    assert recorder.wait_for(lambda r: json.loads(r.payloads("manyi/v1/status/hz-test-w01")[-1])
                             == {"v": 1, "device": "hz-test-w01", "online": False}, timeout=10)
    rig.publisher = None


def test_heartbeat_is_published_on_schedule(make_rig, broker, recorder, clock):
    rig = make_rig(heartbeat_seconds=60)
    publisher = rig.connect(broker.port)
    publisher.clock = clock
    assert recorder.wait_for(lambda r: len(r.statuses("hz-test-w01")) == 1)
    publisher.publish_status()
    assert recorder.wait_for(lambda r: len(r.statuses("hz-test-w01")) == 2)
    clock.advance(30)
    publisher.tick()
    clock.advance(31)
    publisher.tick()
    assert recorder.wait_for(lambda r: len(r.statuses("hz-test-w01")) == 3)


@pytest.mark.slow
def test_broker_outage_queues_votes_and_delivers_each_after(make_rig, broker, recorder, clock):
    rig = make_rig(lockout_seconds=0.5, reconnect_max_seconds=1)
    rig.connect(broker.port)
    assert rig.publisher.connected.wait(5)
    broker.stop()
    assert wait(lambda: not rig.publisher.connected.is_set())
    for rating in ("satisfied", "basic", "unsatisfied", "basic"):
        rig.tap(rating)
        clock.advance(1.0)
    assert rig.outbox.depth == 4
    broker.start()
    # The recorder may resubscribe after the terminal's first send: 0x10, back-off, retry by the run loop.
    assert rig.run_until(lambda: rig.outbox.depth == 0, timeout=20)
    # Every vote left the outbox only on its PUBACK (the next test shows a persistent subscriber gets them).
    assert rig.publisher.acked == 4
    assert rig.outbox.last_seq == 4 and rig.publisher.connections == 2


@pytest.mark.slow
def test_votes_pressed_during_outage_reach_a_persistent_subscriber(make_rig, tmp_path, clock):
    server = Mosquitto(tmp_path / "mq").start()
    try:
        from paho.mqtt.packettypes import PacketTypes
        from paho.mqtt.properties import Properties
        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion
        import threading

        got, props = [], Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 3600
        sub = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="collector-like", protocol=mqtt.MQTTv5)
        sub.on_message = lambda c, u, m: got.append(json.loads(m.payload)["seq"])
        ready = threading.Event()
        sub.on_subscribe = lambda *a: ready.set()
        sub.connect("127.0.0.1", server.port, clean_start=False, properties=props)
        sub.subscribe("manyi/v1/votes/+", qos=1)
        sub.loop_start()
        assert ready.wait(5)
        rig = make_rig(lockout_seconds=0.5, reconnect_max_seconds=1)
        rig.connect(server.port)
        assert rig.publisher.connected.wait(5)
        rig.tap("satisfied")
        assert wait(lambda: got == [1])
        server.stop()
        for _ in range(3):
            clock.advance(1.0)
            rig.tap("unsatisfied")
        assert rig.outbox.depth == 3
        server.start()
        assert rig.run_until(lambda: rig.outbox.depth == 0 and set(got) == {1, 2, 3, 4}, timeout=20)
        assert sorted(set(got)) == [1, 2, 3, 4]   # duplicates on the wire are allowed, losses are not
        sub.disconnect()
        sub.loop_stop()
    finally:
        server.stop()


def test_publish_refused_by_acl_is_poisoned_not_lost(make_rig, tmp_path, clock):
    # The device may connect and publish its status, but not its votes.
    acl = "user hz-test-w01\ntopic write manyi/v1/status/hz-test-w01\ntopic read manyi/v1/config/hz-test-w01\n"
    server = Mosquitto(tmp_path / "mq", users={"hz-test-w01": "pw1"}, acl=acl).start()
    try:
        rig = make_rig(username="hz-test-w01", password="pw1", lockout_seconds=0.5)
        rig.connect(server.port)
        assert rig.publisher.connected.wait(5)
        rig.tap("unsatisfied")
        assert wait(lambda: rig.outbox.poisoned_count == 1)
        assert rig.outbox.depth == 0 and rig.publisher.acked == 0
        (kept,) = rig.outbox.poisoned()
        assert kept.reason_code == 0x87 and json.loads(kept.payload)["seq"] == 1
        assert rig.terminal.status_fields()["poisoned"] == 1
        assert rig.publisher.status().poisoned == 1
    finally:
        server.stop()


def test_config_is_applied_unknown_keys_ignored_and_reported(make_rig, broker, recorder, clock):
    rig = make_rig()
    rig.connect(broker.port)
    assert rig.publisher.connected.wait(5)
    import paho.mqtt.publish as publish
    publish.single("manyi/v1/config/hz-test-w01",
                   b'{"v":1,"lockout_seconds":5,"led_brightness":0.5,"colour":"blue","heartbeat_seconds":1}',
                   qos=1, retain=True, hostname="127.0.0.1", port=broker.port)

    def applied(r):
        return any(s.get("config_applied") for s in r.statuses("hz-test-w01"))
    assert recorder.wait_for(applied)
    last = [s for s in recorder.statuses("hz-test-w01") if s.get("config_applied")][-1]
    assert last["config_applied"] == {"lockout_seconds": 5.0, "led_brightness": 0.5}
    assert rig.publisher.config_rejected == {"colour": "unknown", "heartbeat_seconds": "must be between 5.0 and 3600.0, got 1"}
    assert rig.settings.lockout_seconds == 5.0 and rig.settings.heartbeat_seconds == 60.0
    rig.tap("satisfied")
    assert rig.led_values()["basic"] == 0.5
    clock.advance(4.0)
    rig.tap("satisfied")
    assert rig.outbox.repeats == 1   # the new 5 s lock-out is in force


def test_bad_config_message_is_ignored_without_killing_the_loop(make_rig, broker, recorder):
    rig = make_rig()
    rig.connect(broker.port)
    assert rig.publisher.subscribed.wait(5)
    import paho.mqtt.publish as publish
    publish.single("manyi/v1/config/hz-test-w01", b"not json", qos=1, hostname="127.0.0.1", port=broker.port)
    assert wait(lambda: rig.publisher.config_rejected == {"message": "bad_json"})
    rig.tap("satisfied")
    assert recorder.wait_for(lambda r: r.votes())
    assert Status("hz-test-w01", online=False).to_dict() == {"v": 1, "device": "hz-test-w01", "online": False}


def _crash(rig):
    """End a rig as a power cut would: no DISCONNECT, no clean-stop mark, outbox just closed."""
    rig.publisher.client.loop_stop()
    rig.publisher.client.socket().close()
    rig.terminal.close()
    rig.outbox.close()
    rig.publisher = None


@pytest.mark.parametrize("clean", [True, False], ids=["clean-stop", "crash"])
def test_restart_after_a_crash_resends_the_last_acknowledged_votes(make_rig, broker, recorder, clock, clean):
    # A hall blackout takes the terminal down together with (perhaps) the broker host: the broker
    # may have lost what it acknowledged since its last save, and the restarted terminal has no
    # lost connection of its own to notice. It must send the recent acknowledged votes again;
    # after a clean stop it must not (the collector would only count duplicates).
    first = make_rig()
    first.connect(broker.port)
    assert first.publisher.connected.wait(5)
    for rating in ("satisfied", "basic", "unsatisfied"):
        first.tap(rating)
        clock.advance(5)
    assert wait(lambda: first.outbox.depth == 0 and first.publisher.acked == 3)
    assert recorder.wait_for(lambda r: len(r.votes()) == 3)
    if clean:
        first.close()
        first.publisher = None
    else:
        _crash(first)

    second = make_rig()                       # same device, same outbox file
    second.connect(broker.port)
    assert second.publisher.connected.wait(5)
    if clean:
        assert second.run_until(lambda: second.publisher.status().online, timeout=1)
        second.run_until(lambda: False, timeout=1.0)
        assert [v["seq"] for v in recorder.votes()] == [1, 2, 3]
        assert second.publisher.redelivered == 0
    else:
        assert second.run_until(lambda: len(recorder.votes()) == 6, timeout=10), recorder.votes()
        assert sorted(v["seq"] for v in recorder.votes()) == [1, 1, 2, 2, 3, 3]
        assert second.publisher.redelivered == 3
    # Either way the restarted terminal numbers on from seq 3.
    second.tap("basic")
    assert recorder.wait_for(lambda r: 4 in {v["seq"] for v in r.votes()})

"""deploy/mosquitto: the production config, ACL and scripts, run by a real mosquitto.

The broker runs deploy/mosquitto/manyi.conf and acl with only paths, ports and the run-as
user rewritten (tests/plugin_deploy.py); certificates come from make-certs.sh and the
terminals' credentials from add-terminal.sh.
"""

import ssl
import subprocess
import time

import pytest
from paho.mqtt.reasoncodes import ReasonCode

from manyi.protocol import (VOTES_SHARED_SUBSCRIPTION, STATUS_SUBSCRIPTION, Vote, config_topic, status_topic,
                            vote_topic)
from plugin_deploy import DEPLOY, TERMINALS

NOT_AUTHORIZED = 0x87
T1, T2, T3 = TERMINALS


def vote(device, seq, rating="satisfied"):
    return Vote(device, seq, rating, "2026-11-23T09:30:00.000+08:00", True).to_json()


def terminal(deploy_broker, mqtt_clients, device, **kw):
    return mqtt_clients(deploy_broker.tls_port, device, deploy_broker.passwords[device], ca=deploy_broker.ca, **kw)


def collector(deploy_broker, mqtt_clients):
    client = mqtt_clients(deploy_broker.plain_port, "manyi-collector", deploy_broker.passwords["manyi-collector"])
    assert client.connack == 0
    assert [rc.value for rc in client.subscribe(VOTES_SHARED_SUBSCRIPTION)] == [1]
    return client


def test_terminal_connects_over_tls_with_the_private_ca(deploy_broker, mqtt_clients):
    client = terminal(deploy_broker, mqtt_clients, T1)
    assert client.connack == 0
    assert not client.publish(vote_topic(T1), vote(T1, 1)).is_failure


def test_tls_refuses_a_client_that_does_not_trust_the_ca(deploy_broker, tmp_path):
    other = tmp_path / "other"
    subprocess.run(["bash", str(DEPLOY / "mosquitto/make-certs.sh"), str(other), "localhost"], check=True,
                   capture_output=True)
    from plugin_deploy import Client
    client = Client(deploy_broker.tls_port, T1, deploy_broker.passwords[T1], ca=other / "ca.crt")
    with pytest.raises(ssl.SSLCertVerificationError):
        client.client.connect("localhost", deploy_broker.tls_port)


def test_anonymous_client_is_refused_on_both_listeners(deploy_broker, mqtt_clients):
    for port, ca in ((deploy_broker.tls_port, deploy_broker.ca), (deploy_broker.plain_port, None)):
        client = mqtt_clients(port, ca=ca)
        assert client.connack is not None and client.connack.is_failure
        assert client.connack.value == NOT_AUTHORIZED or client.connack.getName() == "Not authorized"


def test_wrong_password_is_refused(deploy_broker, mqtt_clients):
    client = mqtt_clients(deploy_broker.tls_port, T1, "not-the-password", ca=deploy_broker.ca)
    assert client.connack.is_failure


def test_terminal_cannot_publish_as_another_terminal(deploy_broker, mqtt_clients):
    coll = collector(deploy_broker, mqtt_clients)
    t1 = terminal(deploy_broker, mqtt_clients, T1)
    forged = t1.publish(vote_topic(T2), vote(T2, 999))
    assert forged.value == NOT_AUTHORIZED
    assert t1.publish(status_topic(T2), b'{"v":1,"device":"%s","online":false}' % T2.encode()).value == NOT_AUTHORIZED
    # A real vote after the forged one arrives; the forged one never does.
    assert not t1.publish(vote_topic(T1), vote(T1, 2)).is_failure
    got = coll.wait_messages(1)
    time.sleep(0.3)
    assert [m.topic for m in coll.messages] == [vote_topic(T1)]
    assert got[0].payload == vote(T1, 2)


def test_terminal_reads_only_its_own_config(deploy_broker, mqtt_clients):
    center = mqtt_clients(deploy_broker.plain_port, "manyi-center", deploy_broker.passwords["manyi-center"])
    assert center.connack == 0
    assert not center.publish(config_topic(T1), b'{"v":1,"lockout_seconds":3}', retain=True).is_failure
    assert not center.publish(config_topic(T2), b'{"v":1,"lockout_seconds":4}', retain=True).is_failure
    t1 = terminal(deploy_broker, mqtt_clients, T1)
    # mosquitto 2.0 grants any subscription and checks read access per message on delivery.
    assert [rc.value for rc in t1.subscribe(config_topic(T1))] == [1]
    t1.subscribe(config_topic(T2))
    t1.subscribe("manyi/v1/config/+")
    t1.subscribe(VOTES_SHARED_SUBSCRIPTION)
    t2 = terminal(deploy_broker, mqtt_clients, T2)
    assert not t2.publish(vote_topic(T2), vote(T2, 5)).is_failure
    t1.wait_messages(3, timeout=1.0)
    assert [(m.topic, m.payload) for m in t1.messages] == [(config_topic(T1), b'{"v":1,"lockout_seconds":3}')] * 2
    # A terminal cannot write anyone's config, not even its own.
    assert t1.publish(config_topic(T1), b'{"v":1,"lockout_seconds":60}').value == NOT_AUTHORIZED


def test_center_reads_status_and_collector_cannot_write_votes(deploy_broker, mqtt_clients):
    center = mqtt_clients(deploy_broker.plain_port, "manyi-center", deploy_broker.passwords["manyi-center"])
    assert [rc.value for rc in center.subscribe(STATUS_SUBSCRIPTION)] == [1]
    center.subscribe(VOTES_SHARED_SUBSCRIPTION)
    center.subscribe("manyi/v1/votes/+")
    t3 = terminal(deploy_broker, mqtt_clients, T3)
    assert not t3.publish(status_topic(T3), b'{"v":1,"device":"%s","online":true}' % T3.encode()).is_failure
    assert not t3.publish(vote_topic(T3), vote(T3, 1)).is_failure
    center.wait_messages(2, timeout=1.0)
    assert [m.topic for m in center.messages] == [status_topic(T3)]
    coll = mqtt_clients(deploy_broker.plain_port, "manyi-collector", deploy_broker.passwords["manyi-collector"])
    assert coll.publish(vote_topic(T1), vote(T1, 77)).value == NOT_AUTHORIZED


def test_collector_receives_every_vote_of_every_terminal(deploy_broker, mqtt_clients):
    coll = collector(deploy_broker, mqtt_clients)
    terminals = [terminal(deploy_broker, mqtt_clients, device) for device in TERMINALS]
    per_terminal = 50
    for seq in range(1000, 1000 + per_terminal):
        for client, device in zip(terminals, TERMINALS):
            assert not client.publish(vote_topic(device), vote(device, seq)).is_failure
    got = coll.wait_messages(per_terminal * len(TERMINALS), timeout=20)
    received = sorted((m.topic, m.payload) for m in got)
    expected = sorted((vote_topic(d), vote(d, s)) for d in TERMINALS for s in range(1000, 1000 + per_terminal))
    assert received == expected


def test_collector_session_keeps_votes_while_it_is_away(deploy_broker, mqtt_clients):
    """The persistent collector session queues votes while the collector is down."""
    from plugin_deploy import Client
    coll = Client(deploy_broker.plain_port, "manyi-collector", deploy_broker.passwords["manyi-collector"],
                  client_id="collector-persist", clean_start=False)
    from paho.mqtt.properties import Properties
    from paho.mqtt.packettypes import PacketTypes
    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = 3600
    coll.client.connect("localhost", deploy_broker.plain_port, clean_start=False, properties=props)
    coll.client.loop_start()
    assert coll.connected.wait(5) and coll.connack == 0
    coll.subscribe(VOTES_SHARED_SUBSCRIPTION)
    coll.close()
    t1 = terminal(deploy_broker, mqtt_clients, T1)
    for seq in range(2000, 2020):
        assert not t1.publish(vote_topic(T1), vote(T1, seq)).is_failure
    back = Client(deploy_broker.plain_port, "manyi-collector", deploy_broker.passwords["manyi-collector"],
                  client_id="collector-persist", clean_start=False)
    back.client.connect("localhost", deploy_broker.plain_port, clean_start=False, properties=props)
    back.client.loop_start()
    try:
        assert back.connected.wait(5) and back.connack == 0
        got = back.wait_messages(20)
        assert sorted(m.payload for m in got) == sorted(vote(T1, s) for s in range(2000, 2020))
        back.client.unsubscribe(VOTES_SHARED_SUBSCRIPTION)  # leave the shared group to the later tests
        time.sleep(0.2)
    finally:
        back.close()


def test_add_terminal_rotates_and_removes_credentials(tmp_path):
    passwd, out = tmp_path / "passwd", tmp_path / "out"
    script = str(DEPLOY / "mosquitto/add-terminal.sh")
    subprocess.run(["bash", script, "-f", str(passwd), "-o", str(out), T1, T2], check=True, capture_output=True)
    first = (out / f"{T1}.toml").read_text()
    assert oct((out / f"{T1}.toml").stat().st_mode & 0o777) == "0o600"
    subprocess.run(["bash", script, "-f", str(passwd), "-o", str(out), T1], check=True, capture_output=True)
    assert (out / f"{T1}.toml").read_text() != first
    assert [line.split(":")[0] for line in passwd.read_text().splitlines()] == [T1, T2]
    subprocess.run(["bash", script, "-f", str(passwd), "--remove", T2], check=True, capture_output=True)
    assert [line.split(":")[0] for line in passwd.read_text().splitlines()] == [T1]
    bad = subprocess.run(["bash", script, "-f", str(passwd), "-o", str(out), "Bad+Name"], capture_output=True, text=True)
    assert bad.returncode != 0 and "not a valid device id" in bad.stderr


def test_real_collector_stores_every_vote_through_the_deploy_broker(deploy_broker, mqtt_clients, tmp_path):
    """`manyi collector` with its production account over TLS stores every terminal's votes; forged ones never."""
    import os
    import sys

    from collector.stores import open_store

    db = tmp_path / "votes.db"
    env = dict(os.environ, MANYI_COLLECTOR_PASSWORD=deploy_broker.passwords["manyi-collector"])
    log = tmp_path / "collector.log"
    proc = subprocess.Popen([sys.executable, "-m", "manyi", "-v", "collector", "--broker", f"localhost:{deploy_broker.tls_port}",
                             "--tls-ca", str(deploy_broker.ca), "--username", "manyi-collector",
                             "--client-id", "collector-deploy-test", "--store", f"sqlite:///{db}"],
                            env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 20
        while "connected to" not in log.read_text() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert "connected to" in log.read_text(), log.read_text()
        time.sleep(0.5)  # the SUBACK follows the CONNACK
        terminals = [terminal(deploy_broker, mqtt_clients, device) for device in TERMINALS]
        t1 = terminals[0]
        assert t1.publish(vote_topic(T2), vote(T2, 31337)).value == NOT_AUTHORIZED
        for seq in range(1, 41):
            for client, device in zip(terminals, TERMINALS):
                assert not client.publish(vote_topic(device), vote(device, seq)).is_failure
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if db.exists():
                with open_store(f"sqlite:///{db}") as store:
                    if store.stats()["votes"] >= 120:
                        break
            time.sleep(0.2)
        with open_store(f"sqlite:///{db}") as store:
            stats = store.stats()
            assert stats["votes"] == 120, (stats, proc.poll())
            assert {t.device: t.max_seq for t in store.terminals() if t.max_seq} == {d: 40 for d in TERMINALS}
    finally:
        proc.terminate()
        proc.wait(timeout=15)
    assert proc.returncode == 0, log.read_text()[-2000:]

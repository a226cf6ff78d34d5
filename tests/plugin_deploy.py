"""Fixtures of the deploy tests (loaded by conftest.py): mosquitto run with deploy/'s own files.

``deploy_broker`` starts mosquitto with deploy/mosquitto/manyi.conf and deploy/mosquitto/acl,
rewriting only file paths, ports and the run-as user; its TLS certificates come from
deploy/mosquitto/make-certs.sh and the terminals' credentials from add-terminal.sh.
"""

from __future__ import annotations

import getpass
import re
import shutil
import subprocess
import threading
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from demo.broker import Mosquitto, free_port, hash_password_file

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"
TERMINALS = ("hz-371702001-w01", "hz-371702001-w02", "hz-371721101-w01")
SERVICE_PASSWORDS = {"manyi-collector": "collector-secret", "manyi-center": "center-secret"}


def rewrite_config(text: str, root: Path, tls_port: int, plain_port: int) -> str:
    """deploy's mosquitto config with paths under ``root``, the given ports and the current user.

    Each rewrite must match exactly once, so a change to the production file that the
    test no longer covers fails here instead of silently testing something else.
    """
    rules = [
        (r"^user mosquitto$", f"user {getpass.getuser()}"),
        (r"^listener 8883$", f"listener {tls_port} 127.0.0.1"),
        (r"^listener 1883 127\.0\.0\.1$", f"listener {plain_port} 127.0.0.1"),
        (r"^persistence_location /var/lib/mosquitto/$", f"persistence_location {root}/lib/"),
    ]
    for pattern, replacement in rules:
        text, n = re.subn(pattern, replacement, text, flags=re.M)
        assert n == 1, f"deploy/mosquitto/manyi.conf: expected one line matching {pattern!r}, found {n}"
    text, n = re.subn(r"/etc/mosquitto/", f"{root}/etc/", text)
    assert n >= 5, "expected cafile, certfile, keyfile, password_file and acl_file under /etc/mosquitto/"
    return text


@dataclass
class DeployBroker:
    """mosquitto running deploy's config: ports, CA file and every account's password."""

    root: Path
    tls_port: int
    plain_port: int
    ca: Path
    passwords: dict[str, str] = field(default_factory=dict)
    server: Mosquitto | None = None


@pytest.fixture(scope="module")
def deploy_broker(tmp_path_factory):
    """mosquitto started with deploy/mosquitto/manyi.conf + acl, certs and terminal accounts made by deploy's scripts."""
    if not shutil.which("openssl"):
        pytest.skip("openssl is not installed (needed by deploy/mosquitto/make-certs.sh)")
    root = tmp_path_factory.mktemp("deploy-broker")
    etc = root / "etc"
    (root / "lib").mkdir()
    subprocess.run(["bash", str(DEPLOY / "mosquitto/make-certs.sh"), str(etc / "certs"), "localhost", "127.0.0.1"],
                   check=True, capture_output=True)
    shutil.copy(DEPLOY / "mosquitto/acl", etc / "acl")
    hash_password_file(etc / "passwd", SERVICE_PASSWORDS)
    out = root / "terminals"
    result = subprocess.run(["bash", str(DEPLOY / "mosquitto/add-terminal.sh"), "-f", str(etc / "passwd"), "-o", str(out),
                             "-b", "localhost:8883", *TERMINALS], check=True, capture_output=True, text=True)
    passwords = dict(SERVICE_PASSWORDS)
    for device in TERMINALS:
        config = tomllib.loads((out / f"{device}.toml").read_text())
        assert config["terminal"]["password"] not in result.stdout + result.stderr, "add-terminal.sh printed a password"
        passwords[device] = config["terminal"]["password"]
    tls_port, plain_port = free_port(), free_port()
    conf = root / "mosquitto.conf"
    conf.write_text(rewrite_config((DEPLOY / "mosquitto/manyi.conf").read_text(), root, tls_port, plain_port))
    broker = DeployBroker(root, tls_port, plain_port, etc / "certs/ca.crt", passwords)
    broker.server = Mosquitto(root, port=plain_port, config_file=conf).start()
    yield broker
    broker.server.stop()


class Client:
    """A paho MQTT 5 client that records CONNACK, SUBACK and PUBACK reason codes and messages."""

    def __init__(self, port: int, username: str | None = None, password: str | None = None, *,
                 ca: Path | None = None, client_id: str = "", clean_start: bool = True):
        self.connected = threading.Event()
        self.connack = None
        self.subacks: dict[int, list] = {}
        self.pubacks: dict[int, object] = {}
        self.messages: list[mqtt.MQTTMessage] = []
        self._cond = threading.Condition()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
        if username is not None:
            self.client.username_pw_set(username, password)
        if ca is not None:
            self.client.tls_set(ca_certs=str(ca))
        self.client.on_connect = self._on_connect
        self.client.on_connect_fail = lambda *a: self.connected.set()
        self.client.on_subscribe = self._on_subscribe
        self.client.on_publish = self._on_publish
        self.client.on_message = self._on_message
        self.port, self.clean_start = port, clean_start

    def _on_connect(self, client, userdata, flags, reason_code, properties):
        self.connack = reason_code
        self.connected.set()

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties):
        with self._cond:
            self.subacks[mid] = reason_codes
            self._cond.notify_all()

    def _on_publish(self, client, userdata, mid, reason_code, properties):
        with self._cond:
            self.pubacks[mid] = reason_code
            self._cond.notify_all()

    def _on_message(self, client, userdata, msg):
        with self._cond:
            self.messages.append(msg)
            self._cond.notify_all()

    def connect(self, timeout: float = 10.0) -> "Client":
        """Connect (TLS when a CA was given) and wait for the CONNACK."""
        self.client.connect("localhost", self.port, clean_start=self.clean_start)
        self.client.loop_start()
        assert self.connected.wait(timeout), "no CONNACK"
        return self

    def subscribe(self, topic: str, timeout: float = 5.0) -> list:
        """Subscribe at QoS 1 and return the SUBACK reason codes."""
        _, mid = self.client.subscribe(topic, qos=1)
        with self._cond:
            assert self._cond.wait_for(lambda: mid in self.subacks, timeout), f"no SUBACK for {topic}"
            return self.subacks[mid]

    def publish(self, topic: str, payload: bytes, timeout: float = 5.0, retain: bool = False):
        """Publish at QoS 1 and return the PUBACK reason code."""
        info = self.client.publish(topic, payload, qos=1, retain=retain)
        with self._cond:
            assert self._cond.wait_for(lambda: info.mid in self.pubacks, timeout), f"no PUBACK on {topic}"
            return self.pubacks[info.mid]

    def wait_messages(self, n: int, timeout: float = 10.0) -> list[mqtt.MQTTMessage]:
        """Wait until at least ``n`` messages arrived; return them all."""
        with self._cond:
            self._cond.wait_for(lambda: len(self.messages) >= n, timeout)
            return list(self.messages)

    def close(self) -> None:
        """Disconnect and stop the network loop."""
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def mqtt_clients():
    """Factory of connected test clients, all closed after the test: ``mqtt_clients(port, user, pw, ca=...)``."""
    made: list[Client] = []

    def make(*args, **kwargs) -> Client:
        client = Client(*args, **kwargs)
        made.append(client)
        return client.connect()

    yield make
    for client in made:
        client.close()

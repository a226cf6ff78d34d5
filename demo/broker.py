"""Start and stop a local mosquitto broker: for tests, benchmarks and ``manyi run``.

Production runs mosquitto as a system service with deploy/'s configuration; this
module runs the same program as a child process on a chosen (or free) port, with
its own config, persistence directory, optional password file and ACL.

When mosquitto is not installed, ``manyi run`` falls back to :class:`EmbeddedBroker`
(amqtt, pure Python, MQTT 3.1.1 only, DEMO ONLY) through :func:`start_local_broker`;
each broker class says which MQTT version its clients must speak (``mqtt_version``).
"""

from __future__ import annotations

import getpass
import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from manyi.exc import ManyiError


class BrokerError(ManyiError, RuntimeError):
    """The broker could not be found or started."""


def find_mosquitto() -> str | None:
    """Path of the mosquitto executable, or None (it lives in /usr/sbin on Debian).

    ``MANYI_MOSQUITTO`` overrides the search: a path to use, or empty for "not installed".
    """
    if "MANYI_MOSQUITTO" in os.environ:
        chosen = os.environ["MANYI_MOSQUITTO"]
        return chosen if chosen and os.access(chosen, os.X_OK) else None
    return shutil.which("mosquitto") or next(
        (p for p in ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto") if os.access(p, os.X_OK)), None)


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free on ``host`` right now."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def wait_for_port(host: str, port: int, timeout: float = 10.0) -> None:
    """Block until something accepts TCP connections on host:port, or raise BrokerError."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise BrokerError(f"nothing listens on {host}:{port} after {timeout:.0f} s")


def hash_password_file(path: Path, users: dict[str, str]) -> None:
    """Write a mosquitto password file for ``users`` (name → password) with mosquitto_passwd."""
    tool = shutil.which("mosquitto_passwd")
    if not tool:
        raise BrokerError("mosquitto_passwd not found (Debian package mosquitto)")
    path.write_text("")
    for name, password in users.items():
        subprocess.run([tool, "-b", str(path), name, password], check=True, capture_output=True)


@dataclass
class _ChildBroker:
    """What every local broker child process shares: a workdir, a port, its process and its log."""

    name: ClassVar[str] = "broker"
    workdir: Path
    port: int = 0
    host: str = "127.0.0.1"
    process: subprocess.Popen | None = field(default=None, init=False, repr=False)

    def __post_init__(self):
        self.workdir = Path(self.workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        if not self.port:
            self.port = free_port(self.host)

    @property
    def log_file(self) -> Path:
        """The child's log (stdout and stderr)."""
        return self.workdir / f"{self.name}.log"

    def start(self, timeout: float = 10.0):
        """Start the broker and wait until it listens; return self."""
        raise NotImplementedError

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the broker gracefully (SIGTERM)."""
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def kill(self) -> None:
        """Kill the broker at once (SIGKILL), as a crash would."""
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self.process = None

    def restart(self) -> None:
        """Stop and start again on the same port."""
        self.stop()
        self.start()

    @property
    def running(self) -> bool:
        """True while the process is alive."""
        return bool(self.process and self.process.poll() is None)

    @property
    def address(self) -> str:
        """host:port of the listener."""
        return f"{self.host}:{self.port}"

    def log_tail(self, lines: int = 20) -> str:
        """The last lines of the broker's log, for error messages."""
        if not self.log_file.exists():
            return ""
        return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


@dataclass
class Mosquitto(_ChildBroker):
    """A mosquitto child process with a config of its own in ``workdir``.

    ``users`` (name → password) turns authentication on; ``acl`` is the text of an
    ACL file. ``extra_config`` lines are appended (e.g. a TLS listener). Persistence
    lives in ``workdir`` so that a restart keeps sessions and queued messages.
    """

    name: ClassVar[str] = "mosquitto"
    mqtt_version: ClassVar[str] = "5"      # what terminals and collector speak to it

    users: dict[str, str] | None = None
    acl: str | None = None
    extra_config: list[str] = field(default_factory=list)
    max_queued_messages: int = 1_000_000
    config_file: Path | None = None

    def write_config(self) -> Path:
        """Write mosquitto.conf (and the password and ACL files) and return its path."""
        lines = [
            f"listener {self.port} {self.host}",
            "persistence true",
            f"persistence_location {self.workdir}/",
            "autosave_interval 1",
            f"max_queued_messages {self.max_queued_messages}",
            "max_inflight_messages 100",
            # Started as root (CI), mosquitto would drop to user "mosquitto" and lose access to workdir.
            f"user {getpass.getuser()}",
            "log_dest stderr",
            "log_type error",
            "log_type warning",
        ]
        if self.users is not None:
            pwfile = self.workdir / "passwd"
            hash_password_file(pwfile, self.users)
            lines += ["allow_anonymous false", f"password_file {pwfile}"]
        else:
            lines.append("allow_anonymous true")
        if self.acl is not None:
            aclfile = self.workdir / "acl"
            aclfile.write_text(self.acl)
            lines.append(f"acl_file {aclfile}")
        lines += self.extra_config
        self.config_file = self.workdir / "mosquitto.conf"
        self.config_file.write_text("\n".join(lines) + "\n")
        return self.config_file

    def start(self, timeout: float = 10.0) -> "Mosquitto":
        """Start the broker (writing its config the first time) and wait until it listens."""
        exe = find_mosquitto()
        if not exe:
            raise BrokerError("mosquitto is not installed (Debian package mosquitto)")
        if self.config_file is None:
            self.write_config()
        log = open(self.log_file, "ab")
        self.process = subprocess.Popen([exe, "-c", str(self.config_file)], stdout=log, stderr=log,
                                        start_new_session=True)
        log.close()
        try:
            wait_for_port(self.host, self.port, timeout)
        except BrokerError:
            self.kill()
            raise BrokerError(f"mosquitto did not start: {self.log_tail()}") from None
        return self


def amqtt_available() -> bool:
    """True when the pure-Python amqtt broker can be imported."""
    return importlib.util.find_spec("amqtt") is not None


@dataclass
class EmbeddedBroker(_ChildBroker):
    """amqtt (pure Python, MQTT 3.1.1) as a child process: the demo's broker when mosquitto is missing.

    DEMO ONLY: MQTT 3.1.1 (clients use ``mqtt_version = "3.1.1"``), sessions and queued
    messages in memory only (a restart loses them), no authentication or ACL, and a
    message a subscriber has not acknowledged within 5 s is dropped by amqtt.
    docs/operations.md ("Embedded broker") lists what was verified. Same interface
    as :class:`Mosquitto`: start/stop/kill/restart, running, address, log_tail.
    """

    name: ClassVar[str] = "amqtt"
    mqtt_version: ClassVar[str] = "3.1.1"

    def start(self, timeout: float = 20.0) -> "EmbeddedBroker":
        """Start ``python -m demo.embedded_broker`` and wait until it reports that it listens."""
        if not amqtt_available():
            raise BrokerError("the embedded broker needs the Python package amqtt (pip install amqtt)")
        offset = self.log_file.stat().st_size if self.log_file.exists() else 0
        with self.log_file.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "demo.embedded_broker", "--host", self.host, "--port", str(self.port)],
                stdout=log, stderr=log, stdin=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.log_file.open("rb") as log:
                log.seek(offset)
                if b"listening on" in log.read():
                    return self
            if self.process.poll() is not None:
                break
            time.sleep(0.05)
        self.kill()
        raise BrokerError(f"the embedded broker (amqtt) did not start on {self.address}: {self.log_tail()}")


BROKER_CHOICES = ("auto", "mosquitto", "embedded")


def start_local_broker(workdir, port: int = 0, prefer: str = "mosquitto", host: str = "127.0.0.1"
                       ) -> Mosquitto | EmbeddedBroker:
    """Start a local broker and return it; its ``mqtt_version`` is what the clients must speak.

    ``prefer``: "mosquitto" or "auto" = mosquitto when installed, else the embedded amqtt;
    "embedded" = amqtt even when mosquitto is installed. State and log live in
    ``workdir/mosquitto`` or ``workdir/amqtt``. Raises BrokerError when neither can run.
    """
    if prefer not in BROKER_CHOICES:
        raise BrokerError(f"broker choice {prefer!r} must be one of {', '.join(BROKER_CHOICES)}")
    workdir = Path(workdir)
    if prefer != "embedded" and find_mosquitto():
        return Mosquitto(workdir / "mosquitto", port=port, host=host).start()
    if not amqtt_available():
        raise BrokerError("no MQTT broker: install mosquitto (apt-get install mosquitto, brew install mosquitto) "
                          "or the Python package amqtt for the embedded demo broker")
    return EmbeddedBroker(workdir / "amqtt", port=port, host=host).start()

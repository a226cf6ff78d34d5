"""Settings: defaults < TOML file < MANYI_ environment < command line; secrets redacted."""

from dataclasses import dataclass
from pathlib import Path

import pytest

from manyi.exc import ConfigError
from manyi.settings import load, parse_broker, redacted


@dataclass
class Example:
    broker: str = "127.0.0.1:1883"
    lockout_seconds: float = 3.0
    password: str | None = None
    tls: bool = False
    pins: tuple[int, ...] = (17, 27, 22)
    outbox: Path = Path("outbox.db")


def test_layers_override_in_order(tmp_path):
    config = tmp_path / "c.toml"
    config.write_text('[device]\nbroker = "b:1"\nlockout_seconds = 5\npassword = "s3cret"\n')
    env = {"MANYI_LOCKOUT_SECONDS": "4.5", "MANYI_DEVICE_TLS": "yes", "MANYI_PINS": "5,6,13"}
    got = load(Example, config, section="device", env=env, overrides={"broker": "c:2", "password": None})
    assert got == Example(broker="c:2", lockout_seconds=4.5, password="s3cret", tls=True, pins=(5, 6, 13))


def test_unknown_keys_and_bad_values_name_the_source(tmp_path):
    config = tmp_path / "c.toml"
    config.write_text('brokr = "x"\n')
    with pytest.raises(ConfigError, match="brokr"):
        load(Example, config, env={})
    with pytest.raises(ConfigError, match="MANYI_TLS"):
        load(Example, None, env={"MANYI_TLS": "maybe"})
    config.write_text('lockout_seconds = [\n')
    with pytest.raises(ConfigError, match="not valid TOML"):
        load(Example, config, env={})


def test_secrets_are_redacted():
    assert redacted(Example(password="hunter2"))["password"] == "***"
    assert redacted(Example())["password"] is None


@pytest.mark.parametrize("text, expected", [
    ("127.0.0.1:1884", ("127.0.0.1", 1884)),
    ("broker.local", ("broker.local", 1883)),
    ("[::1]:8883", ("::1", 8883)),
    ("[::1]", ("::1", 1883)),
])
def test_broker_addresses_are_parsed_in_one_place(text, expected):
    assert parse_broker(text) == expected


@pytest.mark.parametrize("text", ["", ":1883", "host:port", "host:70000", "host:0"])
def test_bad_broker_addresses_are_refused(text):
    with pytest.raises(ConfigError, match="HOST:PORT"):
        parse_broker(text)

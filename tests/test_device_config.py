"""Terminal settings: example file, MANYI_ overrides, validation, secrets never printed."""

import subprocess
import sys
from pathlib import Path

import pytest

from device.config import load_settings
from manyi.exc import ConfigError

EXAMPLE = Path(__file__).resolve().parent.parent / "device" / "terminal.example.toml"


def test_example_file_loads_and_environment_wins():
    settings = load_settings(EXAMPLE, env={"MANYI_TERMINAL_LOCKOUT_SECONDS": "5", "MANYI_PASSWORD": "pw"})
    assert settings.device_id == "hz-371702001-w01" and settings.username == "hz-371702001-w01"
    assert settings.lockout_seconds == 5.0 and settings.password == "pw"
    assert settings.key_pins == {"satisfied": 17, "basic": 27, "unsatisfied": 22}


@pytest.mark.parametrize("text, message", [
    ('device_id = "Bad Id"', "device_id"),
    ('device_id = "hz-a-w01"\nlockout_seconds = 0.1', "lockout_seconds must be between"),
    ('device_id = "hz-a-w01"\npin_basic = 17', "pins must all differ"),
    ('device_id = "hz-a-w01"\noutbox_synchronous = "OFF"', "outbox_synchronous"),
    ('device_id = "hz-a-w01"\nlockout = 3', "unknown setting"),
    ('device_id = "hz-a-w01"\nclock_source = "ntp"', "clock_source"),
])
def test_bad_settings_are_named(tmp_path, text, message):
    path = tmp_path / "t.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_settings(path, env={})


def test_print_config_masks_the_password(tmp_path):
    path = tmp_path / "t.toml"
    path.write_text('[terminal]\ndevice_id = "hz-a-w01"\npassword = "s3cret-value"\n')
    out = subprocess.run([sys.executable, "-m", "manyi", "device", "--config", str(path), "--print-config"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "s3cret-value" not in out.stdout and "password = ***" in out.stdout


def test_requeue_poisoned_command(tmp_path):
    from device.outbox import Outbox

    path = tmp_path / "t.toml"
    path.write_text(f'device_id = "hz-a-w01"\noutbox_path = "{tmp_path / "o.db"}"\n')
    box = Outbox(tmp_path / "o.db", "hz-a-w01")
    box.add("satisfied", "2026-11-23T09:30:00.000+08:00", True)
    box.poison(1, 0x87, "Not authorized", "2026-11-23T09:30:01.000+08:00")
    box.close()
    out = subprocess.run([sys.executable, "-m", "manyi", "device", "--config", str(path), "--requeue-poisoned"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "requeued 1 poisoned votes; outbox depth 1" in out.stdout
    assert [v.seq for v in Outbox(tmp_path / "o.db", "hz-a-w01").pending()] == [1]


def test_seq_after_command_moves_a_replaced_outbox_past_the_stored_seqs(tmp_path):
    # A terminal with a new SD card starts at seq 1; the center's store already has 1..41 of it
    # (its reused seqs would be seq_conflict dead letters). --seq-after 41 numbers on from 42.
    from device.outbox import Outbox

    path = tmp_path / "t.toml"
    path.write_text(f'device_id = "hz-a-w01"\noutbox_path = "{tmp_path / "o.db"}"\n')
    cmd = [sys.executable, "-m", "manyi", "device", "--config", str(path), "--seq-after"]
    out = subprocess.run(cmd + ["41"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "hz-a-w01: last seq 41" in out.stdout
    out = subprocess.run(cmd + ["7"], capture_output=True, text=True, timeout=60)   # never moves back
    assert "last seq 41" in out.stdout
    box = Outbox(tmp_path / "o.db", "hz-a-w01")
    assert box.add("basic", "2026-11-23T09:30:00.000+08:00", True).seq == 42
    box.close()
    bad = subprocess.run(cmd + ["-1"], capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "must be 0 or more" in bad.stderr

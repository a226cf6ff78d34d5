"""``manyi collector`` settings (file < env < options, secrets redacted) and ``manyi stats`` output."""

from __future__ import annotations

import json

import pytest

from collector.stores import DeadLetter, StoredVote
from collector.stores.sqlite import SQLiteStore
from manyi.cli import main
from manyi.exc import ConfigError
from datetime import datetime, timezone

T = datetime(2026, 11, 23, 1, 0, tzinfo=timezone.utc)


def test_config_file_env_and_options_layer_and_secrets_are_redacted(tmp_path, monkeypatch, capsys):
    config = tmp_path / "manyi.toml"
    config.write_text('[collector]\nbroker = "mq.local:8883"\nbatch_size = 100\npassword = "hunter2"\n'
                      'store = "sqlite:///from-file.db"\n')
    monkeypatch.setenv("MANYI_COLLECTOR_BATCH_MS", "50")
    monkeypatch.setenv("MANYI_COLLECTOR_STORE", "sqlite:///from-env.db")
    assert main(["collector", "--config", str(config), "--client-id", "c-9", "--print-config"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["broker"] == "mq.local:8883" and printed["batch_size"] == 100 and printed["batch_ms"] == 50
    assert printed["store"] == "sqlite:///from-env.db" and printed["client_id"] == "c-9"
    assert printed["password"] == "***"
    assert main(["collector", "--config", str(config), "--store", "sqlite:///opt.db", "--print-config"]) == 0
    assert json.loads(capsys.readouterr().out)["store"] == "sqlite:///opt.db"


def test_bad_settings_exit_2_with_a_message(tmp_path, capsys):
    assert main(["collector", "--broker", "nohost:port", "--print-config"]) == 2
    assert "HOST:PORT" in capsys.readouterr().err
    bad = tmp_path / "bad.toml"
    bad.write_text("[collector]\nbatch_sise = 3\n")
    assert main(["collector", "--config", str(bad), "--print-config"]) == 2
    assert "batch_sise" in capsys.readouterr().err
    with pytest.raises(ConfigError):
        from collector.config import CollectorSettings
        CollectorSettings(batch_size=2000, receive_maximum=1000)


def test_stats_text_and_json(tmp_path, capsys):
    store = SQLiteStore(tmp_path / "v.db")
    store.write([StoredVote("hz-371702001-w01", s, "basic", T, T, "", True) for s in (1, 2, 5)],
                [DeadLetter("t", b"x", "bad_json", "d", T)])
    store.write([StoredVote("hz-371702001-w01", 1, "basic", T, T, "", True)])
    url = f"sqlite:///{tmp_path / 'v.db'}"
    assert main(["stats", "--store", url]) == 0
    text = capsys.readouterr().out
    assert "votes:        3 accepted" in text and "duplicates:   1" in text and "bad_json 1" in text
    assert "hz-371702001-w01" in text and "3-4" in text
    assert main(["stats", "--store", url, "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["votes"] == 3 and data["terminal_list"][0]["gaps"] == [[3, 4]]
    assert main(["stats", "--store", "mysql://x"]) == 2


def test_every_option_is_documented():
    from pathlib import Path

    from manyi.cli import build_parser

    doc = (Path(__file__).resolve().parent.parent / "docs" / "collector.md").read_text()
    commands = build_parser()._subparsers._group_actions[0].choices
    for name in ("collector", "stats"):
        for action in commands[name]._actions:
            for option in action.option_strings:
                if option.startswith("--") and option != "--help":
                    assert f"`{option}" in doc, f"manyi {name} {option} is not in docs/collector.md"

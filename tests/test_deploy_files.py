"""deploy/: systemd units, compose file, provisioning and backup scripts checked by real tools."""

import os
import re
import shutil
import sqlite3
import subprocess
import sys
import threading
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import yaml

from plugin_deploy import DEPLOY

REPO = DEPLOY.parent
UNITS = sorted((DEPLOY / "systemd").glob("*.service"))
SCRIPTS = sorted(DEPLOY.rglob("*.sh"))


def test_the_deploy_tree_has_what_the_issue_asks_for():
    assert [u.name for u in UNITS] == ["manyi-center.service", "manyi-collector.service", "manyi-terminal.service"]
    for name in ("mosquitto/manyi.conf", "mosquitto/acl", "mosquitto/add-terminal.sh", "mosquitto/make-certs.sh",
                 "compose.yaml", "terminal/provision.sh", "terminal/provision-many.sh",
                 "terminal/inventory.example.csv", "backup-sqlite.sh"):
        assert (DEPLOY / name).is_file(), name


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: str(p.relative_to(DEPLOY)))
def test_scripts_pass_bash_syntax_check_and_are_executable(script):
    result = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert os.access(script, os.X_OK), f"{script} is not executable"


def _verify(unit_dir: Path) -> str:
    result = subprocess.run(["systemd-analyze", "verify", *sorted(str(p) for p in unit_dir.glob("*.service"))],
                            capture_output=True, text=True, cwd=unit_dir)
    # verify exits 0 on warnings; every line about our files is a problem.
    return "\n".join(line for line in (result.stdout + result.stderr).splitlines() if str(unit_dir) in line
                     or "manyi" in line)


@pytest.fixture
def unit_copies(tmp_path):
    """The units with ExecStart pointing at this checkout's manyi (verify checks that the binary exists)."""
    exe = Path(sys.executable).with_name("manyi")
    if not shutil.which("systemd-analyze"):
        pytest.skip("systemd-analyze not installed (Debian package systemd); units not verified")
    if not exe.exists():
        pytest.skip(f"{exe} not installed (pip install -e .)")
    for unit in UNITS:
        text = unit.read_text()
        assert "ExecStart=/opt/manyi/venv/bin/manyi " in text, unit
        (tmp_path / unit.name).write_text(text.replace("/opt/manyi/venv/bin/manyi", str(exe)))
    return tmp_path


def test_systemd_units_pass_systemd_analyze_verify(unit_copies):
    assert _verify(unit_copies) == ""


def test_systemd_analyze_verify_would_catch_a_broken_unit(unit_copies):
    unit = unit_copies / "manyi-center.service"
    unit.write_text(unit.read_text().replace("Restart=on-failure", "Restart=sometimes"))
    assert "restart specifier" in _verify(unit_copies)


@pytest.mark.parametrize("unit", UNITS, ids=lambda p: p.name)
def test_units_follow_mosquittos_style(unit):
    text = unit.read_text()
    for line in ("User=manyi", "Restart=on-failure", "StateDirectory=manyi", "LogsDirectory=manyi",
                 "ProtectSystem=strict", "ReadWritePaths=/var/lib/manyi", "NoNewPrivileges=true",
                 "WantedBy=multi-user.target"):
        assert re.search(rf"^{re.escape(line)}$", text, re.M), f"{unit.name}: missing {line}"
    assert re.search(r"^Documentation=\S+", text, re.M)


def test_center_runs_the_production_wsgi_server():
    text = (DEPLOY / "systemd/manyi-center.service").read_text()
    assert re.search(r"^ExecStart=\S+/manyi serve ", text, re.M)
    assert "flask run" not in text


def test_compose_file_parses_and_references_existing_files():
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    assert set(compose["services"]) == {"mosquitto", "influxdb", "collector", "center"}
    assert compose["services"]["influxdb"]["image"].startswith("influxdb:2")
    for name, service in compose["services"].items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("./"):
                assert (DEPLOY / source).exists(), f"{name}: {source} does not exist"
        build = service.get("build")
        if build:
            assert (DEPLOY / build["context"] / build["dockerfile"]).is_file()
    # Every ${VAR} the file needs has a line in the example env file.
    needed = set(re.findall(r"\$\{(\w+)", (DEPLOY / "compose.yaml").read_text()))
    example = {line.split("=")[0] for line in (DEPLOY / "compose.env.example").read_text().splitlines()
               if "=" in line and not line.startswith("#")}
    assert needed <= example, needed - example
    # The collector and the center talk to mosquitto over TLS with the city's CA.
    collector = compose["services"]["collector"]
    assert "mosquitto:8883" in collector["command"]
    assert collector["environment"]["MANYI_COLLECTOR_TLS_CA"].endswith("ca.crt")


def test_provision_dry_run_shows_every_step(tmp_path):
    config = tmp_path / "terminal.toml"
    subprocess.run(["bash", str(DEPLOY / "mosquitto/add-terminal.sh"), "-f", str(tmp_path / "passwd"), "-o",
                    str(tmp_path), "-b", "10.0.0.5:8883", "hz-371702001-w01"], check=True, capture_output=True)
    shutil.move(tmp_path / "hz-371702001-w01.toml", config)
    (tmp_path / "ca.crt").write_text("dummy")
    result = subprocess.run(["bash", str(DEPLOY / "terminal/provision.sh"), "--config", str(config), "--ca",
                             str(tmp_path / "ca.crt"), "--ntp", "ntp.example", "--dry-run"],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    for expected in ("pip install --quiet /opt/manyi/src[device]", "/etc/manyi/terminal.toml", "NTP=ntp.example",
                     "systemctl enable manyi-terminal.service", "install -d -m 750 -o manyi -g manyi /var/lib/manyi"):
        assert expected in out, expected
    assert "password" not in out.lower()
    missing = subprocess.run(["bash", str(DEPLOY / "terminal/provision.sh"), "--config", str(tmp_path / "nope"),
                              "--ca", str(tmp_path / "ca.crt"), "--dry-run"], capture_output=True, text=True)
    assert missing.returncode != 0 and "not found" in missing.stderr


def test_terminal_config_from_add_terminal_loads_as_terminal_settings(tmp_path):
    config = pytest.importorskip("device.config")
    subprocess.run(["bash", str(DEPLOY / "mosquitto/add-terminal.sh"), "-f", str(tmp_path / "passwd"), "-o",
                    str(tmp_path), "-b", "10.0.0.5:8883", "hz-371702001-w01"], check=True, capture_output=True)
    settings = config.load_settings(tmp_path / "hz-371702001-w01.toml", env={})
    assert (settings.device_id, settings.broker_host, settings.broker_port) == ("hz-371702001-w01", "10.0.0.5", 8883)
    assert settings.username == "hz-371702001-w01" and len(settings.password) >= 24
    assert str(settings.tls_ca) == "/etc/manyi/ca.crt"


def test_provision_many_dry_run_walks_the_inventory(tmp_path):
    (tmp_path / "ca.crt").write_text("dummy")
    result = subprocess.run(["bash", str(DEPLOY / "terminal/provision-many.sh"), str(DEPLOY / "terminal/inventory.example.csv"),
                             "--ca", str(tmp_path / "ca.crt"), "--dry-run"], capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "provisioned 3 terminal(s); failed: 0" in result.stdout
    log = (tmp_path / "provision-logs/hz-371721101-w01.log").read_text()
    assert "ssh -o BatchMode=yes pi@10.20.7.31" in log


def _vote(i, t0):
    from collector.stores import StoredVote
    moment = t0 + timedelta(seconds=i)
    return StoredVote(device=f"hz-371702001-w0{i % 3 + 1}", seq=i + 1, rating="satisfied", time=moment,
                      received_at=moment, pressed_at=moment.isoformat(timespec="milliseconds"), clock_ok=True)


def test_backup_while_the_collector_writes_then_restore(tmp_path):
    from collector.stores import open_store

    url = f"sqlite:///{tmp_path / 'votes.db'}"
    t0 = datetime(2026, 11, 23, 1, 30, tzinfo=timezone.utc)
    stop, written = threading.Event(), []

    def writer():
        with open_store(url) as store:
            i = 0
            while not stop.is_set() and i < 200_000:
                store.write([_vote(j, t0) for j in range(i, i + 50)])
                i += 50
                written.append(i)

    open_store(url).close()  # creates the schema
    thread = threading.Thread(target=writer)
    thread.start()
    try:
        while len(written) < 20:
            threading.Event().wait(0.01)
        backups = []
        for n in range(3):
            out = tmp_path / f"backup-{n}.db"
            result = subprocess.run(["bash", str(DEPLOY / "backup-sqlite.sh"), str(tmp_path / "votes.db"), str(out)],
                                    capture_output=True, text=True, env=dict(os.environ, PYTHON=sys.executable))
            assert result.returncode == 0, result.stderr
            backups.append(out)
        during = len(written)
    finally:
        stop.set()
        thread.join()
    counts = []
    for out in backups:
        con = sqlite3.connect(out)
        assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        con.close()
        with open_store(f"sqlite:///{out}") as copy:
            counts.append(copy.stats()["votes"])
    # Each copy is a consistent snapshot: a whole number of 50-vote batches, growing, never more than written.
    assert all(c % 50 == 0 and c > 0 for c in counts), counts
    assert counts == sorted(counts) and counts[-1] <= written[-1]
    assert during > 20

    # Restore refuses while something has the database open ...
    target = tmp_path / "votes.db"
    holder = open_store(url)
    holder.stats()
    refused = subprocess.run(["bash", str(DEPLOY / "backup-sqlite.sh"), "--restore", str(backups[0]), str(target)],
                             capture_output=True, text=True, env=dict(os.environ, PYTHON=sys.executable))
    holder.close()
    assert refused.returncode != 0 and "stop manyi-collector" in refused.stderr
    # ... and puts the snapshot in place once it is closed.
    restored = subprocess.run(["bash", str(DEPLOY / "backup-sqlite.sh"), "--restore", str(backups[0]), str(target)],
                              capture_output=True, text=True, env=dict(os.environ, PYTHON=sys.executable))
    assert restored.returncode == 0, restored.stderr
    with open_store(url) as store:
        assert store.stats()["votes"] == counts[0]


@pytest.mark.parametrize("unit", UNITS, ids=lambda p: p.name)
def test_unit_command_lines_are_valid_manyi_commands(unit):
    from manyi.cli import build_parser

    line = re.search(r"^ExecStart=(\S+) (.*)$", unit.read_text(), re.M)
    assert line.group(1) == "/opt/manyi/venv/bin/manyi"
    args = build_parser().parse_args(line.group(2).split())
    assert callable(args.func)


def test_compose_commands_are_valid_manyi_commands():
    from manyi.cli import build_parser

    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    for name in ("collector", "center"):
        args = build_parser().parse_args(compose["services"][name]["command"])
        assert callable(args.func), name


def test_example_settings_files_load(tmp_path):
    result = subprocess.run([sys.executable, "-m", "manyi", "collector", "--config", str(DEPLOY / "collector.example.toml"),
                             "--print-config"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert '"password": "***"' in result.stdout and "change-me" not in result.stdout

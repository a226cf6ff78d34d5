"""Fixtures of the adversary matrix (tests/test_adversary.py): attacks on the shipped configuration.

* ``adv_broker``: mosquitto with deploy/mosquitto/manyi.conf and acl (paths and ports rewritten,
  see plugin_deploy.rewrite_config), TLS certificates and terminal accounts from deploy's scripts.
* :class:`DeployCollector`: ``manyi collector --config`` with deploy/collector.example.toml
  (broker port, password and store path rewritten, nothing else).
* :class:`CenterServer`: ``manyi serve`` with the arguments of deploy/systemd/manyi-center.service;
  :class:`Nginx`: nginx with deploy/nginx/manyi.conf in front of it, when nginx is installed.
* :func:`record`: one row of the matrix (what was tried, the defence, the figures); the table is
  printed at the end of the run and written to test-artifacts/adversary-matrix.md.

Every row is checked against today's behaviour too: docs/security.md lists, per row, the fix that
was reverted to see the row fail.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import pytest

from demo.broker import free_port
from plugin_collector import ROOT, report_matrix, wait_until
from plugin_deploy import DEPLOY

ARTIFACT = ROOT / "test-artifacts" / "adversary-matrix.md"


@dataclass
class Row:
    """One attack: what was tried, the defence expected, the figures measured, passed or not."""

    number: str
    attack: str
    tried: str
    defence: str
    figures: dict = field(default_factory=dict)
    passed: bool = False


ROWS: list[Row] = []


def record(number: str, attack: str, tried: str, defence: str, **figures) -> Row:
    """Add a row (call before the assertions; mark it passed with ``row.passed = True`` after them)."""
    row = Row(number, attack, tried, defence, figures)
    ROWS.append(row)
    return row


def _figures(row: Row) -> str:
    return "; ".join(f"{k.replace('_', ' ')} {v}" for k, v in row.figures.items())


def table(rows: list[Row]) -> str:
    """The adversary matrix as a Markdown table."""
    lines = ["| # | attack | what was tried | defence | figures | result |", "|---|---|---|---|---|---|"]
    for r in sorted(rows, key=lambda r: [int(x) if x.isdigit() else x for x in re.split(r"(\d+)", r.number)]):
        lines.append(f"| {r.number} | {r.attack} | {r.tried} | {r.defence} | {_figures(r)} | "
                     f"{'held' if r.passed else '**FAILED**'} |")
    return "\n".join(lines)


def pytest_configure(config):
    """Register the ``adversary`` marker (``make test-adversary`` runs ``pytest -m adversary``)."""
    config.addinivalue_line("markers", "adversary: the adversary matrix (attacks on the shipped configuration)")


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    """Print the adversary matrix and write it to test-artifacts/adversary-matrix.md."""
    if not ROWS:
        return
    report_matrix(terminalreporter, exitstatus, "adversary matrix: every attack, its defence and the figures",
                  "Adversary matrix", table(ROWS), ARTIFACT)


# --- the collector as deployed ----------------------------------------------------------------

def collector_config(broker_port: int, password: str, store: Path) -> str:
    """deploy/collector.example.toml with only the broker port, the password and the store path changed."""
    text = (DEPLOY / "collector.example.toml").read_text()
    for pattern, value in ((r'^broker = "127\.0\.0\.1:1883"', f'broker = "127.0.0.1:{broker_port}"'),
                           (r'^password = "change-me"', f'password = "{password}"'),
                           (r'^store = "sqlite:////var/lib/manyi/votes\.db"', f'store = "sqlite:///{store}"')):
        text, n = re.subn(pattern, value, text, flags=re.M)
        assert n == 1, f"deploy/collector.example.toml: expected one line matching {pattern!r}"
    return text


class DeployCollector:
    """``manyi collector --config`` with deploy's example configuration, as a child process."""

    def __init__(self, broker, workdir: Path, name: str = "collector"):
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.store = self.workdir / "votes.db"
        self.config = self.workdir / f"{name}.toml"
        self.config.write_text(collector_config(broker.plain_port, broker.passwords["manyi-collector"], self.store))
        self.log_path = self.workdir / f"{name}.log"
        self.process: subprocess.Popen | None = None

    def start(self) -> "DeployCollector":
        """Start and wait until it is connected and subscribed."""
        before = self.log().count("connected to")
        env = dict(os.environ, PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1")
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen([sys.executable, "-m", "manyi", "-v", "collector", "--config",
                                             str(self.config)], cwd=self.workdir, stdout=log, stderr=log, env=env)
        wait_until(lambda: self.log().count("connected to") > before or self.process.poll() is not None, 20,
                   message="collector to connect")
        assert self.process.poll() is None, self.log()[-3000:]
        time.sleep(0.5)          # SUBACK
        return self

    def stop(self) -> None:
        """SIGTERM and wait (it finishes its batch and writes its summaries)."""
        if self.process and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(30)

    def rss_mb(self) -> float:
        """Resident memory of the process now, in MB."""
        return psutil.Process(self.process.pid).memory_info().rss / 2**20

    def log(self) -> str:
        """The process's log so far."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


# --- the control center as deployed -------------------------------------------------------------

def unit_serve_args() -> list[str]:
    """The ``manyi serve`` arguments of deploy/systemd/manyi-center.service's ExecStart."""
    unit = (DEPLOY / "systemd/manyi-center.service").read_text()
    line = next(line for line in unit.splitlines() if line.startswith("ExecStart="))
    argv = shlex.split(line[len("ExecStart="):])
    assert argv[0].endswith("/manyi") and argv[1] == "serve", argv
    return argv[2:]


class CenterServer:
    """``manyi serve`` with the systemd unit's arguments (port and paths changed), as a child process."""

    def __init__(self, workdir: Path, extra_env: dict | None = None):
        self.workdir = Path(workdir)
        self.port = free_port()
        args = unit_serve_args()
        args[args.index("--port") + 1] = str(self.port)
        self.args = args + ["--db", str(self.workdir / "center.db"), "--store",
                            f"sqlite:///{self.workdir / 'votes.db'}", "--no-workers"]
        self.env = dict(os.environ, PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1", **(extra_env or {}))
        self.log_path = self.workdir / "center.log"
        self.process: subprocess.Popen | None = None

    def manyi(self, *args: str, stdin: str | None = None) -> str:
        """Run a ``manyi`` command on this server's database (like an operator on the server)."""
        result = subprocess.run([sys.executable, "-m", "manyi", *args, "--db", str(self.workdir / "center.db")],
                                input=stdin, capture_output=True, text=True, env=self.env, timeout=60)
        assert result.returncode == 0, result.stderr
        return result.stdout

    def start(self) -> "CenterServer":
        """Start and wait until it answers."""
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen([sys.executable, "-m", "manyi", "serve", *self.args], cwd=self.workdir,
                                            stdout=log, stderr=log, env=self.env)
        wait_until(lambda: _answers(self.port) or self.process.poll() is not None, 60, message="manyi serve")
        assert self.process.poll() is None, self.log_path.read_text()[-3000:]
        return self

    def stop(self) -> None:
        """SIGTERM and wait."""
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def db_bytes(self) -> int:
        """The center database's size in pages (its WAL is a bounded, reused log)."""
        import sqlite3
        with sqlite3.connect(self.workdir / "center.db") as conn:
            return conn.execute("PRAGMA page_count").fetchone()[0] * conn.execute("PRAGMA page_size").fetchone()[0]


def _answers(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
        return True
    except OSError:
        return False


NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)


class Nginx:
    """nginx with deploy/nginx/manyi.conf (certificate paths, ports and the upstream rewritten)."""

    def __init__(self, workdir: Path, upstream_port: int, cert: Path, key: Path):
        self.workdir = Path(workdir)
        self.port = free_port()
        site = (DEPLOY / "nginx/manyi.conf").read_text()
        for pattern, value in ((r"listen 443 ssl;", f"listen 127.0.0.1:{self.port} ssl;"),
                               (r"server 127\.0\.0\.1:8000;", f"server 127.0.0.1:{upstream_port};"),
                               (r"/etc/manyi/tls/server\.crt", str(cert)), (r"/etc/manyi/tls/server\.key", str(key))):
            site, n = re.subn(pattern, value, site)
            assert n == 1, f"deploy/nginx/manyi.conf: expected one {pattern!r}"
        (self.workdir / "logs").mkdir(parents=True, exist_ok=True)
        self.conf = self.workdir / "nginx.conf"
        self.conf.write_text(
            ("user root;\n" if os.geteuid() == 0 else "")     # pytest's temp dirs are private to their owner
            + f"daemon off;\nworker_processes 1;\npid {self.workdir}/nginx.pid;\nerror_log {self.workdir}/logs/error.log;\n"
            "events { worker_connections 512; }\n"
            f"http {{\n  access_log {self.workdir}/logs/access.log;\n  client_body_temp_path {self.workdir}/body;\n"
            f"  proxy_temp_path {self.workdir}/proxy;\n  fastcgi_temp_path {self.workdir}/fcgi;\n"
            f"  uwsgi_temp_path {self.workdir}/uwsgi;\n  scgi_temp_path {self.workdir}/scgi;\n{site}\n}}\n")
        self.process: subprocess.Popen | None = None

    def start(self) -> "Nginx":
        """Start in the foreground (as a child) and wait for its port."""
        log = open(self.workdir / "logs/stderr.log", "ab")
        self.process = subprocess.Popen([NGINX, "-c", str(self.conf), "-p", str(self.workdir)], stdout=log, stderr=log)
        log.close()
        wait_until(lambda: _answers(self.port) or self.process.poll() is not None, 15, message="nginx")
        assert self.process.poll() is None, (self.workdir / "logs/stderr.log").read_text()
        return self

    def stop(self) -> None:
        """Stop nginx."""
        if self.process and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)


__all__ = ["ROWS", "Row", "record", "table", "DeployCollector", "CenterServer", "Nginx", "NGINX", "unit_serve_args",
           "collector_config"]

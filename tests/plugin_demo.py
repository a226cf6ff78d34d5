"""Fixtures of the demo tests (loaded by conftest.py): a `manyi run` child process and an API session."""

from __future__ import annotations

import http.cookiejar
import json
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import pytest

from demo.broker import free_port


@dataclass
class DemoRun:
    """A running ``manyi run``: its process, output lines, ports and every descendant seen."""

    workdir: Path
    port: int
    broker_port: int
    process: subprocess.Popen
    lines: list[str] = field(default_factory=list)
    descendants: dict[int, str] = field(default_factory=dict)

    def wait_for_line(self, pattern: str, timeout: float) -> re.Match:
        """Wait until an output line matches ``pattern``; fail with the output so far."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in list(self.lines):
                match = re.search(pattern, line)
                if match:
                    return match
            if self.process.poll() is not None:
                break
            time.sleep(0.1)
        raise AssertionError(f"no line matching {pattern!r}; output:\n" + "\n".join(self.lines))

    def remember_descendants(self) -> None:
        """Record every process below ``manyi run`` (children and grandchildren)."""
        try:
            for proc in psutil.Process(self.process.pid).children(recursive=True):
                self.descendants[proc.pid] = " ".join(proc.cmdline()[:6])
        except psutil.NoSuchProcess:
            pass

    def interrupt(self, timeout: float = 60.0) -> int:
        """Send SIGINT (Ctrl-C) and wait for the exit code."""
        self.process.send_signal(signal.SIGINT)
        return self.process.wait(timeout)

    def survivors(self) -> list[str]:
        """Descendants still alive (zombies count as gone)."""
        alive = []
        for pid, cmd in self.descendants.items():
            try:
                if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                    alive.append(f"{pid} {cmd}")
            except psutil.NoSuchProcess:
                pass
        return alive


def start_demo(workdir: Path, *extra: str) -> DemoRun:
    """Start ``manyi run`` in ``workdir`` on free ports, with a small history to seed quickly."""
    port, broker_port = free_port(), free_port()
    argv = [sys.executable, "-m", "manyi", "run", "--workdir", str(workdir), "--port", str(port),
            "--broker-port", str(broker_port), "--history-quarters", "1", "--history-votes-per-day", "0.5", *extra]
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    run = DemoRun(workdir, port, broker_port, process)

    def read():
        for line in process.stdout:
            run.lines.append(line.rstrip("\n"))

    threading.Thread(target=read, daemon=True).start()
    return run


class ApiSession:
    """Logs in to the control center like a browser (form + CSRF token + cookie) and GETs JSON."""

    def __init__(self, base: str):
        self.base = base
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))

    def login(self, username: str, password: str) -> None:
        """GET /login for the CSRF token, POST the form, and check the session works."""
        page = self.opener.open(self.base + "/login", timeout=10).read().decode()
        token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
        data = urllib.parse.urlencode({"username": username, "password": password, "csrf_token": token}).encode()
        self.opener.open(self.base + "/login", data=data, timeout=10).read()

    def get_json(self, path: str) -> dict:
        """GET an API path and decode it."""
        with self.opener.open(self.base + path, timeout=20) as response:
            assert response.headers["Content-Type"].startswith("application/json"), response.geturl()
            return json.loads(response.read())


@pytest.fixture
def demo_run(tmp_path):
    """Start a demo city; after the test stop it (SIGINT, then kill) if the test did not."""
    runs: list[DemoRun] = []

    def start(workdir: Path | None = None, *extra: str) -> DemoRun:
        run = start_demo(workdir or tmp_path / "demo", *extra)
        runs.append(run)
        return run

    yield start
    for run in runs:
        if run.process.poll() is None:
            run.process.send_signal(signal.SIGINT)
            try:
                run.process.wait(60)
            except subprocess.TimeoutExpired:
                run.process.kill()
        for pid in run.descendants:
            try:
                psutil.Process(pid).kill()
            except psutil.NoSuchProcess:
                pass

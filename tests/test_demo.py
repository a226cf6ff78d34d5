"""`manyi run`: the whole system on one machine shows a living city and stops cleanly."""

import json
import re
import sqlite3
import time
from datetime import datetime, timedelta

import pytest

from manyi.periods import CHINA_TZ
from plugin_demo import ApiSession

pytestmark = pytest.mark.slow


def township(device: str) -> str:
    return re.match(r"hz-(\d{9})-w\d+$", device).group(1)


def live_townships(api: ApiSession, since: datetime) -> set[str]:
    """Townships of the votes the live feed shows that were pressed after ``since``."""
    items = api.get_json("/api/v1/feed?limit=500")["items"]
    return {township(i["device"]) for i in items if datetime.fromisoformat(i["time"]) >= since}


def test_manyi_run_shows_votes_from_many_townships_and_stops_leaving_no_process(demo_run, tmp_path):
    started = time.monotonic()
    run = demo_run(None, "--speed", "60")
    login = run.wait_for_line(r"login\s+admin / (\S+)", timeout=90)
    url = run.wait_for_line(r"control center\s+(http://\S+?)/?$", timeout=5).group(1)
    assert url == f"http://127.0.0.1:{run.port}"
    run.remember_descendants()
    names = " ".join(run.descendants.values())
    assert "mosquitto" in names and "collector" in names and "simulate" in names and "serve" in names, names

    api = ApiSession(url)
    api.login("admin", login.group(1))
    today = datetime.now(CHINA_TZ).replace(hour=0, minute=0, second=0, microsecond=0)
    seen: set[str] = set()
    deadline = time.monotonic() + 40
    while time.monotonic() < deadline and len(seen) < 20:
        seen |= live_townships(api, today)
        time.sleep(1)
    assert len(seen) >= 20, f"live votes from only {len(seen)} townships"
    # The map API answers with county figures for today.
    counties = api.get_json("/api/v1/map?period=today&figure=0")["counties"]
    assert len(counties) >= 9

    run.remember_descendants()
    assert run.interrupt() == 0, "\n".join(run.lines)
    assert run.survivors() == []
    assert processes_mentioning(run.workdir) == []
    assert any("stopped" in line for line in run.lines)
    assert time.monotonic() - started < 90

    # The simulated history is marked as such, and live seqs continue after it (no duplicates).
    seeded = json.loads((tmp_path / "demo/seeded.json").read_text())
    assert seeded["simulated"] and "模拟数据" in seeded["note"]
    con = sqlite3.connect(tmp_path / "demo/votes.db")
    try:
        assert con.execute("SELECT count(*) FROM votes").fetchone()[0] > seeded["votes"]
    finally:
        con.close()


def test_running_again_continues_the_same_city(demo_run, tmp_path):
    from collector.stores import open_store

    workdir = tmp_path / "city"
    first = demo_run(workdir, "--speed", "60", "--terminals", "40")
    password = first.wait_for_line(r"login\s+admin / (\S+)", timeout=90).group(1)
    with open_store(f"sqlite:///{workdir / 'votes.db'}") as store:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and store.stats()["votes"] <= json.loads((workdir / "seeded.json").read_text())["votes"]:
            time.sleep(0.5)
    first.remember_descendants()
    assert first.interrupt() == 0
    assert first.survivors() == []
    with open_store(f"sqlite:///{workdir / 'votes.db'}") as store:
        before = {t.device: t.max_seq for t in store.terminals()}
        votes_before = store.stats()["votes"]

    second = demo_run(workdir, "--speed", "60", "--terminals", "40")
    assert second.wait_for_line(r"login\s+admin / (\S+)", timeout=90).group(1) == password
    assert any("continuing the city" in line for line in second.lines)
    with open_store(f"sqlite:///{workdir / 'votes.db'}") as store:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and store.stats()["votes"] <= votes_before:
            time.sleep(0.5)
    second.remember_descendants()
    assert second.interrupt() == 0
    assert second.survivors() == []
    with open_store(f"sqlite:///{workdir / 'votes.db'}") as store:
        stats = store.stats()
        after = {t.device: t.max_seq for t in store.terminals()}
        # Nothing re-seeded, nothing counted twice, and seqs grew past the first run's.
        assert stats["votes"] > votes_before and stats["duplicates"] == 0
        assert any(after[d] > before.get(d, 0) for d in after)
        assert all(after[d] >= before[d] for d in before)
        assert store.gaps() == [] or sum(g.size for g in store.gaps()) < 5


def processes_mentioning(path) -> list[str]:
    """Live processes whose command line mentions ``path`` (the demo's children all do)."""
    import psutil

    found = []
    for proc in psutil.process_iter(["pid", "cmdline", "status"]):
        cmd = " ".join(proc.info["cmdline"] or [])
        if str(path) in cmd and proc.info["status"] != psutil.STATUS_ZOMBIE:
            found.append(f"{proc.info['pid']} {cmd[:120]}")
    return found


def test_a_part_that_cannot_start_stops_everything_with_a_clear_message(tmp_path):
    import socket
    import subprocess
    import sys

    workdir = tmp_path / "busy"
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = subprocess.run([sys.executable, "-m", "manyi", "run", "--workdir", str(workdir), "--port", str(port),
                                 "--terminals", "5", "--history-quarters", "0", "--history-votes-per-day", "0.5"],
                                capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "control center exited during start-up" in result.stderr
    assert "center.log" in result.stderr
    assert processes_mentioning(workdir) == []

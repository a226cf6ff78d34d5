"""The control center's database upgrades in place: numbered migrations, PRAGMA user_version."""

from __future__ import annotations

import shutil
import sqlite3
import threading
from datetime import datetime, timezone
from pathlib import Path

import pytest

from analytics import alerts, cases
from analytics.center import CenterDB, MigrationError
from analytics.center.accounts import audit_entries, authenticate, get_user, list_tokens, verify_audit
from analytics.center.imports import import_history
from analytics.center.migrations import Migration, shipped, version_of
from analytics.center.registry import active_info, load_active
from analytics.imports.scores import base_scores
from analytics.imports.survey import survey_counts
from analytics.quarter import load_published, published

V0 = Path(__file__).parent / "data" / "center-v0.db"      # made by tests/data/make_center_v0.py at 270d3a4
NOW = datetime(2026, 11, 21, 2, 0, tzinfo=timezone.utc)
LATEST = shipped()[-1].version


def _tables(path) -> dict[str, list[str]]:
    conn = sqlite3.connect(path)
    try:
        names = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' "
                                            "AND name != 'sqlite_sequence' ORDER BY name")]
        return {name: [r[1] for r in conn.execute(f"PRAGMA table_info({name})")] for name in names}
    finally:
        conn.close()


def test_a_new_database_gets_every_migration_and_the_default_alert_rules(tmp_path):
    db = CenterDB(tmp_path / "center.db")
    assert db.applied == list(range(1, LATEST + 1)) and version_of(db.conn) == LATEST
    assert [r.name for r in alerts.list_rules(db)] == [name for name, _, _ in alerts.DEFAULT_RULES]
    db.close()
    again = CenterDB(tmp_path / "center.db")
    assert again.applied == []                            # opening again changes nothing
    again.close()


def test_a_database_of_the_release_before_migrations_upgrades_in_place_with_its_data(tmp_path):
    path = tmp_path / "center.db"
    shutil.copy(V0, path)
    before = _tables(path)
    db = CenterDB(path)
    try:
        assert db.applied == list(range(1, LATEST + 1))
        # users, tokens, the audit log (chain intact), the registry, imports, results, cases and rules survive
        assert get_user(db, "caoxian").county_code == "371721"
        assert authenticate(db, "admin", "Old-pass-word-1", "10.0.0.1", NOW) is not None
        assert [t["name"] for t in list_tokens(db)] == ["script"]
        assert {e["action"] for e in audit_entries(db)} >= {"login", "user.create"}
        assert verify_audit(db) == (2, [])
        assert active_info(db)["source"] == "tiny test registry" and load_active(db) is not None
        assert int(survey_counts(db, "2026Q3")["n"].sum()) == 2
        assert sorted(base_scores(db, "2026Q3")["score"]) == [80.0, 90.0]
        assert [h["kind"] for h in import_history(db)] == ["scores", "survey"]
        result = published(db)[0]
        assert result["quarter"] == "2026Q3" and load_published(db, result["id"]).counties.shape[0] == 2
        case, = cases.list_cases(db, NOW)
        assert case["assignee"] == "王科长" and case["vote_count"] == 1
        # a case from before the three deadlines keeps its one (fix) deadline
        assert [st["stage"] for st in case["stages"]] == ["fix"] and case["contact_deadline"] is None
        assert [h["name"] for h in cases.list_holidays(db)] == ["国庆节"]
        # the rules it had (the three defaults and its own), not a second copy of the defaults
        assert [r.name for r in alerts.list_rules(db)] == [n for n, _, _ in alerts.DEFAULT_RULES] + ["自定义规则"]
    finally:
        db.close()
    after = _tables(path)
    # nothing dropped or renamed: each old table keeps its columns, in order, and may have gained some
    assert {name: cols[:len(before[name])] for name, cols in after.items() if name in before} == before
    fresh = tmp_path / "fresh.db"
    CenterDB(fresh).close()
    assert after == _tables(fresh)                        # and it is now exactly what a new database is


def test_the_columns_older_releases_added_later_are_added(tmp_path):
    path = tmp_path / "old.db"
    conn = sqlite3.connect(path)
    conn.executescript("""
        CREATE TABLE users (id INTEGER PRIMARY KEY, username TEXT NOT NULL UNIQUE, password_hash TEXT NOT NULL,
            role TEXT NOT NULL, county_code TEXT, disabled INTEGER NOT NULL DEFAULT 0, created_at TEXT NOT NULL,
            last_login TEXT);
        INSERT INTO users (username, password_hash, role, created_at) VALUES ('old', 'h', 'admin', '2026-01-01');
    """)
    conn.close()
    db = CenterDB(path)
    assert "password_changed_at" in _tables(path)["users"] and get_user(db, "old").role == "admin"
    db.close()


def test_a_database_newer_than_the_software_is_refused_and_left_alone(tmp_path):
    path = tmp_path / "center.db"
    CenterDB(path).close()
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {LATEST + 1}")
    conn.close()
    with pytest.raises(MigrationError, match="newer than this software"):
        CenterDB(path)
    conn = sqlite3.connect(path)
    assert version_of(conn) == LATEST + 1
    conn.close()


def test_a_failing_migration_leaves_the_database_at_the_version_before_it(tmp_path):
    steps = shipped() + [Migration(LATEST + 1, "half", "CREATE TABLE extra (k INTEGER);\nINSERT INTO nowhere VALUES (1);")]
    with pytest.raises(MigrationError, match=f"{LATEST + 1:04d}_half"):
        CenterDB(tmp_path / "center.db", migrations=steps)
    conn = sqlite3.connect(tmp_path / "center.db")
    assert version_of(conn) == LATEST and "extra" not in _tables(tmp_path / "center.db")
    conn.close()


def test_processes_opening_one_database_at_once_apply_each_migration_once(tmp_path):
    counted = []
    steps = shipped() + [Migration(LATEST + 1, "count", "CREATE TABLE counted (k INTEGER);",
                                   after=lambda conn: counted.append(1))]
    opened, errors = [], []

    def open_one():
        try:
            opened.append(CenterDB(tmp_path / "center.db", migrations=steps))
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=open_one) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == [] and counted == [1]
    assert sorted(v for db in opened for v in db.applied) == list(range(1, LATEST + 2))   # each one once, in all
    for db in opened:
        db.close()


def test_migration_files_are_numbered_without_gaps(tmp_path):
    for name in ("0001_a.sql", "0003_c.sql"):
        (tmp_path / name).write_text("SELECT 1;")
    with pytest.raises(MigrationError, match="without gaps"):
        shipped(tmp_path)


def test_serve_refuses_to_start_on_a_newer_database_with_a_message(tmp_path):
    import subprocess
    import sys

    path = tmp_path / "center.db"
    CenterDB(path).close()
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {LATEST + 1}")
    conn.close()
    result = subprocess.run([sys.executable, "-m", "manyi", "serve", "--db", str(path), "--port", "0",
                             "--store", f"sqlite:///{tmp_path / 'votes.db'}"], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 2 and "newer than this software" in result.stderr, result.stderr[-500:]

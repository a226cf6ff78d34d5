"""The pure pieces behind the adversary matrix: limiters, sealed cursors, password policy, audit chain."""

from __future__ import annotations

import sqlite3
from datetime import datetime, timedelta, timezone

import pytest

from analytics.center import CenterDB
from analytics.accounts import AuthError, check_password
from analytics.center.accounts import verify_audit, write_audit
from analytics.web.cursors import CursorSealer
from analytics.web.limits import RateLimiter, StreamSlots
from collector.stores.base import DeadLetter
from collector.validate import DeadLetterLimiter, dead_letter

NOW = datetime(2026, 11, 23, 1, 30, tzinfo=timezone.utc)


def letter(device: str, payload: bytes, reason: str = "bad_json") -> DeadLetter:
    return dead_letter(f"manyi/v1/votes/{device}", payload, reason, "x", NOW)


def test_limiter_stores_per_source_per_window_and_counts_the_rest():
    limiter = DeadLetterLimiter(per_window=3, window=60, summary_every=10)
    admitted = [limiter.admit(letter("a", f"junk {i}".encode()), f"junk {i}".encode(), now=i) for i in range(10)]
    assert admitted == [True] * 3 + [False] * 7
    assert limiter.admit(letter("b", b"junk 0"), b"junk 0", now=10)          # another source has its own budget
    assert limiter.admit(letter("a", b"later"), b"later", now=61)           # a new window
    summaries = limiter.summaries(now=62, received_at=NOW)
    assert [s.reason for s in summaries] == ["suppressed"] and "7 more messages from 'a'" in summaries[0].detail
    assert limiter.summaries(now=63, received_at=NOW) == []                  # nothing new counted


def test_limiter_counts_repeats_and_replayed_retained_letters():
    limiter = DeadLetterLimiter(per_window=50, window=60, summary_every=0)
    assert limiter.admit(letter("a", b"same"), b"same", now=0)
    assert not limiter.admit(letter("a", b"same"), b"same", now=1)          # a repeat within the window
    assert limiter.admit(letter("a", b"same"), b"same", now=61)             # ... but not forever
    restarted = DeadLetterLimiter()
    restarted.remember([letter("a", b"retained junk"), letter("a", b"y" * 1000)])
    assert not restarted.admit(letter("a", b"retained junk"), b"retained junk", now=0, retained=True)
    assert not restarted.admit(letter("a", b"y" * 1000), b"y" * 1000, now=0, retained=True)   # by the hash in detail
    assert restarted.admit(letter("a", b"retained junk"), b"retained junk", now=0, retained=False)


def test_rate_limiter_refills():
    now = [0.0]
    limiter = RateLimiter(rate=2, burst=3, clock=lambda: now[0])
    assert [limiter.allow("k") for _ in range(4)] == [0.0, 0.0, 0.0, 0.5]
    assert limiter.allow("other") == 0.0
    now[0] = 0.5
    assert limiter.allow("k") == 0.0


def test_stream_slots_per_key_and_in_all():
    slots = StreamSlots(per_key=2, total=3)
    assert [slots.acquire("a"), slots.acquire("a"), slots.acquire("a")] == [None, None, "account"]
    assert slots.acquire("b") is None and slots.acquire("c") == "server"
    slots.release("a")
    assert slots.acquire("c") is None and slots.held() == 3


def test_sealed_cursors_are_opaque_fresh_and_authenticated():
    sealer = CursorSealer("secret")
    first, second = sealer.seal("12345"), sealer.seal("12345")
    assert first != second and "12345" not in first
    assert sealer.open(first) == sealer.open(second) == "12345"
    for forged in ("12345", first[:-3] + "AAA", "", "x" * 300, CursorSealer("other").seal("12345")):
        with pytest.raises(ValueError):
            sealer.open(forged)


@pytest.mark.parametrize("password, ok", [("12345678", False), ("password1", False), ("Password12", True),
                                          ("correct-horse-9", True), ("aaaaaaaaA1", False), ("Admin-2026x", False),
                                          ("x" * 300 + "A1-", False)])
def test_password_policy(password, ok):
    if ok:
        check_password(password, "admin")
    else:
        with pytest.raises(AuthError):
            check_password(password, "admin")


def test_audit_log_is_append_only_and_chained(tmp_path):
    db = CenterDB(tmp_path / "c.db")
    try:
        for i in range(5):
            write_audit(db, "login", {"n": i}, username="u", ip="127.0.0.1", now=NOW + timedelta(seconds=i))
        write_audit(db, "login.failed", {"username": "x" * 10_000}, username="x" * 10_000, ip="1" * 500, now=NOW)
        assert verify_audit(db) == (6, [])
        with pytest.raises(sqlite3.DatabaseError):
            db.execute("DELETE FROM audit_log")
        row = db.query("SELECT length(username) AS u, length(ip) AS i, length(detail) AS d FROM audit_log "
                       "ORDER BY id DESC LIMIT 1")[0]
        assert row["u"] <= 65 and row["i"] <= 64 and row["d"] <= 4000
        db.execute("DROP TRIGGER audit_log_no_update")
        db.execute("UPDATE audit_log SET action = 'logout' WHERE id = 3")
        assert verify_audit(db) == (6, [3])
    finally:
        db.close()


def test_a_database_of_the_previous_release_upgrades_in_place(tmp_path):
    """users without password_changed_at and audit_log without chain gain the columns; rows stay."""
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as conn:
        conn.executescript("""
            CREATE TABLE users (id INTEGER PRIMARY KEY, username TEXT NOT NULL UNIQUE, password_hash TEXT NOT NULL,
                role TEXT NOT NULL, county_code TEXT, disabled INTEGER NOT NULL DEFAULT 0, created_at TEXT NOT NULL,
                last_login TEXT);
            CREATE TABLE audit_log (id INTEGER PRIMARY KEY, at TEXT NOT NULL, username TEXT, role TEXT, ip TEXT,
                action TEXT NOT NULL, detail TEXT NOT NULL DEFAULT '{}');
            INSERT INTO users (username, password_hash, role, created_at) VALUES ('old', 'h', 'admin', '2026-01-01');
            INSERT INTO audit_log (at, action) VALUES ('2026-01-01', 'login');
        """)
    db = CenterDB(path)
    try:
        write_audit(db, "login", {}, now=NOW)
        assert db.query("SELECT username, password_changed_at FROM users")[0]["username"] == "old"
        assert verify_audit(db) == (1, [])                      # the old entry has no chain and is skipped
        assert len(db.query("SELECT id FROM audit_log")) == 2
    finally:
        db.close()

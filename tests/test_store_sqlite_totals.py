"""SQLiteStore's read fast paths: totals() and few-terminal counts() equal the sums of the raw votes;
the month roll-up is added to, and filled in, an older store file; the quarterly computation gives
the same figures with and without the fast path."""

import random
import sqlite3
from collections import Counter
from datetime import datetime, timedelta, timezone

import pytest

from analytics.quarter import compute_quarter
from collector.stores.base import StoredVote
from collector.stores.sqlite import SQLiteStore
from manyi.periods import CHINA_TZ, Quarter
from manyi.protocol import RATINGS

BASE = datetime(2026, 6, 20, tzinfo=timezone.utc)


def _votes(n, devices=7, days=120, seed=2):
    rng = random.Random(seed)
    seq, out = Counter(), []
    for _ in range(n):
        device = f"dev-{rng.randrange(devices)}"
        seq[device] += 1
        at = BASE + timedelta(seconds=rng.randrange(0, 86400 * days), microseconds=rng.randrange(10**6))
        flags = frozenset({"burst"}) if rng.random() < 0.05 else frozenset()
        out.append(StoredVote(device, seq[device], rng.choice(RATINGS), at, at, at.isoformat(), True, flags))
    return out


def _write(store, votes):
    for i in range(0, len(votes), 250):
        store.write(votes[i:i + 250])


def _expected(votes, start, end, devices=None):
    want = Counter()
    for v in votes:
        if start <= v.time < end and (devices is None or v.device in devices):
            want[(v.device, v.rating, "kept")] += not v.excluded
            want[(v.device, v.rating, "excluded")] += v.excluded
    return +want


def _got(rows):
    got = Counter()
    for device, rating, kept, excluded in rows:
        got[(device, rating, "kept")] += kept
        got[(device, rating, "excluded")] += excluded
    return +got


@pytest.fixture(scope="module")
def filled(tmp_path_factory):
    store = SQLiteStore(tmp_path_factory.mktemp("totals") / "votes.db")
    votes = _votes(4000)
    _write(store, votes)
    yield store, votes
    store.close()


def test_totals_equal_the_votes_over_random_periods(filled):
    store, votes = filled
    rng = random.Random(5)
    for _ in range(150):
        start = BASE + timedelta(seconds=rng.randrange(-86400, 86400 * 125), microseconds=rng.randrange(10**6))
        length = rng.choice([rng.randrange(0, 7200), rng.randrange(0, 86400 * 100)])
        devices = None if rng.random() < 0.5 else [f"dev-{k}" for k in rng.sample(range(8), 3)]
        end = start + timedelta(seconds=length)
        assert _got(store.totals(start, end, devices)) == _expected(votes, start, end, devices)


def test_a_quarter_reads_the_month_rollup(filled):
    store, votes = filled
    q = Quarter(2026, 3)
    assert _got(store.totals(q.start, q.end)) == _expected(votes, q.start, q.end)
    months = store.conn.execute("SELECT count(DISTINCT month) FROM rollup_month").fetchone()[0]
    assert months >= 4                     # June to October 2026, China time


def test_few_terminal_counts_equal_the_rollup_path(filled):
    store, votes = filled
    q = Quarter(2026, 3)
    few = store.counts(q.start, q.end, "day", devices=["dev-1", "dev-4"])     # votes path
    every = store.counts(q.start, q.end, "day")                               # roll-up path
    assert few == [row for row in every if row.device in ("dev-1", "dev-4")]
    hours = store.counts(q.start + timedelta(minutes=17), q.end, "hour", devices=["dev-2"])
    assert sum(r.count + r.excluded for r in hours) == sum(
        1 for v in votes if v.device == "dev-2" and q.start + timedelta(minutes=17) <= v.time < q.end)


def test_an_older_store_file_gets_the_month_rollup_filled(tmp_path):
    path = tmp_path / "old.db"
    store = SQLiteStore(path)
    votes = _votes(600, seed=9)
    _write(store, votes)
    store.close()
    conn = sqlite3.connect(path)                  # make it look like a file from before the month roll-up
    for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'").fetchall():
        conn.execute(f"DROP TRIGGER {name}")
    conn.execute("DROP TABLE rollup_month")
    conn.commit()
    conn.close()
    store = SQLiteStore(path)
    try:
        q = Quarter(2026, 3)
        assert _got(store.totals(q.start, q.end)) == _expected(votes, q.start, q.end)
        more = _votes(200, seed=10)
        more = [StoredVote(v.device, v.seq + 10_000, v.rating, v.time, v.received_at, v.pressed_at, True, v.flags)
                for v in more]
        _write(store, more)                          # the triggers keep it up to date from now on
        assert _got(store.totals(q.start, q.end)) == _expected(votes + more, q.start, q.end)
    finally:
        store.close()


class HourlyOnly:
    """The same store seen through the plain VoteStore reads only (no totals())."""

    def __init__(self, store):
        self.store = store

    def counts(self, *args, **kwargs):
        return self.store.counts(*args, **kwargs)

    def votes(self, *args, **kwargs):
        return self.store.votes(*args, **kwargs)


def test_the_quarter_is_the_same_with_and_without_period_totals(filled):
    from manyi.registry import Assignment, County, Hall, Registry, RosterEntry, Township, Window

    store, _ = filled
    since = datetime(2025, 1, 1, tzinfo=CHINA_TZ)
    reg = Registry()
    reg.counties["370001"] = County("370001", "甲县", "county")
    reg.townships["370001001"] = Township("370001001", "甲镇", "370001")
    reg.halls["h1"] = Hall("h1", "甲所", "370001001", None, None, True, "")
    for k in range(8):
        reg.windows[f"w{k}"] = Window(f"w{k}", "h1", f"{k}号窗口")
        if k < 6:                                    # dev-6 unregistered
            reg.assignments.append(Assignment(f"dev-{k}", f"w{k}", since, None))
        reg.roster.append(RosterEntry(f"w{k}", f"s{k}", f"员{k}", since, None))
    reg.reassign("dev-0", "w7", datetime(2026, 8, 5, 10, 20, tzinfo=CHINA_TZ))          # moved mid-hour
    # w1's staff changes at a midnight inside the quarter.
    first = reg.roster[1]
    change = datetime(2026, 8, 10, tzinfo=CHINA_TZ)
    reg.roster[1] = RosterEntry(first.window_id, first.staff_id, first.staff_name, first.valid_from, change)
    reg.roster.append(RosterEntry("w1", "s9", "员9", change, None))
    now = datetime(2026, 11, 1, tzinfo=timezone.utc)
    fast = compute_quarter(store, reg, None, Quarter(2026, 3), now=now)
    plain = compute_quarter(HourlyOnly(store), reg, None, Quarter(2026, 3), now=now)
    assert fast.fingerprint() == plain.fingerprint()
    assert fast.notes == plain.notes
    assert fast.input_counts["votes"] == plain.input_counts["votes"] > 0
    assert fast.input_counts["count_rows"] < plain.input_counts["count_rows"]
    assert set(fast.staff["staff_id"]) >= {"s1", "s9"}

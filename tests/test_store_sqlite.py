"""SQLite specifics: the roll-up agrees with the raw votes, URLs, locking, and a reader process beside the writer."""

from __future__ import annotations

import json
import random
import sqlite3
import subprocess
import sys
from collections import Counter
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from collector.stores import FLAG_BURST, StoredVote, open_store
from collector.stores.sqlite import SQLiteStore, day_of_hour, path_from_url
from manyi.exc import ConfigError, StoreError
from manyi.periods import CHINA_TZ, Quarter

ROOT = Path(__file__).resolve().parent.parent


def random_votes(n: int, seed: int = 7) -> list[StoredVote]:
    """Votes spread over a quarter and 30 terminals, some flagged."""
    rng = random.Random(seed)
    quarter = Quarter(2026, 3)
    span = int((quarter.end - quarter.start).total_seconds())
    seqs = Counter()
    votes = []
    for _ in range(n):
        device = f"hz-3717{rng.randrange(30):05d}-w01"
        seqs[device] += 1
        moment = quarter.start + timedelta(seconds=rng.randrange(span), microseconds=rng.randrange(10**6))
        votes.append(StoredVote(device, seqs[device], rng.choice(("satisfied", "basic", "unsatisfied")), moment,
                                moment, moment.isoformat(), True,
                                frozenset({FLAG_BURST}) if rng.random() < 0.05 else frozenset()))
    return votes


def test_rollup_counts_equal_counts_from_raw_votes(tmp_path):
    store = SQLiteStore(tmp_path / "v.db")
    votes = random_votes(5000)
    for i in range(0, len(votes), 700):
        store.write(votes[i:i + 700])
    start = datetime(2026, 8, 3, 5, 17, 11, tzinfo=CHINA_TZ)       # ragged edges on purpose
    end = datetime(2026, 9, 30, 23, 59, 59, tzinfo=CHINA_TZ)
    expected = Counter()
    for v in votes:
        if start <= v.time < end:
            local = v.time.astimezone(CHINA_TZ)
            day = datetime(local.year, local.month, local.day, tzinfo=CHINA_TZ)
            expected[(v.device, day, v.rating, v.excluded)] += 1
    got = Counter()
    for row in store.counts(start, end, bucket="day"):
        got[(row.device, row.bucket, row.rating, False)] += row.count
        got[(row.device, row.bucket, row.rating, True)] += row.excluded
    assert +got == +expected
    quarter = Quarter(2026, 3)
    assert sum(r.count + r.excluded for r in store.counts(quarter.start, quarter.end, "day")) == 5000
    rollup_rows = store.conn.execute("SELECT count(*) FROM rollup").fetchone()[0]
    assert rollup_rows < 5000          # the report reads the roll-up, not one row per vote


def test_day_of_hour_is_china_midnight():
    hour = int(datetime(2026, 9, 30, 16, 0, tzinfo=timezone.utc).timestamp())     # 00:00 1 Oct China
    assert day_of_hour(hour) == hour
    assert day_of_hour(hour - 3600) == hour - 86400


def test_url_paths_relative_and_absolute(tmp_path, monkeypatch):
    assert path_from_url("sqlite:///var/votes.db") == "var/votes.db"
    assert path_from_url("sqlite:////srv/manyi/votes.db") == "/srv/manyi/votes.db"
    with pytest.raises(ConfigError):
        path_from_url("sqlite://votes.db")
    monkeypatch.chdir(tmp_path)
    with open_store("sqlite:///sub/dir/votes.db") as store:
        store.write([random_votes(1)[0]])
    assert (tmp_path / "sub/dir/votes.db").exists()
    with pytest.raises(ConfigError):
        open_store("postgres://x")


def test_locked_database_raises_store_error_and_writes_nothing(tmp_path):
    path = tmp_path / "v.db"
    store = SQLiteStore(path, busy_timeout=0.2)
    blocker = sqlite3.connect(path, isolation_level=None)
    blocker.execute("BEGIN EXCLUSIVE")
    with pytest.raises(StoreError, match="v.db"):
        store.write(random_votes(3))
    blocker.execute("ROLLBACK")
    assert store.stats()["votes"] == 0
    assert store.write(random_votes(3)).inserted == 3


def test_reader_process_sees_votes_while_the_writer_keeps_writing(tmp_path):
    path = tmp_path / "v.db"
    store = SQLiteStore(path)
    votes = random_votes(3000)
    script = (
        "import time\n"
        "from datetime import datetime, timezone\n"
        "from collector.stores import open_store\n"
        f"s = open_store('sqlite:///{path}')\n"
        "cursor, seen, deadline = '0', 0, time.monotonic() + 60\n"
        "far = (datetime(2026, 1, 1, tzinfo=timezone.utc), datetime(2027, 1, 1, tzinfo=timezone.utc))\n"
        "while seen < 3000 and time.monotonic() < deadline:\n"
        "    items = s.feed(after=cursor, limit=500)\n"
        "    if items:\n"
        "        cursor, seen = items[-1].cursor, seen + len(items)\n"
        "    assert sum(r.count + r.excluded for r in s.counts(*far)) >= seen\n"
        "    time.sleep(0.01)\n"
        "print(seen)\n")
    reader = subprocess.Popen([sys.executable, "-c", script], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    for i in range(0, 3000, 100):
        store.write(votes[i:i + 100])
    out, _ = reader.communicate(timeout=90)
    assert reader.returncode == 0 and out.strip() == "3000"


def test_a_reused_seq_with_other_content_is_kept_as_a_dead_letter_not_counted_as_duplicate(tmp_path):
    # A terminal whose outbox was lost (SD card replaced) numbers from seq 1 again. Its new votes
    # collide with stored keys; INSERT OR IGNORE alone would throw them away as "duplicates".
    store = SQLiteStore(tmp_path / "votes.db")
    first = random_votes(5)
    store.write(first)
    again = [StoredVote(v.device, v.seq, v.rating, v.time, v.received_at, v.pressed_at, v.clock_ok, v.flags)
             for v in first[:2]]                                   # a true redelivery: same content
    later = first[2].time + timedelta(days=3)
    other = "basic" if first[2].rating != "basic" else "unsatisfied"
    reused = StoredVote(first[2].device, first[2].seq, other, later, later, later.isoformat(), True)
    result = store.write(again + [reused])
    assert (result.inserted, result.duplicates, result.dead_letters) == (0, 2, 1)
    letter, = store.dead_letters(reason="seq_conflict")
    assert letter.topic == f"manyi/v1/votes/{reused.device}"
    assert json.loads(letter.payload) == {"v": 1, "device": reused.device, "seq": reused.seq, "rating": other,
                                          "pressed_at": later.isoformat(), "clock_ok": True}
    assert f"seq {reused.seq} of {reused.device} is already stored as {first[2].rating}" in letter.detail
    stats = store.stats()
    assert stats["votes"] == 5 and stats["duplicates"] == 2
    store.close()


def test_a_store_file_from_before_heard_hours_gets_the_hours_of_its_votes(tmp_path):
    import sqlite3
    from datetime import datetime, timezone

    from collector.stores.sqlite import SQLiteStore

    path = tmp_path / "old.db"
    SQLiteStore(path).close()
    conn = sqlite3.connect(path)
    conn.execute("DROP TABLE heard_hours")
    received = datetime(2026, 11, 2, 1, 30, tzinfo=timezone.utc)
    conn.execute("INSERT INTO votes (device, seq, rating, time_us, received_us, pressed_at, clock_ok, flags, excluded)"
                 " VALUES ('hz-1', 1, 'satisfied', ?, ?, '', 1, '', 0)",
                 (int(received.timestamp() * 1e6), int(received.timestamp() * 1e6)))
    conn.commit()
    conn.close()
    store = SQLiteStore(path)
    try:
        assert store.heard_hours(received.replace(hour=0), received.replace(hour=5)) == [
            ("hz-1", received.replace(minute=0))]
    finally:
        store.close()

"""The VoteStore contract, run against every store: SQLite always; InfluxDB 2 only when
INFLUXDB_V2_URL points at a real server (each test then gets a bucket of its own)."""

from __future__ import annotations

import os
import uuid
from datetime import datetime, timedelta, timezone

import pytest

from collector.stores import (
    FLAG_BURST, FLAG_CLOCK_REPLACED, DeadLetter, Gap, StoredVote, TerminalStatus, open_store,
)
from manyi.periods import CHINA_TZ

T0 = datetime(2026, 11, 23, 1, 0, tzinfo=timezone.utc)     # 09:00 China time
DEV_A, DEV_B = "hz-371702001-w01", "hz-371702002-w01"


def vote(device=DEV_A, seq=1, rating="satisfied", time=None, flags=frozenset(), clock_ok=True, received=None):
    """A StoredVote at ``time`` (default T0 + seq minutes)."""
    time = time or T0 + timedelta(minutes=seq)
    received = received or time + timedelta(seconds=2)
    return StoredVote(device=device, seq=seq, rating=rating, time=time, received_at=received,
                      pressed_at=time.astimezone(CHINA_TZ).isoformat(timespec="milliseconds"),
                      clock_ok=clock_ok, flags=frozenset(flags))


def _sqlite(tmp_path):
    return open_store(f"sqlite:///{tmp_path / 'votes.db'}")


def _influx(tmp_path):
    if not os.environ.get("INFLUXDB_V2_URL"):
        pytest.skip("InfluxDB contract tests need a real server: INFLUXDB_V2_URL is not set")
    from collector.stores.influx import InfluxStore

    return InfluxStore.temporary(bucket=f"manyi-test-{uuid.uuid4().hex[:12]}")


@pytest.fixture(params=["sqlite", pytest.param("influxdb", marks=pytest.mark.influxdb)])
def store(request, tmp_path):
    """Each store backend, empty."""
    made = {"sqlite": _sqlite, "influxdb": _influx}[request.param](tmp_path)
    yield made
    if request.param == "influxdb":
        made.drop()
    made.close()


def test_write_is_idempotent_on_device_and_seq(store):
    batch = [vote(seq=1), vote(seq=2), vote(DEV_B, seq=1)]
    first = store.write(batch)
    assert (first.inserted, first.duplicates) == (3, 0)
    again = store.write(batch + [vote(seq=1, rating="unsatisfied")])   # same identity, other content
    # Every store compares the content: a reused seq is kept as a dead letter, never counted as a copy.
    assert (again.inserted, again.duplicates, again.dead_letters) == (0, 3, 1)
    assert [d.reason for d in store.dead_letters()] == ["seq_conflict"]
    stats = store.stats()
    assert stats["votes"] == 3 and stats["duplicates"] == 3
    assert [v.rating for v in store.votes(T0, T0 + timedelta(days=1), devices=[DEV_A])] == ["satisfied", "satisfied"]


def test_a_seq_reused_long_after_its_first_vote_is_a_seq_conflict(store):
    """A terminal whose outbox was lost numbers from 1 again, weeks later: every store finds the old vote."""
    store.write([vote(seq=s) for s in range(1, 4)])
    later = T0 + timedelta(days=40)
    result = store.write([vote(seq=2, time=later), vote(seq=4, time=later + timedelta(minutes=1))])
    assert (result.inserted, result.duplicates, result.dead_letters) == (1, 0, 1)
    letter, = store.dead_letters(reason="seq_conflict")
    assert "seq 2" in letter.detail and store.stats()["votes"] == 4


def test_duplicate_inside_one_batch_is_stored_once(store):
    result = store.write([vote(seq=5), vote(seq=5)])
    assert (result.inserted, result.duplicates) == (1, 1)


def test_votes_round_trip_every_field(store):
    original = vote(seq=7, rating="basic", flags={FLAG_CLOCK_REPLACED}, clock_ok=False,
                    time=T0 + timedelta(minutes=3, microseconds=123000))
    store.write([original])
    (got,) = list(store.votes(T0, T0 + timedelta(hours=1)))
    assert got == original


def test_counts_by_hour_and_rating_with_excluded_votes(store):
    store.write([
        vote(seq=1, time=T0 + timedelta(minutes=5)),
        vote(seq=2, time=T0 + timedelta(minutes=50), flags={FLAG_BURST}),
        vote(seq=3, time=T0 + timedelta(minutes=70), rating="unsatisfied"),
        vote(DEV_B, seq=1, time=T0 + timedelta(minutes=10)),
    ])
    rows = {(r.device, r.bucket, r.rating): (r.count, r.excluded)
            for r in store.counts(T0, T0 + timedelta(hours=2))}
    assert rows == {
        (DEV_A, T0, "satisfied"): (1, 1),
        (DEV_A, T0 + timedelta(hours=1), "unsatisfied"): (1, 0),
        (DEV_B, T0, "satisfied"): (1, 0),
    }
    only_b = store.counts(T0, T0 + timedelta(hours=2), devices=[DEV_B])
    assert {r.device for r in only_b} == {DEV_B}
    assert store.counts(T0, T0 + timedelta(hours=2), devices=[]) == []


def test_day_buckets_are_china_days(store):
    late = datetime(2026, 9, 30, 23, 30, tzinfo=timezone.utc)        # 07:30 on 1 October in China
    store.write([vote(seq=1, time=late), vote(seq=2, time=late - timedelta(hours=8))])
    rows = store.counts(late - timedelta(days=1), late + timedelta(days=1), bucket="day")
    by_day = {r.bucket.astimezone(CHINA_TZ).date().isoformat(): r.count for r in rows}
    assert by_day == {"2026-10-01": 1, "2026-09-30": 1}
    for row in rows:
        local = row.bucket.astimezone(CHINA_TZ)
        assert (local.hour, local.minute) == (0, 0)


def test_counts_range_is_half_open_and_respects_ragged_edges(store):
    store.write([vote(seq=s, time=T0 + timedelta(minutes=10 * s)) for s in range(1, 10)])   # 01:10 .. 02:30
    start, end = T0 + timedelta(minutes=20), T0 + timedelta(minutes=80)                      # 01:20 .. 02:20
    total = sum(r.count for r in store.counts(start, end))
    assert total == 6      # 01:20, 01:30, 01:40, 01:50, 02:00, 02:10; 02:20 is excluded (half-open)
    assert sum(r.count for r in store.counts(start, end, bucket="day")) == 6


def test_feed_returns_votes_in_storage_order_after_a_cursor(store):
    store.write([vote(seq=s) for s in (1, 2, 3)])
    latest = store.feed(limit=2)
    assert [i.seq for i in latest] == [2, 3]
    cursor = latest[-1].cursor
    assert store.feed(after=cursor) == []
    store.write([vote(DEV_B, seq=1, received=T0 + timedelta(hours=5)), vote(seq=1)])   # a duplicate adds nothing
    new = store.feed(after=cursor)
    assert [(i.device, i.seq) for i in new] == [(DEV_B, 1)]
    assert new[0].rating == "satisfied" and new[0].time == T0 + timedelta(minutes=1)


def test_feed_of_some_devices_reads_only_theirs(store):
    """A county user's ticker: the newest votes of its terminals, however many others came after them."""
    store.write([vote(DEV_B, seq=1, received=T0 + timedelta(minutes=1))])
    store.write([vote(seq=s, received=T0 + timedelta(minutes=1 + s)) for s in range(1, 30)])
    latest = store.feed(limit=5, devices=[DEV_B])
    assert [(i.device, i.seq) for i in latest] == [(DEV_B, 1)]
    assert store.feed(after=latest[-1].cursor, devices=[DEV_B]) == []
    store.write([vote(DEV_B, seq=2, received=T0 + timedelta(hours=1))])
    assert [(i.device, i.seq) for i in store.feed(after=latest[-1].cursor, devices=[DEV_B])] == [(DEV_B, 2)]
    assert store.feed(limit=5, devices=[]) == []


def test_dead_letters_keep_raw_bytes_newest_first(store):
    letters = [DeadLetter("manyi/v1/votes/x", b"\xff\xfe raw", "bad_encoding", "not UTF-8", T0),
               DeadLetter("manyi/v1/votes/x", b"{", "bad_json", "not JSON", T0 + timedelta(seconds=1)),
               DeadLetter("manyi/v1/votes/x", b"[", "bad_json", "not an object", T0 + timedelta(seconds=2))]
    assert store.write(dead_letters=letters).dead_letters == 3
    assert store.dead_letter_counts() == {"bad_encoding": 1, "bad_json": 2}
    newest = store.dead_letters(limit=2)
    assert [d.payload for d in newest] == [b"[", b"{"]
    assert store.dead_letters(reason="bad_encoding") == [letters[0]]
    assert store.stats()["dead_letters"] == {"bad_encoding": 1, "bad_json": 2}


def test_terminal_status_none_fields_keep_stored_values(store):
    store.write(statuses=[TerminalStatus(DEV_A, online=True, last_seen=T0, status_at=T0, firmware="1.0",
                                         outbox_depth=4, clock_ok=True, config_applied={"lockout_seconds": 3.0})])
    store.write(statuses=[TerminalStatus(DEV_A, online=False)])
    store.write([vote(seq=1), vote(seq=4)])
    (t,) = store.terminals()
    assert t.online is False and t.firmware == "1.0" and t.outbox_depth == 4 and t.clock_ok is True
    assert t.config_applied == {"lockout_seconds": 3.0}
    assert t.max_seq == 4 and t.vote_count == 2 and t.missing == 2
    assert t.last_vote_at == T0 + timedelta(minutes=4)
    assert t.last_seen >= T0


def test_gaps_list_runs_of_missing_seqs(store):
    store.write([vote(seq=s) for s in (1, 2, 5, 6, 9)] + [vote(DEV_B, seq=s) for s in (2, 3)])
    assert store.gaps() == [Gap(DEV_A, 3, 4), Gap(DEV_A, 7, 8), Gap(DEV_B, 1, 1)]
    assert store.gaps(DEV_B) == [Gap(DEV_B, 1, 1)]
    assert store.stats()["missing"] == 5
    store.write([vote(seq=3), vote(seq=4)])        # late arrivals close a gap
    assert store.gaps(DEV_A) == [Gap(DEV_A, 7, 8)]


def test_stats_shape(store):
    store.write([vote(seq=1, flags={FLAG_BURST})], [DeadLetter("t", b"x", "bad_json", "d", T0)])
    stats = store.stats()
    assert stats["votes"] == 1 and stats["terminals"] == 1 and stats["dead_letters"] == {"bad_json": 1}
    assert stats["duplicates"] == 0 and stats["missing"] == 0


def test_heard_hours_are_the_hours_a_vote_or_status_was_received(store):
    """What terminal availability is measured from: the hours in which the center heard each terminal."""
    store.write([vote(seq=1, received=T0 + timedelta(minutes=10)), vote(seq=2, received=T0 + timedelta(minutes=50)),
                 vote(DEV_B, seq=1, received=T0 + timedelta(hours=5, minutes=1))])
    now = datetime.now(timezone.utc)
    store.write(statuses=[TerminalStatus(DEV_A, online=True, last_seen=now, status_at=now)])
    status_hour = now.replace(minute=0, second=0, microsecond=0)
    heard = store.heard_hours(T0 - timedelta(hours=1), T0 + timedelta(days=1))
    assert heard == [(DEV_A, T0), (DEV_B, T0 + timedelta(hours=5))]
    assert store.heard_hours(T0 + timedelta(hours=1), T0 + timedelta(days=1), devices=[DEV_A]) == []
    recent = store.heard_hours(status_hour - timedelta(hours=1), status_hour + timedelta(hours=2), devices=[DEV_A])
    assert recent and recent[0][0] == DEV_A and recent[0][1] - status_hour in (timedelta(0), timedelta(hours=1))

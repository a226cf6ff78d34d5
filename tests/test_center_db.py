"""CenterDB: reads in parallel through per-thread connections, writes under one lock, consistent."""

from __future__ import annotations

import threading

import pytest

from analytics.center import CenterDB
from analytics.center.migrations import Migration

# A database of one table of its own (not the control center's migrations).
ONLY_T = [Migration(1, "t", "CREATE TABLE t (k INTEGER PRIMARY KEY, v TEXT);")]


@pytest.fixture
def db(tmp_path):
    center = CenterDB(tmp_path / "center.db", migrations=ONLY_T)
    yield center
    center.close()


def test_a_read_does_not_wait_for_a_writer_holding_the_lock(db):
    db.execute("INSERT INTO t (k, v) VALUES (1, 'a')")
    got, inside = [], threading.Event()
    with db.transaction() as conn:                       # this thread holds the write lock ...
        conn.execute("INSERT INTO t (k, v) VALUES (2, 'b')")
        assert [r["k"] for r in db.query("SELECT k FROM t ORDER BY k")] == [1, 2]   # ... and reads its own row
        reader = threading.Thread(target=lambda: (got.append([r["k"] for r in db.query("SELECT k FROM t")]),
                                                  inside.set()))
        reader.start()
        assert inside.wait(5), "a read from another thread waited for the writer's transaction"
        assert got == [[1]]                              # the other thread sees only what is committed
    reader.join()
    seen = []
    threading.Thread(target=lambda: seen.append(len(db.query("SELECT k FROM t")))).start()
    for _ in range(100):
        if seen:
            break
        threading.Event().wait(0.02)
    assert seen == [2]                                   # and the commit once it is made


def test_a_rolled_back_transaction_leaves_nothing_and_reads_go_on(db):
    with pytest.raises(RuntimeError):
        with db.transaction() as conn:
            conn.execute("INSERT INTO t (k, v) VALUES (3, 'c')")
            raise RuntimeError("boom")
    assert db.query("SELECT count(*) AS n FROM t")[0]["n"] == 0
    db.execute("INSERT INTO t (k, v) VALUES (4, 'd')")
    assert db.query("SELECT v FROM t")[0]["v"] == "d"


def test_reads_are_read_only_and_close_closes_every_connection(db):
    import sqlite3

    with pytest.raises(sqlite3.OperationalError):
        db.query("INSERT INTO t (k, v) VALUES (5, 'e')")   # writes belong in execute()/transaction()
    threads = [threading.Thread(target=lambda: db.query("SELECT 1")) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(db._readers) == 5
    db.close()
    assert db._readers == []


def test_memory_database_reads_through_its_one_connection():
    center = CenterDB(":memory:", migrations=ONLY_T)
    center.execute("INSERT INTO t (k) VALUES (1)")
    got = []
    worker = threading.Thread(target=lambda: got.append(center.query("SELECT k FROM t")[0]["k"]))
    worker.start()
    worker.join()
    assert got == [1] and center._readers == []
    center.close()

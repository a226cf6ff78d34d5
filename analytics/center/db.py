"""The control center's own database (SQLite): accounts and the audit log, the active
registry, imports (survey answers, base scores), published quarterly results, follow-up
cases and alerts.

Votes are not here: they live in the vote store (collector.stores), which may be
InfluxDB. Every table is created and changed by the numbered migrations
(:mod:`analytics.center.migrations`), applied when the database is opened; every SQL
statement on these tables is in this package, one module per concern. There is no global
state: callers pass the CenterDB object around.
"""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

from .migrations import Migration, migrate


def in_clause(column: str, values) -> tuple[str, list]:
    """``column IN (?, ?, ...)`` with its parameters (sorted, so queries are repeatable).

    Callers handle an empty ``values`` themselves: ``IN ()`` matches nothing, which for a
    user who may see no county is the right answer but rarely the intended query.
    """
    values = sorted(values)
    return f"{column} IN ({','.join('?' * len(values))})", values


def county_filter(counties, column: str = "county_code") -> tuple[list[str], list] | None:
    """The WHERE clauses and parameters that restrict rows to ``counties`` (None: every county, no clause);
    None when ``counties`` is empty: a user who may see no county gets no rows."""
    if counties is None:
        return [], []
    if not counties:
        return None
    clause, values = in_clause(column, counties)
    return [clause], values


class CenterDB:
    """The control center's database, migrated to this software's version when opened.

    A small wrapper over one SQLite file (WAL, foreign keys on), safe to share between threads.

    Writes (:meth:`execute`, :meth:`transaction`) go through one connection under a lock.
    :meth:`query` outside a transaction reads through a connection of the calling thread, so
    the control center's request threads read in parallel (WAL readers never block each
    other or the writer) instead of queueing behind the lock; each read sees every commit
    made before it. Inside a transaction the thread reads through the writing connection
    and sees its own uncommitted rows.
    """

    def __init__(self, path: str | Path, migrations: list[Migration] | None = None):
        self.path = str(path)
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self.conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=30)
        self.conn.row_factory = sqlite3.Row
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA foreign_keys=ON")
        self.conn.execute("PRAGMA busy_timeout=30000")
        self.lock = threading.RLock()
        self._writer_thread: int | None = None     # the thread inside transaction(), if any
        self._local = threading.local()
        self._readers: list[sqlite3.Connection] = []
        self._readers_lock = threading.Lock()          # not self.lock: a writer may hold that one
        self._closed = False
        try:
            with self.lock:
                self.applied = migrate(self.conn, migrations)
        except BaseException:
            self.conn.close()
            raise

    def execute(self, sql: str, params=()) -> sqlite3.Cursor:
        """Run one statement (autocommit unless inside :meth:`transaction`)."""
        with self.lock:
            return self.conn.execute(sql, params)

    def query(self, sql: str, params=()) -> list[sqlite3.Row]:
        """Run a query and return all rows."""
        reader = self._reader()
        if reader is None:
            with self.lock:
                return self.conn.execute(sql, params).fetchall()
        return reader.execute(sql, params).fetchall()

    def _reader(self) -> sqlite3.Connection | None:
        # An in-memory database exists only in its one connection; a thread inside a transaction
        # must read its own writes.
        if self.path == ":memory:" or self._closed or self._writer_thread == threading.get_ident():
            return None
        reader = getattr(self._local, "conn", None)
        if reader is None:
            reader = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=30)
            reader.row_factory = sqlite3.Row
            reader.execute("PRAGMA busy_timeout=30000")
            reader.execute("PRAGMA query_only=ON")
            self._local.conn = reader
            with self._readers_lock:
                self._readers.append(reader)
        return reader

    def transaction(self):
        """Context manager: BEGIN IMMEDIATE … COMMIT, or ROLLBACK on error."""
        return _Transaction(self)

    def close(self) -> None:
        """Close the connections."""
        with self._readers_lock:
            self._closed = True
            for reader in self._readers:
                reader.close()
            self._readers.clear()
        self.conn.close()


class _Transaction:
    def __init__(self, db: CenterDB):
        self.db = db

    def __enter__(self) -> sqlite3.Connection:
        self.db.lock.acquire()
        try:
            self.db.conn.execute("BEGIN IMMEDIATE")
        except BaseException:
            self.db.lock.release()
            raise
        self.outer = self.db._writer_thread
        self.db._writer_thread = threading.get_ident()
        return self.db.conn

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            self.db.conn.execute("ROLLBACK" if exc_type else "COMMIT")
        finally:
            self.db._writer_thread = self.outer
            self.db.lock.release()

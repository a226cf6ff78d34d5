"""The control center's own database (SQLite): survey answers, base scores, published
quarterly results, follow-up cases, users and the audit log.

Votes are not here: they live in the vote store (collector.stores), which may be
InfluxDB. Each module that keeps tables here declares its schema as a string of
``CREATE TABLE IF NOT EXISTS`` statements and calls :meth:`CenterDB.ensure` with it;
there is no global state: callers pass the CenterDB object around.
"""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path


def in_clause(column: str, values) -> tuple[str, list]:
    """``column IN (?, ?, ...)`` with its parameters (sorted, so queries are repeatable).

    Callers handle an empty ``values`` themselves: ``IN ()`` matches nothing, which for a
    user who may see no county is the right answer but rarely the intended query.
    """
    values = sorted(values)
    return f"{column} IN ({','.join('?' * len(values))})", values


class CenterDB:
    """A small wrapper over one SQLite file (WAL, foreign keys on), safe to share between threads."""

    def __init__(self, path: str | Path):
        self.path = str(path)
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self.conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=30)
        self.conn.row_factory = sqlite3.Row
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA foreign_keys=ON")
        self.conn.execute("PRAGMA busy_timeout=30000")
        self.lock = threading.RLock()
        self._ensured: set[str] = set()

    def ensure(self, schema: str) -> None:
        """Create the tables of ``schema`` if they do not exist (once per process and schema)."""
        if schema in self._ensured:
            return
        with self.lock:
            self.conn.executescript(schema)
            self._ensured.add(schema)

    def execute(self, sql: str, params=()) -> sqlite3.Cursor:
        """Run one statement (autocommit unless inside :meth:`transaction`)."""
        with self.lock:
            return self.conn.execute(sql, params)

    def query(self, sql: str, params=()) -> list[sqlite3.Row]:
        """Run a query and return all rows."""
        with self.lock:
            return self.conn.execute(sql, params).fetchall()

    def transaction(self):
        """Context manager: BEGIN IMMEDIATE … COMMIT, or ROLLBACK on error."""
        return _Transaction(self)

    def close(self) -> None:
        """Close the connection."""
        self.conn.close()


class _Transaction:
    def __init__(self, db: CenterDB):
        self.db = db

    def __enter__(self) -> sqlite3.Connection:
        self.db.lock.acquire()
        self.db.conn.execute("BEGIN IMMEDIATE")
        return self.db.conn

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            self.db.conn.execute("ROLLBACK" if exc_type else "COMMIT")
        finally:
            self.db.lock.release()

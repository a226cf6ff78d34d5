"""Numbered migrations of the control center's database.

The database's version is SQLite's ``PRAGMA user_version``. Each migration is a file
``migrations/NNNN_name.sql`` that takes the database from version NNNN-1 to NNNN; opening a
:class:`~analytics.center.db.CenterDB` applies the missing ones in order, each in its own
``BEGIN IMMEDIATE`` transaction together with the version bump, so two processes opening the
same file at once apply each migration once, and a failed migration leaves the database at
the version before it.

Migration 1 is the schema of the last release without migrations (every table ``IF NOT
EXISTS``, so it also adopts a database made by that release). Tables that such a database
created before a column existed get the column from :func:`_columns_added_before_migrations`.

A new migration is a new file with the next number; a shipped migration is never edited
(tests/test_center_migrations.py keeps a database of each shipped version and upgrades it).
"""

from __future__ import annotations

import re
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from manyi.exc import ManyiError

HERE = Path(__file__).resolve().parent / "migrations"
_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


class MigrationError(ManyiError, sqlite3.DatabaseError):
    """The database is newer than this software, or a migration failed (the message says which)."""


@dataclass(frozen=True)
class Migration:
    """One step: the SQL script that takes the database to ``version``, then an optional Python step."""

    version: int
    name: str
    sql: str
    after: Callable[[sqlite3.Connection], None] | None = None


def _columns_added_before_migrations(conn: sqlite3.Connection) -> None:
    """Columns that releases before migrations added on first use (the password's age, the
    audit log's hash chain, the session's last request); migration 1's tables have them."""
    for table, column, kind in (("users", "password_changed_at", "TEXT"), ("audit_log", "chain", "TEXT"),
                                ("web_sessions", "last_seen", "TEXT")):
        names = {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}
        if column not in names:
            conn.execute(f"ALTER TABLE {table} ADD COLUMN {column} {kind}")


AFTER = {1: _columns_added_before_migrations}


def shipped(directory: Path = HERE) -> list[Migration]:
    """The migrations shipped with this software, in order; their numbers must run 1, 2, 3, ..."""
    found = []
    for path in sorted(directory.glob("*.sql")):
        match = _NAME.match(path.name)
        if not match:
            raise MigrationError(f"{path.name}: a migration file is named NNNN_name.sql")
        version = int(match.group(1))
        found.append(Migration(version, match.group(2), path.read_text(encoding="utf-8"), AFTER.get(version)))
    if [m.version for m in found] != list(range(1, len(found) + 1)):
        raise MigrationError(f"migrations must be numbered 1..n without gaps: {[m.version for m in found]}")
    return found


def version_of(conn: sqlite3.Connection) -> int:
    """The database's schema version (0: empty, or made before migrations existed)."""
    return int(conn.execute("PRAGMA user_version").fetchone()[0])


def migrate(conn: sqlite3.Connection, migrations: list[Migration] | None = None) -> list[int]:
    """Apply the missing migrations to ``conn`` (autocommit mode); return the versions applied."""
    migrations = shipped() if migrations is None else migrations
    latest = migrations[-1].version if migrations else 0
    current = version_of(conn)
    if current > latest:
        raise MigrationError(f"the control center's database is at version {current}, newer than this software "
                             f"knows ({latest}): upgrade manyi, or restore the backup taken before the upgrade")
    applied = []
    for migration in migrations:
        if migration.version <= current:
            continue
        conn.execute("BEGIN IMMEDIATE")
        try:
            if version_of(conn) >= migration.version:     # another process applied it meanwhile
                conn.execute("ROLLBACK")
                continue
            for statement in _statements(migration.sql):
                conn.execute(statement)
            if migration.after is not None:
                migration.after(conn)
            conn.execute(f"PRAGMA user_version = {int(migration.version)}")
            conn.execute("COMMIT")
        except BaseException as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            if isinstance(exc, sqlite3.Error):
                raise MigrationError(f"migration {migration.version:04d}_{migration.name} failed: {exc}") from exc
            raise
        applied.append(migration.version)
    return applied


def _statements(script: str) -> list[str]:
    """The statements of a script, split where sqlite3 says a statement is complete.

    (``executescript`` would commit the open transaction first; the migration and its version
    bump must be one transaction.)
    """
    out, current = [], ""
    for line in script.splitlines(keepends=True):
        current += line
        if sqlite3.complete_statement(current):
            if current.strip():
                out.append(current)
            current = ""
    if current.strip() and not all(l.strip().startswith("--") or not l.strip() for l in current.splitlines()):
        raise MigrationError(f"incomplete statement at the end of a migration: {current.strip()[:80]}")
    return out

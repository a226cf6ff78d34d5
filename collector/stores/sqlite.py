"""The embedded vote store: one SQLite file in WAL mode.

Tables:

* ``votes``: one row per accepted vote, unique on (device, seq); the autoincrement
  ``id`` is the live feed's cursor.
* ``rollup``: counts per (device, hour bucket, rating), kept and excluded, updated in
  the same transaction as the votes, so a quarter's counts read thousands of rows.
  Day buckets (China time) are sums of hour buckets: UTC+8 is a whole-hour offset.
* ``terminals``: status fields from status messages plus vote-derived fields
  (max_seq, vote_count, last_vote_at) maintained on insert; ``missing`` is
  max_seq - vote_count since seqs start at 1 and are unique.
* ``dead_letters`` and ``meta`` (the persisted duplicates counter).

Times are stored as integer microseconds since the epoch (UTC). One writer process
(the collector) and any number of reader processes (control center, ``manyi stats``)
can use the file at once: WAL lets readers read while the writer commits, and a busy
timeout makes a second writer wait instead of failing at once.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterable, Iterator, Sequence

from manyi.exc import ConfigError, StoreError
from manyi.periods import CHINA_TZ

from .base import (
    BUCKETS, CountRow, DeadLetter, FeedItem, Gap, StoredVote, TerminalStatus, VoteStore, WriteResult, flags_text,
    seq_conflict_letter,
    from_us, parse_flags, to_us,
)

SCHEMA = """
CREATE TABLE IF NOT EXISTS votes (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    device TEXT NOT NULL,
    seq INTEGER NOT NULL,
    rating TEXT NOT NULL,
    time_us INTEGER NOT NULL,
    received_us INTEGER NOT NULL,
    pressed_at TEXT NOT NULL,
    clock_ok INTEGER NOT NULL,
    flags TEXT NOT NULL DEFAULT '',
    excluded INTEGER NOT NULL DEFAULT 0,
    UNIQUE (device, seq)
);
CREATE INDEX IF NOT EXISTS votes_time ON votes (time_us);
CREATE TABLE IF NOT EXISTS rollup (
    device TEXT NOT NULL,
    hour INTEGER NOT NULL,          -- epoch seconds of the UTC hour start
    rating TEXT NOT NULL,
    kept INTEGER NOT NULL DEFAULT 0,
    excluded INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (hour, device, rating)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS dead_letters (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    topic TEXT NOT NULL,
    payload BLOB NOT NULL,
    reason TEXT NOT NULL,
    detail TEXT NOT NULL,
    received_us INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS dead_letters_reason ON dead_letters (reason);
CREATE TABLE IF NOT EXISTS terminals (
    device TEXT PRIMARY KEY,
    online INTEGER,
    last_seen_us INTEGER,
    status_at_us INTEGER,
    firmware TEXT,
    boot_time TEXT,
    outbox_depth INTEGER,
    reported_last_seq INTEGER,
    repeats_ignored INTEGER,
    poisoned INTEGER,
    clock_ok INTEGER,
    outbox_full INTEGER,
    config_applied TEXT,
    last_vote_us INTEGER,
    max_seq INTEGER,
    vote_count INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
-- The hours in which the center heard from a terminal (a vote or a status message received):
-- terminal availability. Kept from the first time a file is opened by a version that has it.
CREATE TABLE IF NOT EXISTS heard_hours (
    device TEXT NOT NULL,
    hour INTEGER NOT NULL,                -- epoch seconds of the UTC hour's start
    PRIMARY KEY (device, hour)
) WITHOUT ROWID;
"""

# A coarser roll-up for period totals (totals()): months of China time, kept equal to the
# sums of the hourly roll-up by triggers, so every writer (also an older collector that
# knows nothing of it) maintains it in the same transaction. Added in a later version: an
# existing file gets it, filled from its hourly roll-up, the first time it is opened.
ROLLUP_LEVELS = """
CREATE TABLE IF NOT EXISTS rollup_month (
    device TEXT NOT NULL,
    month INTEGER NOT NULL,         -- epoch seconds of the China-time first of the month, 00:00
    rating TEXT NOT NULL,
    kept INTEGER NOT NULL DEFAULT 0,
    excluded INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (month, device, rating)
) WITHOUT ROWID;
"""
_MONTH_SQL = "(CAST(strftime('%s', {h} + 28800, 'unixepoch', 'start of month') AS INTEGER) - 28800)"


def _level_triggers(source: str, target: str, column: str, key_sql: str, source_column: str) -> str:
    def upsert(row: str, kept: str, excluded: str) -> str:
        key = key_sql.format(h=f"{row}.{source_column}")
        return (f"INSERT INTO {target} (device, {column}, rating, kept, excluded)"
                f" VALUES ({row}.device, {key}, {row}.rating, {kept}, {excluded})"
                f" ON CONFLICT ({column}, device, rating) DO UPDATE SET kept = kept + excluded.kept,"
                f" excluded = {target}.excluded + excluded.excluded;")
    same = f"OLD.device = NEW.device AND OLD.{source_column} = NEW.{source_column} AND OLD.rating = NEW.rating"
    name = f"{source}_to_{target}"
    return (f"CREATE TRIGGER IF NOT EXISTS {name}_ins AFTER INSERT ON {source} BEGIN "
            + upsert("NEW", "NEW.kept", "NEW.excluded") + " END;\n"
            f"CREATE TRIGGER IF NOT EXISTS {name}_upd AFTER UPDATE ON {source} WHEN {same} BEGIN "
            + upsert("NEW", "NEW.kept - OLD.kept", "NEW.excluded - OLD.excluded") + " END;\n"
            f"CREATE TRIGGER IF NOT EXISTS {name}_move AFTER UPDATE ON {source} WHEN NOT ({same}) BEGIN "
            + upsert("OLD", "-OLD.kept", "-OLD.excluded") + " " + upsert("NEW", "NEW.kept", "NEW.excluded")
            + " END;\n"
            f"CREATE TRIGGER IF NOT EXISTS {name}_del AFTER DELETE ON {source} BEGIN "
            + upsert("OLD", "-OLD.kept", "-OLD.excluded") + " END;\n")


ROLLUP_TRIGGERS = _level_triggers("rollup", "rollup_month", "month", _MONTH_SQL, "hour")
ROLLUP_BACKFILL = (
    f"INSERT INTO rollup_month (device, month, rating, kept, excluded) SELECT device, {_MONTH_SQL.format(h='hour')},"
    " rating, sum(kept), sum(excluded) FROM rollup GROUP BY 1, 2, 3;\n")


_CHINA_OFFSET_S = 8 * 3600
_FEW_DEVICES = 64            # counts() for at most this many terminals reads their votes, not the roll-up
_STATUS_COLUMNS = ("online", "firmware", "boot_time", "outbox_depth", "reported_last_seq",
                   "repeats_ignored", "poisoned", "clock_ok", "outbox_full")


def hour_of(time_us: int) -> int:
    """Epoch seconds of the start of the UTC hour containing ``time_us``."""
    return (time_us // 3_600_000_000) * 3600


def day_of_hour(hour: int) -> int:
    """Epoch seconds of the China-time midnight starting the day that contains ``hour``."""
    return ((hour + _CHINA_OFFSET_S) // 86400) * 86400 - _CHINA_OFFSET_S


def _month_of(hour: int) -> int:
    """Epoch seconds of the China-time start of the month containing the hour ``hour``."""
    local = datetime.fromtimestamp(hour, CHINA_TZ)
    return int(local.replace(day=1, hour=0).timestamp())


def _next_month(hour: int) -> int:
    """Epoch seconds of the first China-time month start at or after the hour ``hour``."""
    month = _month_of(hour)
    if month == hour:
        return month
    local = datetime.fromtimestamp(month, CHINA_TZ)
    return int(local.replace(year=local.year + local.month // 12, month=local.month % 12 + 1).timestamp())


def path_from_url(url: str) -> str:
    """The file path of ``sqlite:///relative/path`` or ``sqlite:////absolute/path``."""
    if not url.startswith("sqlite:///"):
        raise ConfigError(f"store URL {url!r}: expected sqlite:///relative/path or sqlite:////absolute/path")
    path = url[len("sqlite:///"):]
    if not path:
        raise ConfigError(f"store URL {url!r} has no file path")
    return path


class SQLiteStore(VoteStore):
    """The vote store in one SQLite file; safe to share between threads and processes."""

    def __init__(self, path: str | Path, *, busy_timeout: float = 5.0):
        self.path = str(path)
        self.url = f"sqlite:///{self.path}"
        self.busy_timeout = busy_timeout
        self.conn = self._connect()
        self._reopen = False
        self.lock = threading.RLock()

    def _connect(self) -> sqlite3.Connection:
        try:
            if self.path != ":memory:":
                Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None,
                                   timeout=self.busy_timeout)
            conn.execute(f"PRAGMA busy_timeout={int(self.busy_timeout * 1000)}")
            conn.execute("PRAGMA journal_mode=WAL")
            # FULL: a commit is on disk before write() returns, because the collector acknowledges
            # to the broker right after; NORMAL could lose acknowledged votes on a power cut.
            conn.execute("PRAGMA synchronous=FULL")
            heard_existed = conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'heard_hours'").fetchone()
            conn.executescript(SCHEMA)
            if not heard_existed:
                # A file of a version before heard hours: the hours of its received votes (heartbeats
                # were not kept), once.
                conn.execute("INSERT OR IGNORE INTO heard_hours (device, hour) "
                             "SELECT DISTINCT device, (received_us / 3600000000) * 3600 FROM votes")
            self.rollup_levels = _ensure_rollup_levels(conn)
        except (sqlite3.Error, OSError) as exc:
            raise StoreError(f"SQLite store {self.path}: cannot open: {exc}") from exc
        return conn

    def _reopen_if_readonly(self, exc: sqlite3.Error) -> None:
        # A connection opened while the file or its file system was read-only (e.g. a collector
        # restarted during the fault) stays read-only for ever: reopen it, so that the writer's
        # next retry succeeds once the store is writable again (tests/test_fault_matrix.py).
        # The old connection must be closed first: SQLite shares one file descriptor per file
        # within a process, and a new connection would inherit the read-only one.
        if _is_readonly(exc):
            self.conn.close()
            self._reopen = True

    @classmethod
    def from_url(cls, url: str) -> "SQLiteStore":
        """Open ``sqlite:///var/votes.db`` (relative) or ``sqlite:////srv/manyi/votes.db`` (absolute)."""
        return cls(path_from_url(url))

    def __repr__(self) -> str:
        return f"SQLiteStore({self.path!r})"

    # --- writing ------------------------------------------------------------------
    def write(self, votes: Sequence[StoredVote] = (), dead_letters: Sequence[DeadLetter] = (),
              statuses: Sequence[TerminalStatus] = ()) -> WriteResult:
        """Commit a batch in one transaction; duplicates (device, seq) change nothing but the counter."""
        with self.lock:
            if self._reopen:
                self.conn = self._connect()         # raises StoreError while the store is still unwritable
                self._reopen = False
            try:
                self.conn.execute("BEGIN IMMEDIATE")
                try:
                    result = self._write(votes, dead_letters, statuses)
                    self.conn.execute("COMMIT")
                except BaseException:
                    if self.conn.in_transaction:
                        self.conn.execute("ROLLBACK")
                    raise
            except sqlite3.Error as exc:
                self._reopen_if_readonly(exc)
                raise StoreError(f"SQLite store {self.path}: write of {len(votes)} votes, "
                                 f"{len(dead_letters)} dead letters, {len(statuses)} statuses failed: {exc}") from exc
        return result

    def _conflict(self, vote: StoredVote) -> DeadLetter | None:
        """A seq_conflict dead letter if (device, seq) is stored with other content (base.seq_conflict_letter)."""
        row = self.conn.execute("SELECT rating, pressed_at FROM votes WHERE device = ? AND seq = ?",
                                (vote.device, vote.seq)).fetchone()
        return None if row is None else seq_conflict_letter(vote, row[0], row[1])

    def _write(self, votes, dead_letters, statuses) -> WriteResult:
        conn = self.conn
        inserted = duplicates = 0
        for vote in votes:
            time_us, received_us = to_us(vote.time), to_us(vote.received_at)
            excluded = int(vote.excluded)
            cur = conn.execute(
                "INSERT OR IGNORE INTO votes (device, seq, rating, time_us, received_us, pressed_at, clock_ok, flags, excluded)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (vote.device, vote.seq, vote.rating, time_us, received_us, vote.pressed_at,
                 int(vote.clock_ok), flags_text(vote.flags), excluded))
            if cur.rowcount == 0:
                conflict = self._conflict(vote)
                if conflict is None:
                    duplicates += 1
                else:
                    dead_letters = [*dead_letters, conflict]
                continue
            inserted += 1
            conn.execute(
                "INSERT INTO rollup (device, hour, rating, kept, excluded) VALUES (?, ?, ?, ?, ?)"
                " ON CONFLICT (hour, device, rating) DO UPDATE SET kept = kept + excluded.kept,"
                " excluded = rollup.excluded + excluded.excluded",
                (vote.device, hour_of(time_us), vote.rating, 1 - excluded, excluded))
            conn.execute(
                "INSERT INTO terminals (device, last_seen_us, last_vote_us, max_seq, vote_count)"
                " VALUES (?, ?, ?, ?, 1)"
                " ON CONFLICT (device) DO UPDATE SET"
                " last_seen_us = max(coalesce(last_seen_us, 0), excluded.last_seen_us),"
                " last_vote_us = max(coalesce(last_vote_us, 0), excluded.last_vote_us),"
                " max_seq = max(coalesce(max_seq, 0), excluded.max_seq),"
                " vote_count = vote_count + 1",
                (vote.device, received_us, time_us, vote.seq))
        if duplicates:
            conn.execute("INSERT INTO meta (key, value) VALUES ('duplicates', ?)"
                         " ON CONFLICT (key) DO UPDATE SET value = value + excluded.value", (duplicates,))
        for letter in dead_letters:
            conn.execute("INSERT INTO dead_letters (topic, payload, reason, detail, received_us) VALUES (?, ?, ?, ?, ?)",
                         (letter.topic, bytes(letter.payload), letter.reason, letter.detail, to_us(letter.received_at)))
        for status in statuses:
            self._write_status(status)
        heard = {(v.device, hour_of(to_us(v.received_at))) for v in votes}
        heard |= {(s.device, hour_of(to_us(s.last_seen))) for s in statuses if s.last_seen is not None}
        conn.executemany("INSERT OR IGNORE INTO heard_hours (device, hour) VALUES (?, ?)", sorted(heard))
        return WriteResult(inserted=inserted, duplicates=duplicates, dead_letters=len(dead_letters),
                           statuses=len(statuses))

    def _write_status(self, status: TerminalStatus) -> None:
        values = {name: getattr(status, name) for name in _STATUS_COLUMNS}
        for name in ("online", "clock_ok", "outbox_full"):
            if values[name] is not None:
                values[name] = int(values[name])
        values["last_seen_us"] = to_us(status.last_seen) if status.last_seen else None
        values["status_at_us"] = to_us(status.status_at) if status.status_at else None
        values["config_applied"] = json.dumps(status.config_applied, ensure_ascii=False) if status.config_applied else None
        names = list(values)
        updates = []
        for name in names:
            if name in ("last_seen_us", "status_at_us"):
                # A late status (e.g. a retained one) must not move these back in time.
                updates.append(f"{name} = CASE WHEN excluded.{name} IS NULL THEN {name}"
                               f" ELSE max(coalesce({name}, 0), excluded.{name}) END")
            else:
                updates.append(f"{name} = coalesce(excluded.{name}, {name})")
        self.conn.execute(
            f"INSERT INTO terminals (device, {', '.join(names)}) VALUES (?, {', '.join('?' * len(names))})"
            f" ON CONFLICT (device) DO UPDATE SET {', '.join(updates)}",
            (status.device, *values.values()))

    # --- reading ------------------------------------------------------------------
    def _query(self, sql: str, params=()) -> list[tuple]:
        with self.lock:
            try:
                return self.conn.execute(sql, params).fetchall()
            except sqlite3.Error as exc:
                raise StoreError(f"SQLite store {self.path}: query failed: {exc}") from exc

    @staticmethod
    def _device_filter(devices: Iterable[str] | None, column: str = "device") -> tuple[str, list]:
        if devices is None:
            return "", []
        devices = list(devices)
        if not devices:
            return " AND 0", []
        return f" AND {column} IN (SELECT value FROM json_each(?))", [json.dumps(devices)]

    def counts(self, start: datetime, end: datetime, bucket: str = "hour",
               devices: Iterable[str] | None = None) -> list[CountRow]:
        """Counts by terminal × bucket × rating; whole hours come from the roll-up, ragged edges from the votes."""
        if bucket not in BUCKETS:
            raise ValueError(f"bucket {bucket!r} must be one of {', '.join(BUCKETS)}")
        devices = None if devices is None else list(devices)
        start_us, end_us = to_us(start), to_us(end)
        if end_us <= start_us:
            return []
        first_hour = -(-start_us // 3_600_000_000) * 3600          # ceil to a whole hour
        last_hour = (end_us // 3_600_000_000) * 3600               # floor
        totals: dict[tuple[str, int, str], list[int]] = {}

        def add(device: str, hour: int, rating: str, kept: int, excluded: int) -> None:
            key = (device, hour if bucket == "hour" else day_of_hour(hour), rating)
            row = totals.setdefault(key, [0, 0])
            row[0] += kept
            row[1] += excluded

        where, params = self._device_filter(devices)
        if devices is not None and len(devices) <= _FEW_DEVICES:
            # A few terminals (e.g. the ones moved during a quarter): their own votes through the
            # (device, seq) index are far fewer rows than the roll-up of every terminal's hours.
            # "+time_us" keeps the planner off the time index.
            for row in self._query(
                    "SELECT device, time_us / 3600000000 * 3600 AS hour, rating, sum(1 - excluded), sum(excluded)"
                    " FROM votes WHERE +time_us >= ? AND +time_us < ?" + where + " GROUP BY device, hour, rating",
                    [start_us, end_us, *params]):
                add(*row)
            return self._count_rows(totals)
        if first_hour < last_hour:
            rows = self._query(
                "SELECT device, hour, rating, kept, excluded FROM rollup WHERE hour >= ? AND hour < ?" + where,
                [first_hour, last_hour, *params])
            edges = [(start_us, first_hour * 1_000_000), (last_hour * 1_000_000, end_us)]
        else:
            rows = []
            edges = [(start_us, end_us)]
        for row in rows:
            add(*row)
        for low, high in edges:
            if low >= high:
                continue
            for device, time_us, rating, excluded in self._query(
                    "SELECT device, time_us, rating, excluded FROM votes WHERE time_us >= ? AND time_us < ?" + where,
                    [low, high, *params]):
                add(device, hour_of(time_us), rating, 1 - excluded, excluded)
        return self._count_rows(totals)

    @staticmethod
    def _count_rows(totals: dict[tuple[str, int, str], list[int]]) -> list[CountRow]:
        return [CountRow(device=device, bucket=from_us(stamp * 1_000_000).astimezone(CHINA_TZ), rating=rating, count=kept, excluded=excl)
                for (device, stamp, rating), (kept, excl) in sorted(totals.items())]

    def totals(self, start: datetime, end: datetime,
               devices: Iterable[str] | None = None) -> list[tuple[str, str, int, int]]:
        """(device, rating, kept, excluded) summed over [start, end), one row per device and rating.

        The fast path for period figures (a quarter, the live map's period): whole China-time
        months come from ``rollup_month``, whole hours from ``rollup`` and the ragged edges
        from the votes, all summed in SQLite, so a quarter reads one row per terminal, month
        and rating however many votes it holds.
        """
        devices = None if devices is None else list(devices)
        start_us, end_us = to_us(start), to_us(end)
        if end_us <= start_us:
            return []
        where, params = self._device_filter(devices)
        parts: list[tuple[str, list]] = []

        def part(table: str, column: str, low: int, high: int) -> None:
            if low < high:
                parts.append((f"SELECT device, rating, kept, excluded FROM {table}"
                               f" WHERE {column} >= ? AND {column} < ?{where}", [low, high, *params]))

        first_hour = -(-start_us // 3_600_000_000) * 3600
        last_hour = (end_us // 3_600_000_000) * 3600
        if first_hour >= last_hour:
            edges = [(start_us, end_us)]
        else:
            edges = [(start_us, first_hour * 1_000_000), (last_hour * 1_000_000, end_us)]
            first_month, last_month = _next_month(first_hour), _month_of(last_hour)
            if not self.rollup_levels or first_month >= last_month:
                part("rollup", "hour", first_hour, last_hour)
            else:
                part("rollup", "hour", first_hour, first_month)
                part("rollup", "hour", last_month, last_hour)
                part("rollup_month", "month", first_month, last_month)
        for low, high in edges:
            if low < high:
                parts.append(("SELECT device, rating, 1 - excluded AS kept, excluded FROM votes"
                              f" WHERE time_us >= ? AND time_us < ?{where}", [low, high, *params]))
        sql = ("SELECT device, rating, sum(kept), sum(excluded) FROM ("
               + " UNION ALL ".join(p for p, _ in parts) + ") GROUP BY device, rating"
               " HAVING sum(kept) != 0 OR sum(excluded) != 0 ORDER BY device, rating")
        return self._query(sql, [value for _, values in parts for value in values])

    def data_version(self) -> int:
        """The newest stored vote's id: it changes whenever a vote is stored (counts may have changed)."""
        return self._query("SELECT coalesce(max(id), 0) FROM votes")[0][0]

    def feed(self, after: str | None = None, limit: int = 200,
             devices: Iterable[str] | None = None) -> list[FeedItem]:
        """Votes in storage order after cursor ``after`` (the votes table's id), at most ``limit``,
        of ``devices`` only when given."""
        columns = "id, device, seq, rating, time_us, received_us, flags"
        where, params = self._device_filter(devices)
        if after is None:
            rows = self._query(f"SELECT {columns} FROM votes WHERE 1{where} ORDER BY id DESC LIMIT ?", (*params, limit))
            rows.reverse()
        else:
            try:
                cursor = int(after)
            except ValueError:
                raise ValueError(f"feed cursor {after!r} is not one this store gave out") from None
            rows = self._query(f"SELECT {columns} FROM votes WHERE id > ?{where} ORDER BY id LIMIT ?",
                               (cursor, *params, limit))
        return [FeedItem(cursor=str(row[0]), device=row[1], seq=row[2], rating=row[3], time=from_us(row[4]),
                         received_at=from_us(row[5]), flags=parse_flags(row[6])) for row in rows]

    def votes(self, start: datetime, end: datetime, devices: Iterable[str] | None = None,
              ratings: Iterable[str] | None = None) -> Iterator[StoredVote]:
        """Raw votes with start <= time < end, ordered by time (then device, seq)."""
        where, params = self._device_filter(devices)
        if ratings is not None:
            where += " AND rating IN (SELECT value FROM json_each(?))"
            params.append(json.dumps(list(ratings)))
        rows = self._query(
            "SELECT device, seq, rating, time_us, received_us, pressed_at, clock_ok, flags FROM votes"
            " WHERE time_us >= ? AND time_us < ?" + where + " ORDER BY time_us, device, seq",
            [to_us(start), to_us(end), *params])
        for device, seq, rating, time_us, received_us, pressed_at, clock_ok, flags in rows:
            yield StoredVote(device=device, seq=seq, rating=rating, time=from_us(time_us),
                             received_at=from_us(received_us), pressed_at=pressed_at, clock_ok=bool(clock_ok),
                             flags=parse_flags(flags))

    def dead_letters(self, limit: int = 100, reason: str | None = None) -> list[DeadLetter]:
        """The most recent dead letters, newest first."""
        where, params = ("WHERE reason = ?", [reason]) if reason else ("", [])
        rows = self._query(f"SELECT topic, payload, reason, detail, received_us FROM dead_letters {where}"
                           " ORDER BY id DESC LIMIT ?", [*params, limit])
        return [DeadLetter(topic=t, payload=bytes(p), reason=r, detail=d, received_at=from_us(us))
                for t, p, r, d, us in rows]

    def dead_letter_counts(self) -> dict[str, int]:
        """Number of dead letters by reason."""
        return dict(self._query("SELECT reason, count(*) FROM dead_letters GROUP BY reason ORDER BY reason"))

    def terminals(self) -> list[TerminalStatus]:
        """Every terminal heard of (by status or vote), ordered by device id."""
        rows = self._query(
            "SELECT device, online, last_seen_us, status_at_us, firmware, boot_time, outbox_depth, reported_last_seq,"
            " repeats_ignored, poisoned, clock_ok, outbox_full, config_applied, last_vote_us, max_seq, vote_count"
            " FROM terminals ORDER BY device")
        result = []
        for (device, online, last_seen, status_at, firmware, boot_time, depth, reported, repeats, poisoned,
             clock_ok, full, applied, last_vote, max_seq, count) in rows:
            result.append(TerminalStatus(
                device=device, online=_bool(online), last_seen=from_us(last_seen), status_at=from_us(status_at),
                firmware=firmware, boot_time=boot_time, outbox_depth=depth, reported_last_seq=reported,
                repeats_ignored=repeats, poisoned=poisoned, clock_ok=_bool(clock_ok), outbox_full=_bool(full),
                config_applied=json.loads(applied) if applied else {}, last_vote_at=from_us(last_vote),
                max_seq=max_seq, vote_count=count, missing=(max_seq or 0) - count))
        return result

    def heard_hours(self, start: datetime, end: datetime, devices: Iterable[str] | None = None) -> list[tuple[str, datetime]]:
        """(device, hour start) of every hour in [start, end) in which a vote or status of the terminal was received."""
        sql = "SELECT device, hour FROM heard_hours WHERE hour >= ? AND hour < ?"
        args: list = [hour_of(to_us(start)), to_us(end) // 1_000_000]
        if devices is not None:
            devices = sorted(set(devices))
            if not devices:
                return []
            sql += f" AND device IN ({','.join('?' * len(devices))})"
            args += devices
        with self.lock:
            rows = self.conn.execute(sql + " ORDER BY device, hour", args).fetchall()
        return [(device, datetime.fromtimestamp(hour, timezone.utc)) for device, hour in rows]

    def gaps(self, device: str | None = None) -> list[Gap]:
        """Runs of missing seqs, computed only for terminals whose max_seq exceeds their vote count."""
        where, params = ("AND device = ?", [device]) if device else ("", [])
        rows = self._query(
            "WITH suspects AS (SELECT device FROM terminals WHERE max_seq > vote_count " + where + "),"
            " ordered AS (SELECT v.device, v.seq, lag(v.seq, 1, 0) OVER (PARTITION BY v.device ORDER BY v.seq) AS prev"
            " FROM votes v JOIN suspects s ON v.device = s.device)"
            " SELECT device, prev + 1, seq - 1 FROM ordered WHERE seq > prev + 1 ORDER BY device, seq", params)
        return [Gap(device=d, first=first, last=last) for d, first, last in rows]

    def stats(self) -> dict:
        """Totals: votes, excluded, duplicates, dead letters by reason, terminals, missing votes."""
        votes, excluded = self._query("SELECT coalesce(sum(kept + excluded), 0), coalesce(sum(excluded), 0) FROM rollup")[0]
        duplicates = self._query("SELECT value FROM meta WHERE key = 'duplicates'")
        terminals, missing = self._query(
            "SELECT count(*), coalesce(sum(coalesce(max_seq, 0) - vote_count), 0) FROM terminals")[0]
        return {"votes": votes, "excluded": excluded, "duplicates": duplicates[0][0] if duplicates else 0,
                "dead_letters": self.dead_letter_counts(), "terminals": terminals, "missing": missing}

    def close(self) -> None:
        """Close the connection."""
        with self.lock:
            self.conn.close()


def _ensure_rollup_levels(conn: sqlite3.Connection) -> bool:
    """Create the month roll-up and its triggers once, filled from the hourly roll-up.

    False when the file predates them and cannot be written (read-only): totals() then sums hours.
    """
    def present() -> bool:
        return conn.execute("SELECT count(*) FROM sqlite_master WHERE type = 'trigger'"
                            " AND name = 'rollup_to_rollup_month_del'").fetchone()[0] == 1
    if present():
        return True
    try:
        conn.execute("BEGIN IMMEDIATE")          # one process migrates; the others find it done
    except sqlite3.OperationalError as exc:
        if _is_readonly(exc):
            return False
        raise
    try:
        if not present():
            conn.execute("DROP TABLE IF EXISTS rollup_month")
            for statement in (ROLLUP_LEVELS + ROLLUP_BACKFILL + ROLLUP_TRIGGERS).split(";\n"):
                if statement.strip():
                    conn.execute(statement)
        conn.execute("COMMIT")
    except sqlite3.OperationalError as exc:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        if _is_readonly(exc):
            return False
        raise
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return True


def _is_readonly(exc: sqlite3.Error) -> bool:
    """True when ``exc`` is SQLITE_READONLY (any extended code): the file or its file system refuses writes."""
    return getattr(exc, "sqlite_errorcode", 0) & 0xFF == sqlite3.SQLITE_READONLY


def _bool(value: int | None) -> bool | None:
    return None if value is None else bool(value)

"""The terminal's on-disk outbox: every vote is committed here before it is confirmed.

One SQLite file holds the pending votes (in seq order), the seq counter, the count
of repeat presses, the poisoned votes the broker refused, and the last ``keep_sent``
votes the broker acknowledged with the time of their acknowledgement: a broker that
crashes loses what it acknowledged since it last saved its state, so after a lost
connection the publisher sends the recently acknowledged votes again
(:meth:`Outbox.requeue_sent`; the collector dedupes). The seq counter lives
in its own row, so seq keeps growing across restarts and is never reused, even
after every pending row was acknowledged and deleted. The outbox is bounded: when
it is full a new vote is refused (:class:`OutboxFull`); old votes are never dropped.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from manyi.exc import ManyiError
from manyi.protocol import Vote

SCHEMA = """
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS pending (
    seq INTEGER PRIMARY KEY,
    payload BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS sent (
    seq INTEGER PRIMARY KEY,
    payload BLOB NOT NULL,
    acked_at REAL NOT NULL          -- epoch seconds of the first acknowledgement
);
CREATE TABLE IF NOT EXISTS poisoned (
    seq INTEGER PRIMARY KEY,
    payload BLOB NOT NULL,
    reason_code INTEGER NOT NULL,
    reason TEXT NOT NULL,
    poisoned_at TEXT NOT NULL
);
INSERT OR IGNORE INTO counters (name, value) VALUES ('last_seq', 0), ('repeats', 0), ('refused', 0), ('clean_stop', 1);
"""


class OutboxFull(ManyiError, RuntimeError):
    """The outbox holds ``limit`` votes; the new vote was refused, nothing was dropped."""


@dataclass(frozen=True)
class PendingVote:
    """A vote waiting in the outbox: its seq and the exact bytes to publish."""

    seq: int
    payload: bytes


@dataclass(frozen=True)
class PoisonedVote:
    """A vote the broker refused, kept aside with the broker's reason code."""

    seq: int
    payload: bytes
    reason_code: int
    reason: str
    poisoned_at: str


class Outbox:
    """A bounded, durable FIFO of votes in one SQLite file; safe to share between threads."""

    def __init__(self, path: str | Path, device: str, *, limit: int = 100_000, synchronous: str = "FULL",
                 keep_sent: int = 1000):
        self.path = Path(path)
        self.device = device
        self.limit = limit
        self.keep_sent = keep_sent
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        # FULL: a committed vote survives a power cut. NORMAL in WAL mode survives a crash of the process.
        self._db.execute(f"PRAGMA synchronous={synchronous}")
        self._db.execute("PRAGMA busy_timeout=5000")
        self._db.executescript(SCHEMA)
        self._depth = self._db.execute("SELECT count(*) FROM pending").fetchone()[0]
        self._poisoned = self._db.execute("SELECT count(*) FROM poisoned").fetchone()[0]

    def close(self) -> None:
        """Close the database."""
        with self._lock:
            self._db.close()

    def _counter(self, name: str) -> int:
        return self._db.execute("SELECT value FROM counters WHERE name = ?", (name,)).fetchone()[0]

    def add(self, rating: str, pressed_at: str, clock_ok: bool) -> Vote:
        """Give the vote the next seq and commit it; raise OutboxFull when there is no room."""
        with self._lock:
            if self._depth >= self.limit:
                self._db.execute("UPDATE counters SET value = value + 1 WHERE name = 'refused'")
                raise OutboxFull(f"outbox {self.path} holds {self._depth} votes (limit {self.limit}); vote refused")
            self._db.execute("BEGIN IMMEDIATE")
            try:
                seq = self._counter("last_seq") + 1
                vote = Vote(device=self.device, seq=seq, rating=rating, pressed_at=pressed_at, clock_ok=clock_ok)
                self._db.execute("UPDATE counters SET value = ? WHERE name = 'last_seq'", (seq,))
                self._db.execute("INSERT INTO pending (seq, payload) VALUES (?, ?)", (seq, vote.to_json()))
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._depth += 1
            return vote

    def advance_seq(self, seq: int) -> int:
        """Make the next vote's seq at least ``seq + 1`` (e.g. after seeding a history); return last_seq."""
        with self._lock:
            self._db.execute("UPDATE counters SET value = max(value, ?) WHERE name = 'last_seq'", (seq,))
            return self._counter("last_seq")

    def count_repeat(self) -> int:
        """Count a press that was not a vote (during the lock-out); return the new total."""
        with self._lock:
            self._db.execute("UPDATE counters SET value = value + 1 WHERE name = 'repeats'")
            return self._counter("repeats")

    def pending(self, after: int = 0, limit: int = 100) -> list[PendingVote]:
        """Pending votes with seq > ``after``, oldest first."""
        with self._lock:
            rows = self._db.execute("SELECT seq, payload FROM pending WHERE seq > ? ORDER BY seq LIMIT ?",
                                    (after, limit)).fetchall()
        return [PendingVote(seq, bytes(payload)) for seq, payload in rows]

    def acknowledge(self, seq: int, at: float | None = None) -> bool:
        """Delete a vote the broker acknowledged; False when it was not pending (a duplicate ack)."""
        return bool(self.acknowledge_many([seq], at))

    def acknowledge_many(self, seqs, at: float | None = None) -> int:
        """Delete several acknowledged votes in one transaction; return how many were pending.

        Each stays in the ``sent`` table (acknowledged ``at``, epoch seconds, default now;
        a vote sent again keeps its first time) until ``keep_sent`` newer votes follow it.
        """
        seqs = list(seqs)
        if not seqs:
            return 0
        at = time.time() if at is None else at
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                deleted = 0
                for seq in seqs:
                    if self.keep_sent > 0:
                        self._db.execute("INSERT OR IGNORE INTO sent (seq, payload, acked_at) "
                                         "SELECT seq, payload, ? FROM pending WHERE seq = ?", (at, seq))
                    deleted += self._db.execute("DELETE FROM pending WHERE seq = ?", (seq,)).rowcount
                if self.keep_sent > 0:
                    self._db.execute("DELETE FROM sent WHERE seq <= (SELECT max(seq) FROM sent) - ?",
                                     (self.keep_sent,))
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._depth -= deleted
            return deleted

    def begin_run(self) -> bool:
        """Mark this outbox as in use; return whether the previous run stopped cleanly.

        A run that ends in a power cut or kill -9 never calls :meth:`mark_clean_stop`, so the
        next run knows it cannot tell what happened to the broker meanwhile.
        """
        with self._lock:
            clean = bool(self._counter("clean_stop"))
            self._db.execute("UPDATE counters SET value = 0 WHERE name = 'clean_stop'")
            return clean

    def mark_clean_stop(self) -> None:
        """Record that this run stopped cleanly (after the publisher disconnected)."""
        with self._lock:
            self._db.execute("UPDATE counters SET value = 1 WHERE name = 'clean_stop'")

    def last_acked_at(self) -> float | None:
        """When the broker last acknowledged a vote (epoch seconds), from the ``sent`` table."""
        with self._lock:
            return self._db.execute("SELECT max(acked_at) FROM sent").fetchone()[0]

    def requeue_sent(self, since: float) -> list[int]:
        """Put the votes acknowledged at or after ``since`` (epoch seconds) back into pending; return their seqs.

        For after a lost connection: the broker may have crashed before saving them.
        """
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                seqs = [row[0] for row in self._db.execute(
                    "SELECT seq FROM sent WHERE acked_at >= ? AND seq NOT IN (SELECT seq FROM pending) "
                    "AND seq NOT IN (SELECT seq FROM poisoned) ORDER BY seq", (since,))]
                self._db.executemany("INSERT INTO pending (seq, payload) SELECT seq, payload FROM sent WHERE seq = ?",
                                     [(seq,) for seq in seqs])
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._depth += len(seqs)
            return seqs

    def poison(self, seq: int, reason_code: int, reason: str, at: str) -> bool:
        """Move a refused vote from pending to poisoned, keeping it with the reason; False if not pending."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                row = self._db.execute("SELECT payload FROM pending WHERE seq = ?", (seq,)).fetchone()
                if row is None:
                    self._db.execute("ROLLBACK")
                    return False
                self._db.execute("INSERT OR REPLACE INTO poisoned (seq, payload, reason_code, reason, poisoned_at) "
                                 "VALUES (?, ?, ?, ?, ?)", (seq, row[0], reason_code, reason, at))
                self._db.execute("DELETE FROM pending WHERE seq = ?", (seq,))
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._depth -= 1
            self._poisoned += 1
            return True

    def requeue_poisoned(self) -> int:
        """Put every poisoned vote back into pending (after the ACL was fixed); return how many."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            moved = self._db.execute("INSERT OR IGNORE INTO pending (seq, payload) "
                                     "SELECT seq, payload FROM poisoned").rowcount
            self._db.execute("DELETE FROM poisoned")
            self._db.execute("COMMIT")
            self._depth += moved
            self._poisoned = 0
            return moved

    def poisoned(self) -> list[PoisonedVote]:
        """The votes the broker refused, by seq."""
        with self._lock:
            rows = self._db.execute("SELECT seq, payload, reason_code, reason, poisoned_at FROM poisoned "
                                    "ORDER BY seq").fetchall()
        return [PoisonedVote(seq, bytes(p), code, reason, at) for seq, p, code, reason, at in rows]

    @property
    def depth(self) -> int:
        """Number of votes waiting to be acknowledged."""
        return self._depth

    @property
    def full(self) -> bool:
        """True when a new vote would be refused."""
        return self._depth >= self.limit

    @property
    def last_seq(self) -> int:
        """The seq of the last vote recorded (0 before the first)."""
        with self._lock:
            return self._counter("last_seq")

    @property
    def repeats(self) -> int:
        """Presses counted as repeats since the outbox was created."""
        with self._lock:
            return self._counter("repeats")

    @property
    def refused(self) -> int:
        """Votes refused because the outbox was full."""
        with self._lock:
            return self._counter("refused")

    @property
    def poisoned_count(self) -> int:
        """Number of poisoned votes kept aside."""
        return self._poisoned

"""The vote store interface: the one contract between the collector and the analytics.

The collector writes batches (votes, dead letters, terminal statuses) in one
transaction each, idempotently keyed by (device, seq), and acknowledges MQTT
messages only after :meth:`VoteStore.write` returned. The analytics and the control
center read aggregated counts, the live feed, dead letters, terminal status and seq
gaps through the same object, whatever the backend (SQLite, InfluxDB 2).

All datetimes crossing this interface are timezone-aware. Day buckets are calendar
days in China time (UTC+8); hour buckets are clock hours.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Iterable, Iterator, Sequence

from manyi.protocol import Vote, vote_topic

# Vote flags. A flag in MISUSE_FLAGS excludes the vote from scores (it is still stored and counted).
FLAG_CLOCK_REPLACED = "clock_replaced"   # pressed_at was implausible; received_at is used as the vote time
FLAG_BURST = "burst"                     # part of a burst of presses at one terminal (suspected misuse)
FLAG_TEST = "test"                       # a test vote (e.g. from installation)
MISUSE_FLAGS = frozenset({FLAG_BURST, FLAG_TEST})

BUCKETS = ("hour", "day")

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


# Encoding shared by the backends: instants as epoch microseconds, flags as sorted comma-joined text.
def to_us(moment: datetime) -> int:
    """Microseconds since the epoch of an aware datetime (naive means UTC)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    delta = moment - _EPOCH
    return (delta.days * 86400 + delta.seconds) * 1_000_000 + delta.microseconds


def from_us(value: int | None) -> datetime | None:
    """The aware UTC datetime of epoch microseconds (None stays None)."""
    return None if value is None else _EPOCH + timedelta(microseconds=int(value))


def flags_text(flags: Iterable[str]) -> str:
    """Flags as stored: sorted and comma-joined ("" for none)."""
    return ",".join(sorted(flags))


def parse_flags(text: str | None) -> frozenset[str]:
    """The inverse of :func:`flags_text` (None or "" is no flag)."""
    return frozenset(text.split(",")) if text else frozenset()


@dataclass(frozen=True)
class StoredVote:
    """An accepted vote as the store keeps it.

    ``time`` is the instant the vote counts at: the terminal's ``pressed_at`` when it is
    plausible, otherwise the receipt time (and FLAG_CLOCK_REPLACED is set).
    ``pressed_at`` keeps the terminal's own text as sent.
    """

    device: str
    seq: int
    rating: str
    time: datetime
    received_at: datetime
    pressed_at: str
    clock_ok: bool
    flags: frozenset[str] = frozenset()

    @property
    def excluded(self) -> bool:
        """True when a misuse flag keeps this vote out of the scores."""
        return bool(self.flags & MISUSE_FLAGS)


@dataclass(frozen=True)
class DeadLetter:
    """A message the collector rejected, kept with its raw bytes and the reason."""

    topic: str
    payload: bytes
    reason: str
    detail: str
    received_at: datetime


@dataclass(frozen=True)
class TerminalStatus:
    """What the center knows of one terminal, from its status messages and its votes."""

    device: str
    online: bool | None = None
    last_seen: datetime | None = None          # last status or vote received
    status_at: datetime | None = None          # when the last status message arrived
    firmware: str | None = None
    boot_time: str | None = None
    outbox_depth: int | None = None
    reported_last_seq: int | None = None       # last seq the terminal says it recorded
    repeats_ignored: int | None = None
    poisoned: int | None = None
    clock_ok: bool | None = None
    outbox_full: bool | None = None
    config_applied: dict = field(default_factory=dict)
    # Derived from stored votes:
    last_vote_at: datetime | None = None
    max_seq: int | None = None                 # highest seq stored
    vote_count: int = 0
    missing: int = 0                           # seqs below max_seq never received


@dataclass(frozen=True)
class WriteResult:
    """What one :meth:`VoteStore.write` did."""

    inserted: int = 0
    duplicates: int = 0
    dead_letters: int = 0
    statuses: int = 0


@dataclass(frozen=True)
class CountRow:
    """Votes of one terminal, one time bucket and one rating."""

    device: str
    bucket: datetime
    rating: str
    count: int        # votes that count (not excluded)
    excluded: int = 0  # votes flagged as misuse


@dataclass(frozen=True)
class FeedItem:
    """One accepted vote in the live feed, with an opaque cursor to resume after it."""

    cursor: str
    device: str
    seq: int
    rating: str
    time: datetime
    received_at: datetime
    flags: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Gap:
    """A run of seqs a terminal used that the center never received: first..last inclusive."""

    device: str
    first: int
    last: int

    @property
    def size(self) -> int:
        """Number of missing votes in the run."""
        return self.last - self.first + 1


def seq_conflict_letter(vote: StoredVote, stored_rating: str, stored_pressed_at: str) -> DeadLetter | None:
    """The rule of every store for a vote whose (device, seq) is stored already.

    A true duplicate (a redelivery, a replay, the terminal's resend) has the same rating and
    press time: None, it is counted as a duplicate. Other content under a stored key means the
    terminal started numbering again (its outbox was lost, e.g. a replaced SD card): the vote is
    kept as a dead letter ``seq_conflict``, never dropped and never counted as a copy.
    """
    if (stored_rating, stored_pressed_at) == (vote.rating, vote.pressed_at):
        return None
    payload = Vote(device=vote.device, seq=vote.seq, rating=vote.rating, pressed_at=vote.pressed_at,
                   clock_ok=vote.clock_ok).to_json()
    return DeadLetter(vote_topic(vote.device), payload, "seq_conflict",
                      f"seq {vote.seq} of {vote.device} is already stored as {stored_rating} pressed at "
                      f"{stored_pressed_at}; this vote ({vote.rating}, pressed at {vote.pressed_at}) differs: the "
                      f"terminal numbers from an old seq again (lost or replaced outbox?). Set its seq past the "
                      f"stored maximum.", vote.received_at)


class VoteStore(abc.ABC):
    """Where accepted votes, dead letters and terminal status live."""

    url: str

    # --- writing (the collector) -------------------------------------------------
    @abc.abstractmethod
    def write(self, votes: Sequence[StoredVote] = (), dead_letters: Sequence[DeadLetter] = (),
              statuses: Sequence[TerminalStatus] = ()) -> WriteResult:
        """Commit a batch atomically and idempotently; raise StoreError when it cannot.

        A vote whose (device, seq) is already stored is counted as a duplicate and
        changes nothing. A status updates the terminal's record (fields that are None
        leave the stored value as it is).
        """

    # --- reading (analytics, control center, ``manyi stats``) --------------------
    @abc.abstractmethod
    def counts(self, start: datetime, end: datetime, bucket: str = "hour",
               devices: Iterable[str] | None = None) -> list[CountRow]:
        """Vote counts by terminal × bucket × rating for votes with start <= time < end."""

    @abc.abstractmethod
    def feed(self, after: str | None = None, limit: int = 200,
             devices: Iterable[str] | None = None) -> list[FeedItem]:
        """Accepted votes in the order they were stored, after cursor ``after``, of ``devices``
        only when given (a county user's ticker reads only its county's terminals).

        ``after=None`` returns the latest ``limit`` votes (oldest first); the control
        center polls with the cursor of the last item it has to get new votes within 1 s.
        """

    @abc.abstractmethod
    def votes(self, start: datetime, end: datetime, devices: Iterable[str] | None = None,
              ratings: Iterable[str] | None = None) -> Iterator[StoredVote]:
        """Raw votes in a time range, ordered by time; for case creation and inspections, not for scores."""

    @abc.abstractmethod
    def dead_letters(self, limit: int = 100, reason: str | None = None) -> list[DeadLetter]:
        """The most recent dead letters, newest first."""

    @abc.abstractmethod
    def dead_letter_counts(self) -> dict[str, int]:
        """Number of dead letters by reason."""

    @abc.abstractmethod
    def terminals(self) -> list[TerminalStatus]:
        """Every terminal the center has heard of, with status and vote-derived fields."""

    @abc.abstractmethod
    def heard_hours(self, start: datetime, end: datetime, devices: Iterable[str] | None = None) -> list[tuple[str, datetime]]:
        """(device, UTC hour start) of every hour in [start, end) in which the center received a vote or a
        status message of the terminal: what terminal availability is measured from."""

    @abc.abstractmethod
    def gaps(self, device: str | None = None) -> list[Gap]:
        """Runs of missing seqs per terminal (below the highest stored seq)."""

    @abc.abstractmethod
    def stats(self) -> dict:
        """Totals for operators: {"votes": n, "duplicates": n, "dead_letters": {reason: n}, "terminals": n, "missing": n}."""

    def close(self) -> None:
        """Release connections."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

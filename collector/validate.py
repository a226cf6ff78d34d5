"""Pure validation of incoming MQTT messages: vote → StoredVote, status → TerminalStatus,
anything else → DeadLetter with a reason code; and burst (misuse) detection.

No I/O here: the service hands in topic, payload, receipt time and the recent history
of a terminal, and gets back what to store.
"""

from __future__ import annotations

import hashlib
import json
import re
from bisect import bisect_left, bisect_right, insort
from collections import Counter, OrderedDict
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Iterable

from manyi import protocol
from manyi.exc import ProtocolError

from .stores.base import FLAG_BURST, FLAG_CLOCK_REPLACED, DeadLetter, StoredVote, TerminalStatus

VOTES_PREFIX = f"{protocol.TOPIC_ROOT}/votes/"
STATUS_PREFIX = f"{protocol.TOPIC_ROOT}/status/"

# Hostile input that parses as valid JSON must still be storable, or it would fail the whole
# batch's write again and again and block the queue behind it (a poison message):
MAX_DEPTH = 16                    # JSON nesting; ours is 2, and CPython's parser hits RecursionError near 1000
MAX_INT = 2 ** 63 - 1             # SQLite INTEGER (and InfluxDB int) range; Python ints are unbounded
MAX_SEQ = 2 ** 40                 # exclusive: a vote every 3 ms for 100 years; keeps seq-gap sums far below MAX_INT
MIN_INT = -2 ** 63
DEAD_LETTER_KEEP = 256            # bytes of a dead letter's payload kept; the rest is summarised by size and hash


def _clean(text: str) -> str:
    """``text`` made encodable as UTF-8 (a lone surrogate becomes a visible \\udxxx escape)."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def dead_letter(topic: str, payload: bytes, reason: str, detail: str, received_at: datetime) -> DeadLetter:
    """A DeadLetter keeping the first DEAD_LETTER_KEEP bytes of the payload; a longer payload is
    named in the detail by its size and SHA-256, so a terminal sending 8 KiB of junk costs
    ~0.5 KiB of store per letter (and :class:`DeadLetterLimiter` caps how many letters)."""
    payload = bytes(payload)
    if len(payload) > DEAD_LETTER_KEEP:
        detail = (f"{detail} [payload {len(payload)} bytes, sha256 {hashlib.sha256(payload).hexdigest()}; "
                  f"first {DEAD_LETTER_KEEP} kept]")
        payload = payload[:DEAD_LETTER_KEEP]
    return DeadLetter(topic=_clean(topic[:256]), payload=payload, reason=reason, detail=_clean(detail[:2000]),
                      received_at=received_at)


def json_depth(payload: bytes) -> int:
    """The deepest nesting of arrays and objects in ``payload``, counted without parsing it.

    Brackets inside JSON strings are skipped. Works on raw bytes: the ASCII bytes it looks
    at never occur inside a multi-byte UTF-8 sequence.
    """
    depth = deepest = 0
    in_string = escaped = False
    for byte in payload:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:          # backslash
                escaped = True
            elif byte == 0x22:          # closing quote
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in (0x5B, 0x7B):      # [ {
            depth += 1
            deepest = max(deepest, depth)
        elif byte in (0x5D, 0x7D):      # ] }
            depth -= 1
    return deepest


def _unstorable(values) -> str | None:
    """Why one of ``values`` (ints, strings, JSON-like objects) cannot be stored, or None when all can."""
    for name, value in values:
        if isinstance(value, bool) or value is None:
            continue
        if isinstance(value, int):
            if not MIN_INT <= value <= MAX_INT:
                return f"field {name!r} is out of the 64-bit integer range"
        elif isinstance(value, str):
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                return f"field {name!r} holds a lone surrogate (not encodable as UTF-8)"
        elif isinstance(value, dict):
            try:
                json.dumps(value, ensure_ascii=False).encode("utf-8")
            except (UnicodeEncodeError, ValueError, RecursionError) as exc:
                return f"field {name!r} cannot be stored as JSON: {type(exc).__name__}"
    return None


def validate_vote(topic: str, payload: bytes, received_at: datetime) -> StoredVote | DeadLetter:
    """A StoredVote for a valid v1 vote (clock replaced by ``received_at`` when implausible), else a DeadLetter."""
    try:
        vote = protocol.parse_vote(topic, payload)
    except ProtocolError as exc:
        return dead_letter(topic, payload, exc.reason, exc.detail, received_at)
    if vote.seq >= MAX_SEQ:
        return dead_letter(topic, payload, "bad_seq", f"seq {vote.seq} is not below {MAX_SEQ}", received_at)
    problem = _unstorable([("pressed_at", vote.pressed_at)])
    if problem:
        return dead_letter(topic, payload, "bad_field", problem, received_at)
    try:
        plausible = protocol.plausible_time(vote, received_at)
    except (OverflowError, ValueError) as exc:   # e.g. year 1 at +23:59 cannot be compared in UTC
        return dead_letter(topic, payload, "bad_timestamp", f"pressed_at {vote.pressed_at!r}: {exc}", received_at)
    if plausible:
        return StoredVote(device=vote.device, seq=vote.seq, rating=vote.rating, time=vote.pressed_datetime(),
                          received_at=received_at, pressed_at=vote.pressed_at, clock_ok=vote.clock_ok)
    return StoredVote(device=vote.device, seq=vote.seq, rating=vote.rating, time=received_at,
                      received_at=received_at, pressed_at=vote.pressed_at, clock_ok=vote.clock_ok,
                      flags=frozenset({FLAG_CLOCK_REPLACED}))


def validate_status(topic: str, payload: bytes, received_at: datetime, retained: bool = False
                    ) -> TerminalStatus | DeadLetter:
    """A TerminalStatus for a valid status message, else a DeadLetter.

    A retained status is an old message replayed by the broker on subscribe: it does
    not prove the terminal is alive now, so last_seen/status_at come from its own
    ``sent_at`` (when that parses) rather than from the receipt time.
    """
    try:
        status = protocol.parse_status(topic, payload)
    except ProtocolError as exc:
        return dead_letter(topic, payload, exc.reason, exc.detail, received_at)
    problem = _unstorable([(name, getattr(status, name)) for name in (
        "outbox_depth", "last_seq", "repeats_ignored", "poisoned", "firmware", "boot_time", "sent_at",
        "config_applied")])
    if problem:
        return dead_letter(topic, payload, "bad_field", problem, received_at)
    seen: datetime | None = received_at
    if retained:
        seen = None
        if status.sent_at:
            try:
                sent = protocol.parse_timestamp(status.sent_at)
                if protocol.EARLIEST_PLAUSIBLE <= sent <= received_at + protocol.MAX_FUTURE_SKEW:
                    seen = sent
            except (ValueError, OverflowError):
                pass
    return TerminalStatus(
        device=status.device, online=status.online, last_seen=seen, status_at=seen, firmware=status.firmware,
        boot_time=status.boot_time, outbox_depth=status.outbox_depth, reported_last_seq=status.last_seq,
        repeats_ignored=status.repeats_ignored, poisoned=status.poisoned, clock_ok=status.clock_ok,
        outbox_full=status.outbox_full, config_applied=dict(status.config_applied))


def validate_message(topic: str, payload: bytes, received_at: datetime, retained: bool = False
                     ) -> StoredVote | TerminalStatus | DeadLetter:
    """Dispatch on the topic; never raises (an unexpected error becomes a dead letter ``internal``).

    Whatever comes back can be written by the store: a payload that would make the write
    fail (a 2**80 seq, a lone surrogate, nesting deep enough to exhaust the parser's
    recursion) is a dead letter here, not a poison message that blocks the queue.
    """
    try:
        if (topic.startswith((VOTES_PREFIX, STATUS_PREFIX)) and len(payload) <= protocol.MAX_PAYLOAD_BYTES
                and payload.count(b"[") + payload.count(b"{") > MAX_DEPTH and json_depth(payload) > MAX_DEPTH):
            return dead_letter(topic, payload, "too_deep", f"JSON nesting is deeper than {MAX_DEPTH} levels",
                               received_at)
        if topic.startswith(VOTES_PREFIX):
            return validate_vote(topic, payload, received_at)
        if topic.startswith(STATUS_PREFIX):
            if not payload:
                return dead_letter(topic, payload, "empty", "empty status payload (a cleared retained message)",
                                   received_at)
            return validate_status(topic, payload, received_at, retained)
        return dead_letter(topic, payload, "bad_topic", f"topic {topic!r} is neither votes nor status", received_at)
    except Exception as exc:  # one bad message must never kill the loop
        return dead_letter(topic, payload, "internal", f"{type(exc).__name__}: {exc}", received_at)


@dataclass(frozen=True)
class BurstRule:
    """Misuse: more than ``max_votes`` votes of one rating at one terminal within ``window_seconds``."""

    max_votes: int = 5
    window_seconds: float = 30.0


def is_burst(vote: StoredVote, history: Iterable[tuple[datetime, str]], rule: BurstRule) -> bool:
    """True when ``vote`` plus the same-rating votes of ``history`` in (time - window, time] exceed the rule.

    ``history`` is the terminal's recent (time, rating) pairs, not including ``vote``.
    Votes whose clock was replaced are never judged: their time is the receipt time,
    and a backlog delivered at once would look like a burst.
    """
    if FLAG_CLOCK_REPLACED in vote.flags or rule.max_votes <= 0:
        return False
    low = vote.time - timedelta(seconds=rule.window_seconds)
    same = sum(1 for moment, rating in history if rating == vote.rating and low < moment <= vote.time)
    return same + 1 > rule.max_votes


class BurstTracker:
    """The recent votes of each terminal (by seq, so redeliveries count once), flagging bursts.

    Gives the same answer as :func:`is_burst` over the remembered history (the plain
    definition, checked by a property test), with the times kept sorted per rating so a
    vote costs two bisects instead of a scan.
    """

    def __init__(self, rule: BurstRule, keep: int = 64):
        self.rule = rule
        self.keep = keep
        self._recent: dict[str, OrderedDict[int, tuple[datetime, str]]] = {}
        self._times: dict[str, dict[str, list[datetime]]] = {}

    def flag(self, vote: StoredVote) -> StoredVote:
        """The vote, with FLAG_BURST added when it completes a burst; remembers it either way."""
        recent = self._recent.setdefault(vote.device, OrderedDict())
        times = self._times.setdefault(vote.device, {})
        old = recent.get(vote.seq)
        burst = False
        if FLAG_CLOCK_REPLACED not in vote.flags and self.rule.max_votes > 0:
            t = vote.time
            low = t - timedelta(seconds=self.rule.window_seconds)
            same = times.get(vote.rating, ())
            n = bisect_right(same, t) - bisect_right(same, low)
            if old is not None and old[1] == vote.rating and low < old[0] <= t:
                n -= 1
            burst = n + 1 > self.rule.max_votes
            if old != (t, vote.rating):
                if old is not None:
                    lst = times[old[1]]
                    del lst[bisect_left(lst, old[0])]
                recent[vote.seq] = (t, vote.rating)
                insort(times.setdefault(vote.rating, []), t)
                while len(recent) > self.keep:
                    _, (gone, rating) = recent.popitem(last=False)
                    lst = times[rating]
                    del lst[bisect_left(lst, gone)]
        if burst:
            return StoredVote(device=vote.device, seq=vote.seq, rating=vote.rating, time=vote.time,
                              received_at=vote.received_at, pressed_at=vote.pressed_at, clock_ok=vote.clock_ok,
                              flags=vote.flags | {FLAG_BURST})
        return vote


_SHA256_IN_DETAIL = re.compile(r"sha256 ([0-9a-f]{64})")


def _source(topic: str) -> str:
    """Whom a message on ``topic`` claims to come from: its last level (the account's device id
    under the production ACL), bounded so that a hostile topic cannot make the key huge."""
    return topic.rsplit("/", 1)[-1][:64]


class DeadLetterLimiter:
    """Keeps dead letters bounded per source: what is stored, and what is only counted.

    Per source (the topic's device) and per ``window`` seconds at most ``per_window``
    letters are stored; further ones, and exact repeats of a letter already stored in the
    window, are counted instead. A retained message that is a dead letter is stored once,
    also across restarts (:meth:`remember` at start-up): the broker replays it on every
    reconnect. What was counted comes back from :meth:`summaries` as one ``suppressed``
    dead letter per source, at most once per ``summary_every`` seconds, so nothing is
    dropped without a trace. Pure: the caller passes the times.
    """

    def __init__(self, per_window: int = 50, window: float = 3600.0, summary_every: float = 60.0,
                 remember: int = 10_000):
        self.per_window, self.window, self.summary_every = per_window, window, summary_every
        self.remember_limit = remember
        self._stored: dict[str, tuple[float, int]] = {}            # source -> (window start, stored in it)
        self._seen: OrderedDict[tuple[str, str], float] = OrderedDict()   # (source, sha256) -> when stored
        self._retained: OrderedDict[tuple[str, str], None] = OrderedDict()
        self._pending: dict[str, Counter] = {}                     # source -> reason -> suppressed count
        self._last_summary = 0.0
        self.suppressed = 0

    def admit(self, letter: DeadLetter, raw: bytes, now: float, retained: bool = False) -> bool:
        """True: store ``letter``; False: it was counted (see :meth:`summaries`)."""
        source = _source(letter.topic)
        digest = hashlib.sha256(raw).hexdigest()
        key = (source, digest)
        if retained and key in self._retained:
            return self._count(source, letter.reason)
        seen = self._seen.get(key)
        if seen is not None and now - seen < self.window:
            return self._count(source, letter.reason)
        start, stored = self._stored.get(source, (now, 0))
        if now - start >= self.window:
            start, stored = now, 0
        if stored >= self.per_window:
            self._stored[source] = (start, stored)
            return self._count(source, letter.reason)
        self._stored[source] = (start, stored + 1)
        self._seen[key] = now
        self._seen.move_to_end(key)
        if retained:
            self._retained[key] = None
        for table in (self._seen, self._retained):
            while len(table) > self.remember_limit:
                table.popitem(last=False)
        if len(self._stored) > self.remember_limit:
            for old in [s for s, (t, _) in self._stored.items() if now - t >= self.window]:
                del self._stored[old]
        return True

    def remember(self, letters) -> None:
        """Seed the replay check with dead letters already stored (read at start-up): a retained
        message the broker replays to a restarted collector is then counted, not stored again."""
        for letter in letters:
            match = _SHA256_IN_DETAIL.search(letter.detail or "")
            digest = match.group(1) if match else hashlib.sha256(letter.payload).hexdigest()
            self._retained[(_source(letter.topic), digest)] = None
        while len(self._retained) > self.remember_limit:
            self._retained.popitem(last=False)

    def count(self, source: str, reason: str, n: int = 1) -> None:
        """Count ``n`` messages that were dropped before validation (e.g. a QoS 0 flood)."""
        self._pending.setdefault(source, Counter())[reason] += n
        self.suppressed += n

    def _count(self, source: str, reason: str) -> bool:
        self._pending.setdefault(source, Counter())[reason] += 1
        self.suppressed += 1
        return False

    def summaries(self, now: float, received_at: datetime, force: bool = False) -> list[DeadLetter]:
        """One ``suppressed`` dead letter per source with counted messages, at most every ``summary_every`` s."""
        if not self._pending or (not force and now - self._last_summary < self.summary_every):
            return []
        self._last_summary = now
        letters = []
        for source, reasons in sorted(self._pending.items()):
            total = sum(reasons.values())
            detail = (f"{total} more messages from {source!r} counted, not stored (limit {self.per_window} dead "
                      f"letters per source per {self.window:.0f} s, repeats and replayed retained messages): "
                      + ", ".join(f"{reason} {n}" for reason, n in reasons.most_common()))
            letters.append(DeadLetter(topic=f"{protocol.TOPIC_ROOT}/suppressed/{source}", payload=b"",
                                      reason="suppressed", detail=_clean(detail), received_at=received_at))
        self._pending.clear()
        return letters

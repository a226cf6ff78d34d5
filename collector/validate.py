"""Pure validation of incoming MQTT messages: vote → StoredVote, status → TerminalStatus,
anything else → DeadLetter with a reason code; and burst (misuse) detection.

No I/O here: the service hands in topic, payload, receipt time and the recent history
of a terminal, and gets back what to store.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Iterable

from manyi import protocol
from manyi.exc import ProtocolError

from .stores.base import FLAG_BURST, FLAG_CLOCK_REPLACED, DeadLetter, StoredVote, TerminalStatus

VOTES_PREFIX = f"{protocol.TOPIC_ROOT}/votes/"
STATUS_PREFIX = f"{protocol.TOPIC_ROOT}/status/"


def dead_letter(topic: str, payload: bytes, reason: str, detail: str, received_at: datetime) -> DeadLetter:
    """A DeadLetter keeping the raw bytes (truncated to 64 KiB so a flood cannot bloat the store)."""
    return DeadLetter(topic=topic, payload=bytes(payload[:65536]), reason=reason, detail=detail,
                      received_at=received_at)


def validate_vote(topic: str, payload: bytes, received_at: datetime) -> StoredVote | DeadLetter:
    """A StoredVote for a valid v1 vote (clock replaced by ``received_at`` when implausible), else a DeadLetter."""
    try:
        vote = protocol.parse_vote(topic, payload)
    except ProtocolError as exc:
        return dead_letter(topic, payload, exc.reason, exc.detail, received_at)
    if protocol.plausible_time(vote, received_at):
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
    seen: datetime | None = received_at
    if retained:
        seen = None
        if status.sent_at:
            try:
                sent = protocol.parse_timestamp(status.sent_at)
                if protocol.EARLIEST_PLAUSIBLE <= sent <= received_at + protocol.MAX_FUTURE_SKEW:
                    seen = sent
            except ValueError:
                pass
    return TerminalStatus(
        device=status.device, online=status.online, last_seen=seen, status_at=seen, firmware=status.firmware,
        boot_time=status.boot_time, outbox_depth=status.outbox_depth, reported_last_seq=status.last_seq,
        repeats_ignored=status.repeats_ignored, poisoned=status.poisoned, clock_ok=status.clock_ok,
        outbox_full=status.outbox_full, config_applied=dict(status.config_applied))


def validate_message(topic: str, payload: bytes, received_at: datetime, retained: bool = False
                     ) -> StoredVote | TerminalStatus | DeadLetter:
    """Dispatch on the topic; never raises (an unexpected error becomes a dead letter ``internal``)."""
    try:
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
    """The recent votes of each terminal (by seq, so redeliveries count once), for :func:`is_burst`."""

    def __init__(self, rule: BurstRule, keep: int = 64):
        self.rule = rule
        self.keep = keep
        self._recent: dict[str, OrderedDict[int, tuple[datetime, str]]] = {}

    def flag(self, vote: StoredVote) -> StoredVote:
        """The vote, with FLAG_BURST added when it completes a burst; remembers it either way."""
        recent = self._recent.setdefault(vote.device, OrderedDict())
        if vote.seq in recent:
            # A redelivery: judge it as before so the duplicate carries the same flags.
            history = [v for seq, v in recent.items() if seq != vote.seq]
        else:
            history = list(recent.values())
        if FLAG_CLOCK_REPLACED not in vote.flags:
            recent[vote.seq] = (vote.time, vote.rating)
            while len(recent) > self.keep:
                recent.popitem(last=False)
        if is_burst(vote, history, self.rule):
            return StoredVote(device=vote.device, seq=vote.seq, rating=vote.rating, time=vote.time,
                              received_at=vote.received_at, pressed_at=vote.pressed_at, clock_ok=vote.clock_ok,
                              flags=vote.flags | {FLAG_BURST})
        return vote

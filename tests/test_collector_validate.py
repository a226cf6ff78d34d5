"""Pure validation: payloads to StoredVote / TerminalStatus / DeadLetter, and burst detection."""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta, timezone

from collector.stores import FLAG_BURST, FLAG_CLOCK_REPLACED, DeadLetter, StoredVote, TerminalStatus
from collector.validate import DEAD_LETTER_KEEP, BurstRule, BurstTracker, is_burst, validate_message
from manyi import protocol

NOW = datetime(2026, 11, 23, 1, 30, tzinfo=timezone.utc)
DEV = "hz-371702001-w01"
TOPIC = protocol.vote_topic(DEV)


def payload(**changes) -> bytes:
    data = {"v": 1, "device": DEV, "seq": 3, "rating": "basic",
            "pressed_at": "2026-11-23T09:29:58.500+08:00", "clock_ok": True, **changes}
    return protocol.json.dumps(data).encode()


def test_valid_vote_keeps_the_terminal_time():
    got = validate_message(TOPIC, payload(), NOW)
    assert isinstance(got, StoredVote)
    assert got.time == datetime(2026, 11, 23, 1, 29, 58, 500000, tzinfo=timezone.utc)
    assert got.received_at == NOW and got.flags == frozenset() and got.seq == 3


def test_implausible_times_are_replaced_never_dropped():
    cases = [payload(clock_ok=False), payload(pressed_at="2023-12-31T23:59:59.000+08:00"),
             payload(pressed_at="2026-11-23T09:36:00.000+08:00")]
    for raw in cases:
        got = validate_message(TOPIC, raw, NOW)
        assert isinstance(got, StoredVote) and got.time == NOW and FLAG_CLOCK_REPLACED in got.flags
    ok = validate_message(TOPIC, payload(pressed_at="2026-11-23T09:34:59.000+08:00"), NOW)   # within 5 min skew
    assert ok.flags == frozenset()


def test_bad_payloads_become_dead_letters_with_reasons():
    cases = {
        b"\xff": "bad_encoding", b"nope": "bad_json", b"[1]": "bad_json", payload(v=2): "bad_version",
        payload(seq=0): "bad_seq", payload(seq=True): "bad_field", payload(rating="meh"): "bad_rating",
        payload(pressed_at="yesterday"): "bad_timestamp", payload(pressed_at="2026-11-23T09:00:00"): "bad_timestamp",
        payload(device="hz-371702002-w01"): "device_mismatch", b"x" * 2000: "too_large",
    }
    for raw, reason in cases.items():
        got = validate_message(TOPIC, raw, NOW)
        assert isinstance(got, DeadLetter) and got.reason == reason, (raw, got)
        assert got.payload == raw[:DEAD_LETTER_KEEP] and got.topic == TOPIC and got.received_at == NOW
        if len(raw) > DEAD_LETTER_KEEP:     # the rest named by size and hash, not kept
            assert f"payload {len(raw)} bytes, sha256 {hashlib.sha256(raw).hexdigest()}" in got.detail
    assert validate_message("manyi/v1/votes/BAD ID", payload(), NOW).reason == "bad_device"
    assert validate_message("other/topic", payload(), NOW).reason == "bad_topic"


def test_status_messages_and_retained_ones():
    status = protocol.Status(DEV, True, firmware="1.0", last_seq=5, sent_at="2026-11-23T09:00:00.000+08:00")
    live = validate_message(protocol.status_topic(DEV), status.to_json(), NOW)
    assert isinstance(live, TerminalStatus) and live.online and live.reported_last_seq == 5
    assert live.last_seen == NOW
    retained = validate_message(protocol.status_topic(DEV), status.to_json(), NOW, retained=True)
    assert retained.last_seen == datetime(2026, 11, 23, 1, 0, tzinfo=timezone.utc)     # its own sent_at
    will = validate_message(protocol.status_topic(DEV), protocol.Status(DEV, False).to_json(), NOW, retained=True)
    assert will.online is False and will.last_seen is None
    assert validate_message(protocol.status_topic(DEV), b"", NOW).reason == "empty"
    assert validate_message(protocol.status_topic(DEV), b'{"v":1,"device":"x"}', NOW).reason == "device_mismatch"


def _vote(seq, seconds, rating="unsatisfied", flags=frozenset()):
    return StoredVote(DEV, seq, rating, NOW + timedelta(seconds=seconds), NOW, "", True, frozenset(flags))


def test_is_burst_counts_same_rating_within_the_window():
    rule = BurstRule(max_votes=3, window_seconds=10)
    history = [(NOW + timedelta(seconds=s), "unsatisfied") for s in (0, 2, 4)] + [(NOW, "satisfied")]
    assert is_burst(_vote(9, 6), history, rule)
    assert not is_burst(_vote(9, 6, "basic"), history, rule)
    assert not is_burst(_vote(9, 12), history, rule)              # only 4 s lies in (2, 12]
    assert not is_burst(_vote(9, 6, flags={FLAG_CLOCK_REPLACED}), history, rule)


def test_burst_tracker_flags_from_the_n_plus_first_and_ignores_redelivery():
    tracker = BurstTracker(BurstRule(max_votes=3, window_seconds=10))
    flagged = [FLAG_BURST in tracker.flag(_vote(s, s)).flags for s in range(1, 6)]
    assert flagged == [False, False, False, True, True]
    again = tracker.flag(_vote(1, 1))                               # a redelivered early vote
    assert FLAG_BURST not in again.flags
    slow = BurstTracker(BurstRule(max_votes=3, window_seconds=10))
    assert not any(FLAG_BURST in slow.flag(_vote(s, 20 * s)).flags for s in range(1, 10))


class _ReferenceTracker:
    """The plain definition the fast BurstTracker must agree with: is_burst over the last ``keep``
    remembered votes (by first arrival of each seq), a redelivery judged without its own entry."""

    def __init__(self, rule, keep):
        from collections import OrderedDict

        self.rule, self.keep, self.recent = rule, keep, {}
        self._new = OrderedDict

    def flag(self, vote):
        from collector.stores import FLAG_CLOCK_REPLACED

        recent = self.recent.setdefault(vote.device, self._new())
        history = [v for seq, v in recent.items() if seq != vote.seq]
        if FLAG_CLOCK_REPLACED not in vote.flags:
            recent[vote.seq] = (vote.time, vote.rating)
            while len(recent) > self.keep:
                recent.popitem(last=False)
        return is_burst(vote, history, self.rule)


def test_burst_tracker_agrees_with_the_plain_definition():
    # Random streams with redeliveries (same seq again, sometimes later), clock-replaced votes and
    # eviction: the bisect-based tracker flags exactly what is_burst over the history flags.
    import random

    from hypothesis import given, settings, strategies as st

    from collector.stores import FLAG_BURST, FLAG_CLOCK_REPLACED, StoredVote

    start = datetime(2026, 11, 23, 1, tzinfo=timezone.utc)

    @settings(max_examples=150, deadline=None, derandomize=True, database=None)
    @given(st.integers(0, 2**32), st.integers(1, 6), st.integers(1, 40), st.integers(3, 12))
    def check(seed, max_votes, window, keep):
        rng = random.Random(seed)
        rule = BurstRule(max_votes=max_votes, window_seconds=window)
        fast, slow = BurstTracker(rule, keep=keep), _ReferenceTracker(rule, keep)
        sent, moment = [], start
        for _ in range(120):
            if sent and rng.random() < 0.2:
                vote = rng.choice(sent)                                   # a redelivery
            else:
                moment += timedelta(seconds=rng.choice((0, 0.5, 1, 2, 5, 30)))
                flags = frozenset({FLAG_CLOCK_REPLACED}) if rng.random() < 0.05 else frozenset()
                vote = StoredVote(f"t{rng.randrange(2)}", len(sent) + 1, rng.choice(("satisfied", "unsatisfied")),
                                  moment, moment, moment.isoformat(), True, flags)
                sent.append(vote)
            assert (FLAG_BURST in fast.flag(vote).flags) == slow.flag(vote), vote

    check()

"""Fuzzing the collector with hostile input (hypothesis): zero crashes, every bad message a dead letter
with a reason, every valid vote stored exactly once.

Two layers over the same generator, ``CASES``, which yields a topic, a payload and what the
collector must make of it (a vote, a status, or a dead letter with one of some reasons):

* in process: the 10,000+ generated cases go through ``validate_message`` and the collector's
  classification (``Collector._classify``) into a real SQLite store, each checked against its
  expectation; plus targeted properties that hypothesis shrinks on failure;
* end to end: the same cases (those mosquitto routes to the collector) are published through a
  real mosquitto, with valid votes interleaved, to a real Collector writing SQLite in tmp_path.

Generation is derandomized (``derandomize=True``, no example database), so CI sees the same
cases on every run. Payloads above the production broker's ``max_packet_size`` never reach the
collector: tests/test_security_mqtt.py shows what mosquitto does with them.
"""

from __future__ import annotations

import json
import sqlite3
import string
import threading
import time
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from plugin_collector import Publisher, make_vote, wait_until

from collector.config import CollectorSettings
from collector.service import Collector, Received
from collector.stores import DeadLetter, StoredVote, TerminalStatus
from collector.stores.sqlite import SQLiteStore
from collector.validate import DEAD_LETTER_KEEP, MAX_DEPTH, MAX_INT, MAX_SEQ, json_depth, validate_message
from manyi import protocol

NOW = datetime(2026, 11, 23, 1, 30, tzinfo=timezone.utc)
CORPUS_SIZE = 10_250
FIELDS = ("v", "device", "seq", "rating", "pressed_at", "clock_ok")
STATUS_INTS = ("outbox_depth", "last_seq", "repeats_ignored", "poisoned")
LIMIT = protocol.MAX_PAYLOAD_BYTES
FUZZ = dict(deadline=None, derandomize=True, database=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much])


@dataclass(frozen=True)
class Case:
    """One generated message and what the collector must make of it."""

    kind: str                   # the generator that made it
    topic: str
    payload: bytes
    expect: str | frozenset     # "vote", "status", or the acceptable dead-letter reasons
    routable: bool = True       # mosquitto accepts the topic and routes it to the collector's subscriptions

    def with_size_rule(self) -> "Case":
        """Above the protocol limit any payload is ``too_large``, whatever else is wrong with it."""
        if len(self.payload) > LIMIT:
            return Case(self.kind, self.topic, self.payload, frozenset({"too_large"}), self.routable)
        return self


def dead(*reasons: str) -> frozenset:
    return frozenset(reasons)


# --- building blocks ------------------------------------------------------------------
ID_CHARS = string.ascii_lowercase + string.digits
# Valid device ids (protocol.DEVICE_ID_PATTERN) in one draw: st.from_regex is several times slower.
devices = st.text(ID_CHARS + "-", min_size=3, max_size=64).map(lambda d: "a" + d[1:] if d[0] == "-" else d)
seqs = st.integers(min_value=1, max_value=MAX_SEQ - 1)
ratings = st.sampled_from(protocol.RATINGS)
# Wire timestamps from 2000 to 2100 at UTC offsets from -14:00 to +14:00, one draw each.
TIMESTAMP_POOL = [protocol.format_timestamp(datetime(2000 + (i * 7) % 100, 1 + i % 12, 1 + (i * 5) % 28, i % 24,
                                                     (i * 13) % 60, (i * 17) % 60, (i * 997) % 1_000_000,
                                                     timezone(timedelta(minutes=(i * 37) % 1681 - 840))))
                  for i in range(400)]
timestamps = st.sampled_from(TIMESTAMP_POOL)
# Every Unicode code point, lone surrogates included (they reach json.loads as \ud800 escapes).
any_text = st.text(st.characters(codec=None, exclude_categories=()), max_size=20)
json_scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | any_text
# Two levels at most (st.recursive is several times slower); deep_nesting() covers depth.
json_values = (json_scalars | st.lists(json_scalars, max_size=3)
               | st.dictionaries(any_text, json_scalars | st.lists(json_scalars, max_size=2), max_size=3))
extra_keys = st.text(string.ascii_letters + "_", min_size=1, max_size=12).filter(lambda k: k not in FIELDS)
# A topic level mosquitto will route: printable, no '/', '+', '#', no control or non-characters.
topic_levels = st.text(st.characters(categories=("L", "N", "P", "S", "Zs"), exclude_characters="/+#"), max_size=70)


def encode(data: dict, ascii_only: bool) -> bytes:
    """JSON bytes; ascii_only escapes every non-ASCII character (so lone surrogates survive as \\udxxx)."""
    text = json.dumps(data, ensure_ascii=ascii_only, allow_nan=True)
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:      # a lone surrogate can only travel escaped
        return json.dumps(data, ensure_ascii=True, allow_nan=True).encode("utf-8")


# Strategies are built once here, not inside the draws: hypothesis validates each new strategy
# object on first use, which made generation several times slower.
BOOL = st.booleans()
ONE_IN_FOUR = st.integers(0, 3)
EXTRAS = st.dictionaries(extra_keys, json_values, min_size=1, max_size=2)
FIELD = st.sampled_from(FIELDS)
FIELD_SETS = st.sets(FIELD, min_size=1)
NOT_ONE = json_values.filter(lambda x: x != 1)
BAD_SEQ = json_values | st.integers(max_value=0) | st.integers(min_value=MAX_SEQ)
NOT_A_RATING = json_values.filter(lambda x: x not in protocol.RATINGS)
BAD_TIME = json_values | st.sampled_from(["2026-11-23T09:00:00", "yesterday", "", "2026-13-01T00:00:00+08:00"])
NOT_BOOL = json_values.filter(lambda x: not isinstance(x, bool))
NOT_NONE = json_values.filter(lambda x: x is not None)
TOPIC_OF = st.sampled_from([protocol.vote_topic, protocol.status_topic])


@st.composite
def vote_dicts(draw, device=None):
    """A valid v1 vote as a dict (maybe with unknown extra fields, which v1 must ignore)."""
    data = {"v": 1, "device": device or draw(devices), "seq": draw(seqs), "rating": draw(ratings),
            "pressed_at": draw(timestamps), "clock_ok": draw(BOOL)}
    if draw(ONE_IN_FOUR) == 0:
        data.update(draw(EXTRAS))
    return data


VOTE_DICTS = vote_dicts()


@st.composite
def valid_votes(draw):
    data = draw(VOTE_DICTS)
    return Case("valid_vote", protocol.vote_topic(data["device"]), encode(data, draw(BOOL)), "vote"
                ).with_size_rule()


def _wrong_value(draw, field: str, data: dict):
    """A value for ``field`` that makes the vote invalid, and the reasons that allows (None: still valid)."""
    if field == "v":
        return draw(NOT_ONE), dead("bad_version")
    if field == "device":
        value = draw(json_values)
        if isinstance(value, str):
            return value, dead("device_mismatch") if value != data["device"] else None
        return value, dead("bad_field")
    if field == "seq":
        value = draw(BAD_SEQ)
        if isinstance(value, bool) or not isinstance(value, int):
            return value, dead("bad_field")
        return value, dead("bad_seq") if not 1 <= value < MAX_SEQ else None
    if field == "rating":
        value = draw(NOT_A_RATING)
        return value, dead("bad_rating" if isinstance(value, str) else "bad_field")
    if field == "pressed_at":
        value = draw(BAD_TIME)
        if not isinstance(value, str):
            return value, dead("bad_field")
        try:
            ok = datetime.fromisoformat(value).tzinfo is not None
        except ValueError:
            ok = False
        return value, None if ok else dead("bad_timestamp")
    return draw(NOT_BOOL), dead("bad_field")


@st.composite
def wrong_types(draw):
    """A vote with one field of a wrong type or value (including null)."""
    data = draw(VOTE_DICTS)
    topic = protocol.vote_topic(data["device"])
    field = draw(FIELD)
    value, expect = _wrong_value(draw, field, data)
    data[field] = value
    return Case(f"wrong_{field}", topic, encode(data, draw(BOOL)), expect or "vote").with_size_rule()


@st.composite
def missing_fields(draw):
    data = draw(VOTE_DICTS)
    gone = draw(FIELD_SETS)
    topic = protocol.vote_topic(data["device"])
    for name in gone:
        del data[name]
    return Case("missing", topic, encode(data, True), dead("bad_version" if "v" in gone else "missing_field")
                ).with_size_rule()


HUGE_TOKENS = ["1e400", "-1e400", "1E999", "NaN", "Infinity", "-Infinity", "-0", "0", "-1", "1.0", "1e2",
               str(MAX_SEQ), str(MAX_SEQ + 1), str(2 ** 63 - 1), str(2 ** 63), str(2 ** 64), str(2 ** 80),
               str(-2 ** 80), "9" * 300]
TOKENS = st.sampled_from(HUGE_TOKENS) | st.integers(min_value=MAX_SEQ - 3, max_value=2 ** 200).map(str)
SEQ_OR_V = st.sampled_from(["seq", "v"])
STATUS_INT = st.sampled_from(STATUS_INTS)


@st.composite
def huge_numbers(draw):
    """Raw number tokens JSON allows (or Python's json accepts: NaN, Infinity) in a number field."""
    token = draw(TOKENS)
    value = json.loads(token)
    if draw(BOOL):
        data = draw(VOTE_DICTS)
        field = draw(SEQ_OR_V)
        topic = protocol.vote_topic(data["device"])
        if field == "v":
            expect = "vote" if value == 1 else dead("bad_version")
        elif isinstance(value, bool) or not isinstance(value, int):
            expect = dead("bad_field")
        else:
            expect = "vote" if 1 <= value < MAX_SEQ else dead("bad_seq")
    else:
        device = draw(devices)
        data = {"v": 1, "device": device, "online": True}
        field = draw(STATUS_INT)
        topic = protocol.status_topic(device)
        if isinstance(value, int) and not isinstance(value, bool) and -2 ** 63 <= value <= MAX_INT:
            expect = "status"
        else:
            expect = dead("bad_field")
    data[field] = "@@TOKEN@@"
    payload = encode(data, True).replace(b'"@@TOKEN@@"', token.encode())
    return Case(f"huge_{field}", topic, payload, expect).with_size_rule()


INVALID_UTF8 = st.sampled_from([b"\xff", b"\xfe", b"\x80", b"\xc0\x80", b"\xc3", b"\xe6\xbb", b"\xed\xa0\x80",
                                b"\xf4\x90\x80\x80", b"\xf8\x88\x80\x80\x80"])
FRACTION = st.floats(0, 1)


@st.composite
def invalid_utf8(draw):
    data = draw(VOTE_DICTS)
    raw = encode(data, draw(BOOL))
    at = int(draw(FRACTION) * len(raw))
    return Case("invalid_utf8", protocol.vote_topic(data["device"]), raw[:at] + draw(INVALID_UTF8) + raw[at:],
                dead("bad_encoding")).with_size_rule()


RANDOM_BYTES = st.binary(min_size=1, max_size=1500)


@st.composite
def random_bytes(draw):
    topic = draw(TOPIC_OF)(draw(devices))
    return Case("random_bytes", topic, draw(RANDOM_BYTES), dead("bad_encoding", "bad_json", "bad_version", "too_deep")
                ).with_size_rule()


DEPTHS = st.integers(MAX_DEPTH + 1, 600) | st.integers(600, 12_000)
BRACKETS = st.sampled_from([(b"[", b"]"), (b'{"a":', b"}")])
WHERE = st.sampled_from(["alone", "vote", "status"])


@st.composite
def deep_nesting(draw):
    """Arrays or objects nested 17 to 12,000 deep, alone or inside an otherwise valid vote or status."""
    depth = draw(DEPTHS)
    opener, closer = draw(BRACKETS)
    nest = opener * depth + b"0" + (closer * depth if draw(BOOL) else b"")
    device = draw(devices)
    where = draw(WHERE)
    if where == "alone":
        topic = draw(TOPIC_OF)(device)
        payload = nest
    elif where == "vote":
        topic = protocol.vote_topic(device)
        payload = encode(draw(VOTE_DICTS), True)[:-1] + b',"x":' + nest + b"}"   # checked before the device
    else:
        topic = protocol.status_topic(device)
        payload = b'{"v":1,"device":"%s","online":true,"config_applied":{"a":%s}}' % (device.encode(), nest)
    return Case(f"deep_{where}", topic, payload, dead("too_deep")).with_size_rule()


SIZES = st.integers(LIMIT + 1, 4096) | st.integers(LIMIT + 1, 4096) | st.integers(4096, 70_000)


@st.composite
def oversize(draw):
    data = draw(VOTE_DICTS)
    size = draw(SIZES)
    data["pad"] = ""
    raw = encode(data, True)
    data["pad"] = "x" * max(0, size - len(raw))
    return Case("oversize", protocol.vote_topic(data["device"]), encode(data, True), dead("too_large"))


BAD_LEVELS = topic_levels | st.sampled_from(["", "HZ-1", "ab", "-ab", "hz_1", "a" * 65, "hz 1", "hz-1\n", "hz-1\t"])


@st.composite
def forged_devices(draw):
    """The payload names another terminal than the topic (a forged id), or the topic's id is malformed."""
    data = draw(VOTE_DICTS)
    if draw(BOOL):
        topic_device = draw(devices)
        if topic_device == data["device"]:
            topic_device += "-x"
        return Case("forged_device", protocol.vote_topic(topic_device), encode(data, True),
                    dead("device_mismatch")).with_size_rule()
    level = draw(BAD_LEVELS)
    if protocol.DEVICE_ID_RE.fullmatch(level):
        level = level.upper() + "_"
    data["device"] = level
    routable = not (set(level) & set("/+#")) and all(c.isprintable() for c in level)
    topic = draw(TOPIC_OF)(level)
    return Case("bad_device_id", topic, encode(data, True), dead("bad_device"), routable).with_size_rule()


BOGUS_TOPICS = (st.text(st.characters(codec=None, exclude_categories=()), max_size=80)
                | st.sampled_from(["manyi/v1/config/hz-371702001-w01", "manyi/v2/votes/hz-371702001-w01",
                                   "manyi/v1/votes", "$SYS/broker/uptime", "manyi/v1/Votes/abc"]))


@st.composite
def bogus_topics(draw):
    """Topics that are neither votes nor status (only in process: mosquitto would not route them to us)."""
    topic = draw(BOGUS_TOPICS)
    if topic.startswith(("manyi/v1/votes/", "manyi/v1/status/")):
        topic = "x" + topic
    return Case("bogus_topic", topic, encode(draw(VOTE_DICTS), True), dead("bad_topic"), routable=False)


STATUS_FIELD = st.sampled_from(STATUS_INTS + ("firmware", "boot_time", "sent_at", "clock_ok", "outbox_full", "online",
                                              "config_applied"))
STATUS_KINDS = {**dict.fromkeys(STATUS_INTS, int), "firmware": str, "boot_time": str, "sent_at": str,
                "clock_ok": bool, "outbox_full": bool, "online": bool, "config_applied": dict}
VALID_STATUS = st.builds(
    protocol.Status, devices, BOOL, firmware=st.none() | st.text(max_size=20),
    outbox_depth=st.none() | st.integers(0, MAX_INT), last_seq=st.none() | seqs, clock_ok=st.none() | BOOL,
    sent_at=st.none() | timestamps,
    config_applied=st.dictionaries(st.sampled_from(list(protocol.CONFIG_KEYS)), st.floats(0, 100), max_size=3))
STRING_FIELD = st.sampled_from(["firmware", "boot_time", "sent_at"])
SURROGATES = st.integers(0xD800, 0xDFFF)


@st.composite
def statuses(draw):
    """Valid statuses, and statuses with fields of wrong types, huge ints, lone surrogates, or empty."""
    choice = draw(ONE_IN_FOUR)
    if choice == 0:
        status = draw(VALID_STATUS)
        return Case("valid_status", protocol.status_topic(status.device), status.to_json(), "status").with_size_rule()
    device = draw(devices)
    topic = protocol.status_topic(device)
    if choice == 1:
        return Case("empty_status", topic, b"", dead("empty"))
    data = {"v": 1, "device": device, "online": True}
    if choice == 2:
        field = draw(STATUS_FIELD)
        value = draw(NOT_NONE)
        data[field] = value
        kind = STATUS_KINDS[field]
        right = isinstance(value, kind) and (kind is bool or not isinstance(value, bool))
        if field == "config_applied" and not right:
            right = not value      # {} [] "" 0 false: treated as no config
        if right and isinstance(value, int) and not isinstance(value, bool) and not -2 ** 63 <= value <= MAX_INT:
            right = False
        if right and _has_surrogate(value):
            right = False
        return Case(f"status_{field}", topic, encode(data, True), "status" if right else dead("bad_field")
                    ).with_size_rule()
    data[draw(STRING_FIELD)] = "fw-" + chr(draw(SURROGATES))
    return Case("status_surrogate", topic, encode(data, True), dead("bad_field"))


def _has_surrogate(value) -> bool:
    text = json.dumps(value, ensure_ascii=False)
    return any(0xD800 <= ord(c) <= 0xDFFF for c in text)


# Every generator, weighted towards the hostile ones. bogus_topics() is not among them: mosquitto
# never routes those topics to the collector, so they are fuzzed in process only.
CASES = st.one_of(valid_votes(), wrong_types(), wrong_types(), missing_fields(), huge_numbers(), invalid_utf8(),
                  random_bytes(), deep_nesting(), oversize(), forged_devices(), forged_devices(), statuses())


def generate_corpus(count: int, per_example: int = 20) -> list[Case]:
    """``count`` cases from ``CASES``, the same ones on every run (derandomized, generate phase only).

    Each hypothesis example draws ``per_example`` cases: hypothesis' cost per example is
    several times its cost per draw.
    """
    corpus: list[Case] = []

    @settings(max_examples=-(-count // per_example), phases=[Phase.generate], **FUZZ)
    @given(st.lists(CASES, min_size=per_example, max_size=per_example))
    def collect(batch):
        corpus.extend(batch)

    collect()
    return corpus


@pytest.fixture(scope="module")
def corpus() -> list[Case]:
    made = generate_corpus(CORPUS_SIZE)
    assert len(made) >= 10_000, f"hypothesis generated only {len(made)} cases"
    return made


def outcome(result) -> str:
    if isinstance(result, StoredVote):
        return "vote"
    if isinstance(result, TerminalStatus):
        return "status"
    assert isinstance(result, DeadLetter), result
    return result.reason


def check(case: Case, result) -> None:
    """``result`` is what ``case`` expects; a dead letter keeps a reason, a detail and the raw bytes."""
    got = outcome(result)
    if isinstance(case.expect, str):
        assert got == case.expect, (case, result)
    else:
        assert got in case.expect, (case, result)
        assert result.reason and result.detail and result.payload == case.payload[:DEAD_LETTER_KEEP]
        result.detail.encode("utf-8")
        result.topic.encode("utf-8")


def store_outcome(votes) -> tuple[int, int]:
    """(duplicates, seq conflicts) the store makes of ``votes`` in order: a key seen before with the
    same rating and press time is a copy, with other content a ``seq_conflict`` dead letter."""
    first: dict[tuple[str, int], tuple[str, str]] = {}
    duplicates = conflicts = 0
    for vote in votes:
        key, content = (vote.device, vote.seq), (vote.rating, vote.pressed_at)
        if key not in first:
            first[key] = content
        elif first[key] == content:
            duplicates += 1
        else:
            conflicts += 1
    return duplicates, conflicts


# --- layer (a): in process --------------------------------------------------------------
def test_corpus_in_process_through_the_collectors_classification_into_sqlite(corpus):
    """10,000+ cases: each classified as expected, and every batch written by the real SQLite store."""
    kinds = Counter(case.kind.split("_")[0] for case in corpus)
    assert {"valid", "wrong", "missing", "huge", "invalid", "random", "deep", "oversize", "forged", "bad",
            "status", "empty"} <= set(kinds), kinds
    store = SQLiteStore(":memory:")
    collector = Collector(CollectorSettings(broker="127.0.0.1:1", client_id="fuzz-in-process",
                                            dead_letters_per_source=0), store)
    try:
        expected_keys, letters, all_votes = set(), 0, []
        for start in range(0, len(corpus), 250):
            batch = corpus[start:start + 250]
            for case in batch:
                check(case, validate_message(case.topic, case.payload, NOW))
            received = [Received(topic=case.topic, payload=case.payload, qos=1, mid=i, retain=False, generation=0,
                                 received_at=NOW) for i, case in enumerate(batch)]
            votes, dead_letters, status_rows = collector._classify(received)
            assert len(votes) + len(dead_letters) + len(status_rows) == len(batch)
            store.write(votes, dead_letters, status_rows)     # raises if any result could not be stored
            expected_keys |= {(v.device, v.seq) for v in votes}
            letters += len(dead_letters)
            all_votes += votes
        stats = store.stats()
        duplicates, conflicts = store_outcome(all_votes)
        assert stats["votes"] == len(expected_keys)
        assert stats["duplicates"] == duplicates
        assert sum(stats["dead_letters"].values()) == letters + conflicts
        assert stats["dead_letters"].get("seq_conflict", 0) == conflicts
        assert letters >= 0.7 * len(corpus)
    finally:
        collector.client.loop_stop()
        store.close()


@settings(max_examples=600, **FUZZ)
@given(topic=st.text(st.characters(codec=None, exclude_categories=()), max_size=60)
       | st.sampled_from([protocol.vote_topic("hz-371702001-w01"), protocol.status_topic("hz-371702001-w01")]),
       payload=st.binary(max_size=1200), retained=st.booleans())
def test_any_bytes_on_any_topic_never_raise_and_are_storable(topic, payload, retained):
    result = validate_message(topic, payload, NOW, retained)
    assert isinstance(result, (StoredVote, TerminalStatus, DeadLetter))
    store = SQLiteStore(":memory:")
    try:
        store.write(*(([result], [], []) if isinstance(result, StoredVote) else
                      ([], [result], []) if isinstance(result, DeadLetter) else ([], [], [result])))
    finally:
        store.close()


@settings(max_examples=500, **FUZZ)
@given(data=vote_dicts(), ascii_only=st.booleans())
def test_valid_votes_with_unknown_extra_fields_are_accepted_as_sent(data, ascii_only):
    raw = encode(data, ascii_only)
    result = validate_message(protocol.vote_topic(data["device"]), raw, NOW)
    if len(raw) > LIMIT:
        assert result.reason == "too_large"
        return
    assert isinstance(result, StoredVote), result
    assert (result.device, result.seq, result.rating, result.pressed_at, result.clock_ok) == (
        data["device"], data["seq"], data["rating"], data["pressed_at"], data["clock_ok"])


@settings(max_examples=300, **FUZZ)
@given(case=huge_numbers() | forged_devices() | deep_nesting() | statuses() | wrong_types() | bogus_topics())
def test_targeted_cases_shrink_to_a_minimal_counterexample(case):
    check(case, validate_message(case.topic, case.payload, NOW))


@settings(max_examples=300, **FUZZ)
@given(value=json_values, pad=st.sampled_from(["", " ", "\n"]))
def test_json_depth_counts_nesting_and_ignores_brackets_in_strings(value, pad):
    def depth(x):
        if isinstance(x, list):
            return 1 + max(map(depth, x), default=0)
        if isinstance(x, dict):
            return 1 + max(map(depth, x.values()), default=0)
        return 0
    raw = json.dumps(value, ensure_ascii=False, indent=pad or None).encode("utf-8", "surrogatepass")
    assert json_depth(raw) == depth(value)


def test_nesting_of_ten_thousand_is_a_dead_letter_not_a_recursion_error():
    """A 1,000-deep array fits in 1 KiB and exhausted CPython's parser (RecursionError) before the depth check."""
    for depth in (MAX_DEPTH + 1, 500, 1000, 10_000):
        for payload in (b"[" * depth + b"]" * depth, b'{"a":' * depth + b"1" + b"}" * depth):
            result = validate_message(protocol.vote_topic("hz-371702001-w01"), payload, NOW)
            assert result.reason == ("too_large" if len(payload) > LIMIT else "too_deep"), result
    # Deep recursion on a thread with a small stack (the collector's writer is a thread) is handled too.
    results = []
    old = threading.stack_size(256 * 1024)
    try:
        worker = threading.Thread(target=lambda: results.append(
            validate_message(protocol.status_topic("hz-371702001-w01"), b"[" * 1000, NOW)))
        worker.start()
        worker.join()
    finally:
        threading.stack_size(old)
    assert results and results[0].reason == "too_deep"


def test_poison_values_that_parse_are_dead_letters_not_store_failures():
    """Before the fix each of these passed validation and then failed every write of its batch (a poison message)."""
    device = "hz-371702001-w01"
    vote = make_vote(device, 1).to_dict()
    cases = {
        (protocol.vote_topic(device), encode({**vote, "seq": MAX_SEQ}, True)): "bad_seq",
        (protocol.vote_topic(device), encode({**vote, "seq": 2 ** 80}, True)): "bad_seq",
        (protocol.status_topic(device), encode({"v": 1, "device": device, "online": True, "outbox_depth": 2 ** 70},
                                               True)): "bad_field",
        (protocol.status_topic(device), encode({"v": 1, "device": device, "online": True, "firmware": "\ud800"},
                                               True)): "bad_field",
        (protocol.status_topic(device), encode({"v": 1, "device": device, "online": True,
                                                "config_applied": {"a": "\udfff"}}, True)): "bad_field",
        (protocol.vote_topic("hz-1\n"), encode({**vote, "device": "hz-1\n"}, True)): "bad_device",
    }
    store = SQLiteStore(":memory:")
    try:
        for (topic, payload), reason in cases.items():
            result = validate_message(topic, payload, NOW)
            assert isinstance(result, DeadLetter) and result.reason == reason, (payload, result)
            store.write([], [result], [])
        assert store.dead_letter_counts() == {"bad_seq": 2, "bad_field": 3, "bad_device": 1}
        edge = validate_message(protocol.vote_topic(device), encode({**vote, "seq": MAX_SEQ - 1}, True), NOW)
        assert isinstance(edge, StoredVote)
        store.write([edge], [], [])
        assert store.stats()["votes"] == 1
    finally:
        store.close()


# --- layer (b): end to end through mosquitto --------------------------------------------
def test_ten_thousand_generated_payloads_through_mosquitto_to_the_collector(corpus, broker, tmp_path):
    """The corpus (what mosquitto routes to us) with valid votes interleaved, through the real broker and collector.

    The collector must stay alive, keep every invalid message as a dead letter with a reason
    (same count per reason as the in-process classification), and store every valid vote once.
    """
    routable = [case for case in corpus if case.routable]
    assert len(routable) >= 10_000
    start = datetime.now(timezone.utc) - timedelta(hours=1)
    interleaved = [make_vote(f"fz-{i % 7:03d}", i // 7 + 1, protocol.RATINGS[i % 3], start + timedelta(seconds=i))
                   for i in range(len(routable) // 10)]
    messages: list[tuple[str, bytes]] = []
    for i, case in enumerate(routable):
        messages.append((case.topic, case.payload))
        if i % 10 == 9:
            vote = interleaved[i // 10]
            messages.append((vote.topic, vote.to_json()))
    # The oracle: what the in-process classification makes of each message.
    received_at = datetime.now(timezone.utc)
    results = [validate_message(topic, payload, received_at) for topic, payload in messages]
    want_letters = Counter(r.reason for r in results if isinstance(r, DeadLetter))
    want_duplicates, conflicts = store_outcome([r for r in results if isinstance(r, StoredVote)])
    if conflicts:
        want_letters["seq_conflict"] = conflicts
    vote_keys = [(r.device, r.seq) for r in results if isinstance(r, StoredVote)]
    assert {(v.device, v.seq) for v in interleaved} <= set(vote_keys)

    db = tmp_path / "fuzz.db"
    store = SQLiteStore(db)
    collector = Collector(CollectorSettings(broker=broker.address, store=f"sqlite:///{db}", client_id="fuzz-e2e",
                                            retry_max_seconds=1.0, dead_letters_per_source=0), store).start()
    publisher = Publisher(broker.port, client_id="fuzz-publisher")
    try:
        assert collector.wait_connected(10)
        time.sleep(0.3)
        began = time.monotonic()
        infos = [publisher.send(topic, payload) for topic, payload in messages]
        for info in infos:
            info.wait_for_publish(60)
            assert info.is_published()
        total = len(messages)
        wait_until(lambda: collector.counters["acked"] >= total, 60,
                   message=f"the collector to acknowledge {total} messages")
        elapsed = time.monotonic() - began
        time.sleep(0.5)     # anything beyond the expected would show now
        assert collector._writer.is_alive(), "the collector's writer thread died"
        assert collector.counters["store_failures"] == 0
        assert collector.counters["received"] == total
        assert store.dead_letter_counts() == dict(want_letters)
        with sqlite3.connect(db) as conn:
            empty = conn.execute("SELECT count(*) FROM dead_letters WHERE reason = '' OR detail = ''").fetchone()[0]
            stored = conn.execute("SELECT device, seq FROM votes").fetchall()
        assert empty == 0
        assert len(stored) == len(set(stored)) == len(set(vote_keys))
        assert set(stored) == set(vote_keys)
        assert store.stats()["duplicates"] == want_duplicates
        print(f"\nfuzz e2e: {total} messages ({len(interleaved)} interleaved valid votes) in {elapsed:.1f} s; "
              f"stored {len(stored)} votes, {sum(want_letters.values())} dead letters: {dict(want_letters)}")
    finally:
        publisher.close()
        collector.stop()
        store.close()

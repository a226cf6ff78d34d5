"""The wire protocol: vote, status and config messages, topics and validation."""

import json
from datetime import datetime, timedelta, timezone

import pytest

from manyi import protocol
from manyi.exc import ProtocolError
from manyi.protocol import Status, Vote, parse_config, parse_status, parse_vote, plausible_time

TOPIC = "manyi/v1/votes/hz-371702-001-w03"


def payload(**changes):
    data = {"v": 1, "device": "hz-371702-001-w03", "seq": 1234, "rating": "satisfied",
            "pressed_at": "2026-11-22T09:31:05.123+08:00", "clock_ok": True}
    data.update(changes)
    return json.dumps({k: v for k, v in data.items() if v is not ...}).encode()


def test_vote_round_trips_to_the_documented_bytes():
    vote = Vote("hz-371702-001-w03", 1234, "satisfied", "2026-11-22T09:31:05.123+08:00", True)
    assert vote.to_json() == (b'{"v":1,"device":"hz-371702-001-w03","seq":1234,"rating":"satisfied",'
                              b'"pressed_at":"2026-11-22T09:31:05.123+08:00","clock_ok":true}')
    assert parse_vote(TOPIC, vote.to_json()) == vote
    assert vote.topic == TOPIC


@pytest.mark.parametrize("raw, reason", [
    (b"{not json", "bad_json"),
    (b"[1,2]", "bad_json"),
    (b"\xff\xfe", "bad_encoding"),
    (payload(v=2), "bad_version"),
    (payload(seq="12"), "bad_field"),
    (payload(seq=True), "bad_field"),
    (payload(seq=0), "bad_seq"),
    (payload(rating="great"), "bad_rating"),
    (payload(rating=...), "missing_field"),
    (payload(device="hz-371702-001-w04"), "device_mismatch"),
    (payload(pressed_at="2026-11-22 09:31"), "bad_timestamp"),
    (payload(pressed_at="yesterday"), "bad_timestamp"),
    (payload(clock_ok="yes"), "bad_field"),
    (b"{" + b" " * 1100 + b"}", "too_large"),
])
def test_invalid_votes_are_rejected_with_a_reason(raw, reason):
    with pytest.raises(ProtocolError) as info:
        parse_vote(TOPIC, raw)
    assert info.value.reason == reason


@pytest.mark.parametrize("topic", ["manyi/v1/votes/AB", "manyi/v1/votes/x", "other/hz-1", "manyi/v1/votes/a/b"])
def test_bad_topics_are_rejected(topic):
    with pytest.raises(ProtocolError):
        parse_vote(topic, payload())


def test_timestamps_carry_milliseconds_and_offset():
    moment = datetime(2026, 11, 22, 1, 31, 5, 123456, tzinfo=timezone.utc)
    assert protocol.format_timestamp(moment.astimezone(protocol.CHINA_TZ)) == "2026-11-22T09:31:05.123+08:00"
    with pytest.raises(ValueError):
        protocol.format_timestamp(datetime(2026, 1, 1))


def test_plausible_time_rules():
    received = datetime(2026, 11, 22, 1, 31, 10, tzinfo=timezone.utc)
    ok = parse_vote(TOPIC, payload())
    assert plausible_time(ok, received)
    assert not plausible_time(parse_vote(TOPIC, payload(clock_ok=False)), received)
    assert not plausible_time(parse_vote(TOPIC, payload(pressed_at="2000-01-01T08:00:00.000+08:00")), received)
    future = (received + timedelta(minutes=6)).isoformat(timespec="milliseconds")
    assert not plausible_time(parse_vote(TOPIC, payload(pressed_at=future)), received)
    near = (received + timedelta(minutes=4)).isoformat(timespec="milliseconds")
    assert plausible_time(parse_vote(TOPIC, payload(pressed_at=near)), received)


def test_status_round_trip_and_will():
    status = Status("hz-371702-001-w03", True, firmware="0.1.0", outbox_depth=3, last_seq=9, clock_ok=True)
    assert parse_status("manyi/v1/status/hz-371702-001-w03", status.to_json()) == status
    will = Status("hz-371702-001-w03", False, outbox_depth=3)
    assert json.loads(will.to_json()) == {"v": 1, "device": "hz-371702-001-w03", "online": False}


def test_config_keeps_valid_keys_and_reports_the_rest():
    valid, rejected = parse_config(json.dumps(
        {"v": 1, "lockout_seconds": 5, "led_brightness": 2, "colour": "red", "heartbeat_seconds": True}).encode())
    assert valid == {"lockout_seconds": 5.0}
    assert set(rejected) == {"led_brightness", "colour", "heartbeat_seconds"}
    assert rejected["colour"] == "unknown"

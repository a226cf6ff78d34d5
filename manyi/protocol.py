"""Wire protocol v1: topics and the vote, status and config messages.

This module is the single definition of what travels between terminals and the
control center; docs/protocol.md describes it for people. It depends only on the
standard library so that the terminal can use it on a Raspberry Pi.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

from .exc import ProtocolError
from .periods import CHINA_TZ as CHINA_TZ  # re-exported: terminals stamp their votes in China time

VERSION = 1
TOPIC_ROOT = "manyi/v1"
DEVICE_ID_PATTERN = r"[a-z0-9][a-z0-9-]{2,63}"
DEVICE_ID_RE = re.compile(rf"^{DEVICE_ID_PATTERN}\Z")  # \Z: "$" would accept a trailing newline
MAX_PAYLOAD_BYTES = 1024

SATISFIED, BASIC, UNSATISFIED = "satisfied", "basic", "unsatisfied"
RATINGS = (SATISFIED, BASIC, UNSATISFIED)
RATING_LABELS = {SATISFIED: "满意", BASIC: "基本满意", UNSATISFIED: "不满意"}

VOTES_SUBSCRIPTION = f"{TOPIC_ROOT}/votes/+"
VOTES_SHARED_SUBSCRIPTION = f"$share/manyi/{VOTES_SUBSCRIPTION}"
STATUS_SUBSCRIPTION = f"{TOPIC_ROOT}/status/+"

# Votes before this instant cannot be real: the system did not exist.
EARLIEST_PLAUSIBLE = datetime(2024, 1, 1, tzinfo=timezone.utc)
MAX_FUTURE_SKEW = timedelta(minutes=5)


def vote_topic(device: str) -> str:
    """Topic a terminal publishes its votes on."""
    return f"{TOPIC_ROOT}/votes/{device}"


def status_topic(device: str) -> str:
    """Retained topic of a terminal's online status and heartbeat."""
    return f"{TOPIC_ROOT}/status/{device}"


def config_topic(device: str) -> str:
    """Retained topic the control center writes a terminal's run-time settings to."""
    return f"{TOPIC_ROOT}/config/{device}"


def device_from_topic(topic: str, kind: str) -> str:
    """Return the device id of ``manyi/v1/{kind}/{device}`` or raise ProtocolError."""
    prefix = f"{TOPIC_ROOT}/{kind}/"
    if not topic.startswith(prefix):
        raise ProtocolError("bad_topic", f"topic {topic!r} is not under {prefix}")
    device = topic[len(prefix):]
    if not DEVICE_ID_RE.match(device):
        raise ProtocolError("bad_device", f"device id {device!r} in topic does not match {DEVICE_ID_PATTERN}")
    return device


def is_valid_device_id(device: object) -> bool:
    """True when ``device`` is a well-formed device id."""
    return isinstance(device, str) and bool(DEVICE_ID_RE.match(device))


def format_timestamp(moment: datetime) -> str:
    """ISO 8601 with milliseconds and the UTC offset, e.g. 2026-11-22T09:31:05.123+08:00."""
    if moment.tzinfo is None:
        raise ValueError("timestamps on the wire must carry their UTC offset")
    return moment.isoformat(timespec="milliseconds")


def parse_timestamp(text: str) -> datetime:
    """Parse a wire timestamp; raise ValueError when it has no UTC offset."""
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        raise ValueError(f"timestamp {text!r} has no UTC offset")
    return moment


@dataclass(frozen=True)
class Vote:
    """One press of one key on one terminal: the unit of everything downstream.

    (device, seq) is the vote's identity; ``pressed_at`` is the terminal's clock.
    """

    device: str
    seq: int
    rating: str
    pressed_at: str
    clock_ok: bool

    def to_dict(self) -> dict:
        """The JSON object of the wire format, keys in protocol order."""
        return {
            "v": VERSION,
            "device": self.device,
            "seq": self.seq,
            "rating": self.rating,
            "pressed_at": self.pressed_at,
            "clock_ok": self.clock_ok,
        }

    def to_json(self) -> bytes:
        """The exact bytes published on the wire (compact JSON, UTF-8)."""
        return json.dumps(self.to_dict(), ensure_ascii=False, separators=(",", ":")).encode("utf-8")

    @property
    def topic(self) -> str:
        """The topic this vote is published on."""
        return vote_topic(self.device)

    def pressed_datetime(self) -> datetime:
        """``pressed_at`` as an aware datetime."""
        return parse_timestamp(self.pressed_at)


def _load_json_object(payload: bytes) -> dict:
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise ProtocolError("too_large", f"payload is {len(payload)} bytes, the limit is {MAX_PAYLOAD_BYTES}")
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ProtocolError("bad_encoding", f"payload is not UTF-8 ({exc.reason} at byte {exc.start})") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ProtocolError("bad_json", f"payload is not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    if not isinstance(data, dict):
        raise ProtocolError("bad_json", f"payload is a JSON {type(data).__name__}, expected an object")
    if data.get("v") != VERSION:
        raise ProtocolError("bad_version", f"schema version v={data.get('v')!r}, expected {VERSION}")
    return data


def _device_message(topic: str, kind: str, payload: bytes) -> tuple[dict, str]:
    """The JSON object of a ``kind`` message and its device, which must be the topic's device."""
    topic_device = device_from_topic(topic, kind)
    data = _load_json_object(payload)
    device = _require(data, "device", str)
    if device != topic_device:
        raise ProtocolError("device_mismatch", f"payload device {device!r} differs from topic device {topic_device!r}")
    return data, device


def _require(data: dict, name: str, kind: type | tuple, reason: str = "bad_field") -> object:
    if name not in data:
        raise ProtocolError("missing_field", f"field {name!r} is missing")
    value = data[name]
    # bool is an int in Python; the protocol does not allow true as a seq.
    if isinstance(value, bool) and kind is not bool:
        raise ProtocolError(reason, f"field {name!r} must be {getattr(kind, '__name__', kind)}, got boolean")
    if not isinstance(value, kind):
        raise ProtocolError(reason, f"field {name!r} must be {getattr(kind, '__name__', kind)}, got {type(value).__name__}")
    return value


def parse_vote(topic: str, payload: bytes) -> Vote:
    """Validate a vote message as received from the broker and return the Vote.

    Raises ProtocolError with a reason code for anything that is not a valid v1 vote,
    including a topic whose device differs from the payload's (a forged id).
    The timestamp is only checked for form here; its plausibility is judged by
    :func:`plausible_time`, since an implausible clock never makes a vote invalid.
    """
    data, device = _device_message(topic, "votes", payload)
    seq = _require(data, "seq", int)
    if seq < 1:
        raise ProtocolError("bad_seq", f"seq must be >= 1, got {seq}")
    rating = _require(data, "rating", str)
    if rating not in RATINGS:
        raise ProtocolError("bad_rating", f"rating {rating!r} is not one of {', '.join(RATINGS)}")
    pressed_at = _require(data, "pressed_at", str)
    try:
        parse_timestamp(pressed_at)
    except ValueError as exc:
        raise ProtocolError("bad_timestamp", f"pressed_at {pressed_at!r}: {exc}") from None
    clock_ok = _require(data, "clock_ok", bool)
    return Vote(device=device, seq=seq, rating=rating, pressed_at=pressed_at, clock_ok=clock_ok)


def plausible_time(vote: Vote, received_at: datetime) -> bool:
    """True when the vote's own timestamp can be trusted.

    It cannot when the terminal said its clock was not synchronised, when it lies
    before 2024, or when it is more than five minutes ahead of the receipt time.
    """
    if not vote.clock_ok:
        return False
    pressed = vote.pressed_datetime()
    return EARLIEST_PLAUSIBLE <= pressed <= received_at + MAX_FUTURE_SKEW


@dataclass(frozen=True)
class Status:
    """A terminal's retained status: online heartbeat or the offline will."""

    device: str
    online: bool
    firmware: str | None = None
    boot_time: str | None = None
    outbox_depth: int | None = None
    last_seq: int | None = None
    repeats_ignored: int | None = None
    poisoned: int | None = None
    clock_ok: bool | None = None
    outbox_full: bool | None = None
    config_applied: dict = field(default_factory=dict)
    sent_at: str | None = None

    def to_dict(self) -> dict:
        """The JSON object of the wire format; the offline will carries only v, device, online."""
        data = {"v": VERSION, "device": self.device, "online": self.online}
        if not self.online:
            return data
        for name in ("firmware", "boot_time", "outbox_depth", "last_seq", "repeats_ignored",
                     "poisoned", "clock_ok", "outbox_full", "sent_at"):
            value = getattr(self, name)
            if value is not None:
                data[name] = value
        if self.config_applied:
            data["config_applied"] = dict(self.config_applied)
        return data

    def to_json(self) -> bytes:
        """The exact bytes published on the wire."""
        return json.dumps(self.to_dict(), ensure_ascii=False, separators=(",", ":")).encode("utf-8")


_STATUS_INT_FIELDS = ("outbox_depth", "last_seq", "repeats_ignored", "poisoned")
_STATUS_STR_FIELDS = ("firmware", "boot_time", "sent_at")
_STATUS_BOOL_FIELDS = ("clock_ok", "outbox_full")


def parse_status(topic: str, payload: bytes) -> Status:
    """Validate a status message and return the Status, or raise ProtocolError."""
    data, device = _device_message(topic, "status", payload)
    online = _require(data, "online", bool)
    values: dict = {}
    for names, kind in ((_STATUS_INT_FIELDS, int), (_STATUS_STR_FIELDS, str), (_STATUS_BOOL_FIELDS, bool)):
        for name in names:
            if data.get(name) is not None:
                values[name] = _require(data, name, kind)
    applied = data.get("config_applied") or {}
    if not isinstance(applied, dict):
        raise ProtocolError("bad_field", "field 'config_applied' must be an object")
    return Status(device=device, online=online, config_applied=applied, **values)


# Run-time settings the control center may change on a terminal, with their bounds.
CONFIG_KEYS = {
    "lockout_seconds": (float, 0.5, 60.0),
    "heartbeat_seconds": (float, 5.0, 3600.0),
    "led_brightness": (float, 0.0, 1.0),
}


def parse_config(payload: bytes) -> tuple[dict, dict]:
    """Split a config message into (valid settings, rejected settings with reasons).

    Unknown keys are rejected with the reason ``unknown``; the caller applies the valid
    ones and reports both. Raises ProtocolError only when the payload is not a v1 object.
    """
    data = _load_json_object(payload)
    valid, rejected = {}, {}
    for key, value in data.items():
        if key in ("v", "device"):
            continue
        if key not in CONFIG_KEYS:
            rejected[key] = "unknown"
            continue
        kind, low, high = CONFIG_KEYS[key]
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            rejected[key] = f"must be a number, got {type(value).__name__}"
        elif not low <= value <= high:
            rejected[key] = f"must be between {low} and {high}, got {value}"
        else:
            valid[key] = kind(value)
    return valid, rejected

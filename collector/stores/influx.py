"""The production vote store: InfluxDB 2 through influxdb-client, SYNCHRONOUS writes only.

(The client's batching write mode retries in the background and finally drops a
batch it cannot write; the collector must know whether a write committed before it
acknowledges to the broker, so every write here is synchronous and raises on failure.)

Point design (docs/collector.md explains it at length):

* ``vote``: tags ``device``, ``rating``; fields ``seq``, ``excluded`` (0/1), ``flags``,
  ``clock_ok``, ``pressed_at``, ``time_us``, ``received_us``. Timestamp = the vote time
  truncated to the millisecond plus ``seq mod 1_000_000`` nanoseconds. Two distinct
  votes of one terminal cannot share it (a terminal cannot make two presses within
  one millisecond and seqs one million apart), and a redelivered vote with a trusted
  clock maps to the very same point (same time text from the terminal, same seq).
* A vote whose clock was replaced by the receipt time would get a NEW receipt time
  on redelivery, hence a new point. So before writing, the store looks up which
  (device, seq) of the batch already exist (one Flux query over the batch's time
  span, plus one over ``lookback`` before the receipt times of clock-replaced votes)
  and writes only the new ones; the rest are counted as duplicates. The lookback is
  the broker's session expiry: a message cannot be redelivered after that.
* ``vote_feed`` (tag ``device``; time = receipt time, unique microsecond per store):
  the live feed in storage order; the cursor is that time in microseconds.
* ``dead_letter`` (tag ``reason``), ``terminal_status`` (tag ``device``; only the
  fields a status carries, so ``last()`` per field leaves the others as they were),
  ``collector_counter`` (field ``duplicates``): timestamps are unique microseconds.

Aggregation runs on the server in Flux: counts by device × rating × window.
"""

from __future__ import annotations

import base64
import json
import os
import threading
import time as _time
from datetime import datetime, timedelta, timezone
from typing import Iterable, Iterator, Sequence
from urllib.parse import parse_qs, urlsplit

from manyi.exc import ConfigError, StoreError
from manyi.periods import local_midnight, to_local

from .base import (
    BUCKETS, FLAG_CLOCK_REPLACED, CountRow, DeadLetter, FeedItem, Gap, StoredVote, TerminalStatus, VoteStore,
    WriteResult, flags_text, from_us, parse_flags, seq_conflict_letter, to_us,
)

VOTE, FEED, DEAD, STATUS, COUNTER = "vote", "vote_feed", "dead_letter", "terminal_status", "collector_counter"
DEFAULT_BUCKET = "manyi"
ALL_TIME = "1970-01-01T00:00:00Z"   # range start for whole-bucket queries
# An explicit stop: range() stops at now() by default, and a point stamped a little ahead of the
# server's clock (a terminal's clock within the 5-minute tolerance) must not vanish from queries.
FAR_FUTURE = "2200-01-01T00:00:00Z"
FAR_FUTURE_NS = 7_258_118_400 * 1_000_000_000   # 2200-01-01T00:00:00Z
DEFAULT_LOOKBACK = timedelta(days=7)
CHINA_MIDNIGHT_OFFSET = "16h"          # Flux windows align to the epoch (UTC); 16:00 UTC is 00:00 in China
_STATUS_FIELDS = ("online", "firmware", "boot_time", "outbox_depth", "reported_last_seq", "repeats_ignored",
                  "poisoned", "clock_ok", "outbox_full")


# --- pure helpers: point building and Flux text (unit-tested without a server) ------
def vote_time_ns(vote: StoredVote) -> int:
    """The vote point's timestamp: vote time truncated to the ms, plus seq mod 1e6 ns."""
    return (to_us(vote.time) // 1000) * 1_000_000 + vote.seq % 1_000_000


def rfc3339(ns: int) -> str:
    """A Flux time literal with nanoseconds, e.g. 2026-11-23T01:00:00.000000001Z."""
    seconds, rest = divmod(ns, 1_000_000_000)
    stamp = from_us(seconds * 1_000_000).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{stamp}.{rest:09d}Z"


def flux_string(text: str) -> str:
    """A Flux string literal (quotes, backslashes and ${ escaped)."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("${", "\\${") + '"'


def flux_set(values: Iterable[str]) -> str:
    """A Flux array of strings."""
    return "[" + ", ".join(flux_string(v) for v in values) + "]"


def vote_point(vote: StoredVote):
    """The ``vote`` point of a stored vote."""
    from influxdb_client import Point, WritePrecision

    return (Point(VOTE).tag("device", vote.device).tag("rating", vote.rating)
            .field("seq", int(vote.seq)).field("excluded", int(vote.excluded))
            .field("flags", flags_text(vote.flags)).field("clock_ok", bool(vote.clock_ok))
            .field("pressed_at", vote.pressed_at).field("time_us", to_us(vote.time))
            .field("received_us", to_us(vote.received_at))
            .time(vote_time_ns(vote), WritePrecision.NS))


def feed_point(vote: StoredVote, stamp_us: int):
    """The ``vote_feed`` point of a newly stored vote at unique receipt microsecond ``stamp_us``."""
    from influxdb_client import Point, WritePrecision

    return (Point(FEED).tag("device", vote.device).field("seq", int(vote.seq)).field("rating", vote.rating)
            .field("time_us", to_us(vote.time)).field("received_us", to_us(vote.received_at))
            .field("flags", flags_text(vote.flags)).time(stamp_us * 1000, WritePrecision.NS))


def dead_letter_point(letter: DeadLetter, stamp_us: int):
    """The ``dead_letter`` point (raw bytes base64-encoded)."""
    from influxdb_client import Point, WritePrecision

    return (Point(DEAD).tag("reason", letter.reason).field("topic", letter.topic)
            .field("payload_b64", base64.b64encode(bytes(letter.payload)).decode("ascii"))
            .field("detail", letter.detail).field("received_us", to_us(letter.received_at))
            .time(stamp_us * 1000, WritePrecision.NS))


def status_point(status: TerminalStatus, stamp_us: int):
    """The ``terminal_status`` point with only the fields the status carries (None if none)."""
    from influxdb_client import Point, WritePrecision

    point = Point(STATUS).tag("device", status.device)
    fields = 0
    for name in _STATUS_FIELDS:
        value = getattr(status, name)
        if value is not None:
            point.field(name, value if isinstance(value, (bool, str)) else int(value))
            fields += 1
    for name in ("last_seen", "status_at"):
        value = getattr(status, name)
        if value is not None:
            point.field(f"{name}_us", to_us(value))
            fields += 1
    if status.config_applied:
        point.field("config_applied", json.dumps(status.config_applied, ensure_ascii=False, sort_keys=True))
        fields += 1
    return point.time(stamp_us * 1000, WritePrecision.NS) if fields else None


def _source(bucket: str, start: str, stop: str = FAR_FUTURE) -> str:
    return f"from(bucket: {flux_string(bucket)})\n  |> range(start: {start}, stop: {stop})\n"


def _device_filter(devices: Iterable[str] | None) -> str:
    if devices is None:
        return ""
    return f"  |> filter(fn: (r) => contains(value: r.device, set: {flux_set(sorted(set(devices)))}))\n"


def counts_flux(bucket: str, start_ns: int, end_ns: int, bucket_size: str = "hour",
                devices: Iterable[str] | None = None) -> str:
    """Flux that counts votes (total and excluded) by device × rating × hour or China day."""
    window = "every: 1h" if bucket_size == "hour" else f"every: 1d, offset: {CHINA_MIDNIGHT_OFFSET}"
    return (
        _source(bucket, rfc3339(start_ns), rfc3339(end_ns))
        + f'  |> filter(fn: (r) => r._measurement == "{VOTE}" and r._field == "excluded")\n'
        + _device_filter(devices)
        + '  |> group(columns: ["device", "rating"])\n'
        + f"  |> window({window})\n"
        + "  |> reduce(identity: {total: 0, excluded: 0},\n"
        + "            fn: (r, accumulator) => ({total: accumulator.total + 1, excluded: accumulator.excluded + r._value}))\n"
    )


def existing_flux(bucket: str, start_ns: int, end_ns: int, devices: Iterable[str],
                  seqs: Iterable[int] | None = None) -> str:
    """Flux listing (device, rating, seq, pressed_at) of stored votes of ``devices`` with point time in
    [start, end) (and, given ``seqs``, only those seqs)."""
    seq_filter = ("" if seqs is None else
                  f"  |> filter(fn: (r) => contains(value: r.seq, set: [{', '.join(str(int(q)) for q in sorted(set(seqs)))}]))\n")
    return (
        _source(bucket, rfc3339(start_ns), rfc3339(end_ns))
        + f'  |> filter(fn: (r) => r._measurement == "{VOTE}" and (r._field == "seq" or r._field == "pressed_at"))\n'
        + _device_filter(devices)
        + '  |> pivot(rowKey: ["_time", "device", "rating"], columnKey: ["_field"], valueColumn: "_value")\n'
        + seq_filter
        + '  |> keep(columns: ["device", "rating", "seq", "pressed_at"])\n'
    )


def heard_flux(bucket: str, start_ns: int, end_ns: int, devices: Iterable[str] | None = None) -> str:
    """Flux listing (device, hour) of the hours with a received vote (``vote_feed``) or status of the terminal."""
    return (
        _source(bucket, rfc3339(start_ns), rfc3339(end_ns))
        + f'  |> filter(fn: (r) => (r._measurement == "{FEED}" and r._field == "seq")'
        + f' or (r._measurement == "{STATUS}" and r._field == "last_seen_us"))\n'
        + _device_filter(devices)
        + '  |> group(columns: ["device"])\n'
        + '  |> aggregateWindow(every: 1h, fn: count, createEmpty: false, timeSrc: "_start")\n'
        + '  |> keep(columns: ["device", "_time"])\n'
    )


def max_seq_flux(bucket: str, devices: Iterable[str]) -> str:
    """Flux giving each of ``devices`` its highest stored seq (all time)."""
    return (
        _source(bucket, "0")
        + f'  |> filter(fn: (r) => r._measurement == "{VOTE}" and r._field == "seq")\n'
        + _device_filter(devices)
        + '  |> group(columns: ["device"])\n'
        + "  |> max()\n"
        + '  |> keep(columns: ["device", "_value"])\n'
    )


def feed_flux(bucket: str, after_us: int | None, limit: int, devices: Iterable[str] | None = None) -> str:
    """Flux of the live feed: after a cursor oldest first, or the latest ``limit`` newest first.

    Without a cursor, ``tail()`` keeps the last ``limit`` points of each series before the
    pivot, so the whole history is not pivoted just to find the newest votes.
    """
    limit = int(limit)
    if after_us is not None:
        head = _source(bucket, rfc3339((after_us + 1) * 1000))
        head += f'  |> filter(fn: (r) => r._measurement == "{FEED}")\n' + _device_filter(devices)
        order = "false"
    else:
        head = _source(bucket, ALL_TIME) + f'  |> filter(fn: (r) => r._measurement == "{FEED}")\n'
        head += _device_filter(devices) + f"  |> tail(n: {limit})\n"
        order = "true"
    return (
        head
        + '  |> pivot(rowKey: ["_time"], columnKey: ["_field"], valueColumn: "_value")\n'
        + "  |> group()\n"
        + f'  |> sort(columns: ["_time"], desc: {order})\n'
        + f"  |> limit(n: {limit})\n"
    )


def gaps_flux(bucket: str, device: str | None = None) -> str:
    """Flux that returns, per device, the first stored seq and every seq that follows a hole."""
    return (
        _source(bucket, ALL_TIME)
        + f'  |> filter(fn: (r) => r._measurement == "{VOTE}" and r._field == "seq")\n'
        + (_device_filter([device]) if device else "")
        + '  |> group(columns: ["device"])\n'
        + '  |> sort(columns: ["_value"])\n'
        + '  |> duplicate(column: "_value", as: "seq")\n'
        + '  |> difference(columns: ["_value"], keepFirst: true)\n'
        + "  |> filter(fn: (r) => not exists r._value or r._value > 1)\n"
        + '  |> keep(columns: ["device", "seq", "_value"])\n'
    )


def _floor_bucket(moment: datetime, bucket: str) -> datetime:
    # China time is a whole-hour offset: its clock hours are the UTC hours.
    local = to_local(moment)
    if bucket == "hour":
        return local.replace(minute=0, second=0, microsecond=0)
    return local_midnight(local.date())


def settings_from_url(url: str, env=None) -> dict:
    """url, org, bucket, token from ``influxdb://[host:port][?org=..&bucket=..&scheme=https]`` and INFLUXDB_V2_*."""
    env = os.environ if env is None else env
    parts = urlsplit(url)
    if parts.scheme not in ("influxdb", "influxdb2"):
        raise ConfigError(f"store URL {url!r}: expected influxdb://")
    query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    server = env.get("INFLUXDB_V2_URL")
    if parts.netloc:
        server = f"{query.get('scheme', 'http')}://{parts.netloc}"
    values = {
        "url": server,
        "org": query.get("org") or env.get("INFLUXDB_V2_ORG"),
        "bucket": query.get("bucket") or env.get("INFLUXDB_V2_BUCKET") or DEFAULT_BUCKET,
        "token": query.get("token") or env.get("INFLUXDB_V2_TOKEN"),
    }
    missing = [name for name in ("url", "org", "token") if not values[name]]
    if missing:
        raise ConfigError(f"store URL {url!r}: InfluxDB {', '.join(missing)} not set; use "
                          + ", ".join(f"INFLUXDB_V2_{m.upper()}" for m in missing))
    return values


class InfluxStore(VoteStore):
    """Votes, dead letters and terminal status in one InfluxDB 2 bucket."""

    def __init__(self, url: str, org: str, bucket: str = DEFAULT_BUCKET, token: str | None = None, *,
                 lookback: timedelta = DEFAULT_LOOKBACK, timeout_ms: int = 10_000):
        from influxdb_client import InfluxDBClient
        from influxdb_client.client.write_api import SYNCHRONOUS

        self.server, self.org, self.bucket, self.lookback = url, org, bucket, lookback
        self.url = f"influxdb://{urlsplit(url).netloc}?org={org}&bucket={bucket}"
        self.client = InfluxDBClient(url=url, token=token, org=org, timeout=timeout_ms, retries=False)
        self.write_api = self.client.write_api(write_options=SYNCHRONOUS)
        self.query_api = self.client.query_api()
        self._lock = threading.Lock()
        self._last_us = 0
        self._max_seq: dict[str, tuple[int, float]] = {}    # device -> (highest stored seq, when read)

    @classmethod
    def from_url(cls, url: str) -> "InfluxStore":
        """``influxdb://`` with INFLUXDB_V2_URL/ORG/BUCKET/TOKEN, or ``influxdb://host:8086?org=..&bucket=..``."""
        return cls(**settings_from_url(url))

    @classmethod
    def temporary(cls, bucket: str) -> "InfluxStore":
        """A store on a new bucket of the INFLUXDB_V2_* server (tests); :meth:`drop` deletes it."""
        store = cls.from_url("influxdb://")
        store.bucket = bucket
        store.url = f"influxdb://{urlsplit(store.server).netloc}?org={store.org}&bucket={bucket}"
        org_id = store.client.organizations_api().find_organizations(org=store.org)[0].id
        store.client.buckets_api().create_bucket(bucket_name=bucket, org_id=org_id)
        return store

    def drop(self) -> None:
        """Delete this store's bucket (tests only)."""
        found = self.client.buckets_api().find_bucket_by_name(self.bucket)
        if found:
            self.client.buckets_api().delete_bucket(found)

    def __repr__(self) -> str:
        return f"InfluxStore({self.server!r}, org={self.org!r}, bucket={self.bucket!r})"

    def _unique_us(self, moment: datetime | None = None) -> int:
        """A microsecond stamp unique within this store object, never going backwards."""
        with self._lock:
            wanted = to_us(moment) if moment else int(_time.time() * 1_000_000)
            self._last_us = max(wanted, self._last_us + 1)
            return self._last_us

    def _fail(self, what: str, exc: Exception) -> StoreError:
        return StoreError(f"InfluxDB {self.server} bucket {self.bucket!r}: {what} failed: {exc}")

    def _query(self, flux: str, what: str) -> list[dict]:
        from influxdb_client.client.exceptions import InfluxDBError
        from urllib3.exceptions import HTTPError

        try:
            tables = self.query_api.query(flux, org=self.org)
        except (InfluxDBError, HTTPError, OSError) as exc:
            raise self._fail(what, exc) from exc
        return [record.values for table in tables for record in table.records]

    # --- writing ------------------------------------------------------------------
    def _existing(self, votes: Sequence[StoredVote]) -> dict[tuple[str, int], tuple[str, str]]:
        """(device, seq) -> (rating, pressed_at) of ``votes`` already stored: the lookup before each write.

        One query over the batch's time span (a redelivery with a trusted clock maps to the same
        instant) and one over ``lookback`` before the receipt times of clock-replaced votes; then,
        for votes whose seq is not above the terminal's highest stored seq and that neither query
        found, one query over all time for exactly those seqs, so that a terminal numbering from
        an old seq again (a lost outbox) is found however long ago the first vote was stored.
        """
        if not votes:
            return {}
        spans = []
        stamps = [vote_time_ns(v) for v in votes]
        spans.append((min(stamps) // 1_000_000 * 1_000_000, max(stamps) + 1, {v.device for v in votes}))
        replaced = [v for v in votes if FLAG_CLOCK_REPLACED in v.flags]
        if replaced:
            low = min(to_us(v.received_at) for v in replaced) * 1000 - int(self.lookback.total_seconds() * 1e9)
            high = max(to_us(v.received_at) for v in replaced) * 1000 + 1_000_000
            spans.append((low, high, {v.device for v in replaced}))
        found: dict[tuple[str, int], tuple[str, str]] = {}

        def add(rows):
            for row in rows:
                found.setdefault((row["device"], int(row["seq"])), (row["rating"], row.get("pressed_at") or ""))

        for low, high, devices in spans:
            add(self._query(existing_flux(self.bucket, low, high, devices), "duplicate lookup"))
        highest = self._highest_seqs({v.device for v in votes})
        older = [v for v in votes if (v.device, v.seq) not in found and v.seq <= highest.get(v.device, 0)]
        if older:
            add(self._query(existing_flux(self.bucket, 0, FAR_FUTURE_NS, {v.device for v in older},
                                          {v.seq for v in older}), "seq reuse lookup"))
        return found

    MAX_SEQ_TTL = 60.0      # seconds: how long a terminal's highest stored seq is trusted without asking again

    def _highest_seqs(self, devices: set[str]) -> dict[str, int]:
        """Each device's highest stored seq (0: none), read from the server at most once a minute per device."""
        now = _time.monotonic()
        stale = sorted(d for d in devices if now - self._max_seq.get(d, (0, -1e9))[1] > self.MAX_SEQ_TTL)
        if stale:
            got = {row["device"]: int(row["_value"]) for row in self._query(max_seq_flux(self.bucket, stale),
                                                                          "highest seq")}
            for device in stale:
                self._max_seq[device] = (got.get(device, 0), now)
        return {d: self._max_seq[d][0] for d in devices}

    def write(self, votes: Sequence[StoredVote] = (), dead_letters: Sequence[DeadLetter] = (),
              statuses: Sequence[TerminalStatus] = ()) -> WriteResult:
        """Look up which votes exist, then write the new ones and everything else in one synchronous request."""
        from influxdb_client import Point, WritePrecision
        from influxdb_client.client.exceptions import InfluxDBError
        from urllib3.exceptions import HTTPError

        existing = self._existing(votes)
        new, seen, conflicts = [], dict(existing), []
        for vote in votes:
            key = (vote.device, vote.seq)
            if key not in seen:
                seen[key] = (vote.rating, vote.pressed_at)
                new.append(vote)
                continue
            letter = seq_conflict_letter(vote, *seen[key])
            if letter is not None:
                conflicts.append(letter)
        dead_letters = list(dead_letters) + conflicts
        duplicates = len(votes) - len(new) - len(conflicts)
        points = [vote_point(v) for v in new]
        points += [feed_point(v, self._unique_us(v.received_at)) for v in new]
        points += [dead_letter_point(d, self._unique_us(d.received_at)) for d in dead_letters]
        points += [p for p in (status_point(s, self._unique_us()) for s in statuses) if p is not None]
        if duplicates:
            points.append(Point(COUNTER).field("duplicates", duplicates).time(self._unique_us() * 1000, WritePrecision.NS))
        if points:
            try:
                self.write_api.write(bucket=self.bucket, org=self.org, record=points)
            except (InfluxDBError, HTTPError, OSError) as exc:
                raise self._fail(f"write of {len(points)} points", exc) from exc
        for vote in new:
            known = self._max_seq.get(vote.device)
            if known is not None and vote.seq > known[0]:
                self._max_seq[vote.device] = (vote.seq, known[1])
        return WriteResult(inserted=len(new), duplicates=duplicates, dead_letters=len(dead_letters),
                           statuses=len(statuses))

    # --- reading ------------------------------------------------------------------
    def counts(self, start: datetime, end: datetime, bucket: str = "hour",
               devices: Iterable[str] | None = None) -> list[CountRow]:
        """Counts computed by the server (Flux window + reduce), one row per device × bucket × rating."""
        if bucket not in BUCKETS:
            raise ValueError(f"bucket {bucket!r} must be one of {', '.join(BUCKETS)}")
        if devices is not None:
            devices = list(devices)
            if not devices:
                return []
        if end <= start:
            return []
        flux = counts_flux(self.bucket, to_us(start) * 1000, to_us(end) * 1000, bucket, devices)
        totals: dict[tuple, list[int]] = {}
        for row in self._query(flux, "counts"):
            key = (row["device"], _floor_bucket(row["_start"], bucket), row["rating"])
            acc = totals.setdefault(key, [0, 0])
            acc[0] += int(row["total"]) - int(row["excluded"])
            acc[1] += int(row["excluded"])
        return [CountRow(device=d, bucket=b, rating=r, count=kept, excluded=excl)
                for (d, b, r), (kept, excl) in sorted(totals.items())]

    def feed(self, after: str | None = None, limit: int = 200,
             devices: Iterable[str] | None = None) -> list[FeedItem]:
        """The ``vote_feed`` measurement after a cursor (receipt microseconds), of ``devices`` when given."""
        after_us = None
        if after is not None:
            try:
                after_us = int(after)
            except ValueError:
                raise ValueError(f"feed cursor {after!r} is not one this store gave out") from None
        rows = self._query(feed_flux(self.bucket, after_us, limit, devices), "feed")
        if after_us is None:
            rows.reverse()
        return [FeedItem(cursor=str(to_us(row["_time"])), device=row["device"], seq=int(row["seq"]),
                         rating=row["rating"], time=from_us(row["time_us"]), received_at=from_us(row["received_us"]),
                         flags=parse_flags(row.get("flags"))) for row in rows]

    def votes(self, start: datetime, end: datetime, devices: Iterable[str] | None = None,
              ratings: Iterable[str] | None = None) -> Iterator[StoredVote]:
        """Raw votes (pivoted points) in [start, end), ordered by time."""
        flux = (_source(self.bucket, rfc3339(to_us(start) * 1000), rfc3339(to_us(end) * 1000))
                + f'  |> filter(fn: (r) => r._measurement == "{VOTE}")\n' + _device_filter(devices))
        if ratings is not None:
            flux += f"  |> filter(fn: (r) => contains(value: r.rating, set: {flux_set(ratings)}))\n"
        flux += '  |> pivot(rowKey: ["_time"], columnKey: ["_field"], valueColumn: "_value")\n  |> group()\n'
        rows = sorted(self._query(flux, "votes"), key=lambda r: (r["time_us"], r["device"], r["seq"]))
        for row in rows:
            yield StoredVote(device=row["device"], seq=int(row["seq"]), rating=row["rating"],
                             time=from_us(row["time_us"]), received_at=from_us(row["received_us"]),
                             pressed_at=row["pressed_at"], clock_ok=bool(row["clock_ok"]),
                             flags=parse_flags(row.get("flags")))

    def dead_letters(self, limit: int = 100, reason: str | None = None) -> list[DeadLetter]:
        """The most recent dead letters, newest first."""
        flux = _source(self.bucket, ALL_TIME) + f'  |> filter(fn: (r) => r._measurement == "{DEAD}")\n'
        if reason:
            flux += f"  |> filter(fn: (r) => r.reason == {flux_string(reason)})\n"
        flux += ('  |> pivot(rowKey: ["_time"], columnKey: ["_field"], valueColumn: "_value")\n  |> group()\n'
                 f'  |> sort(columns: ["_time"], desc: true)\n  |> limit(n: {int(limit)})\n')
        return [DeadLetter(topic=r["topic"], payload=base64.b64decode(r["payload_b64"]), reason=r["reason"],
                           detail=r["detail"], received_at=from_us(r["received_us"]))
                for r in self._query(flux, "dead letters")]

    def dead_letter_counts(self) -> dict[str, int]:
        """Dead letters by reason (counted on the server)."""
        flux = (_source(self.bucket, ALL_TIME)
                + f'  |> filter(fn: (r) => r._measurement == "{DEAD}" and r._field == "received_us")\n'
                + '  |> group(columns: ["reason"])\n  |> count()\n')
        return {r["reason"]: int(r["_value"]) for r in sorted(self._query(flux, "dead letter counts"),
                                                                key=lambda r: r["reason"])}

    def _vote_summary(self) -> dict[str, dict]:
        """Per device: n, max_seq (server-side reduce), last vote time and last receipt."""
        flux = (_source(self.bucket, ALL_TIME)
                + f'  |> filter(fn: (r) => r._measurement == "{VOTE}" and r._field == "seq")\n'
                + '  |> group(columns: ["device"])\n'
                + "  |> reduce(identity: {n: 0, max_seq: 0},\n"
                + "            fn: (r, accumulator) => ({n: accumulator.n + 1,"
                + " max_seq: if r._value > accumulator.max_seq then r._value else accumulator.max_seq}))\n")
        summary = {r["device"]: {"n": int(r["n"]), "max_seq": int(r["max_seq"])} for r in self._query(flux, "terminals")}
        flux = (_source(self.bucket, ALL_TIME)
                + f'  |> filter(fn: (r) => r._measurement == "{VOTE}" and (r._field == "time_us" or r._field == "received_us"))\n'
                + '  |> group(columns: ["device", "_field"])\n  |> max()\n')
        for r in self._query(flux, "terminals"):
            summary.setdefault(r["device"], {"n": 0, "max_seq": 0})[r["_field"]] = int(r["_value"])
        return summary

    def terminals(self) -> list[TerminalStatus]:
        """Status fields (last value of each; max for the two times) joined with vote summaries."""
        flux = (_source(self.bucket, ALL_TIME) + f'  |> filter(fn: (r) => r._measurement == "{STATUS}")\n'
                + '  |> group(columns: ["device", "_field"])\n  |> last()\n')
        status: dict[str, dict] = {}
        for r in self._query(flux, "terminal status"):
            status.setdefault(r["device"], {})[r["_field"]] = r["_value"]
        flux = (_source(self.bucket, ALL_TIME)
                + f'  |> filter(fn: (r) => r._measurement == "{STATUS}" and (r._field == "last_seen_us" or r._field == "status_at_us"))\n'
                + '  |> group(columns: ["device", "_field"])\n  |> max()\n')
        for r in self._query(flux, "terminal status"):
            status.setdefault(r["device"], {})[r["_field"]] = r["_value"]
        votes = self._vote_summary()
        result = []
        for device in sorted(set(status) | set(votes)):
            s, v = status.get(device, {}), votes.get(device, {"n": 0, "max_seq": 0})
            seen = [x for x in (s.get("last_seen_us"), v.get("received_us")) if x is not None]
            max_seq = v["max_seq"] or None
            result.append(TerminalStatus(
                device=device, online=s.get("online"), last_seen=from_us(max(seen)) if seen else None,
                status_at=from_us(s.get("status_at_us")), firmware=s.get("firmware"), boot_time=s.get("boot_time"),
                outbox_depth=s.get("outbox_depth"), reported_last_seq=s.get("reported_last_seq"),
                repeats_ignored=s.get("repeats_ignored"), poisoned=s.get("poisoned"), clock_ok=s.get("clock_ok"),
                outbox_full=s.get("outbox_full"),
                config_applied=json.loads(s["config_applied"]) if s.get("config_applied") else {},
                last_vote_at=from_us(v.get("time_us")), max_seq=max_seq, vote_count=v["n"],
                missing=(max_seq or 0) - v["n"]))
        return result

    def heard_hours(self, start: datetime, end: datetime, devices: Iterable[str] | None = None) -> list[tuple[str, datetime]]:
        """(device, UTC hour start) of the hours with a vote received or a status stored, counted on the server."""
        low = to_us(_floor_bucket(start, "hour")) * 1000
        rows = self._query(heard_flux(self.bucket, low, to_us(end) * 1000, devices), "heard hours")
        found = {(row["device"], row["_time"].astimezone(timezone.utc)) for row in rows}
        return sorted(found)

    def gaps(self, device: str | None = None) -> list[Gap]:
        """Holes in each device's seqs, found on the server (sort + difference)."""
        found = []
        for row in self._query(gaps_flux(self.bucket, device), "gaps"):
            seq, diff = int(row["seq"]), row.get("_value")
            if diff is None:
                if seq > 1:
                    found.append(Gap(row["device"], 1, seq - 1))
            else:
                found.append(Gap(row["device"], seq - int(diff) + 1, seq - 1))
        return sorted(found, key=lambda g: (g.device, g.first))

    def stats(self) -> dict:
        """Totals for operators (several small server-side aggregations)."""
        flux = (_source(self.bucket, ALL_TIME) + f'  |> filter(fn: (r) => r._measurement == "{VOTE}" and r._field == "excluded")\n'
                + "  |> group()\n  |> reduce(identity: {n: 0, x: 0}, fn: (r, accumulator) =>"
                + " ({n: accumulator.n + 1, x: accumulator.x + r._value}))\n")
        rows = self._query(flux, "stats")
        votes, excluded = (int(rows[0]["n"]), int(rows[0]["x"])) if rows else (0, 0)
        flux = (_source(self.bucket, ALL_TIME) + f'  |> filter(fn: (r) => r._measurement == "{COUNTER}" and r._field == "duplicates")\n'
                + "  |> group()\n  |> sum()\n")
        rows = self._query(flux, "stats")
        terminals = self.terminals()
        return {"votes": votes, "excluded": excluded, "duplicates": int(rows[0]["_value"]) if rows else 0,
                "dead_letters": self.dead_letter_counts(), "terminals": len(terminals),
                "missing": sum(t.missing for t in terminals)}

    def close(self) -> None:
        """Close the HTTP client."""
        self.client.close()

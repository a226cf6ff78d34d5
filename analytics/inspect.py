"""Terminal inspection: health and suspicious voting patterns, computed from plain data.

Pure functions: they take what the store and the registry returned (terminal status,
seq gaps, count rows, raw votes) and a moment, and return rows or flags. The control
center's /terminals page and API show the result; nothing here does I/O.

Patterns shown for a human to inspect:

- ``burst``: votes the collector flagged as a burst (its one rule, collector.validate.BurstRule:
  more than ``burst_max_votes`` presses of one rating at one terminal within
  ``burst_window_seconds``; such votes are kept but not scored), shown with when each run
  began. This module does not judge bursts again with other thresholds.

Flagged, never excluded automatically:

- ``no_negative``: a busy terminal with many busy days and not a single 不满意 on any of them;
- ``key_never_pressed``: a terminal with plenty of votes on which one key was never pressed
  (a broken key, or a key covered up).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Iterable

from collector.stores.base import FLAG_BURST
from manyi.periods import to_local
from manyi.protocol import RATING_LABELS, RATINGS, UNSATISFIED

PATTERN_LABELS = {
    "burst": "同一按键连续快速按压",
    "no_negative": "繁忙窗口多日无一条不满意",
    "key_never_pressed": "某按键从未被按下",
}


@dataclass(frozen=True)
class InspectParams:
    """Thresholds of the health checks and pattern detection."""

    silent_minutes: float = 60.0       # online, hall open, no vote for this long -> silent
    offline_minutes: float = 10.0      # nothing heard for this long -> offline whatever the last status said
    busy_day_votes: int = 30           # a day with at least this many votes is busy
    no_negative_days: int = 5          # flag after this many busy days with no 不满意 (and none at all)
    key_min_votes: int = 100           # a key never pressed is only suspicious after this many votes


@dataclass(frozen=True)
class Finding:
    """One suspicious pattern at one terminal."""

    device: str
    pattern: str
    detail: str

    @property
    def label(self) -> str:
        """The pattern's name in Chinese."""
        return PATTERN_LABELS.get(self.pattern, self.pattern)

    def to_dict(self) -> dict:
        """A JSON-ready dict."""
        return {"device": self.device, "pattern": self.pattern, "label": self.label, "detail": self.detail}


def is_online(status, now: datetime, params: InspectParams = InspectParams()) -> bool:
    """True when the terminal's last status said online and it was heard from recently."""
    if not status or status.online is not True:
        return False
    if status.last_seen is None:
        return True
    return now - status.last_seen <= timedelta(minutes=params.offline_minutes)


def is_silent(status, hall, now: datetime, params: InspectParams = InspectParams()) -> bool:
    """Online while its hall is open (now and ``silent_minutes`` ago) but no vote for ``silent_minutes``."""
    if hall is None or not is_online(status, now, params):
        return False
    quiet = timedelta(minutes=params.silent_minutes)
    if not (hall.is_open(now) and hall.is_open(now - quiet)):
        return False
    return status.last_vote_at is None or now - status.last_vote_at >= quiet


def find_bursts(votes: Iterable) -> list[Finding]:
    """The runs of votes the collector flagged as bursts (FLAG_BURST), one finding per terminal and rating.

    ``votes``: objects with device, rating, time and flags (e.g. StoredVote)."""
    runs: dict[tuple[str, str], list[datetime]] = defaultdict(list)
    for vote in votes:
        if FLAG_BURST in vote.flags:
            runs[(vote.device, vote.rating)].append(vote.time)
    findings = []
    for (device, rating), times in sorted(runs.items()):
        local = to_local(min(times)).strftime("%m-%d %H:%M:%S")
        findings.append(Finding(device, "burst", f"{local} 起采集端标记连按「{RATING_LABELS.get(rating, rating)}」"
                                                 f"{len(times)} 次（保留，不计分）"))
    return findings


def find_count_patterns(rows: Iterable, params: InspectParams = InspectParams()) -> list[Finding]:
    """Patterns visible in daily count rows (CountRow: device, bucket, rating, count, excluded).

    Flags votes the collector excluded as bursts, busy terminals without any 不满意, and
    keys never pressed on terminals with at least ``key_min_votes`` votes.
    """
    per_day: dict[str, dict] = defaultdict(lambda: defaultdict(lambda: defaultdict(int)))
    totals: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    excluded: dict[str, int] = defaultdict(int)
    for row in rows:
        n = row.count + row.excluded
        per_day[row.device][to_local(row.bucket).date()][row.rating] += n
        totals[row.device][row.rating] += n
        excluded[row.device] += row.excluded
    findings = []
    for device in sorted(totals):
        if excluded[device]:
            findings.append(Finding(device, "burst", f"采集端已标记 {excluded[device]} 条连按评价（不计分）"))
        busy = [day for day, counts in per_day[device].items() if sum(counts.values()) >= params.busy_day_votes]
        if len(busy) >= params.no_negative_days and totals[device][UNSATISFIED] == 0:
            findings.append(Finding(device, "no_negative",
                                    f"{len(busy)} 个繁忙日（每日≥{params.busy_day_votes}条）无一条不满意"))
        total = sum(totals[device].values())
        if total >= params.key_min_votes:
            never = [RATING_LABELS[r] for r in RATINGS if totals[device][r] == 0]
            if never:
                findings.append(Finding(device, "key_never_pressed",
                                        f"共 {total} 条评价，「{'」「'.join(never)}」从未按下"))
    return findings


def terminal_rows(statuses: Iterable, gaps: Iterable, registry, now: datetime,
                  params: InspectParams = InspectParams(), devices: Iterable[str] | None = None) -> list[dict]:
    """One row per terminal: location, online, silent, last vote, seqs and gaps, outbox, clock, firmware.

    ``devices`` adds terminals of the registry never heard of (shown as never connected).
    """
    by_device = {s.device: s for s in statuses}
    gap_text: dict[str, list[str]] = defaultdict(list)
    for gap in gaps:
        gap_text[gap.device].append(str(gap.first) if gap.size == 1 else f"{gap.first}–{gap.last}")
    names = sorted(set(by_device) | set(devices or ()))
    rows = []
    for device in names:
        status = by_device.get(device)
        location = registry.current_location(device)
        hall = registry.halls.get(location.hall_id) if location else None
        county = registry.counties.get(location.county_code) if location else None
        township = registry.townships.get(location.township_code) if location else None
        window = registry.windows.get(location.window_id) if location else None
        online = is_online(status, now, params)
        rows.append({
            "device": device,
            "county_code": location.county_code if location else None,
            "county_name": county.name if county else None,
            "township_name": township.name if township else None,
            "hall_id": hall.id if hall else None,
            "hall_name": hall.name if hall else None,
            "window_name": window.name if window else None,
            "known": status is not None,
            "online": online,
            "hall_open": bool(hall and hall.is_open(now)),
            "silent": is_silent(status, hall, now, params),
            "last_seen": _iso(status.last_seen) if status else None,
            "last_vote_at": _iso(status.last_vote_at) if status else None,
            "max_seq": status.max_seq if status else None,
            "reported_last_seq": status.reported_last_seq if status else None,
            "vote_count": status.vote_count if status else 0,
            "missing": status.missing if status else 0,
            "gaps": gap_text.get(device, []),
            "outbox_depth": status.outbox_depth if status else None,
            "outbox_full": status.outbox_full if status else None,
            "clock_ok": status.clock_ok if status else None,
            "firmware": status.firmware if status else None,
            "repeats_ignored": status.repeats_ignored if status else None,
            "findings": [],
        })
    return rows


def _iso(moment: datetime | None) -> str | None:
    return to_local(moment).isoformat(timespec="seconds") if moment else None

"""Helpers for the follow-up, alert and D2 web tests: a small real Registry and vote builders."""

from __future__ import annotations

from datetime import datetime, timezone

from collector.stores.base import StoredVote
from manyi.periods import CHINA_TZ
from manyi.registry import Assignment, County, Hall, Registry, RosterEntry, Township, Window

HOSTILE = '<script>alert("x")</script>镇'
HOSTILE_HALL = '<img src=x onerror=alert(1)>大厅'
SINCE = datetime(2026, 1, 1, tzinfo=CHINA_TZ)
# Two counties, one township each; hall A has two windows (w01 with a roster), hall B one.
DEV_A1, DEV_A2, DEV_B1 = "hz-371702001-w01", "hz-371702001-w02", "hz-371721001-w01"


def small_registry(hostile: bool = False) -> Registry:
    """A registry built in code: 牡丹区 (371702) and 曹县 (371721); ``hostile`` names a township with markup."""
    counties = {"371702": County("371702", "牡丹区", "district"), "371721": County("371721", "曹县", "county")}
    townships = {
        "371702001": Township("371702001", HOSTILE if hostile else "东城街道", "371702"),
        "371721001": Township("371721001", "曹城街道", "371721"),
    }
    hours = "mon-fri 09:00-12:00,13:30-17:30"
    halls = {
        "h-371702001": Hall("h-371702001", HOSTILE_HALL if hostile else "东城便民服务中心", "371702001", 115.48, 35.25,
                            False, hours, "371702"),
        "h-371721001": Hall("h-371721001", "曹城便民服务中心", "371721001", 115.54, 34.83, True, hours, "371721"),
    }
    windows = {
        "w-371702001-01": Window("w-371702001-01", "h-371702001", "1号窗口"),
        "w-371702001-02": Window("w-371702001-02", "h-371702001", "2号窗口"),
        "w-371721001-01": Window("w-371721001-01", "h-371721001", "1号窗口"),
    }
    assignments = [
        Assignment(DEV_A1, "w-371702001-01", SINCE, None),
        Assignment(DEV_A2, "w-371702001-02", SINCE, None),
        Assignment(DEV_B1, "w-371721001-01", SINCE, None),
    ]
    roster = [RosterEntry("w-371702001-01", "s001", "李娜", SINCE, None)]
    return Registry(counties=counties, townships=townships, halls=halls, windows=windows,
                    assignments=assignments, roster=roster)


def vote(device: str, seq: int, rating: str, time: datetime, flags=frozenset()) -> StoredVote:
    """A stored vote with a good clock at ``time``."""
    return StoredVote(device=device, seq=seq, rating=rating, time=time.astimezone(timezone.utc),
                      received_at=time.astimezone(timezone.utc), pressed_at=time.isoformat(timespec="milliseconds"),
                      clock_ok=True, flags=frozenset(flags))

"""申诉复核: counties appeal unsatisfied votes as 误评 or 恶意差评, the city reviews.

The rules are in :mod:`.rules`; the tables in analytics.center.appeals. An appeal names a
target (one vote, a follow-up case or a burst alert) and covers that target's unsatisfied
votes, resolved from the vote store when it is filed. An accepted appeal marks its votes
不予采纳: nothing in the vote store changes; :func:`excluded_votes` lists them and
analytics.votes leaves them out of every count that scores (they are counted as excluded).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Iterable

from collector.stores.base import FLAG_TEST

from ..cases import calendar, get_settings, working_deadline
from ..center import alerts as stored_alerts
from ..center import appeals as stored
from ..center import cases as stored_cases
from ..model.attribution import locate_all, places
from .rules import (
    ACCEPTED, FILERS, KINDS, PENDING, REJECTED, REVIEWERS, STATUS_LABELS, TARGETS, WITHDRAWN, AppealError,
    check_filing, check_review, check_votes, check_withdraw,
)

__all__ = ["ACCEPTED", "FILERS", "KINDS", "PENDING", "REJECTED", "REVIEWERS", "STATUS_LABELS", "TARGETS",
           "WITHDRAWN", "AppealError", "appeal_accepted_for_case", "excluded_votes", "file_appeal", "get_appeal",
           "list_appeals", "review_appeal", "target_votes", "withdraw_appeal"]

UNSATISFIED = "unsatisfied"
_SLACK = timedelta(seconds=1)


def _vote_at(store, device: str, seq: int, time: datetime):
    """The stored vote (device, seq) recorded at ``time``, or None."""
    return next((v for v in store.votes(time - _SLACK, time + _SLACK, devices=[device]) if v.seq == seq), None)


def _parse_vote_ref(ref: str) -> tuple[str, int]:
    device, _, seq = (ref or "").rpartition(":")
    try:
        return device, int(seq)
    except ValueError:
        raise AppealError(f"评价编号 {ref!r} 应为 终端:序号") from None


def target_votes(store, db, registry, target_kind: str, target_ref: str, time: datetime | None = None):
    """(county code, the target's stored votes) for an appeal on ``target_kind`` ``target_ref``."""
    if target_kind == "vote":
        device, seq = _parse_vote_ref(target_ref)
        if time is None:
            raise AppealError("申诉单条评价须给出评价时间")
        vote = _vote_at(store, device, seq, time)
        if vote is None:
            raise AppealError(f"找不到评价 {target_ref}")
        place = locate_all(places(registry), [(vote.device, vote.time)])[0] if registry is not None else None
        return (place or {}).get("county_code"), [vote]
    if target_kind == "case":
        case = stored_cases.case_row(db, int(target_ref)) if str(target_ref).isdigit() else None
        if case is None:
            raise AppealError(f"督办件 {target_ref} 不存在")
        found = [_vote_at(store, v["device"], v["seq"], datetime.fromisoformat(v["time"])) for v in case["votes"]]
        return case["county_code"], [v for v in found if v is not None]
    if target_kind == "alert":
        alert = stored_alerts.alert_row(db, int(target_ref)) if str(target_ref).isdigit() else None
        if alert is None:
            raise AppealError(f"告警 {target_ref} 不存在")
        if alert["kind"] != "burst" or alert["scope_level"] != "window":
            raise AppealError("只能对窗口的集中差评告警申诉")
        first, last = datetime.fromisoformat(alert["first_at"]), datetime.fromisoformat(alert["last_at"])
        votes = list(store.votes(first, last + _SLACK, ratings=[UNSATISFIED]))
        where = locate_all(places(registry), [(v.device, v.time) for v in votes]) if registry is not None else []
        return alert["county_code"], [v for v, p in zip(votes, where) if p and p["window_id"] == alert["scope_code"]]
    raise AppealError(f"申诉对象应为 {'、'.join(TARGETS.values())} 之一")


def file_appeal(store, db, registry, *, target_kind: str, target_ref: str, kind: str, reason: str,
                evidence: str = "", by: str, now: datetime, time: datetime | None = None,
                county_check=None) -> int:
    """File a pending appeal; return its id. ``county_check(code)`` raises when the filer may not act for
    the votes' county (the web passes the user's scope)."""
    reason, evidence = check_filing(kind, reason, evidence)
    county, votes = target_votes(store, db, registry, target_kind, str(target_ref), time)
    if county_check is not None:
        county_check(county)
    votes = [v for v in votes if v.rating == UNSATISFIED and not v.excluded and FLAG_TEST not in v.flags]
    days, cal = get_settings(db)["appeal_days"], calendar(db)
    late = [v for v in votes if working_deadline(v.time, days, cal.holidays, cal.workdays) <= now]
    with db.transaction() as conn:
        check_votes(votes, stored.claimed(conn, [(v.device, v.seq) for v in votes]), late)
        return stored.insert_appeal(conn, county_code=county, target_kind=target_kind, target_ref=str(target_ref),
                                    kind=kind, reason=reason, evidence=evidence, filed_by=by, now=now,
                                    votes=[(v.device, v.seq, v.rating, v.time) for v in votes])


def review_appeal(db, appeal_id: int, decision: str, note: str, by: str, now: datetime) -> None:
    """The city's decision: ACCEPTED (the votes become 不予采纳) or REJECTED (with a note)."""
    with db.transaction() as conn:
        appeal = stored.appeal_state(conn, appeal_id)
        if appeal is None:
            raise AppealError(f"申诉 {appeal_id} 不存在")
        note = check_review(appeal, decision, note, by)
        stored.set_status(conn, appeal_id, decision, by, now, note)


def withdraw_appeal(db, appeal_id: int, by: str, now: datetime) -> None:
    """The filing side takes back a pending appeal."""
    with db.transaction() as conn:
        appeal = stored.appeal_state(conn, appeal_id)
        if appeal is None:
            raise AppealError(f"申诉 {appeal_id} 不存在")
        check_withdraw(appeal)
        stored.set_status(conn, appeal_id, WITHDRAWN, by, now, "")


def _labelled(appeal: dict) -> dict:
    return appeal | {"status_label": STATUS_LABELS.get(appeal["status"], appeal["status"]),
                     "kind_label": KINDS.get(appeal["kind"], appeal["kind"]),
                     "target_label": TARGETS.get(appeal["target_kind"], appeal["target_kind"])}


def list_appeals(db, *, counties: Iterable[str] | None = None, status: str | None = None,
                 target_kind: str | None = None, target_ref: str | None = None, limit: int = 1000) -> list[dict]:
    """Appeals newest first; ``counties`` restricts to what a user may see."""
    return [_labelled(a) for a in stored.appeal_rows(
        db, counties=None if counties is None else set(counties), status=status, target_kind=target_kind,
        target_ref=target_ref, limit=limit)]


def get_appeal(db, appeal_id: int) -> dict | None:
    """One appeal with its votes, or None."""
    appeal = stored.appeal_row(db, appeal_id)
    return None if appeal is None else _labelled(appeal)


def excluded_votes(db, start: datetime | None = None, end: datetime | None = None) -> list[dict]:
    """The 不予采纳 votes (accepted appeals) with time in [start, end): appeal_id, device, seq, rating, time."""
    return [] if db is None else stored.accepted_votes(db, start, end)


def appeal_accepted_for_case(db, case_id: int) -> bool:
    """True when an accepted appeal covers the case (so it may close as 申诉已采纳)."""
    return bool(stored.appeal_rows(db, status=ACCEPTED, target_kind="case", target_ref=str(case_id), limit=1))

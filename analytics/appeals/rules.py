"""申诉复核 rules, pure: what may be appealed, by whom, and how an appeal moves.

A county appeals unsatisfied votes that count for it, as 误评 (a mistaken press) or 恶意差评
(a malicious one), with a reason and an evidence note, within ``appeal_days`` working days
of the vote. The city reviews: 采纳 (accepted: the votes are 不予采纳, kept but left out of
the scores) or 驳回 (rejected, with a note). The filing county may withdraw a pending
appeal. A vote is in at most one pending or accepted appeal; a reviewer may not review an
appeal they filed.
"""

from __future__ import annotations

from manyi.exc import ManyiError

KINDS = {"mistaken": "误评", "malicious": "恶意差评"}
TARGETS = {"vote": "单条评价", "case": "督办件", "alert": "集中差评告警"}
PENDING, ACCEPTED, REJECTED, WITHDRAWN = "pending", "accepted", "rejected", "withdrawn"
STATUS_LABELS = {PENDING: "待复核", ACCEPTED: "已采纳", REJECTED: "已驳回", WITHDRAWN: "已撤回"}
FILERS = ("admin", "city", "county")        # who may file (county staff: for their own county)
REVIEWERS = ("admin", "city")               # who reviews (the city)
DEFAULT_APPEAL_DAYS = 5


class AppealError(ManyiError, ValueError):
    """An appeal or its review is not allowed or its input is invalid (the message says which)."""


def check_filing(kind: str, reason: str | None, evidence: str | None) -> tuple[str, str]:
    """(reason, evidence) trimmed; AppealError for an unknown kind, a missing reason or too long a text."""
    if kind not in KINDS:
        raise AppealError(f"申诉类型应为 {'、'.join(KINDS.values())} 之一")
    reason, evidence = (reason or "").strip(), (evidence or "").strip()
    if not 1 <= len(reason) <= 500:
        raise AppealError("申诉理由不能为空，且不超过 500 个字")
    if len(evidence) > 2000:
        raise AppealError("证据说明不超过 2000 个字")
    return reason, evidence


def check_votes(votes, claimed: set, late: list) -> None:
    """AppealError when there is nothing to appeal: no unsatisfied vote, every vote already in an
    appeal, or past the appeal deadline (``late``: the votes whose deadline has passed)."""
    if not votes:
        raise AppealError("没有可申诉的不满意评价（已按误用排除的评价无需申诉）")
    if late:
        raise AppealError(f"已超过申诉期限：{len(late)} 条评价的申诉期已过")
    if claimed:
        raise AppealError(f"{len(claimed)} 条评价已在申诉中或已不予采纳")


def check_review(appeal: dict, decision: str, note: str | None, reviewer: str) -> str:
    """The review note trimmed; AppealError when ``reviewer`` may not decide this way."""
    if appeal["status"] != PENDING:
        raise AppealError(f"申诉 {appeal['id']} 已{STATUS_LABELS[appeal['status']]}，不能再复核")
    if decision not in (ACCEPTED, REJECTED):
        raise AppealError("复核结论应为采纳或驳回")
    if reviewer == appeal["filed_by"]:
        raise AppealError("不能复核自己提出的申诉")
    note = (note or "").strip()
    if len(note) > 500:
        raise AppealError("复核意见不超过 500 个字")
    if decision == REJECTED and not note:
        raise AppealError("驳回申诉必须写明复核意见")
    return note


def check_withdraw(appeal: dict) -> None:
    """AppealError unless the appeal is pending."""
    if appeal["status"] != PENDING:
        raise AppealError(f"申诉 {appeal['id']} 已{STATUS_LABELS[appeal['status']]}，不能撤回")

"""The monthly schedule: on the 1st of each month at 08:00 China time the bulletin of the month
before is generated (PDF and XLSX, kept as files beside the center database and recorded in it)
and a notification with its link goes to the configured webhooks, retried until accepted.
Running it again changes nothing: a month is generated once and notified once."""

from __future__ import annotations

import hashlib
import logging
from datetime import datetime, time, timedelta, timezone
from pathlib import Path

from manyi.periods import Month, to_local

from .. import notify
from ..center import documents
from .bulletin import build_bulletin, render_bulletin

log = logging.getLogger(__name__)
GENERATE_DAY, GENERATE_AT = 1, time(8, 0)       # China time
SCHEDULED_FORMATS = ("pdf", "xlsx")


def due_month(now: datetime) -> Month:
    """The latest month whose bulletin is due at ``now`` (the month before the last 1st-of-month 08:00 passed)."""
    local = to_local(now)
    this = Month.containing(now)
    due_at = this.start + timedelta(days=GENERATE_DAY - 1, hours=GENERATE_AT.hour, minutes=GENERATE_AT.minute)
    return this.previous() if local >= due_at else this.previous().previous()


def generate(store, registry, db, month: Month, directory: Path, now: datetime) -> dict:
    """Write the month's bulletin files into ``directory`` and record them; return the recorded files."""
    directory.mkdir(parents=True, exist_ok=True)
    bulletin = build_bulletin(store, registry, db, month, now=now)
    files = {}
    for fmt in SCHEDULED_FORMATS:
        data = render_bulletin(bulletin, fmt)
        path = directory / f"bulletin-{month}.{fmt}"
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_bytes(data)
        tmp.replace(path)
        files[fmt] = {"path": str(path), "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    documents.record_bulletin(db, str(month), now.astimezone(timezone.utc).isoformat(timespec="seconds"), files)
    return files


def run_schedule(store, registry, db, now: datetime, *, directory: Path, link_base: str = "",
                 targets=()) -> str | None:
    """Generate the due bulletin if it is not yet, and notify until every target accepted; return what was done."""
    month = due_month(now)
    done = None
    if documents.bulletin_row(db, str(month)) is None:
        generate(store, registry, db, month, directory, now)
        log.info("monthly bulletin of %s generated in %s", month, directory)
        done = "generated"
    targets = notify.check_targets(targets)
    if not targets:
        return done
    # every generated bulletin not notified yet (the newest few), so a failure is retried next round
    for row in [r for r in documents.bulletin_rows(db) if r["notified_at"] is None][:3]:
        m = Month.parse(row["month"])
        link = f"{link_base.rstrip('/')}/bulletins/files/{m}.pdf"
        failures = notify.send(targets, f"{m.year}年{m.number}月满意度评价月度通报已生成",
                               "请登录满意度管理平台查看、下载（PDF/XLSX）。", link)
        stamp = now.astimezone(timezone.utc).isoformat(timespec="seconds")
        documents.mark_notified(db, row["month"], None if failures else stamp, "; ".join(failures) or None)
        if failures:
            log.warning("monthly bulletin of %s: notification failed: %s", m, "; ".join(failures))
        done = (done + "+" if done else "") + ("notify failed" if failures else "notified")
    return done

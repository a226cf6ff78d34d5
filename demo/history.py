"""Simulated history for the demo: past quarters of votes, a 12333 survey and composite scores.

Everything here is SIMULATED (fixed seed :data:`SEED`) and marked so: the survey rows
carry :data:`SIMULATED_NOTE` in their 备注 column, the import file names start with
``模拟数据``, and the demo prints it. Nothing here is used outside ``manyi run``.

* :func:`propensities` gives every sample terminal a satisfaction propensity (county
  level + township + window variation, a few weak windows), the same numbers the live
  simulator presses with (``manyi simulate --devices FILE``, second column).
* :func:`seed_votes` writes office-day votes of a time range straight into the vote
  store through its interface (``store.write`` in batches), seq 1.. per terminal, and
  returns each terminal's last seq so the live simulator continues after it.
* :func:`seed_followup` gives the seeded 不满意督办 cases a simulated follow-up history
  through the real analytics.cases actions (assign, note, 回访, close), done by
  :data:`SIMULATED_ACTOR`, so the case page looks like a working control center: old
  cases mostly closed, a few closed late, a handful still overdue, recent ones open.
* :func:`survey_csv` and :func:`scores_csv` make files in the formats the control
  center imports (analytics.imports.survey / analytics.imports.scores), so the demo goes through the
  real import code.
"""

from __future__ import annotations

import io
import csv
import math
import random
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Callable, Iterator

from device.simulate import pick_rating

from manyi.periods import CHINA_TZ, Quarter
from manyi.protocol import BASIC, SATISFIED, UNSATISFIED, format_timestamp
from manyi.registry import DEFAULT_OPENING_HOURS, OpeningHours

SEED = 20261122
SIMULATED_NOTE = "模拟数据（演示用）"
SIMULATED_FILE_PREFIX = "模拟数据"
# Author of every simulated case action; notes, 回访 notes and close reasons start with it too.
SIMULATED_ACTOR = SIMULATED_NOTE
SIMULATED_TEXT_PREFIX = "模拟数据："
# Simulated follow-up staff (not real people): the case page shows them as 承办人.
SIMULATED_STAFF = tuple(f"{name}（模拟）" for name in ("王敏", "李强", "张丽", "刘洋", "陈静", "赵磊", "孙婷", "周杰"))
# Weekday office hours of the sample halls, in minutes after midnight.
OPEN_SPANS = OpeningHours.parse(DEFAULT_OPENING_HOURS).days[0]
OPEN_MINUTES = sum(end - start for start, end in OPEN_SPANS)


def propensities(registry, seed: int = SEED) -> dict[str, float]:
    """Satisfaction propensity 0..1 of every device with a current window, reproducible from ``seed``.

    County levels differ (0.70..0.92), townships and windows vary around them, and about
    one window in forty is weak (0.35..0.55), so rankings, cases and alerts have content.
    """
    rng = random.Random(seed)
    county_level = {code: rng.uniform(0.70, 0.92) for code in sorted(registry.counties)}
    township_offset: dict[str, float] = {}
    result: dict[str, float] = {}
    for device in sorted(registry.devices()):
        location = registry.current_location(device)
        if location is None:
            continue
        base = county_level.get(location.county_code, 0.8)
        key = location.township_code or location.hall_id
        if key not in township_offset:
            township_offset[key] = rng.gauss(0.0, 0.04)
        value = base + township_offset[key] + rng.gauss(0.0, 0.03)
        if rng.random() < 0.025:
            value = rng.uniform(0.35, 0.55)
        result[device] = round(min(0.98, max(0.30, value)), 3)
    return result


def write_devices_file(path: str | Path, props: dict[str, float]) -> Path:
    """The simulator's devices file: ``device propensity`` per line, marked simulated."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [f"# {SIMULATED_NOTE}: every terminal of the Heze sample registry and its satisfaction propensity"]
    lines += [f"{device} {value:.3f}" for device, value in sorted(props.items())]
    path.write_text("\n".join(lines) + "\n")
    return path


def office_days(start: date, end: date) -> Iterator[date]:
    """Monday-to-Friday days with start <= day < end (public holidays are not modelled)."""
    day = start
    while day < end:
        if day.weekday() < 5:
            yield day
        day += timedelta(days=1)


def _office_moment(day: date, minute: float) -> datetime:
    """The instant ``minute`` minutes into the day's opening hours (China time)."""
    for begin, finish in OPEN_SPANS:
        if minute < finish - begin:
            return datetime.combine(day, time(), CHINA_TZ) + timedelta(minutes=begin + minute)
        minute -= finish - begin
    return datetime.combine(day, time(), CHINA_TZ) + timedelta(minutes=OPEN_SPANS[-1][1] - 1)


@dataclass
class VoteSeeding:
    """What :func:`seed_votes` wrote."""

    votes: int = 0
    burst_votes: int = 0
    last_seq: dict[str, int] = field(default_factory=dict)


def simulated_votes(props: dict[str, float], start: datetime, end: datetime, *, votes_per_day: float,
                    seed: int = SEED, first_seq: dict[str, int] | None = None, bursts: int = 3) -> Iterator:
    """StoredVote objects of office days in [start, end), per day in device order, seqs continuing ``first_seq``.

    ``bursts`` terminals get one burst of unsatisfied presses in the range, flagged as
    misuse (FLAG_BURST) as the collector would flag them.
    """
    from collector.stores import FLAG_BURST, StoredVote

    rng = random.Random(f"{seed}:{start.isoformat()}")
    seq = dict(first_seq or {})
    days = list(office_days(start.astimezone(CHINA_TZ).date(), end.astimezone(CHINA_TZ).date()))
    devices = sorted(props)
    burst_plan = {}
    if days and bursts:
        for device in rng.sample(devices, min(bursts, len(devices))):
            burst_plan[device] = rng.choice(days)
    for day in days:
        for device in devices:
            n = max(0, round(rng.gauss(votes_per_day, math.sqrt(votes_per_day))))
            minutes = sorted(rng.uniform(0, OPEN_MINUTES) for _ in range(n))
            events = [(_office_moment(day, m), pick_rating(rng, props[device]), frozenset()) for m in minutes]
            if burst_plan.get(device) == day:
                at = _office_moment(day, rng.uniform(0, OPEN_MINUTES - 5))
                events += [(at + timedelta(seconds=3.5 * i), UNSATISFIED, frozenset({FLAG_BURST})) for i in range(8)]
                events.sort(key=lambda e: e[0])
            for moment, rating, flags in events:
                if not start <= moment < end:
                    continue
                seq[device] = seq.get(device, 0) + 1
                received = moment + timedelta(seconds=rng.uniform(0.05, 2.0))
                yield StoredVote(device=device, seq=seq[device], rating=rating, time=moment, received_at=received,
                                 pressed_at=format_timestamp(moment), clock_ok=True, flags=flags)


def seed_votes(store, props: dict[str, float], start: datetime, end: datetime, *, votes_per_day: float = 2.0,
               seed: int = SEED, batch: int = 5000, progress: Callable[[int], None] | None = None) -> VoteSeeding:
    """Write simulated votes of [start, end) into ``store`` in batches; return counts and last seqs."""
    result = VoteSeeding()
    pending = []
    for vote in simulated_votes(props, start, end, votes_per_day=votes_per_day, seed=seed):
        pending.append(vote)
        result.last_seq[vote.device] = vote.seq
        result.burst_votes += bool(vote.flags)
        if len(pending) >= batch:
            result.votes += store.write(pending).inserted
            pending = []
            if progress:
                progress(result.votes)
    if pending:
        result.votes += store.write(pending).inserted
    return result


def _fake_phone(rng: random.Random) -> str:
    return f"1{rng.choice('3578')}{rng.randint(0, 9)}{rng.randint(0, 99999999):08d}"


def survey_csv(registry, props: dict[str, float], quarter: Quarter, *, seed: int = SEED,
               calls: int = 100, county_only: float = 0.15, until: datetime | None = None) -> bytes:
    """A simulated 12333 phone survey of ``quarter`` as CSV (UTF-8), in the survey import's format.

    As in Heze (seed 003): at the end of each quarter the hotline phones ``calls`` (100)
    random citizens across the whole city, so most townships get no phone answer at all and
    the model's shrinkage toward the city mean matters. A citizen is drawn where the
    terminals are (one chance per window); a share ``county_only`` of answers names only the
    county. Answers follow the window's propensity a little lower (people are more critical
    on the phone); some are 不了解 (excluded from the sample). Calls fall in the quarter's
    last three weeks, before ``until`` when given.
    """
    rng = random.Random(f"{seed}:survey:{quarter}")
    first = quarter.start.astimezone(CHINA_TZ).date()
    last = ((until or quarter.end) - timedelta(seconds=1)).astimezone(CHINA_TZ).date()
    days = list(office_days(max(first, last - timedelta(days=20)), last + timedelta(days=1))) or [last]
    located = [(location, props[device]) for device in sorted(props)
               if (location := registry.current_location(device)) is not None]
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["日期", "手机号", "单位代码", "评价", "备注"])
    for _ in range(calls if located else 0):
        location, propensity = rng.choice(located)
        code = location.township_code if location.township_code and rng.random() >= county_only \
            else location.county_code
        if rng.random() < 0.05:
            answer = "不了解"
        else:
            rating = pick_rating(rng, min(0.98, max(0.2, propensity - 0.03)))
            answer = {SATISFIED: rng.choice(("满意", "非常满意")), BASIC: "基本满意", UNSATISFIED: "不满意"}[rating]
        day = rng.choice(days)
        writer.writerow([f"{day.isoformat()} {rng.randint(9, 17):02d}:{rng.randint(0, 59):02d}",
                         _fake_phone(rng), code, answer, SIMULATED_NOTE])
    return out.getvalue().encode("utf-8")


def scores_csv(registry, quarter: Quarter, *, seed: int = SEED) -> bytes:
    """Simulated composite assessment scores (70..98) of every county and township, as CSV."""
    rng = random.Random(f"{seed}:scores:{quarter}")
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["代码", "综合考核得分"])
    for code in sorted(registry.counties):
        writer.writerow([code, round(rng.uniform(78, 96), 1)])
    for code in sorted(registry.townships):
        writer.writerow([code, round(rng.uniform(70, 98), 1)])
    return out.getvalue().encode("utf-8")


def seed_center(db, registry, props: dict[str, float], quarters: list[Quarter], *, now: datetime,
                seed: int = SEED) -> list:
    """Import a simulated survey and simulated scores of each quarter through the real imports."""
    from analytics.imports.scores import import_scores
    from analytics.imports.survey import import_survey

    reports = []
    for quarter in quarters:
        until = min(now, quarter.end)
        reports.append(import_survey(db, registry, survey_csv(registry, props, quarter, seed=seed, until=until), quarter,
                                     filename=f"{SIMULATED_FILE_PREFIX}-12333回访-{quarter}.csv", replace=True))
        reports.append(import_scores(db, registry, scores_csv(registry, quarter, seed=seed), quarter,
                                     filename=f"{SIMULATED_FILE_PREFIX}-综合考核得分-{quarter}.csv", replace=True))
    return reports


def history_quarters(now: datetime, past: int) -> list[Quarter]:
    """The ``past`` quarters before the current one, then the current one, oldest first."""
    current = Quarter.containing(now)
    quarters = [current]
    for _ in range(past):
        quarters.insert(0, quarters[0].previous())
    return quarters


def publish_past_quarters(store, registry, db, quarters: list[Quarter], *, now: datetime) -> list[int]:
    """Compute and publish each finished quarter (the center's 已发布 results), as a city would at quarter end."""
    from analytics.quarter import compute_quarter, publish

    ids = []
    for quarter in quarters:
        if quarter.end <= now:
            ids.append(publish(db, compute_quarter(store, registry, db, quarter, now=now), now=now))
    return ids



# --- simulated follow-up history ------------------------------------------------------------

def office_time(moment: datetime) -> datetime:
    """``moment`` when it falls in weekday office hours, else the next opening (China time)."""
    local = moment.astimezone(CHINA_TZ)
    day = local.date()
    while True:
        if day.weekday() < 5:
            midnight = datetime.combine(day, time(), CHINA_TZ)
            for begin, finish in OPEN_SPANS:
                if local < midnight + timedelta(minutes=finish):
                    return max(local, midnight + timedelta(minutes=begin))
        day += timedelta(days=1)
        local = datetime.combine(day, time(), CHINA_TZ)


_CALLBACKS = (("满意", 0.55), ("基本满意", 0.29), ("不满意", 0.11), ("未接通", 0.05))
_NOTES = ("已调取窗口录像，核实办理经过", "已约谈当班工作人员，要求改进服务态度", "已电话联系群众，了解不满意原因",
          "群众反映等候时间长，已协调增开窗口", "群众反映材料要求不清楚，已补充一次性告知单")
_CALLBACK_NOTES = {"满意": ("问题已解决，群众表示满意", "已重新办理完毕，群众认可"),
                   "基本满意": ("已解释政策，群众基本认可", "业务已办结，群众对等候时间仍有意见"),
                   "不满意": ("群众对政策规定仍有意见", "群众认为办理时限过长"),
                   "未接通": ("三次拨打均未接通", "电话无人接听")}
_FIXES = ("已对当班人员进行业务培训，规范一次性告知", "已增开高峰时段窗口，缩短等候时间",
          "已重新梳理办事指南并在窗口公示", "已为群众补办业务并致歉")
_CLOSE_REASONS = {"满意": "问题已整改，回访满意", "基本满意": "已解释说明，回访基本满意",
                  "不满意": "已按政策答复，回访仍不满意，转窗口负责人持续跟踪", "未接通": "已核实整改，多次回访未接通"}


@dataclass
class FollowupSeeding:
    """What :func:`seed_followup` did and the case states it left at ``now``."""

    cases: int = 0
    acted: int = 0            # cases given simulated actions by this call
    closed: int = 0
    closed_late: int = 0      # fixed (or closed) after their fix deadline
    open_recent: int = 0      # open, not overdue (the last working days)
    open_overdue: int = 0     # still open past their deadline

    def summary(self) -> str:
        """One line for the demo's console."""
        return (f"{self.cases} follow-up cases: {self.closed} closed ({self.closed_late} late), "
                f"{self.open_overdue} overdue, {self.open_recent} open")


def _pick(rng: random.Random, weighted) -> str:
    x = rng.random()
    for value, weight in weighted:
        x -= weight
        if x < 0:
            return value
    return weighted[-1][0]


def ensure_simulated_staff(db) -> None:
    """Accounts for :data:`SIMULATED_STAFF` (city staff; random passwords nobody knows), so that
    simulated cases are assigned to accounts as real ones are."""
    import secrets

    from analytics.center.accounts import create_user, get_user

    for name in SIMULATED_STAFF:
        if get_user(db, name) is None:
            create_user(db, name, "Sim-" + secrets.token_urlsafe(24) + "9", "city")


def _simulate_case(db, case: dict, now: datetime, rng: random.Random, late_share: float, stuck_share: float,
                   contact_only: bool) -> bool:
    """Apply one case's simulated history through the real followup actions, stopping at ``now``; False if none.

    assign → (note) → first 回访 → 整改 → second 回访 (追评) → 办结; ``contact_only`` stops after
    the first 回访 (a recent case still within its fix deadline)."""
    from analytics import cases as fu

    by, text = SIMULATED_ACTOR, SIMULATED_TEXT_PREFIX
    deadline = datetime.fromisoformat(case["deadline"])
    fate = rng.random()
    stuck, late = fate < stuck_share, stuck_share <= fate < stuck_share + late_share
    at = office_time(datetime.fromisoformat(case["last_vote_at"]) + timedelta(minutes=rng.uniform(5, 120)))
    if at >= now or (stuck and rng.random() < 0.3):
        return False                                    # nobody picked it up
    fu.assign_case(db, case["id"], rng.choice(SIMULATED_STAFF), by, at)
    if stuck and not contact_only:
        return True                                     # assigned, then forgotten: stays overdue
    if rng.random() < 0.5:
        at = office_time(at + timedelta(minutes=rng.uniform(20, 240)))
        if at >= now:
            return True
        fu.add_note(db, case["id"], text + rng.choice(_NOTES), by, at)
    at = office_time(at + timedelta(minutes=rng.uniform(10, 180)))
    if at >= now:
        return True
    first = _pick(rng, _CALLBACKS)
    fu.record_callback(db, case["id"], first, text + rng.choice(_CALLBACK_NOTES[first]), by, at)
    if contact_only:
        return True
    if late:
        at = office_time(deadline + timedelta(hours=rng.uniform(2, 60)))
    else:
        at = office_time(at + timedelta(hours=rng.uniform(1, 22)))
    if at >= now:
        return True
    fu.record_rectify(db, case["id"], text + rng.choice(_FIXES), by, at)
    at = office_time(at + timedelta(hours=rng.uniform(1, 20)))
    if at >= now:
        return True
    result = _pick(rng, _CALLBACKS)
    fu.record_revisit(db, case["id"], result, text + rng.choice(_CALLBACK_NOTES[result]), by, at)
    at = office_time(at + timedelta(minutes=rng.uniform(5, 90)))
    if at >= now:
        return True
    code = "revisited" if result in fu.REACHED or first in fu.REACHED else "unreachable"
    fu.close_case(db, case["id"], text + _CLOSE_REASONS[result], by, at, code=code)
    return True


def seed_followup(store, db, registry, now: datetime, *, seed: int = SEED, recent_days: int = 2,
                  late_share: float = 0.08, stuck_share: float = 0.04) -> FollowupSeeding:
    """Open the cases of the seeded votes and give the older ones a simulated follow-up history.

    Every unsatisfied vote of the follow-up backfill window is attached with
    ``attach_vote`` at the moment it arrived (so cases were opened when their votes
    came in), then ``sync_cases`` sets the live feed cursor. A case whose first vote is
    more than ``recent_days`` working days before ``now`` is assigned to a
    :data:`SIMULATED_STAFF` member, maybe annotated, called back, fixed, called back again
    for the citizen's rating of the fix (mostly 满意/基本满意) and closed, all by
    :data:`SIMULATED_ACTOR` at office-hour times before its deadlines; a share ``late_share``
    is fixed after the fix deadline and a share ``stuck_share`` is left open (overdue). A
    more recent case is assigned and called back once (still within its fix deadline). Only untouched cases (open, without notes) are
    acted on, and each case's draws come from its own seeded generator, so calling it
    again with the same ``now`` changes nothing and the same seed gives the same states.
    The audit log is not written: it records what real users did.
    """
    from analytics import cases as fu
    from collector.stores import FLAG_TEST

    ensure_simulated_staff(db)
    settings, cal = fu.get_settings(db), fu.calendar(db)
    start = now - timedelta(days=settings["backfill_days"])
    for vote in store.votes(start, now + timedelta(minutes=10), ratings=[UNSATISFIED]):
        if FLAG_TEST not in vote.flags:
            arrived = min(now, max(vote.time, vote.received_at or vote.time))
            fu.attach_vote(db, registry, vote.device, vote.seq, vote.time, arrived, settings, cal)
    fu.sync_cases(store, db, registry, now)
    holidays, workdays = cal.holidays, cal.workdays
    today = now.astimezone(CHINA_TZ).date()
    result = FollowupSeeding()
    for case in sorted(fu.list_cases(db, now, limit=1_000_000), key=lambda c: c["id"]):
        first_day = datetime.fromisoformat(case["first_vote_at"]).astimezone(CHINA_TZ).date()
        if case["status"] != fu.STATUS_OPEN or fu.get_case(db, case["id"], now)["notes"]:
            continue
        recent = fu.working_days_between(first_day, today, holidays, workdays) <= recent_days
        rng = random.Random(f"{seed}:case:{case['device']}:{case['first_vote_at']}")
        result.acted += _simulate_case(db, case, now, rng, late_share, stuck_share, contact_only=recent)
    for case in fu.list_cases(db, now, limit=1_000_000):
        result.cases += 1
        if case["status"] == fu.STATUS_CLOSED:
            result.closed += 1
            result.closed_late += not fu.outcome(case, now)["on_time"]
        elif case["overdue"]:
            result.open_overdue += 1
        else:
            result.open_recent += 1
    return result


_APPEALS = (  # (status after seeding, kind, reason, evidence, review note)
    ("pending", "mistaken", "群众办理后误按不满意键，已现场说明", "窗口录像 1 段、办件记录", ""),
    ("accepted", "malicious", "同一人在未办理业务的情况下连续按不满意键", "大厅监控录像，排队系统无该时段取号记录",
     "经核查录像属实，予以采纳"),
    ("rejected", "mistaken", "窗口认为群众对政策规定不满，非服务问题", "政策文件", "属服务解释不到位，不予采纳申诉"),
    ("withdrawn", "mistaken", "误以为是测试按键", "", ""),
)


def seed_appeals(store, db, registry, now: datetime) -> dict[str, int]:
    """One simulated appeal in each state (待复核, 采纳, 驳回, 撤回) on the most recent open cases, filed and reviewed by :data:`SIMULATED_STAFF` accounts; all text is
    marked 模拟数据. Idempotent: it does nothing once simulated appeals exist."""
    from analytics import appeals as ap
    from analytics import cases as fu

    if any(a["filed_by"] in SIMULATED_STAFF for a in ap.list_appeals(db, limit=100)):
        return {}
    ensure_simulated_staff(db)
    filer, reviewer = SIMULATED_STAFF[0], SIMULATED_STAFF[1]
    made: dict[str, int] = {}
    for case in fu.list_cases(db, now, status="active", limit=10_000):
        if len(made) == len(_APPEALS):
            break
        if not case["county_code"]:
            continue
        status, kind, reason, evidence, note = _APPEALS[len(made)]
        try:
            appeal = ap.file_appeal(store, db, registry, target_kind="case", target_ref=str(case["id"]), kind=kind,
                                    reason=SIMULATED_TEXT_PREFIX + reason,
                                    evidence=SIMULATED_TEXT_PREFIX + evidence if evidence else "",
                                    by=filer, now=now)
        except ap.AppealError:
            continue                     # past the appeal deadline, or nothing to appeal
        if status in (ap.ACCEPTED, ap.REJECTED):
            ap.review_appeal(db, appeal, status, SIMULATED_TEXT_PREFIX + note, reviewer, now)
        elif status == ap.WITHDRAWN:
            ap.withdraw_appeal(db, appeal, filer, now)
        made[status] = appeal
    return made

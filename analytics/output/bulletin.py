"""The monthly bulletin (月度通报): what the assessment office files each month.

:func:`build_bulletin` gathers the figures (league tables of counties and townships with the
change from last month, the units at the bottom two months running, overdue and unrectified
cases, terminals offline or silent for days) and writes a short summary from them, with
no free text; :func:`render_bulletin` lays it out as HTML (A4, for print), PDF (Chromium's
print of that HTML, fonts embedded) or XLSX. Sample data says 模拟数据 in every format.
"""

from __future__ import annotations

import html
import io
import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import pandas as pd

from manyi.exc import ConfigError
from manyi.periods import Month, to_local

from ..indicators import unit_indicators
from ..model.heze import Params
from .report import SAMPLE_WARNING

FORMATS = ("pdf", "xlsx", "html")
MIN_VOTES = 30              # a unit with fewer terminal votes in the month is listed after the ranked ones
BOTTOM_SHARE = 0.1          # the last tenth (at least one) of the ranked units is "at the bottom"
STALE_DAYS = 3              # terminals offline or silent longer than this are listed
LEAGUE = ["rank", "code", "name", "n", "rate", "score", "bad_rate", "eval_rate", "callback_rate", "rectify_rate",
          "overdue", "availability", "prev_rank", "score_change"]
HEADERS = {"rank": "名次", "code": "代码", "name": "名称", "county": "所属县区", "n": "评价数", "rate": "满意度",
           "score": "综合得分", "bad_rate": "差评率", "eval_rate": "评价率", "callback_rate": "回访率",
           "rectify_rate": "整改率", "overdue": "逾期件", "availability": "终端在线率", "prev_rank": "上月名次", "score_change": "得分变化"}


@dataclass
class Bulletin:
    """The figures of one month's bulletin."""

    month: Month
    generated_at: datetime
    sample: bool
    counties: pd.DataFrame
    townships: pd.DataFrame
    bottom: list[dict]                 # units at the bottom this month and last: {level, code, name, ranks}
    cases: list[dict]                  # overdue or unrectified cases opened in the month
    terminals: list[dict]              # offline or silent for more than STALE_DAYS days
    summary: list[str] = field(default_factory=list)
    params: dict = field(default_factory=dict)


def _league(now_table: pd.DataFrame, prev_table: pd.DataFrame, min_votes: int) -> pd.DataFrame:
    """Terminal-channel league table ranked by composite score (units under ``min_votes`` after, unranked)."""
    def ranked(table):
        t = table[table["channel"] == "terminal"].copy()
        enough = t["n"] >= min_votes
        t["rank"] = t["score"].where(enough).rank(ascending=False, method="min")
        return t.sort_values(["rank", "score", "code"], ascending=[True, False, True], na_position="last")
    cur, prev = ranked(now_table), ranked(prev_table)
    cur = cur.merge(prev[["code", "rank", "score"]].rename(columns={"rank": "prev_rank", "score": "prev_score"}),
                    on="code", how="left")
    cur["score_change"] = cur["score"] - cur["prev_score"]
    return cur.reset_index(drop=True)


def _bottom(table: pd.DataFrame, level: str, share: float) -> list[dict]:
    ranked = table[table["rank"].notna()]
    if not len(ranked):
        return []
    cut = len(ranked) - max(1, math.floor(len(ranked) * share))     # ranks after this are at the bottom
    last = ranked[(ranked["rank"] > cut) & ranked["prev_rank"].notna()]
    out = []
    prev_count = int(table["prev_rank"].notna().sum())
    prev_cut = prev_count - max(1, math.floor(prev_count * share)) if prev_count else 0
    for row in last.itertuples(index=False):
        if row.prev_rank > prev_cut:
            out.append({"level": level, "code": row.code, "name": row.name, "rank": int(row.rank),
                        "prev_rank": int(row.prev_rank), "of": len(ranked)})
    return out


def _stale_terminals(store, registry, now: datetime, days: int) -> list[dict]:
    out = []
    limit = now - timedelta(days=days)
    for status in store.terminals():
        location = registry.current_location(status.device)
        if location is None:
            continue
        heard = status.last_seen
        if heard is not None and heard < limit:
            what, since = "离线", heard
        elif status.last_vote_at is not None and status.last_vote_at < limit and heard is not None:
            what, since = "无评价", status.last_vote_at
        else:
            continue
        hall = registry.halls.get(location.hall_id)
        county = registry.counties.get(location.county_code)
        out.append({"device": status.device, "state": what, "since": to_local(since).strftime("%Y-%m-%d %H:%M"),
                    "days": (now - since).days, "hall": hall.name if hall else "", "county": county.name if county else ""})
    return sorted(out, key=lambda t: (-t["days"], t["device"]))


def _open_cases(db, registry, month: Month, now: datetime) -> list[dict]:
    from analytics import cases

    out = []
    for case in cases.list_cases(db, now, date_from=month.start.date(), date_to=(month.end - timedelta(days=1)).date(),
                                 limit=100_000):
        deadline = datetime.fromisoformat(case["deadline"])
        closed_late = case["status"] == "closed" and datetime.fromisoformat(case["closed_at"]) > deadline
        if not (case["overdue"] or closed_late):
            continue
        hall = registry.halls.get(case["hall_id"] or "")
        county = registry.counties.get(case["county_code"] or "")
        out.append({"id": case["id"], "county": county.name if county else "", "hall": hall.name if hall else "",
                    "first_vote": to_local(datetime.fromisoformat(case["first_vote_at"])).strftime("%m-%d %H:%M"),
                    "deadline": to_local(deadline).strftime("%m-%d"), "state": "逾期未办结" if case["overdue"] else "逾期办结",
                    "assignee": case["assignee"] or "未指派", "callback": case["callback_result"] or "未回访"})
    return out


def _summary(b: Bulletin) -> list[str]:
    """Sentences made only from the figures."""
    city = b.params["city"]
    lines = []
    if city is not None and city["n"]:
        lines.append(f"{b.month.year}年{b.month.number}月，全市评价器共收到评价 {int(city['n'])} 条，满意度 "
                     f"{city['rate']:.1%}，综合得分 {city['score']:.1f}，差评率 {city['bad_rate']:.1%}"
                     + (f"；较上月 {_signed(city['score'] - b.params['prev_city_score'], 1)} 分。"
                        if b.params.get("prev_city_score") is not None else "。"))
    else:
        lines.append(f"{b.month.year}年{b.month.number}月，全市评价器没有收到评价。")
    ranked = b.counties[b.counties["rank"].notna()]
    if len(ranked):
        top, last = ranked.iloc[0], ranked.iloc[-1]
        lines.append(f"县区综合得分最高为{top['name']}（{top['score']:.1f}），最低为{last['name']}（{last['score']:.1f}）。")
    unranked = int(b.counties["rank"].isna().sum())
    if unranked:
        lines.append(f"{unranked} 个县区评价少于 {b.params['min_votes']} 条，未参加排名。")
    if b.bottom:
        names = "、".join(f"{u['name']}" for u in b.bottom)
        lines.append(f"连续两个月排名靠后、建议约谈的单位：{names}。")
    else:
        lines.append("没有连续两个月排名靠后的单位。")
    if city is not None and not pd.isna(city["cases"]) and city["cases"]:
        lines.append(f"本月不满意督办件 {int(city['cases'])} 件，回访率 {_pct(city['callback_rate'])}，"
                     f"整改率 {_pct(city['rectify_rate'])}，逾期未办结 {int(city['overdue'])} 件。")
    if b.terminals:
        lines.append(f"{len(b.terminals)} 台终端离线或无评价超过 {b.params['stale_days']} 天，请县区核查。")
    return lines


def _pct(value) -> str:
    return "—" if value is None or pd.isna(value) else f"{value:.1%}"


def _signed(value: float, digits: int) -> str:
    return f"{value:+.{digits}f}"


def build_bulletin(store, registry, db, month: Month | str, *, now: datetime, params: Params = Params(),
                   min_votes: int = MIN_VOTES, bottom_share: float = BOTTOM_SHARE, stale_days: int = STALE_DAYS) -> Bulletin:
    """The bulletin of ``month`` from the store, the registry and the center database, as of ``now``."""
    month = Month.parse(month) if isinstance(month, str) else month
    prev = month.previous()

    def table(level, m, availability=False):
        return unit_indicators(store, registry, db, level, m.start, m.end, now=now, params=params,
                               availability=availability)
    counties = _league(table("county", month, True), table("county", prev), min_votes)
    town_now, town_prev = table("township", month, True), table("township", prev)
    townships = _league(town_now, town_prev, min_votes)
    townships["county"] = townships["county_code"].map({c.code: c.name for c in registry.counties.values()})
    city = table("city", month)
    city_now = city[city["channel"] == "terminal"].iloc[0]
    city_prev = table("city", prev)
    prev_t = city_prev[city_prev["channel"] == "terminal"].iloc[0]
    b = Bulletin(month=month, generated_at=now, sample=bool(getattr(registry, "sample", False)),
                 counties=counties, townships=townships,
                 bottom=_bottom(counties, "county", bottom_share) + _bottom(townships, "township", bottom_share),
                 cases=_open_cases(db, registry, month, now) if db is not None else [],
                 terminals=_stale_terminals(store, registry, now, stale_days),
                 params={"min_votes": min_votes, "bottom_share": bottom_share, "stale_days": stale_days,
                         "city": city_now, "prev_city_score": None if not prev_t["n"] else float(prev_t["score"]),
                         "phone": city[city["channel"] == "phone"]})
    b.summary = _summary(b)
    return b


# --- rendering ------------------------------------------------------------------------------

def _cell(key: str, value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    if key in ("rate", "bad_rate", "eval_rate", "callback_rate", "rectify_rate", "availability"):
        return f"{value:.1%}"
    if key == "score":
        return f"{value:.1f}"
    if key == "score_change":
        return _signed(value, 1)
    if key in ("rank", "prev_rank", "n", "overdue"):
        return str(int(value))
    return str(value)


def _table(frame: pd.DataFrame, keys: list[str]) -> tuple[list[str], list[list[str]]]:
    return [HEADERS[k] for k in keys], [[_cell(k, row[k]) for k in keys] for _, row in frame.iterrows()]


CSS = """
@page { size: A4; margin: 14mm 12mm 16mm; }
body { font-family: "Noto Sans CJK SC", "WenQuanYi Micro Hei", "Microsoft YaHei", sans-serif; font-size: 10pt;
       color: #111; margin: 0; }
h1 { font-size: 18pt; text-align: center; margin: 0 0 4mm; } h2 { font-size: 12.5pt; margin: 6mm 0 2mm;
     border-bottom: 1px solid #555; padding-bottom: 1mm; break-after: avoid; }
.meta { text-align: center; color: #444; margin-bottom: 4mm; }
.sample { border: 2px solid #b7950b; background: #fcf3cf; padding: 2mm 3mm; margin-bottom: 4mm; font-weight: bold; }
table { width: 100%; border-collapse: collapse; table-layout: fixed; font-size: 8.6pt; }
th, td { border: 1px solid #999; padding: 0.8mm 1.2mm; overflow-wrap: anywhere; }
th { background: #eef1f5; font-weight: bold; } td.num { text-align: right; }
tr { break-inside: avoid; } thead { display: table-header-group; }
ol.summary li { margin-bottom: 1.5mm; } .empty { color: #555; }
th.name { width: 17%; } th.county { width: 13%; } th.rank, th.prev_rank { width: 6%; }
"""


def render_html(b: Bulletin) -> str:
    """The bulletin as one HTML document, laid out for A4."""
    esc = html.escape
    parts = [f"<!doctype html><html lang=\"zh-CN\"><head><meta charset=\"utf-8\"><title>{b.month.year}年{b.month.number}月"
             f"满意度评价月度通报</title><style>{CSS}</style></head><body>",
             f"<h1>{b.month.year}年{b.month.number}月 人社服务满意度评价月度通报</h1>",
             f"<div class=\"meta\">统计期间 {b.month.start:%Y-%m-%d} 至 {b.month.end - timedelta(days=1):%Y-%m-%d}（北京时间）"
             f" · 生成于 {to_local(b.generated_at):%Y-%m-%d %H:%M}</div>"]
    if b.sample:
        parts.append(f"<div class=\"sample\">{esc(SAMPLE_WARNING)}</div>")
    parts.append("<h2>一、总体情况</h2><ol class=\"summary\">" + "".join(f"<li>{esc(s)}</li>" for s in b.summary) + "</ol>")

    def table(title, frame, keys, number_keys):
        headers, rows = _table(frame, keys)
        out = [f"<h2>{esc(title)}</h2>"]
        if not rows:
            return out + ["<p class=\"empty\">无。</p>"]
        out.append("<table><thead><tr>" + "".join(f'<th class="{k}">{esc(h)}</th>' for k, h in zip(keys, headers))
                   + "</tr></thead><tbody>")
        num = ' class="num"'
        for row in rows:
            out.append("<tr>" + "".join(f"<td{num if k in number_keys else ''}>{esc(v)}</td>"
                                        for k, v in zip(keys, row)) + "</tr>")
        return out + ["</tbody></table>"]
    numeric = {"rank", "n", "rate", "score", "bad_rate", "eval_rate", "callback_rate", "rectify_rate", "overdue",
               "availability", "prev_rank", "score_change"}
    parts += table("二、县区排名（评价器，按综合得分）", b.counties, [k for k in LEAGUE if k != "code"], numeric)
    town_keys = ["rank", "name", "county", "n", "rate", "score", "bad_rate", "callback_rate", "overdue", "prev_rank",
                 "score_change"]
    parts += table("三、乡镇（街道）排名", b.townships, town_keys, numeric)
    parts.append("<h2>四、连续两个月排名靠后（建议约谈）</h2>")
    parts.append("<p class=\"empty\">无。</p>" if not b.bottom else "<ul>" + "".join(
        f"<li>{esc(u['name'])}（{'县区' if u['level'] == 'county' else '乡镇'}）：本月第 {u['rank']} 名，上月第 "
        f"{u['prev_rank']} 名，共 {u['of']} 个参加排名</li>" for u in b.bottom) + "</ul>")
    parts += _records("五、逾期及逾期办结的督办件", b.cases, [("id", "编号"), ("county", "县区"), ("hall", "大厅"),
                      ("first_vote", "首次不满意"), ("deadline", "办理时限"), ("state", "状态"), ("assignee", "承办人"),
                      ("callback", "回访")])
    parts += _records(f"六、离线或无评价超过 {b.params['stale_days']} 天的终端", b.terminals,
                      [("device", "终端"), ("county", "县区"), ("hall", "大厅"), ("state", "情况"), ("since", "自"),
                       ("days", "天数")])
    parts.append("<h2>说明</h2><p>满意度 =（满意 + 基本满意）÷ 评价数；综合得分 =（100×满意 + 60×基本满意）÷ 评价数；"
                 f"差评率 = 不满意 ÷ 评价数；评价少于 {b.params['min_votes']} 条的单位不参加排名；"
                 "回访率、整改率按本月新开督办件统计；终端在线率 = 开放时间内收到终端心跳或评价的小时数 ÷ 开放小时数（节假日除外）。"
                 "各指标定义见系统文档 indicators.md。</p>")
    parts.append("</body></html>")
    return "\n".join(parts)


def _records(title: str, rows: list[dict], columns: list[tuple[str, str]]) -> list[str]:
    esc = html.escape
    if not rows:
        return [f"<h2>{esc(title)}</h2>", "<p class=\"empty\">无。</p>"]
    out = [f"<h2>{esc(title)}</h2>", "<table><thead><tr>" + "".join(f"<th>{esc(h)}</th>" for _, h in columns)
           + "</tr></thead><tbody>"]
    out += ["<tr>" + "".join(f"<td>{esc(str(r[k]))}</td>" for k, _ in columns) + "</tr>" for r in rows]
    return out + ["</tbody></table>"]


def render_xlsx(b: Bulletin) -> bytes:
    """The bulletin as a workbook: 总体情况, 县区排名, 乡镇排名, 约谈, 督办件, 终端."""
    import openpyxl
    from openpyxl.styles import Font

    from ..imports import neutralise_cell

    book = openpyxl.Workbook()
    first = book.active
    first.title = "总体情况"
    if b.sample:
        first.append([SAMPLE_WARNING])
    first.append([f"{b.month.year}年{b.month.number}月 人社服务满意度评价月度通报"])
    for line in b.summary:
        first.append([line])
    first.column_dimensions["A"].width = 110
    sheets = [("县区排名", *_table(b.counties, [k for k in LEAGUE])),
              ("乡镇排名", *_table(b.townships, ["rank", "code", "name", "county", "n", "rate", "score", "bad_rate",
                                                 "callback_rate", "overdue", "prev_rank", "score_change"])),
              ("约谈", ["级别", "代码", "名称", "本月名次", "上月名次", "参加排名"],
               [["县区" if u["level"] == "county" else "乡镇", u["code"], u["name"], u["rank"], u["prev_rank"], u["of"]]
                for u in b.bottom]),
              ("督办件", ["编号", "县区", "大厅", "首次不满意", "办理时限", "状态", "承办人", "回访"],
               [[c["id"], c["county"], c["hall"], c["first_vote"], c["deadline"], c["state"], c["assignee"], c["callback"]]
                for c in b.cases]),
              ("终端", ["终端", "县区", "大厅", "情况", "自", "天数"],
               [[t["device"], t["county"], t["hall"], t["state"], t["since"], t["days"]] for t in b.terminals])]
    for title, headers, rows in sheets:
        sheet = book.create_sheet(title)
        if b.sample:
            sheet.append([SAMPLE_WARNING])
        sheet.append(headers)
        for cell in sheet[sheet.max_row]:
            cell.font = Font(bold=True)
        for row in rows:
            sheet.append([neutralise_cell(v) for v in row])
        for index in range(1, len(headers) + 1):
            sheet.column_dimensions[openpyxl.utils.get_column_letter(index)].width = 14
    buffer = io.BytesIO()
    book.save(buffer)
    return buffer.getvalue()


def render_bulletin(b: Bulletin, fmt: str) -> bytes:
    """The bulletin in ``fmt`` (pdf, xlsx or html) as bytes."""
    fmt = (fmt or "").lower().lstrip(".")
    if fmt == "html":
        return render_html(b).encode("utf-8")
    if fmt == "pdf":
        from .pdf import html_to_pdf

        return html_to_pdf(render_html(b))
    if fmt == "xlsx":
        return render_xlsx(b)
    raise ConfigError(f"bulletin format {fmt!r}: choose one of {', '.join(FORMATS)}")

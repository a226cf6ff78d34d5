"""Figures of the drill-down pages, as pure functions: data in, plotly figure out.

The frame helpers turn vote-store count rows (already attributed to a unit) into the
small tables the figures draw; nothing here reads a store or a file.
"""

from __future__ import annotations

import html
from collections import defaultdict
from datetime import date, timedelta
from typing import Iterable

import plotly.graph_objects as go

from manyi.periods import to_local

from ..model.rates import satisfaction_rate

RATINGS = ("satisfied", "basic", "unsatisfied")
LABELS = {"satisfied": "满意", "basic": "基本满意", "unsatisfied": "不满意"}
COLORS = {"satisfied": "#2e7d32", "basic": "#f9a825", "unsatisfied": "#c62828"}
WEEKDAYS = ("周一", "周二", "周三", "周四", "周五", "周六", "周日")
FONT = "Noto Sans CJK SC, Microsoft YaHei, sans-serif"


def daily_counts(rows: Iterable, start: date, end: date) -> dict[date, dict[str, int]]:
    """Votes per China-time day in [start, end) and rating, every day present (zeros included)."""
    out = {start + timedelta(days=i): {r: 0 for r in RATINGS} for i in range((end - start).days)}
    for row in rows:
        day = to_local(row.bucket).date()
        if day in out and row.rating in RATINGS:
            out[day][row.rating] += row.count
    return out


def hour_weekday_counts(rows: Iterable) -> dict[tuple[int, int], dict[str, int]]:
    """Votes per (weekday 0=Monday, China-time hour) and rating, from hour-bucket rows."""
    out: dict[tuple[int, int], dict[str, int]] = defaultdict(lambda: {r: 0 for r in RATINGS})
    for row in rows:
        local = to_local(row.bucket)
        if row.rating in RATINGS:
            out[(local.weekday(), local.hour)][row.rating] += row.count
    return dict(out)


def totals(rows: Iterable) -> dict[str, int]:
    """Votes by rating."""
    out = {r: 0 for r in RATINGS}
    for row in rows:
        if row.rating in out:
            out[row.rating] += row.count
    return out


def _layout(fig: go.Figure, title: str, height: int = 320) -> go.Figure:
    fig.update_layout(title=title, height=height, margin=dict(l=50, r=20, t=50, b=40), font=dict(family=FONT),
                      legend=dict(orientation="h", y=-0.15, yanchor="top"), plot_bgcolor="white")
    return fig


def trend_figure(daily: dict[date, dict[str, int]]) -> go.Figure:
    """Daily stacked votes by rating with the satisfaction rate on a second axis."""
    days = sorted(daily)
    fig = go.Figure()
    for r in RATINGS:
        fig.add_bar(x=[d.isoformat() for d in days], y=[daily[d][r] for d in days], name=LABELS[r],
                    marker_color=COLORS[r])
    rates = [satisfaction_rate(daily[d]) for d in days]
    fig.add_scatter(x=[d.isoformat() for d in days], y=[None if v is None else round(v * 100, 1) for v in rates],
                    name="满意率 %", yaxis="y2", mode="lines+markers", line=dict(color="#1565c0"),
                    hovertemplate="%{y:.1f}%")
    # Dates as 11-05 (plotly's own month names are English); the rate axis in whole tens of percent.
    fig.update_layout(barmode="stack", yaxis=dict(title="评价数（次）", rangemode="tozero"),
                      xaxis=dict(type="date", tickformat="%m-%d", hoverformat="%Y-%m-%d"),
                      yaxis2=dict(title="满意率（%）", overlaying="y", side="right", range=[0, 100.5],
                                  tickmode="linear", tick0=0, dtick=20, ticksuffix="%", showgrid=False),
                      hovermode="x unified")
    return _layout(fig, "每日评价趋势")


def distribution_figure(counts: dict[str, int]) -> go.Figure:
    """The three ratings as a donut with counts and shares."""
    fig = go.Figure(go.Pie(labels=[LABELS[r] for r in RATINGS], values=[counts.get(r, 0) for r in RATINGS],
                           marker=dict(colors=[COLORS[r] for r in RATINGS]), hole=0.45, sort=False,
                           texttemplate="%{label}<br>%{value} 次<br>%{percent:.1%}",
                           hovertemplate="%{label}：%{value} 次（%{percent:.1%}）<extra></extra>"))
    return _layout(fig, "三项评价分布")


def heatmap_figure(cells: dict[tuple[int, int], dict[str, int]], value: str = "votes") -> go.Figure:
    """Hour × weekday heat map of vote counts (``value="votes"``) or of the unsatisfied share."""
    hours = list(range(24))
    z, text = [], []
    for wd in range(7):
        row, trow = [], []
        for h in hours:
            c = cells.get((wd, h))
            n = sum(c.values()) if c else 0
            if value == "unsatisfied":
                row.append(round(100 * c["unsatisfied"] / n, 1) if n else None)
            else:
                row.append(n)
            trow.append(f"共 {n} 次评价" if n else "")
        z.append(row)
        text.append(trow)
    fig = go.Figure(go.Heatmap(z=z, x=[f"{h}时" for h in hours], y=list(WEEKDAYS), text=text,
                               colorscale="Reds" if value == "unsatisfied" else "Blues",
                               colorbar=dict(title="不满意（%）" if value == "unsatisfied" else "评价数（次）"),
                               hovertemplate=("%{y} %{x}：不满意 %{z}%<br>%{text}<extra></extra>"
                                              if value == "unsatisfied" else
                                              "%{y} %{x}：%{z} 次<extra></extra>")))
    fig.update_xaxes(tickangle=0, dtick=2)
    fig.update_yaxes(autorange="reversed")
    return _layout(fig, "时段 × 星期分布" + ("（不满意占比）" if value == "unsatisfied" else "（评价数）"))


def peers_figure(peers: list[dict], highlight: str | None = None) -> go.Figure:
    """Horizontal bars of the satisfaction rate of peer units; ``peers`` items: code, name, n, rate."""
    items = sorted((p for p in peers if p.get("rate") is not None), key=lambda p: p["rate"])
    # plotly reads a small HTML subset in labels; names come from imported files, so escape them
    names = [html.escape(str(p["name"])) for p in items]
    fig = go.Figure(go.Bar(
        x=[round(p["rate"] * 100, 1) for p in items], y=names, orientation="h",
        marker_color=["#1565c0" if p["code"] == highlight else "#90a4ae" for p in items],
        text=[f"{p['rate']:.1%}（{p['n']} 次）" for p in items], textposition="auto",
        hovertemplate="%{y}：满意率 %{x}%<extra></extra>"))
    fig.update_layout(xaxis=dict(title="满意率（%）", range=[0, 100], ticksuffix="%"))
    return _layout(fig, "同级比较", height=max(260, 28 * len(items) + 90))

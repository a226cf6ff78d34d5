"""Chart builders of the control center: data in, plotly figure dict out (no I/O).

The map is a ``go.Choropleth`` over the counties' own GeoJSON polygons with
``fitbounds="geojson"`` and no base map, so it needs no online tiles; halls with
known coordinates are ``scattergeo`` markers. Every map shows the OpenStreetMap
attribution required by the polygons' licence (ODbL). Names from the registry are
HTML-escaped before they go into hover text.
"""

from __future__ import annotations

import html
import json
from urllib.parse import quote

import pandas as pd
import plotly.graph_objects as go

OSM_ATTRIBUTION = "© OpenStreetMap contributors"
SCORE_SCALE = [[0.0, "#c0392b"], [0.5, "#f1c40f"], [1.0, "#1e8449"]]
SCORE_MIN, SCORE_MAX = 60.0, 100.0
NO_DATA_COLOR = "#d5d8dc"
FEW_VOTES = 10            # a county with fewer votes is drawn pale: one vote would paint it red or green
FEW_VOTES_OPACITY = 0.4
OFFLINE_COLOR = "#6c3483"


def _fmt(value, digits: int = 1) -> str:
    return "—" if value is None or pd.isna(value) else f"{value:.{digits}f}"


_TEMPLATE: dict | None = None


def _default_template() -> dict:
    """plotly's default template as go.Figure().to_json() writes it (built once)."""
    global _TEMPLATE
    if _TEMPLATE is None:
        _TEMPLATE = json.loads(go.Figure().to_json())["layout"]["template"]
    return json.loads(json.dumps(_TEMPLATE))


def drill_url(level: str, code) -> str:
    """The drill-down page a click on a county (``level="county"``) or a hall (``"hall"``) opens."""
    return f"/drill/{level}/{quote(str(code), safe='')}"


def county_map(counties: pd.DataFrame, geojson: dict, halls: pd.DataFrame | None = None,
               title: str = "") -> dict:
    """The live map as a plotly figure dict.

    ``counties``: code, name, n, score (0–100, NaN without votes), rate (0–1), unsatisfied.
    ``halls``: id, name, county_name, lon, lat, n, score, offline (terminals offline), approximate.
    Counties without a polygon (development zones) simply do not appear on the map.
    The last ``customdata`` item of every county and hall is the drill-down URL a click opens.
    """
    for feature in geojson["features"]:
        feature.setdefault("id", feature.get("properties", {}).get("adcode"))
    # Only the counties in the frame (a county user's own) are drawn, so the map zooms to fill its box.
    wanted = set(counties["code"].astype(str))
    geojson = dict(geojson, features=[f for f in geojson["features"] if str(f.get("id")) in wanted])
    codes_with_shape = {str(f.get("id")) for f in geojson["features"]}
    shown = counties[counties["code"].astype(str).isin(codes_with_shape)]
    scored = shown[shown["n"] > 0]
    empty = shown[shown["n"] <= 0]
    traces = []
    hover = ("<b>%{customdata[0]}</b><br>满意度得分 %{customdata[1]}<br>满意率 %{customdata[2]}<br>"
             "评价数 %{customdata[3]} 次<br><i>点击查看县区详情</i><extra></extra>")
    if len(empty):
        traces.append(dict(
            type="choropleth", geojson=geojson, locations=empty["code"].astype(str).tolist(), z=[0] * len(empty),
            colorscale=[[0, NO_DATA_COLOR], [1, NO_DATA_COLOR]], showscale=False, name="无数据",
            marker=dict(line=dict(color="#ffffff", width=1)),
            customdata=[[html.escape(str(r.name)), "—（暂无评价）", "—", 0, drill_url("county", r.code)]
                        for r in empty.itertuples()],
            hovertemplate=hover))
    if len(scored):
        traces.append(dict(
            type="choropleth", geojson=geojson, locations=scored["code"].astype(str).tolist(),
            z=scored["score"].round(1).tolist(), zmin=SCORE_MIN, zmax=SCORE_MAX, colorscale=SCORE_SCALE, name="满意度",
            marker=dict(line=dict(color="#ffffff", width=1),
                        opacity=[FEW_VOTES_OPACITY if int(n) < FEW_VOTES else 1.0 for n in scored["n"]]),
            colorbar=dict(title=dict(text="满意度<br>得分（分）", side="top"), thickness=14, len=0.75,
                          tickvals=[60, 70, 80, 90, 100], ticktext=["≤60", "70", "80", "90", "100"]),
            customdata=[[html.escape(str(r.name)), _fmt(r.score) + " 分", _fmt(100 * r.rate) + "%",
                         f"{int(r.n)}（不足 {FEW_VOTES} 次，仅供参考）" if int(r.n) < FEW_VOTES else int(r.n),
                         drill_url("county", r.code)] for r in scored.itertuples()],
            hovertemplate=hover))
    if halls is not None and len(halls):
        placed = halls.dropna(subset=["lon", "lat"])
        has_score = placed["score"].notna() & ~placed["offline"].astype(bool)
        groups = (
            (placed[has_score], "服务大厅", dict(color=placed[has_score]["score"].tolist(), cmin=SCORE_MIN,
                                                cmax=SCORE_MAX, colorscale=SCORE_SCALE, symbol="circle",
                                                line=dict(width=1, color="#ffffff"))),
            (placed[placed["score"].isna() & ~placed["offline"].astype(bool)], "暂无评价",
             dict(color=NO_DATA_COLOR, symbol="circle", line=dict(width=1, color="#7f8c8d"))),
            (placed[placed["offline"].astype(bool)], "有终端离线",
             dict(color=OFFLINE_COLOR, symbol="x", line=dict(width=1, color="#000000"))),
        )
        for part, name, marker in groups:
            if not len(part):
                continue
            traces.append(dict(
                type="scattergeo", lon=part["lon"].tolist(), lat=part["lat"].tolist(), mode="markers", name=name,
                marker=dict(size=10, **marker),
                customdata=[[html.escape(str(r.name)), _fmt(r.score) + (" 分" if pd.notna(r.score) else ""), int(r.n),
                             "有终端离线" if r.offline else "终端在线",
                             "（位置为近似）" if bool(getattr(r, "approximate", False)) else "", str(r.id),
                             drill_url("hall", r.id)]
                            for r in part.itertuples()],
                hovertemplate="<b>%{customdata[0]}</b>%{customdata[4]}<br>得分 %{customdata[1]}，评价数 %{customdata[2]} 次"
                              "<br>%{customdata[3]}<br><i>点击查看大厅详情</i><extra></extra>"))
    layout = dict(
        geo=dict(fitbounds="geojson", visible=False, projection=dict(type="mercator")),
        margin=dict(l=0, r=0, t=30 if title else 0, b=0), height=560, showlegend=False,
        dragmode=False, paper_bgcolor="rgba(0,0,0,0)",
        annotations=[dict(text=OSM_ATTRIBUTION, showarrow=False, xref="paper", yref="paper", x=1, y=0,
                          xanchor="right", yanchor="bottom", font=dict(size=10, color="#555"))],
        template=_default_template())
    layout["title"] = dict(text=html.escape(title)) if title else {}
    # Plain dicts, not go.Figure: plotly's validation of ~2,000 hall markers and the polygons
    # cost more than the whole query at province size. Same figure JSON (tests compare both).
    return json.loads(json.dumps(dict(data=traces, layout=layout)))

"""The upward aggregate export (数据归集): one row per unit, month and channel for the province.

Button votes are anonymous and carry no case number, so they cannot be filed as individual
好差评 ratings; what goes upward is an exact aggregate per unit (city, county-level unit,
township, by 统计用区划代码) and month. The three keys are mapped onto the five 好差评
levels by a documented parameter (:data:`LEVEL_MAPPINGS`). A closed month exports byte for
byte the same every time (sorted rows, fixed number formats, no time of export); a month
not over yet is marked provisional.
"""

from __future__ import annotations

import csv
import io
import json
import math
from datetime import datetime

from manyi.exc import ConfigError
from manyi.periods import Month

from ..indicators import unit_indicators
from ..model.heze import Params

FIVE_LEVELS = ("非常满意", "满意", "基本满意", "不满意", "非常不满意")
LEVEL_MAPPINGS = {
    # the keys' own names: 满意 → 满意, 基本满意 → 基本满意, 不满意 → 不满意 (nothing at the two ends)
    "standard": {"S": "满意", "B": "基本满意", "U": "不满意"},
    # for provinces whose 好差评 platform scores the top level: 满意 → 非常满意, 基本满意 → 满意, 不满意 → 不满意
    "top": {"S": "非常满意", "B": "满意", "U": "不满意"},
}
FORMAT_NAME, FORMAT_VERSION = "manyi-upward", 1
COLUMNS = ["region_code", "level", "name", "period", "channel", "n", "excluded", *FIVE_LEVELS, "score", "rate",
           "eval_rate"]
CHANNEL_NAMES = {"terminal": "评价器", "phone": "12333电话回访"}


def city_code(registry) -> str:
    """The city's 统计用区划代码: the registry's ``city_code`` meta, else its counties' common prefix + 00."""
    code = registry.meta.get("city_code", "").strip()
    if code:
        return code
    prefixes = {c[:4] for c in registry.counties}
    return (prefixes.pop() + "00") if len(prefixes) == 1 else ""


def upward_rows(store, registry, db, month: Month, *, now: datetime, levels: str = "standard",
                params: Params = Params()) -> list[dict]:
    """The rows of ``month``: city, every county-level unit and every township, each channel, sorted."""
    if levels not in LEVEL_MAPPINGS:
        raise ConfigError(f"level mapping {levels!r}: choose one of {', '.join(LEVEL_MAPPINGS)}")
    mapping = LEVEL_MAPPINGS[levels]
    rows = []
    for level in ("city", "county", "township"):
        table = unit_indicators(store, registry, db, level, month.start, month.end, now=now, params=params,
                                availability=False)
        for r in table.itertuples(index=False):
            counts = dict.fromkeys(FIVE_LEVELS, 0)
            for key, target in mapping.items():
                counts[target] += int(getattr(r, key))
            rows.append({"region_code": city_code(registry) if level == "city" else r.code, "level": level,
                         "name": r.name, "period": str(month), "channel": r.channel, "n": int(r.n),
                         "excluded": int(r.excluded), **counts, "score": _number(r.score, 4),
                         "rate": _number(r.rate, 6), "eval_rate": _number(r.eval_rate, 6)})
    order = {"city": 0, "county": 1, "township": 2}
    channels = list(CHANNEL_NAMES)
    return sorted(rows, key=lambda row: (order[row["level"]], row["region_code"], channels.index(row["channel"])))


def _number(value, digits: int):
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else round(float(value), digits)


def render_upward(rows: list[dict], fmt: str, *, month: Month, levels: str, provisional: bool = False) -> bytes:
    """``rows`` as CSV (UTF-8 with BOM, a header row, then one line per row) or JSON."""
    if fmt == "json":
        document = {"format": FORMAT_NAME, "version": FORMAT_VERSION, "period": str(month),
                    "period_start": month.start.isoformat(), "period_end": month.end.isoformat(),
                    "level_mapping": levels, "mapping": LEVEL_MAPPINGS[levels], "provisional": provisional,
                    "channels": CHANNEL_NAMES, "rows": rows}
        return (json.dumps(document, ensure_ascii=False, sort_keys=True, indent=1) + "\n").encode("utf-8")
    if fmt == "csv":
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\r\n")
        writer.writerow(COLUMNS + ["provisional"])
        for row in rows:
            writer.writerow(["" if row[c] is None else (f"{row[c]:.6f}".rstrip("0").rstrip(".")
                                                       if isinstance(row[c], float) else row[c]) for c in COLUMNS]
                            + ["yes" if provisional else "no"])
        return ("\ufeff" + buffer.getvalue()).encode("utf-8")
    raise ConfigError(f"upward export format {fmt!r}: choose csv or json")

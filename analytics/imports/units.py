"""Matching unit names to the registry: by code, exact name, name without its
县/区/镇/乡/街道 suffix, or the registry's alias table, with the closest candidates (difflib)
for names that match nothing."""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass

from manyi.registry import Registry
from .cells import compact


# --------------------------------------------------------------------------- unit names

UNIT_SUFFIXES = ("街道办事处", "办事处", "街道", "镇", "乡", "县", "区", "市")


def strip_suffix(name: str) -> str:
    """A unit name without its administrative suffix (东城街道 → 东城, 曹县 → 曹), when something remains."""
    for suffix in UNIT_SUFFIXES:
        if name.endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)]
    return name


def strip_city(name: str) -> str:
    """Drop a leading province/city prefix (山东省菏泽市牡丹区 → 牡丹区)."""
    name = re.sub(r"^.{1,8}?省", "", name)
    match = re.match(r"^.{1,6}?市(.+)$", name)
    return match.group(1) if match else name


@dataclass(frozen=True)
class UnitMatch:
    """The result of matching a survey's county/township cells to registry units."""

    level: str               # "county" | "township"
    code: str
    county_code: str


class UnitMatchError(ValueError):
    """A unit name could not be matched; ``column`` is "county" or "township"."""

    def __init__(self, column: str, value: str, reason: str, candidates: list[str], code: str = "unknown_unit"):
        super().__init__(reason)
        self.column = column
        self.value = value
        self.reason = reason
        self.candidates = candidates
        self.code = code if value else "missing_unit"


class UnitMatcher:
    """Match county and township names or codes to a registry's units."""

    def __init__(self, registry: Registry):
        self.registry = registry
        self.county_exact = {c.name: c.code for c in registry.counties.values()}
        self.county_stripped = {strip_suffix(c.name): c.code for c in registry.counties.values()}
        self.town_exact: dict[str, list[str]] = {}
        self.town_stripped: dict[str, list[str]] = {}
        for t in registry.townships.values():
            self.town_exact.setdefault(t.name, []).append(t.code)
            self.town_stripped.setdefault(strip_suffix(t.name), []).append(t.code)
        self.aliases = {compact(alias): code for alias, code in registry.aliases.items()}
        self._memo: dict[tuple[str, str, str], UnitMatch | tuple] = {}

    def county(self, text: str) -> str:
        """County code for a name or code; raise UnitMatchError with candidates."""
        name = compact(text)
        reg = self.registry
        for candidate in (name, strip_city(name)):
            if candidate in reg.counties:
                return candidate
            if candidate in self.county_exact:
                return self.county_exact[candidate]
            code = self.aliases.get(candidate)
            if code in reg.counties:
                return code
            if strip_suffix(candidate) in self.county_stripped:
                return self.county_stripped[strip_suffix(candidate)]
        raise UnitMatchError("county", text, f"县区“{text}”不在区划登记中", self.county_candidates(name))

    def township(self, text: str, county_code: str | None) -> str:
        """Township code for a name or code (within ``county_code`` when given)."""
        name = compact(text)
        reg = self.registry
        codes: list[str] = []
        for candidate in (name, strip_city(name)):
            if candidate in reg.townships:
                codes = [candidate]
            elif candidate in self.town_exact:
                codes = self.town_exact[candidate]
            elif self.aliases.get(candidate) in reg.townships:
                codes = [self.aliases[candidate]]
            elif strip_suffix(candidate) in self.town_stripped:
                codes = self.town_stripped[strip_suffix(candidate)]
            if codes:
                break
        if not codes:
            raise UnitMatchError("township", text, f"乡镇(街道)“{text}”不在区划登记中",
                                 self.township_candidates(name, county_code))
        if county_code:
            inside = [c for c in codes if reg.townships[c].county_code == county_code]
            if not inside:
                owners = "、".join(f"{reg.counties[reg.townships[c].county_code].name}" for c in codes
                                  if reg.townships[c].county_code in reg.counties)
                raise UnitMatchError("township", text,
                                     f"乡镇(街道)“{text}”属于{owners}，不属于{reg.counties[county_code].name}",
                                     [self.describe(c) for c in codes], "unit_mismatch")
            codes = inside
        if len(codes) > 1:
            raise UnitMatchError("township", text, f"乡镇(街道)“{text}”有重名，请填写县区或代码",
                                 [self.describe(c) for c in codes], "ambiguous_unit")
        return codes[0]

    def match(self, county_text: str, township_text: str) -> UnitMatch:
        """Match a row's county and township cells (township wins when both are given)."""
        county_code = self.county(county_text) if county_text else None
        if township_text:
            try:
                code = self.township(township_text, county_code)
            except UnitMatchError as exc:
                # a county-level unit written in the township column (e.g. 高新区 with no county)
                if exc.code != "unknown_unit" or county_code:
                    raise
                try:
                    county_code = self.county(township_text)
                except UnitMatchError:
                    raise exc from None
                return UnitMatch("county", county_code, county_code)
            return UnitMatch("township", code, self.registry.townships[code].county_code)
        if county_code:
            return UnitMatch("county", county_code, county_code)
        raise UnitMatchError("county", "", "缺少县区和乡镇(街道)", [])

    def match_cells(self, code: str, county: str, township: str) -> UnitMatch:
        """Match a row by its code cell first, else by its county/township names (memoised:
        a long file names the same few hundred units over and over)."""
        key = (code, county, township)
        cached = self._memo.get(key)
        if cached is None:
            try:
                cached = self._match_cells(code, county, township)
            except UnitMatchError as exc:
                cached = (exc.column, exc.value, exc.reason, exc.candidates, exc.code)
            if len(self._memo) < 100_000:
                self._memo[key] = cached
        if isinstance(cached, UnitMatch):
            return cached
        column, value, reason, candidates, error_code = cached
        error = UnitMatchError(column, value, reason, list(candidates), error_code)
        error.code = error_code
        raise error

    def _match_cells(self, code: str, county: str, township: str) -> UnitMatch:
        code = compact(code)
        reg = self.registry
        if code:
            if code in reg.townships:
                return UnitMatch("township", code, reg.townships[code].county_code)
            if code in reg.counties:
                return UnitMatch("county", code, code)
            raise UnitMatchError("code", code, f"单位代码“{code}”不在区划登记中",
                                 self.township_candidates(compact(township), None) if township else [])
        return self.match(county, township)

    def describe(self, code: str) -> str:
        """``东城街道 (371702001, 牡丹区)`` for a township, ``牡丹区 (371702)`` for a county."""
        reg = self.registry
        if code in reg.townships:
            t = reg.townships[code]
            county = reg.counties.get(t.county_code)
            return f"{t.name} ({t.code}, {county.name if county else t.county_code})"
        if code in reg.counties:
            return f"{reg.counties[code].name} ({code})"
        return code

    def county_candidates(self, name: str) -> list[str]:
        """Closest county names to ``name``."""
        names = {c.name: c.code for c in self.registry.counties.values()}
        names.update({alias: code for alias, code in self.aliases.items() if code in self.registry.counties})
        return self._closest(name, names)

    def township_candidates(self, name: str, county_code: str | None) -> list[str]:
        """Closest township names to ``name`` (those of ``county_code`` first when given)."""
        towns = [t for t in self.registry.townships.values() if not county_code or t.county_code == county_code]
        names: dict[str, str] = {}
        for t in towns:
            names.setdefault(t.name, t.code)
            names.setdefault(strip_suffix(t.name), t.code)
        for alias, code in self.aliases.items():
            if code in self.registry.townships and (not county_code or self.registry.townships[code].county_code == county_code):
                names.setdefault(alias, code)
        found = self._closest(name, names)
        if not found and county_code:
            return self.township_candidates(name, None)
        return found

    def _closest(self, name: str, names: dict[str, str], n: int = 3) -> list[str]:
        key = strip_suffix(strip_city(name))
        scored = []
        for candidate, code in names.items():
            ratio = max(difflib.SequenceMatcher(None, name, candidate).ratio(),
                        difflib.SequenceMatcher(None, key, strip_suffix(candidate)).ratio())
            if key and (key in candidate or strip_suffix(candidate) in name):
                ratio = max(ratio, 0.8)
            if ratio >= 0.4:
                scored.append((-ratio, candidate, code))
        out: list[str] = []
        for _, _, code in sorted(scored):
            label = self.describe(code)
            if label not in out:
                out.append(label)
            if len(out) == n:
                break
        return out

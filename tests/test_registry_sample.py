"""The shipped Heze sample registry: real units, generated halls, reproducible byte for byte."""

from __future__ import annotations

import csv
import json

from manyi.registry import COUNTIES_GEOJSON, HEZE_TOWNSHIPS_CSV, SAMPLE_DIR, Registry
from demo.sample import build_heze_sample, load_polygons, point_in_polygons


def test_sample_has_the_real_units(heze):
    assert heze.sample is True
    assert len(heze.counties) == 11
    assert len(heze.townships) == 167
    assert {c.code for c in heze.counties.values() if c.kind == "zone"} == {"371771", "371772"}
    assert heze.counties["371771"].name == "菏泽经济技术开发区"
    assert heze.counties["371702"].kind == "district" and heze.counties["371721"].kind == "county"
    with HEZE_TOWNSHIPS_CSV.open(encoding="utf-8") as handle:
        real = {(r["township_code"], r["township_name"], r["county_code"]) for r in csv.DictReader(handle)}
    assert {(t.code, t.name, t.county_code) for t in heze.townships.values()} == real


def test_sample_halls_windows_and_terminals(heze):
    township_halls = [h for h in heze.halls.values() if h.township_code]
    county_halls = [h for h in heze.halls.values() if not h.township_code]
    assert len(township_halls) == 167 and len(county_halls) == 11
    per_hall: dict[str, int] = {}
    for window in heze.windows.values():
        per_hall[window.hall_id] = per_hall.get(window.hall_id, 0) + 1
    assert set(per_hall) == set(heze.halls) and min(per_hall.values()) >= 2 and max(per_hall.values()) <= 4
    assert len(heze.devices()) == len(heze.windows)
    loc = heze.current_location("hz-371702001-w01")
    assert (loc.county_code, loc.township_code) == ("371702", "371702001")
    assert heze.current_location("hz-371702000-w01").township_code == ""
    assert all(h.approximate and h.lon is not None for h in heze.halls.values())
    assert all(h.opening_hours == "mon-fri 09:00-12:00,13:30-17:30" for h in heze.halls.values())
    assert len(heze.roster) == len(heze.windows)


def test_sample_coordinates_lie_inside_their_county(heze):
    polygons = load_polygons()
    zone_hosts = polygons["371702"] + polygons["371703"]
    for hall in heze.halls.values():
        host = polygons.get(hall.county_code, zone_hosts)
        assert point_in_polygons(hall.lon, hall.lat, host), hall.id


def test_every_sample_file_says_it_is_sample_data():
    with (SAMPLE_DIR / "meta.csv").open(encoding="utf-8") as handle:
        meta = dict(csv.reader(handle))
    assert meta["sample"] == "yes" and "SAMPLE" in meta["note"]
    for name in ("counties.csv", "townships.csv", "halls.csv", "windows.csv", "assignments.csv", "roster.csv",
                 "aliases.csv"):
        with (SAMPLE_DIR / name).open(encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))
        assert rows and all("SAMPLE" in row["note"] for row in rows), name
        real = name in ("counties.csv", "townships.csv")
        assert all(row["note"].startswith("real unit") == real for row in rows), name


def test_regenerating_reproduces_the_committed_files_byte_for_byte(tmp_path):
    build_heze_sample().save(tmp_path / "again")
    committed = sorted(p.name for p in SAMPLE_DIR.iterdir())
    assert sorted(p.name for p in (tmp_path / "again").iterdir()) == committed
    for name in committed:
        assert (tmp_path / "again" / name).read_bytes() == (SAMPLE_DIR / name).read_bytes(), name


def test_counties_geojson_is_packaged():
    data = json.loads(COUNTIES_GEOJSON.read_text(encoding="utf-8"))
    assert len(data["features"]) == 9
    assert (COUNTIES_GEOJSON.parent / "PROVENANCE.md").exists()


def test_sample_loads_from_its_directory():
    assert Registry.load(SAMPLE_DIR).summary()["halls"] == 178

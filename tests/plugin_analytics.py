"""Fixtures of the analytics tests (loaded by conftest.py).

- ``center_db``: a real CenterDB (SQLite file) in tmp_path, closed afterwards.
- ``heze``: the shipped Heze sample registry (11 county-level units, 167 townships,
  178 halls, one terminal per window; device ids ``hz-<township code>-wNN``).
- ``heze_dir``: a writable copy of the sample registry directory (to edit files in tests).
- ``tiny_registry``: a hand-built two-county registry (fast, easy to reason about).
"""

from __future__ import annotations

import shutil
from datetime import datetime

import pytest

from manyi.periods import CHINA_TZ


@pytest.fixture
def center_db(tmp_path):
    """A fresh CenterDB file in tmp_path."""
    from analytics.center import CenterDB

    db = CenterDB(tmp_path / "center.db")
    yield db
    db.close()


@pytest.fixture(scope="session")
def heze():
    """The Heze sample registry (session-wide: treat it as read-only; use heze_dir to edit)."""
    from manyi.registry import heze_sample

    return heze_sample()


@pytest.fixture
def heze_dir(tmp_path):
    """A writable copy of the Heze sample registry directory."""
    from manyi.registry import SAMPLE_DIR

    target = tmp_path / "registry"
    shutil.copytree(SAMPLE_DIR, target)
    return target


def build_tiny_registry():
    """Two counties (A1 district, B1 county), three townships, one hall each plus a county hall."""
    from manyi.registry import Assignment, County, Hall, Registry, Township, Window

    since = datetime(2026, 1, 1, tzinfo=CHINA_TZ)
    reg = Registry(meta={"format": "manyi-registry", "version": "1", "sample": "yes", "note": "test registry"})
    reg.counties = {
        "371702": County("371702", "牡丹区", "district"),
        "371721": County("371721", "曹县", "county"),
    }
    reg.townships = {
        "371702001": Township("371702001", "东城街道", "371702"),
        "371702100": Township("371702100", "沙土镇", "371702"),
        "371721101": Township("371721101", "庄寨镇", "371721"),
    }
    hours = "mon-fri 09:00-12:00,13:30-17:30"
    for code, county in (("371702001", "371702"), ("371702100", "371702"), ("371721101", "371721"), ("371702000", "371702")):
        township = "" if code.endswith("000") else code
        reg.halls[f"hall-{code}"] = Hall(f"hall-{code}", f"{code} hall", township, 115.5, 35.2, True, hours, county)
        for n in (1, 2):
            wid = f"win-{code}-{n:02d}"
            reg.windows[wid] = Window(wid, f"hall-{code}", f"{n}号窗口")
            reg.assignments.append(Assignment(f"hz-{code}-w{n:02d}", wid, since, None))
    reg.aliases = {"庄寨": "371721101"}
    return reg


@pytest.fixture
def tiny_registry():
    """A small hand-built registry (see build_tiny_registry)."""
    return build_tiny_registry()

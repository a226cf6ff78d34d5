"""Registry versions in the control center's database: the active registry is the latest stored."""

from __future__ import annotations

import json
from datetime import datetime, timezone

from manyi.registry import Registry


def store_active(db, registry: Registry, source: str = "") -> int:
    """Store ``registry`` as the active one (older versions are kept); return the new version id."""
    cursor = db.execute(
        "INSERT INTO registry_versions (imported_at, source, sample, files) VALUES (?, ?, ?, ?)",
        (datetime.now(timezone.utc).isoformat(timespec="seconds"), source, int(registry.sample),
         json.dumps(registry.to_files(), ensure_ascii=False, sort_keys=True)),
    )
    return int(cursor.lastrowid)


def load_active(db) -> Registry | None:
    """The registry last stored with :func:`store_active`, or None."""
    rows = db.query("SELECT files FROM registry_versions ORDER BY id DESC LIMIT 1")
    if not rows:
        return None
    return Registry.from_files(json.loads(rows[0]["files"]))


def active_info(db) -> dict | None:
    """id, imported_at, source and sample flag of the active registry version, or None."""
    rows = db.query("SELECT id, imported_at, source, sample FROM registry_versions ORDER BY id DESC LIMIT 1")
    return dict(rows[0]) if rows else None

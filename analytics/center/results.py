"""Published quarterly results: the rows of ``quarter_results``, ``quarter_tables`` and ``quarter_inputs``.

Plain data in and out (JSON text, tuples, dicts); analytics.quarter turns them into and
from a QuarterResult.
"""

from __future__ import annotations


def insert_result(db, *, quarter: str, params: str, fingerprint: str, computed_at: str, published_at: str,
                  version: str, summary: str, tables: dict[str, str], inputs: list[tuple],
                  exclusions: list[dict] = ()) -> tuple[int, str]:
    """Store a result unless the same quarter, parameters and figures are stored; return (id, published_at).

    The look-up and the insert are one write transaction (BEGIN IMMEDIATE), so two processes
    publishing the same figures at once get the same id. ``inputs`` rows are (level, code,
    S_T, B_T, U_T, excluded_T, S_P, B_P, U_P, G); ``exclusions`` are the votes 不予采纳 that the
    computation left out (appeal_id, device, seq, rating, time), kept in ``quarter_exclusions``.
    """
    with db.transaction() as conn:
        existing = conn.execute("SELECT id, published_at FROM quarter_results"
                                " WHERE quarter=? AND params=? AND fingerprint=?",
                                (quarter, params, fingerprint)).fetchone()
        if existing:
            return existing["id"], existing["published_at"]
        cur = conn.execute(
            "INSERT INTO quarter_results (quarter, params, fingerprint, computed_at, published_at, version, summary)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            (quarter, params, fingerprint, computed_at, published_at, version, summary))
        result_id = cur.lastrowid
        for name, data in tables.items():
            conn.execute("INSERT INTO quarter_tables (result_id, name, data) VALUES (?, ?, ?)", (result_id, name, data))
        conn.executemany("INSERT INTO quarter_inputs VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                         [(result_id, *row) for row in inputs])
        conn.executemany("INSERT INTO quarter_exclusions (result_id, appeal_id, device, seq, rating, time) "
                         "VALUES (?, ?, ?, ?, ?, ?)",
                         [(result_id, v["appeal_id"], v["device"], v["seq"], v["rating"], v["time"])
                          for v in exclusions])
    return result_id, published_at


def result_exclusions(db, result_id: int) -> list[dict]:
    """The votes 不予采纳 that a published result left out."""
    return [dict(r) for r in db.query(
        "SELECT appeal_id, device, seq, rating, time FROM quarter_exclusions WHERE result_id = ? "
        "ORDER BY time, device, seq", (int(result_id),))]


def list_results(db, quarter: str | None = None) -> list[dict]:
    """Rows of ``quarter_results`` (newest first), optionally of one quarter."""
    sql, args = "SELECT * FROM quarter_results", ()
    if quarter is not None:
        sql, args = sql + " WHERE quarter = ?", (quarter,)
    return [dict(row) for row in db.query(sql + " ORDER BY id DESC", args)]


def result_row(db, result_id: int) -> dict | None:
    """The ``quarter_results`` row ``result_id``, or None."""
    rows = db.query("SELECT * FROM quarter_results WHERE id = ?", (int(result_id),))
    return dict(rows[0]) if rows else None


def result_tables(db, result_id: int) -> dict[str, str]:
    """A result's tables as stored: name -> JSON text."""
    return {r["name"]: r["data"] for r in db.query("SELECT name, data FROM quarter_tables WHERE result_id = ?",
                                                    (int(result_id),))}


def result_inputs(db, result_id: int) -> list[dict]:
    """A result's per-unit inputs: level, code, S_T, B_T, U_T, excluded_T, S_P, B_P, U_P, G."""
    return [dict(r) for r in db.query(
        "SELECT level, code, S_T, B_T, U_T, excluded_T, S_P, B_P, U_P, G FROM quarter_inputs WHERE result_id = ?",
        (int(result_id),))]

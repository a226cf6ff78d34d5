"""Two processes publishing the same figures at the same moment get the same id and one row."""

from __future__ import annotations

import threading
import time

from test_quarter import NOW, Q3, local, many

from analytics.center import CenterDB
from analytics.quarter import compute_quarter, publish


def test_simultaneous_publishes_of_the_same_result_share_one_id(vote_store, tiny_registry, tmp_path):
    vote_store.write(many("hz-371702001-w01", local(8, 3), {"satisfied": 30, "basic": 5}))
    path = tmp_path / "center.db"
    results = [compute_quarter(vote_store, tiny_registry, None, Q3, now=NOW) for _ in range(2)]
    blocker = CenterDB(path)
    ids, errors = [], []

    def run(result):
        db = CenterDB(path)  # its own connection, as another process would have
        try:
            ids.append(publish(db, result))
        except Exception as exc:  # noqa: BLE001 - the failure under test is an IntegrityError
            errors.append(exc)
        finally:
            db.close()

    # Hold the write lock so that both publishers reach the point where they wait for it;
    # before the fix both had already looked for an identical result (none) by then.
    with blocker.transaction():
        threads = [threading.Thread(target=run, args=(r,)) for r in results]
        for thread in threads:
            thread.start()
        time.sleep(0.5)
    for thread in threads:
        thread.join(30)
    assert errors == []
    assert len(ids) == 2 and ids[0] == ids[1]
    assert blocker.query("SELECT COUNT(*) AS n FROM quarter_results")[0]["n"] == 1
    assert blocker.query("SELECT COUNT(*) AS n FROM quarter_tables")[0]["n"] == 5
    blocker.close()

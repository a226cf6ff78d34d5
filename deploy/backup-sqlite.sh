#!/usr/bin/env bash
# Back up or restore a manyi SQLite database (votes.db, center.db) safely.
#
#   backup-sqlite.sh DB BACKUP            copy DB to BACKUP while the collector keeps writing
#   backup-sqlite.sh --restore BACKUP DB  put BACKUP in place of DB (stop the services first)
#
# The backup uses SQLite's online backup API in one step: it reads a consistent snapshot
# (WAL mode lets the collector keep committing meanwhile), checks the copy with
# PRAGMA integrity_check and renames it into place, so BACKUP is never half written.
# Restore refuses while any process has DB open (systemctl stop manyi-collector
# manyi-center first), checks the backup, and removes DB's stale -wal/-shm files.
# Example cron line (daily, keep 14):
#   15 2 * * * manyi /opt/manyi/src/deploy/backup-sqlite.sh /var/lib/manyi/votes.db /var/backups/manyi/votes-$(date +\%u).db
set -euo pipefail

usage() { sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
mode=backup
if [[ ${1:-} == --restore ]]; then mode=restore; shift; fi
[[ $# -eq 2 ]] || usage
python=${PYTHON:-python3}

"$python" - "$mode" "$1" "$2" <<'PY'
import os, sqlite3, sys
from pathlib import Path

mode, src, dst = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])

def fail(message):
    sys.exit(f"backup-sqlite: {message}")

def check(path):
    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        result = con.execute("PRAGMA integrity_check").fetchone()[0]
        tables = [r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")]
    finally:
        con.close()
    if result != "ok":
        fail(f"{path}: integrity check failed: {result}")
    return tables

def holders(path):
    """PIDs of processes with ``path`` (or its -wal) open, from /proc."""
    targets = {os.path.realpath(path), os.path.realpath(f"{path}-wal")}
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            for fd in (entry / "fd").iterdir():
                if os.path.realpath(fd) in targets:
                    pids.append(int(entry.name))
                    break
        except OSError:
            continue
    return pids

if not src.is_file():
    fail(f"{src}: no such database")
tmp = dst.with_name(f".{dst.name}.tmp-{os.getpid()}")
dst.parent.mkdir(parents=True, exist_ok=True)
if mode == "backup":
    source = sqlite3.connect(f"file:{src}?mode=ro", uri=True, timeout=30)
    target = sqlite3.connect(tmp)
    try:
        source.backup(target)          # one step: a consistent snapshot
    finally:
        target.close()
        source.close()
    tables = check(tmp)
    os.replace(tmp, dst)
    print(f"backed up {src} -> {dst} ({dst.stat().st_size} bytes, tables: {', '.join(sorted(tables))})")
else:
    busy = holders(dst) if dst.exists() else []
    if busy:
        fail(f"{dst} is open by process(es) {', '.join(map(str, busy))}: stop manyi-collector and manyi-center first")
    check(src)
    source = sqlite3.connect(f"file:{src}?mode=ro", uri=True)
    target = sqlite3.connect(tmp)
    try:
        source.backup(target)
    finally:
        target.close()
        source.close()
    for suffix in ("-wal", "-shm"):
        Path(f"{dst}{suffix}").unlink(missing_ok=True)
    if dst.exists():
        os.chmod(tmp, dst.stat().st_mode & 0o777)
        try:
            os.chown(tmp, dst.stat().st_uid, dst.stat().st_gid)
        except PermissionError:
            pass
    os.replace(tmp, dst)
    print(f"restored {src} -> {dst}")
PY

"""Benchmark: the floor under the recovery scan's cold reads, as the store lays out its rows and
as a clustered layout would, against the peer's method cold in the same run.

    python bench/layout_floor.py                   # both layouts of recovery_scan's stores
    python bench/layout_floor.py --threads 8       # more reads side by side
    python bench/layout_floor.py --layout by-session

Prints one JSON object. Why it exists: issue 16 asks the startup scan to be at least 20x faster
than the peer's method, cold as well as warm. Cold, the scan's time is its page reads, so this
times the reads alone, with nothing decoded or decided: a plain sqlite3 connection per thread
(SQLite lets go of the interpreter while it reads), each thread reading its share of the 1,000
candidates' evidence with the scan's own query for a transcript from the user's request on
(`from_request_sql`) and their session rows, after the file's pages are evicted from the OS page
cache (posix_fadvise DONTNEED). Three layouts of the same rows:

  as_stored                   the store's schema: the messages table in rowid (append) order
                              and its unique (session_id, seq) index: per candidate an index
                              leaf, a table page or more, and its session row.
  clustered                   a copy whose messages table is WITHOUT ROWID, keyed by
                              (session_id, seq): a transcript's tail on one leaf, no index.
  clustered_origin_in_record  the same, with each candidate's origin copied into its recovery
                              record, so no session row is read: one leaf per candidate and a
                              few pages of records, the least a per-candidate read can do.
  evidence_copy               no per-candidate read at all: each candidate's rows from the
                              request on and its origin copied, as one JSON value, into a table
                              of the candidates alone (what a copy of the evidence kept beside
                              each record would read: it would have to be written with every
                              transcript write of a turn in flight).

The peer's method (bench/recovery_scan.py's, unchanged) is timed cold in the same rounds, so
`peer_over_floor` is the most any scan reading each candidate's evidence where that layout keeps
it could reach against the peer on this machine. The clustered copies are built once into
bench/out/ (a few seconds to a minute each) from recovery_scan's store files, which this builds
first if they are missing. `read_kib` is what the process read from storage (Linux's
/proc/self/io), readahead included.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sqlite3
import statistics
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.recovery_scan import (
    LAYOUTS,
    OUT,
    _peer_connection,
    build,
    build_peer_index,
    evict,
    peer_method,
)
from gateway_core.recovery import RecoveryPolicy
from gateway_core.storage_reads import storage_read_bytes
from gateway_core.store.codec import MESSAGE_COLUMNS
from gateway_core.store.id_sets import IN_IDS, ids_param
from gateway_core.store.transcript import from_request_sql

SESSIONS, PER_SESSION, PENDING = 100_000, 50, 1000

CLUSTERED_MESSAGES = (
    "CREATE TABLE clustered_messages (session_id INTEGER NOT NULL, seq INTEGER NOT NULL,"
    " role TEXT NOT NULL, kind TEXT NOT NULL, content TEXT NOT NULL, tool_calls TEXT,"
    " tool_call_id TEXT, tool_name TEXT, finish_reason TEXT, generation INTEGER NOT NULL,"
    " created_at REAL, platform_message_id TEXT, reply_to TEXT,"
    " PRIMARY KEY (session_id, seq)) WITHOUT ROWID"
)


def store_file(layout: str) -> Path:
    """recovery_scan's store for the layout, built the way it builds it if missing."""
    path = OUT / f"scan-{SESSIONS}x{PER_SESSION}-{PENDING}-{layout}.db"
    if not path.exists():
        OUT.mkdir(exist_ok=True)
        build(path, SESSIONS, PER_SESSION, SESSIONS // PENDING, layout)
    return path


def clustered_copy(source: Path) -> Path:
    """The same rows with messages clustered by (session_id, seq), inserted in the source's
    rowid order (the order its appends came in), and the candidates' origins in their records."""
    path = source.with_name(source.stem + "-clustered.db")
    if path.exists():
        return path
    building = path.with_name(path.name + ".building")
    shutil.copyfile(source, building)
    db = sqlite3.connect(building, isolation_level=None)
    db.execute("PRAGMA journal_mode = DELETE")
    db.execute("PRAGMA synchronous = OFF")
    db.execute("BEGIN")
    db.execute(CLUSTERED_MESSAGES)
    db.execute(
        f"INSERT INTO clustered_messages ({MESSAGE_COLUMNS})"
        f" SELECT {MESSAGE_COLUMNS} FROM messages ORDER BY id"
    )
    db.execute("DROP TABLE messages")
    db.execute("ALTER TABLE clustered_messages RENAME TO messages")
    db.execute("ALTER TABLE recovery ADD COLUMN origin TEXT")
    db.execute(
        "UPDATE recovery SET origin = (SELECT origin FROM sessions WHERE id = session_id)"
        " WHERE state != 'none'"
    )
    db.execute(
        "CREATE INDEX recovery_origins ON recovery(session_id, origin) WHERE state != 'none'"
    )
    db.execute("COMMIT")
    db.execute("VACUUM")
    db.execute("PRAGMA journal_mode = WAL")
    db.close()
    building.rename(path)
    return path


def with_evidence_copy(path: Path) -> Path:
    """Add the candidates' evidence copy to a clustered copy, once."""
    db = sqlite3.connect(path, isolation_level=None)
    try:
        tables = {name for (name,) in db.execute("SELECT name FROM sqlite_master")}
        if "candidate_evidence" in tables:
            return path
        ids = [
            sid for (sid,) in db.execute("SELECT session_id FROM recovery WHERE origin IS NOT NULL")
        ]
        tails: dict[int, list[object]] = {sid: [] for sid in ids}
        for row in db.execute(from_request_sql(len(ids)), ids):
            tails[row[0]].append(row)
        origins = dict(
            db.execute("SELECT session_id, origin FROM recovery WHERE origin IS NOT NULL")
        )
        db.execute("BEGIN")
        db.execute(
            "CREATE TABLE candidate_evidence (session_id INTEGER PRIMARY KEY, origin TEXT,"
            " evidence TEXT NOT NULL)"
        )
        db.executemany(
            "INSERT INTO candidate_evidence VALUES (?, ?, ?)",
            ((sid, origins[sid], json.dumps(sorted(tails[sid]))) for sid in ids),
        )
        db.execute("COMMIT")
        return path
    finally:
        db.close()


def candidate_ids(path: Path) -> list[int]:
    db = sqlite3.connect(path)
    try:
        listed = db.execute("SELECT session_id FROM recovery WHERE state != 'none'")
        return [sid for (sid,) in listed]
    finally:
        db.close()


Read = Callable[[sqlite3.Connection, list[int]], int]


def tails_and_sessions(db: sqlite3.Connection, ids: list[int]) -> int:
    rows = db.execute(from_request_sql(len(ids)), ids).fetchall()
    sessions = db.execute(
        f"SELECT id, key, origin FROM sessions WHERE id {IN_IDS}", (ids_param(ids),)
    ).fetchall()
    return len(rows) + len(sessions)


def tails_and_record_origins(db: sqlite3.Connection, ids: list[int]) -> int:
    rows = db.execute(from_request_sql(len(ids)), ids).fetchall()
    origins = db.execute(
        "SELECT session_id, origin FROM recovery INDEXED BY recovery_origins"
        f" WHERE state != 'none' AND session_id {IN_IDS}",
        (ids_param(ids),),
    ).fetchall()
    return len(rows) + len(origins)


def evidence_copies(db: sqlite3.Connection, ids: list[int]) -> int:
    copies = db.execute(
        f"SELECT session_id, origin, evidence FROM candidate_evidence WHERE session_id {IN_IDS}",
        (ids_param(ids),),
    ).fetchall()
    return len(copies) + sum(len(json.loads(evidence)) for _, _, evidence in copies)


def cold_read(path: Path, ids: list[int], threads: int, read: Read) -> tuple[float, int, int]:
    """(seconds, rows, bytes read from storage) for one cold read of every candidate."""
    evict(path)
    shares = [ids[i::threads] for i in range(threads)]
    connections = [sqlite3.connect(path, check_same_thread=False) for _ in shares]
    try:
        before = storage_read_bytes() or 0
        started = time.perf_counter()
        with ThreadPoolExecutor(threads) as pool:
            rows = sum(pool.map(read, connections, shares))
        elapsed = time.perf_counter() - started
        read_bytes = (storage_read_bytes() or 0) - before
    finally:
        for db in connections:
            db.close()
    return elapsed, rows, read_bytes


def peer_cold(path: Path, policy: RecoveryPolicy) -> float:
    db = _peer_connection(path)
    try:
        evict(path)
        started = time.perf_counter()
        peer_method(db, policy)
        return time.perf_counter() - started
    finally:
        db.close()


def measure(layout: str, threads: int, rounds: int) -> dict[str, object]:
    source = store_file(layout)
    build_peer_index(source)
    clustered = with_evidence_copy(clustered_copy(source))
    ids = candidate_ids(source)
    ways: dict[str, tuple[Path, Read]] = {
        "as_stored": (source, tails_and_sessions),
        "clustered": (clustered, tails_and_sessions),
        "clustered_origin_in_record": (clustered, tails_and_record_origins),
        "evidence_copy": (clustered, evidence_copies),
    }
    policy = RecoveryPolicy()
    peer: list[float] = []
    runs: dict[str, list[tuple[float, int, int]]] = {name: [] for name in ways}
    for _ in range(rounds):
        peer.append(peer_cold(source, policy))
        for name, (path, read) in ways.items():
            runs[name].append(cold_read(path, ids, threads, read))
    peer_s = statistics.median(peer)
    result: dict[str, object] = {
        "candidates": len(ids),
        "peer_cold_s": round(peer_s, 4),
        "peer_cold_runs_s": [round(t, 4) for t in peer],
    }
    for name, measured in runs.items():
        seconds = statistics.median(t for t, _, _ in measured)
        result[name] = {
            "cold_s": round(seconds, 4),
            "cold_runs_s": [round(t, 4) for t, _, _ in measured],
            "rows": measured[0][1],
            "read_kib": round(statistics.median(b for _, _, b in measured) / 1024),
            "peer_over_floor": round(peer_s / seconds, 1),
        }
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layout", choices=(*LAYOUTS, "both"), default="both")
    parser.add_argument("--threads", type=int, default=4, help="reads side by side")
    parser.add_argument("--rounds", type=int, default=5, help="cold rounds (median)")
    args = parser.parse_args()
    layouts = LAYOUTS if args.layout == "both" else (args.layout,)
    result: dict[str, object] = {
        "bench": "layout_floor",
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "threads": args.threads,
        "load_before": [round(x, 2) for x in os.getloadavg()],
        "layouts": {layout: measure(layout, args.threads, args.rounds) for layout in layouts},
        "load_after": [round(x, 2) for x in os.getloadavg()],
        "target_peer_over_ours": 20,
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()

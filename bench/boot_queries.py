"""Benchmark: the boot's reads of the outbox on a store that has sent many replies.

    python bench/boot_queries.py                    # 2,500,000 sent replies (100,000 sessions x 25)
    python bench/boot_queries.py --replies 200000   # quicker

Prints one JSON object. Replies are kept once sent, so a long-running gateway's outbox holds
every answer it ever gave. Each boot marks the replies the previous run left 'sending' as
'unknown' (`mark_unknown_at_boot`) and counts the 'unknown' ones for the operator
(`count_unknown`); both are timed through the store, cold (the file's pages evicted from the
OS page cache with posix_fadvise, a store opened afresh) and warm, median of --rounds each.
The store holds one reply in flight and one in doubt among the sent ones, so each query has
something to find. Then the same without the two partial indexes the schema has for
them since version 10 (dropped for that part of the run, built again after it): what each
boot cost before, in the same run (`before_over_now`). Built once into bench/out/ with plain
sqlite3 (setup, not measured: bench/memory.py's 100,000 sessions with short transcripts,
then the replies) and reused; --rebuild forces a new one.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sqlite3
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.memory import build_store
from bench.recovery_scan import evict
from gateway_core.store import Store
from gateway_core.store.schema import MIGRATIONS

SENDS_IN_DOUBT_VERSION = 10  # the schema version that added these indexes
SENDS_IN_DOUBT_INDEXES = ("outbox_sending", "outbox_unknown")

OUT = Path(__file__).resolve().parent / "out"
SESSIONS = 100_000
REPLY = "an answer of about two hundred characters, as an agent's replies often are. " * 3


def build(path: Path, replies: int) -> float:
    started = time.perf_counter()
    build_store(path, SESSIONS)  # sessions as a long-running gateway leaves them
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA synchronous = OFF")
    db.execute("BEGIN")
    middle = replies // 2
    db.executemany(
        "INSERT INTO outbox (session_id, generation, kind, content, status, attempts,"
        " platform_message_id, created_at, sent_at) VALUES (?, 1, 'reply', ?, ?, 1, ?, ?, ?)",
        (
            (
                n % SESSIONS + 1,
                REPLY,
                "sending" if n == middle else "unknown" if n == middle + 1 else "sent",
                str(n),
                1_700_000_000.0 + n,
                1_700_000_001.0 + n,
            )
            for n in range(replies)
        ),
    )
    db.execute("COMMIT")
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()
    return time.perf_counter() - started


async def measure(path: Path, rounds: int) -> dict[str, object]:
    timings: dict[str, dict[str, list[float]]] = {
        "mark_unknown_at_boot": {"cold": [], "warm": []},
        "count_unknown": {"cold": [], "warm": []},
    }
    for temperature in ("cold", "warm"):
        for _ in range(rounds):
            async with await Store.open(path) as store:
                for name, query in (
                    ("mark_unknown_at_boot", store.outbox.mark_unknown_at_boot),
                    ("count_unknown", store.outbox.count_unknown),
                ):
                    if temperature == "cold":
                        evict(path)
                    started = time.perf_counter()
                    await query()
                    timings[name][temperature].append(time.perf_counter() - started)
                # Put the reply back in flight for the next round (setup, not measured).
                db = sqlite3.connect(path, isolation_level=None)
                db.execute("UPDATE outbox SET status = 'sending' WHERE id = ?", (_middle_id(db),))
                db.close()
    return {
        name: {
            f"{temperature}_s_median": round(statistics.median(runs), 4)
            for temperature, runs in by_temperature.items()
        }
        for name, by_temperature in timings.items()
    }


def _middle_id(db: sqlite3.Connection) -> int:
    (count,) = db.execute("SELECT max(id) FROM outbox").fetchone()
    return int(count) // 2 + 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--replies", type=int, default=2_500_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--rebuild", action="store_true")
    args = parser.parse_args()
    OUT.mkdir(exist_ok=True)
    path = OUT / f"boot-outbox-{args.replies}.db"
    build_s = None
    if args.rebuild or not path.exists():
        for stale in OUT.glob(f"{path.name}*"):
            stale.unlink()
        build_s = round(build(path, args.replies), 1)
    result: dict[str, object] = {
        "bench": "boot_queries",
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "replies": args.replies,
        "store_mb": round(path.stat().st_size / 1e6),
        "build_s": build_s,
        "load_before": [round(x, 2) for x in os.getloadavg()],
        "now": asyncio.run(measure(path, args.rounds)),
    }
    db = sqlite3.connect(path, isolation_level=None)
    for index in SENDS_IN_DOUBT_INDEXES:
        db.execute(f"DROP INDEX {index}")
    db.close()
    try:
        result["without_the_indexes"] = asyncio.run(measure(path, args.rounds))
    finally:
        db = sqlite3.connect(path, isolation_level=None)
        db.executescript(MIGRATIONS[SENDS_IN_DOUBT_VERSION - 1])
        db.close()
    now, before = result["now"], result["without_the_indexes"]
    result["before_over_now"] = {
        name: {
            key: round(before[name][key] / max(value, 1e-6), 1)  # type: ignore[index]
            for key, value in figures.items()
        }
        for name, figures in now.items()  # type: ignore[attr-defined]
    }
    result["load_after"] = [round(x, 2) for x in os.getloadavg()]
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()

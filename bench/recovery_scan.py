"""Benchmark: the startup recovery scan on a large store, and transcript append throughput.

    python bench/recovery_scan.py                      # 100,000 sessions x 50 rows, 1,000 pending
    python bench/recovery_scan.py --sessions 10000     # quicker

Prints one JSON object. Targets (issue 2): scan under 0.5 s, at least 20x faster than the naive
approach (load every transcript), on the 2-core machine this project runs on.

The large store is built with plain sqlite3 executemany (setup only, not measured) into
bench/out/ and reused by later runs with the same size; --rebuild forces a new one.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import random
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gateway_core.model import MessageKind, NewMessage, Role, ToolCall
from gateway_core.recovery import RecoveryPolicy, decide
from gateway_core.recovery.startup import scan
from gateway_core.store import Store
from gateway_core.store.codec import encode_tool_calls

OUT = Path(__file__).resolve().parent / "out"
NOW = 1_800_000_000.0
TEXT = "lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor incididunt"


# Alternating user/assistant rows before the tail that decides each session's verdict.
CHATTER = (("assistant", "text", None, None, "stop"), ("user", "text", None, None, None))


def _tail(kind: int, seq: int) -> tuple[str, str, str | None, str | None, str | None]:
    """(role, kind, tool_calls, tool_call_id, finish_reason) for the last rows of a session."""
    if kind == 0:
        return ("user", "text", None, None, None)
    if kind == 1:
        return ("assistant", "text", None, None, "stop")
    calls = encode_tool_calls((ToolCall(f"c{seq}", "terminal", '{"command": "make"}'),))
    return ("assistant", "text", calls, None, "tool_calls")


def build(path: Path, sessions: int, per_session: int, pending_every: int) -> float:
    started = time.perf_counter()
    asyncio.run(_create_schema(path))
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA synchronous = OFF")
    rng = random.Random(7)
    db.execute("BEGIN")
    db.executemany(
        "INSERT INTO sessions (id, key, platform, chat_id, origin, created_at, updated_at)"
        " VALUES (?, ?, 'loopback', ?, ?, ?, ?)",
        (
            (
                sid,
                f"loopback:{sid}:-",
                str(sid),
                json.dumps({"platform": "loopback", "chat_id": str(sid)}),
                NOW - 86400,
                NOW,
            )
            for sid in range(1, sessions + 1)
        ),
    )
    db.executemany(
        "INSERT INTO recovery (session_id, state, reason, marked_at) VALUES (?, ?, ?, ?)",
        (
            (sid, "pending", "crash", NOW)
            if sid % pending_every == 0
            else (sid, "none", None, None)
            for sid in range(1, sessions + 1)
        ),
    )
    db.execute("COMMIT")
    for start in range(1, sessions + 1, 2000):
        rows = []
        for sid in range(start, min(start + 2000, sessions + 1)):
            age = rng.uniform(0, 7200)  # half fresh, half stale against a 3600 s window
            for seq in range(1, per_session + 1):
                role, kind, calls, call_id, finish = (
                    _tail(sid % 3, seq) if seq == per_session else CHATTER[seq % 2]
                )
                at = NOW - age - (per_session - seq) * 5
                rows.append((sid, seq, role, kind, TEXT, calls, call_id, None, finish, 1, at))
        db.execute("BEGIN")
        db.executemany(
            "INSERT INTO messages (session_id, seq, role, kind, content, tool_calls, tool_call_id,"
            " tool_name, finish_reason, generation, created_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            rows,
        )
        db.execute("COMMIT")
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()
    return time.perf_counter() - started


async def _create_schema(path: Path) -> None:
    store = await Store.open(path)
    await store.close()


async def measure_scan(path: Path, repeats: int) -> dict[str, float | int]:
    policy = RecoveryPolicy()
    async with await Store.open(path) as store:
        timings = []
        candidates = []
        for _ in range(repeats):
            started = time.perf_counter()
            candidates = await scan(store, NOW, policy)
            timings.append(time.perf_counter() - started)
        started = time.perf_counter()
        listed = await store.recovery.candidates()
        list_s = time.perf_counter() - started
        started = time.perf_counter()
        await store.transcript.tails([r.session_id for r, _ in listed], policy.tail_rows)
        tails_s = time.perf_counter() - started
    verdicts: dict[str, int] = {}
    for candidate in candidates:
        verdicts[candidate.decision.verdict] = verdicts.get(candidate.decision.verdict, 0) + 1
    return {
        "candidates": len(candidates),
        "scan_s_min": round(min(timings), 4),
        "scan_s_median": round(statistics.median(timings), 4),
        "list_candidates_s": round(list_s, 4),
        "read_tails_s": round(tails_s, 4),
        "verdicts": verdicts,  # type: ignore[dict-item]
    }


async def measure_naive(path: Path, sessions: int) -> dict[str, float | int]:
    """What a store without the candidate index and tail reads must do: load every transcript."""
    policy = RecoveryPolicy()
    started = time.perf_counter()
    loaded = classified = 0
    async with await Store.open(path) as store:
        for session_id in range(1, sessions + 1):
            transcript = await store.transcript.all(session_id)
            loaded += len(transcript)
            record = await store.recovery.get(session_id)
            if record is not None and record.state != "none":
                session = await store.sessions.get(session_id)
                assert session is not None
                decide(record, session.origin, transcript, NOW, policy)
                classified += 1
    return {
        "naive_s": round(time.perf_counter() - started, 3),
        "rows_loaded": loaded,
        "classified": classified,
    }


async def measure_appends(writers: int, rows_each: int, max_batch: int) -> dict[str, float | int]:
    with tempfile.TemporaryDirectory() as directory:
        async with await Store.open(Path(directory) / "append.db", max_batch=max_batch) as store:
            from gateway_core.model import SessionKey

            ids = [
                (await store.sessions.ensure(SessionKey("bench", str(n)), None)).id
                for n in range(writers)
            ]
            before = store.writer_stats.batches
            message = NewMessage(Role.USER, TEXT, kind=MessageKind.TEXT)

            async def writer(session_id: int) -> None:
                for _ in range(rows_each):
                    await store.transcript.append(session_id, [message])

            started = time.perf_counter()
            await asyncio.gather(*(writer(i) for i in ids))
            elapsed = time.perf_counter() - started
            batches = store.writer_stats.batches - before
    rows = writers * rows_each
    return {
        "rows": rows,
        "rows_per_s": round(rows / elapsed),
        "commits": batches,
        "rows_per_commit": round(rows / batches, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=100_000)
    parser.add_argument("--messages", type=int, default=50, help="rows per session")
    parser.add_argument("--pending", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--rebuild", action="store_true")
    parser.add_argument("--skip-naive", action="store_true")
    args = parser.parse_args()

    OUT.mkdir(exist_ok=True)
    path = OUT / f"scan-{args.sessions}x{args.messages}-{args.pending}.db"
    build_s = None
    if args.rebuild or not path.exists():
        for stale in OUT.glob(f"{path.name}*"):
            stale.unlink()
        build_s = round(build(path, args.sessions, args.messages, args.sessions // args.pending), 1)

    result: dict[str, object] = {
        "bench": "recovery_scan",
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "sessions": args.sessions,
        "messages_per_session": args.messages,
        "store_mb": round(path.stat().st_size / 1e6),
        "build_s": build_s,
    }
    result["scan"] = asyncio.run(measure_scan(path, args.repeats))
    if not args.skip_naive:
        naive = asyncio.run(measure_naive(path, args.sessions))
        result["naive"] = naive
        scan_s = result["scan"]["scan_s_median"]  # type: ignore[index]
        result["speedup_vs_naive"] = round(naive["naive_s"] / scan_s, 1)
    result["append_group_commit"] = asyncio.run(measure_appends(100, 100, max_batch=1000))
    result["append_commit_per_row"] = asyncio.run(measure_appends(100, 100, max_batch=1))
    result["targets"] = {"scan_s": 0.5, "speedup_vs_naive": 20}
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()

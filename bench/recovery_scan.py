"""Benchmark: the startup recovery scan on a large store, and transcript append throughput.

    python bench/recovery_scan.py                      # 100,000 sessions x 50 rows, 1,000 pending
    python bench/recovery_scan.py --sessions 10000     # quicker
    python bench/recovery_scan.py --layout spoken      # one physical layout only (default: both)
    python bench/recovery_scan.py --read-connections 4 # our scan on 4 connections, cold and warm

Prints one JSON object. Targets (issue 2): scan under 0.5 s, at least 20x faster than the naive
approach (load every transcript), on the 2-core machine this project runs on. Issue 16: at least
20x faster than the peer gateway's method, cold and warm.

Three ways to find what to resume, over the same data:

  ours   the startup scan (gateway_core/recovery/startup.py): the candidates' ids from their
         partial index, then in chunks their records (from that index alone: it covers
         them, schema version 9) and sessions, each transcript from the user's request on,
         their last turn rows and crash chains: a few indexed queries per chunk, side by
         side on several read connections when the pages come from the disk
         (--read-connections fixes how many, cold and warm alike).
  peer   the peer gateway's access pattern, rebuilt exactly: one index entry per session as
         JSON text (its own table here, `peer_session_index`), the whole index loaded and
         parsed at boot, the entries marked resume-pending kept, and each of their
         transcripts loaded in full from the same messages table before its tail is checked
         (the same decide(), given the whole transcript). It gets every advantage: a plain
         synchronous sqlite3 connection, opened before the clock starts. Its decisions must
         equal ours (`same_decisions`): ours are meant to be the whole transcript's.
  naive  every session's transcript and record loaded through the store, then classified.

Ours and the peer's are timed in alternating rounds (the order flips each round), so load
from elsewhere on the machine falls on both alike. Cold: before each cold run the database's
pages are evicted from the OS page cache (posix_fadvise DONTNEED on the database and its WAL:
no root needed and nothing else on the machine loses its cache; `cold_method` says what was
done) and the method gets connections opened afresh, so neither SQLite's own cache nor the
OS's holds a page; median of --cold-rounds. Warm: median of --repeats runs. `cpu_*` is the
process's CPU time over the same runs (both methods' threads), which load disturbs less. The
garbage collector is set as `switchboard run` sets it before its boot's scan.

Two physical layouts of the same rows (same values, seqs and times), each in its own file,
both measured by default and both reported (`layouts` in the JSON):

  spoken      the rows inserted in the order they were spoken (created_at), the sessions
              interleaved, as a running gateway appends them (messages.id, the rowid, is in
              time order): one session's 50 rows lie on ~50 different pages. What a real
              store looks like.
  by-session  every session's rows inserted together: each transcript on 2-3 adjacent
              pages, the best case for the peer's "load every pending transcript in full".

The large stores are built with plain sqlite3 executemany (setup only, not measured) into
bench/out/ and reused by later runs with the same size; --rebuild forces new ones (the
spoken one takes a few minutes: its index inserts land at random).
"""

from __future__ import annotations

import argparse
import asyncio
import heapq
import json
import os
import platform
import random
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gateway_core.event_loop import chosen_loop, run_server
from gateway_core.gc_tuning import tune_for_long_running_server
from gateway_core.model import (
    Decision,
    MessageKind,
    NewMessage,
    RecoveryRecord,
    RecoveryState,
    Role,
    ToolCall,
)
from gateway_core.recovery import RecoveryPolicy, decide
from gateway_core.recovery.startup import scan
from gateway_core.recovery.tails import request_tails
from gateway_core.storage_reads import storage_read_bytes
from gateway_core.store import Store
from gateway_core.store.codec import (
    MESSAGE_COLUMNS,
    decode_message,
    decode_origin,
    encode_tool_calls,
)
from gateway_core.store.store import BULK_READ_CONNECTIONS

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


Row = tuple[int, int, str, str, str, str | None, str | None, None, str | None, int, float]
LAYOUTS = ("spoken", "by-session")


def _session_rows(sid: int, age: float, per_session: int) -> list[Row]:
    """One session's rows: chatter, then the tail that decides its verdict; 5 s apart."""
    rows: list[Row] = []
    for seq in range(1, per_session + 1):
        role, kind, calls, call_id, finish = (
            _tail(sid % 3, seq) if seq == per_session else CHATTER[seq % 2]
        )
        at = NOW - age - (per_session - seq) * 5
        rows.append((sid, seq, role, kind, TEXT, calls, call_id, None, finish, 1, at))
    return rows


def _rows_in_layout(sessions: int, per_session: int, layout: str) -> Iterator[list[Row]]:
    """Every message row, in batches, in the order the layout inserts them (so in the order
    of their rowids): `by-session` one session's rows after another's (each transcript on a
    few adjacent pages); `spoken` in the order they were spoken, the sessions' rows
    interleaved by created_at, as a running gateway appends them. The same rows either way
    (same values, seqs and times)."""
    rng = random.Random(7)
    ages = [rng.uniform(0, 7200) for _ in range(sessions)]  # half fresh, half stale (3600 s)
    if layout == "by-session":
        for start in range(1, sessions + 1, 2000):
            yield [
                row
                for sid in range(start, min(start + 2000, sessions + 1))
                for row in _session_rows(sid, ages[sid - 1], per_session)
            ]
        return

    def session(sid: int) -> Iterator[tuple[float, int, int, Row]]:
        for row in _session_rows(sid, ages[sid - 1], per_session):
            yield row[10], sid, row[1], row

    batch: list[Row] = []
    for *_, row in heapq.merge(*(session(sid) for sid in range(1, sessions + 1))):
        batch.append(row)
        if len(batch) == 100_000:
            yield batch
            batch = []
    if batch:
        yield batch


def build(path: Path, sessions: int, per_session: int, pending_every: int, layout: str) -> float:
    started = time.perf_counter()
    asyncio.run(_create_schema(path))
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA synchronous = OFF")
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
    for rows in _rows_in_layout(sessions, per_session, layout):
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


PEER_INDEX = "peer_session_index"


def build_peer_index(path: Path) -> float | None:
    """The peer's session index: one JSON entry per session, in a table of its own. Built
    once per store file (None when it was already there)."""
    db = sqlite3.connect(path, isolation_level=None)
    try:
        exists = db.execute(
            "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = ?", (PEER_INDEX,)
        ).fetchone()[0]
        if exists:
            return None
        started = time.perf_counter()
        db.execute("BEGIN")
        db.execute(
            f"CREATE TABLE {PEER_INDEX} (session_id INTEGER PRIMARY KEY, entry TEXT NOT NULL)"
        )
        rows = db.execute(
            "SELECT s.id, s.key, s.origin, s.generation, s.updated_at, r.state, r.reason,"
            " r.marked_at FROM sessions AS s JOIN recovery AS r ON r.session_id = s.id"
        )
        db.executemany(
            f"INSERT INTO {PEER_INDEX} (session_id, entry) VALUES (?, ?)",
            (
                (
                    sid,
                    json.dumps(
                        {
                            "session_id": sid,
                            "session_key": key,
                            "origin": json.loads(origin) if origin else None,
                            "generation": generation,
                            "updated_at": updated_at,
                            "resume_pending": state != "none",
                            "resume_reason": reason,
                            "marked_at": marked_at,
                        }
                    ),
                )
                for sid, key, origin, generation, updated_at, state, reason, marked_at in rows
            ),
        )
        db.execute("COMMIT")
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return time.perf_counter() - started
    finally:
        db.close()


def evict(path: Path) -> str:
    """Drop the store file's pages from the OS page cache (cold start); says how."""
    files = [f for f in (path, path.with_name(path.name + "-wal")) if f.exists()]
    if hasattr(os, "posix_fadvise"):
        for file in files:
            fd = os.open(file, os.O_RDONLY)
            try:
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)
        return "posix_fadvise(DONTNEED) on the database and its WAL"
    return "none available: the first run after a build is the cold one"


def peer_method(db: sqlite3.Connection, policy: RecoveryPolicy) -> dict[int, Decision]:
    """The peer's boot: whole index, filter, full transcripts, then the tail is checked."""
    entries = [json.loads(text) for (text,) in db.execute(f"SELECT entry FROM {PEER_INDEX}")]
    pending = [entry for entry in entries if entry["resume_pending"]]
    decisions: dict[int, Decision] = {}
    for entry in pending:
        rows = db.execute(
            f"SELECT {MESSAGE_COLUMNS} FROM messages WHERE session_id = ? ORDER BY seq",
            (entry["session_id"],),
        ).fetchall()
        transcript = [decode_message(row) for row in rows]
        record = RecoveryRecord(
            entry["session_id"], RecoveryState.PENDING, entry["resume_reason"], entry["marked_at"]
        )
        origin = decode_origin(json.dumps(entry["origin"])) if entry["origin"] else None
        decisions[record.session_id] = decide(record, origin, transcript, NOW, policy)
    return decisions


def _peer_connection(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True)


async def _ours(store: Store, policy: RecoveryPolicy, k: int | None) -> dict[int, Decision]:
    if k is None:  # as the gateway's boot chooses
        scanned = await scan(store, NOW, policy)
    else:
        scanned = await scan(store, NOW, policy, read_connections=k)
    return {c.record.session_id: c.decision for c in scanned}


class Timings:
    """Wall and CPU seconds of the runs of one method."""

    def __init__(self) -> None:
        self.wall: list[float] = []
        self.cpu: list[float] = []

    def median(self) -> float:
        return statistics.median(self.wall)

    def summary(self, prefix: str) -> dict[str, float]:
        return {
            f"{prefix}_s_median": round(statistics.median(self.wall), 4),
            f"{prefix}_s_min": round(min(self.wall), 4),
            f"{prefix}_cpu_s_median": round(statistics.median(self.cpu), 4),
        }


class Clocked:
    def __init__(self, into: Timings) -> None:
        self._into = into

    def __enter__(self) -> None:
        self._wall, self._cpu = time.perf_counter(), time.process_time()

    def __exit__(self, *exc: object) -> None:
        self._into.wall.append(time.perf_counter() - self._wall)
        self._into.cpu.append(time.process_time() - self._cpu)


async def measure_ours_and_peer(
    path: Path, repeats: int, cold_rounds: int, k: int | None
) -> dict[str, object]:
    policy = RecoveryPolicy()
    ours_cold, peer_cold, ours_warm, peer_warm = Timings(), Timings(), Timings(), Timings()
    cold_method = ""
    ours: dict[int, Decision] = {}
    peer: dict[int, Decision] = {}
    for round_ in range(cold_rounds):
        for method in ("ours", "peer") if round_ % 2 == 0 else ("peer", "ours"):
            if method == "ours":
                async with await Store.open(path) as store:
                    cold_method = evict(path)
                    with Clocked(ours_cold):
                        ours = await _ours(store, policy, k)
            else:
                db = _peer_connection(path)
                try:
                    cold_method = evict(path)
                    with Clocked(peer_cold):
                        peer = peer_method(db, policy)
                finally:
                    db.close()
    async with await Store.open(path) as store:
        db = _peer_connection(path)
        try:
            await _ours(store, policy, k)  # once untimed each: both start warm alike
            peer_method(db, policy)
            for round_ in range(repeats):
                for method in ("ours", "peer") if round_ % 2 == 0 else ("peer", "ours"):
                    if method == "ours":
                        with Clocked(ours_warm):
                            await _ours(store, policy, k)
                    else:
                        with Clocked(peer_warm):
                            peer_method(db, policy)
        finally:
            db.close()
        started = time.perf_counter()
        listed = await store.recovery.candidates()
        list_s = time.perf_counter() - started
        started = time.perf_counter()
        await request_tails(store.transcript, [r.session_id for r, _ in listed], policy.tail_rows)
        tails_s = time.perf_counter() - started
    verdicts: dict[str, int] = {}
    for decision in ours.values():
        verdicts[decision.verdict] = verdicts.get(decision.verdict, 0) + 1
    differing = sum(1 for sid in ours.keys() | peer.keys() if ours.get(sid) != peer.get(sid))
    return {
        "scan": {
            "candidates": len(ours),
            "cold_s": round(ours_cold.median(), 4),
            "cold_runs_s": [round(t, 4) for t in ours_cold.wall],
            **ours_warm.summary("scan"),
            "list_candidates_s": round(list_s, 4),
            "read_tails_s": round(tails_s, 4),
            "verdicts": verdicts,
        },
        "peer": {
            "cold_s": round(peer_cold.median(), 4),
            "cold_runs_s": [round(t, 4) for t in peer_cold.wall],
            "warm_s_median": round(peer_warm.median(), 4),
            **peer_warm.summary("warm"),
            "cold_method": cold_method,
            "pending": len(peer),
        },
        "same_decisions": differing == 0,
        "differing_decisions": differing,
        "ratios": {
            "cold": {"peer_over_ours": round(peer_cold.median() / ours_cold.median(), 1)},
            "warm": {"peer_over_ours": round(peer_warm.median() / ours_warm.median(), 1)},
            "warm_cpu": {
                "peer_over_ours": round(
                    statistics.median(peer_warm.cpu) / statistics.median(ours_warm.cpu), 1
                )
            },
        },
    }


async def cold_breakdown(
    path: Path, rounds: int, k: int | None
) -> dict[str, dict[str, float | None]]:
    """Where our cold scan's time goes: each step of it alone on a cold cache (evicted, fresh
    connections), median of `rounds`, with what it read from storage (4 KiB pages)."""
    policy = RecoveryPolicy()
    async with await Store.open(path) as store:
        ids = [r.session_id for r, _ in await store.recovery.candidates()]

    async def list_candidates(store: Store) -> object:
        return await store.recovery.candidates()

    async def transcripts(store: Store) -> object:
        return await request_tails(store.transcript, ids, policy.tail_rows)

    async def last_turns(store: Store) -> object:
        return await store.turns.last(ids)

    async def whole_scan(store: Store) -> object:
        return await scan(store, NOW, policy, read_connections=k)

    steps = {
        "list_candidates": list_candidates,
        "transcripts_from_request": transcripts,
        "last_turns": last_turns,
        "whole_scan": whole_scan,
    }
    out: dict[str, dict[str, float | None]] = {}
    for name, step in steps.items():
        times: list[float] = []
        pages: list[float] = []
        for _ in range(rounds):
            async with await Store.open(path) as store:
                evict(path)
                before = storage_read_bytes()
                started = time.perf_counter()
                await step(store)
                times.append(time.perf_counter() - started)
                after = storage_read_bytes()
                if before is not None and after is not None:
                    pages.append((after - before) / 4096)
        out[name] = {
            "cold_s": round(statistics.median(times), 4),
            "pages_read": round(statistics.median(pages)) if pages else None,
        }
    return out


async def _create_schema(path: Path) -> None:
    store = await Store.open(path)
    await store.close()


async def measure_naive(path: Path, sessions: int, cold: bool) -> dict[str, float | int]:
    """What a store without the candidate index and tail reads must do: load every transcript."""
    policy = RecoveryPolicy()
    if cold:
        evict(path)
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
    parser.add_argument("--repeats", type=int, default=7, help="warm rounds")
    parser.add_argument("--cold-rounds", type=int, default=3)
    parser.add_argument("--rebuild", action="store_true")
    parser.add_argument("--skip-naive", action="store_true")
    parser.add_argument(
        "--cold-breakdown", action="store_true", help="time each step of our scan cold"
    )
    parser.add_argument(
        "--layout",
        choices=(*LAYOUTS, "both"),
        default="both",
        help="the messages' physical order: as spoken (a running gateway's), by session, or both",
    )
    parser.add_argument(
        "--read-connections",
        type=int,
        default=None,
        help="connections our scan reads on at once, every time (1: the store's reader alone;"
        f" default: as the gateway chooses, {BULK_READ_CONNECTIONS} when its pages come from"
        " the disk, else 1)",
    )
    args = parser.parse_args()

    OUT.mkdir(exist_ok=True)
    layouts = LAYOUTS if args.layout == "both" else (args.layout,)
    result: dict[str, object] = {
        "bench": "recovery_scan",
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "sessions": args.sessions,
        "messages_per_session": args.messages,
        "read_connections": args.read_connections or "as the gateway chooses",
        "event_loop": str(chosen_loop(os.environ)),
        "load_before": [round(x, 2) for x in os.getloadavg()],
        "layouts": {},
    }
    # The collector as `switchboard run` sets it before the boot's scan (the same for both).
    tune_for_long_running_server()
    for layout in layouts:
        result["layouts"][layout] = measure_layout(args, layout)  # type: ignore[index]
    result["append_group_commit"] = asyncio.run(measure_appends(100, 100, max_batch=1000))
    result["append_commit_per_row"] = asyncio.run(measure_appends(100, 100, max_batch=1))
    result["load_after"] = [round(x, 2) for x in os.getloadavg()]
    result["targets"] = {"scan_s": 0.5, "speedup_vs_naive": 20, "peer_over_ours": 20}
    print(json.dumps(result, indent=2))


def measure_layout(args: argparse.Namespace, layout: str) -> dict[str, object]:
    """Every figure of one physical layout of the same rows, on its own store file."""
    path = OUT / f"scan-{args.sessions}x{args.messages}-{args.pending}-{layout}.db"
    build_s = None
    if args.rebuild or not path.exists():
        for stale in OUT.glob(f"{path.name}*"):
            stale.unlink()
        pending_every = args.sessions // args.pending
        build_s = round(build(path, args.sessions, args.messages, pending_every, layout), 1)
    result: dict[str, object] = {
        "store_mb": round(path.stat().st_size / 1e6),
        "build_s": build_s,
        "load_before": [round(x, 2) for x in os.getloadavg()],
    }
    peer_build_s = build_peer_index(path)
    result["peer_index_build_s"] = None if peer_build_s is None else round(peer_build_s, 1)
    k = args.read_connections
    # Ours on the loop `switchboard run` boots on (uvloop where installed; the peer's method is
    # synchronous, so the loop does not touch it).
    measured = run_server(
        measure_ours_and_peer(path, args.repeats, args.cold_rounds, k), os.environ
    )
    result.update(measured)
    ours: dict[str, float] = result["scan"]  # type: ignore[assignment]
    ratios: dict[str, dict[str, float]] = result["ratios"]  # type: ignore[assignment]
    if not args.skip_naive:
        naive_cold = asyncio.run(measure_naive(path, args.sessions, cold=True))
        naive = asyncio.run(measure_naive(path, args.sessions, cold=False))
        result["naive"] = naive
        result["naive_cold"] = naive_cold
        result["speedup_vs_naive"] = round(naive["naive_s"] / ours["scan_s_median"], 1)
        ratios["cold"]["naive_over_ours"] = round(naive_cold["naive_s"] / ours["cold_s"], 1)
        ratios["warm"]["naive_over_ours"] = result["speedup_vs_naive"]  # type: ignore[assignment]
    if args.cold_breakdown:
        result["cold_breakdown"] = asyncio.run(cold_breakdown(path, args.cold_rounds, k))
    result["load_after"] = [round(x, 2) for x in os.getloadavg()]
    result["met"] = {
        "peer_over_ours_cold": ratios["cold"]["peer_over_ours"] >= 20,
        "peer_over_ours_warm": ratios["warm"]["peer_over_ours"] >= 20,
    }
    return result


if __name__ == "__main__":
    main()

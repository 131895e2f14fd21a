"""Benchmark: messages through the whole path (inbox, lane, transcript, outbox) and back.

    python bench/intake.py                          # 1,000 sessions, 500 msg/s, 20 s per phase
    python bench/intake.py --seconds 5              # quicker
    python bench/intake.py --only saturation        # one phase (handy under a profiler)
    python bench/intake.py --postgresql             # saturation on PostgreSQL too (ratio)

Prints one JSON object. Targets (the intake issue), on the 2-core machine this project runs on:
p99 arrival-to-reply-sent latency under 50 ms at 500 messages/s offered, and at least
3,000 messages/s sustained at saturation.

Each phase runs a real Gateway (SystemClock, scripted agent, notifier off) on a fresh store in
a temporary directory, with a loopback adapter whose send() is timestamped here. Before it is
measured, every session says one message and gets its reply (sessions created, lanes and
delivery workers warm); that warm-up is not counted.

  fixed_rate  messages offered on an absolute schedule (`--rate` per second, round-robin over
              the sessions, each handed to `user.say()` in its own task so intake never waits
              for the previous commit). Latency: just before say() until the adapter's send()
              of its reply "You said: <token>" returned. `schedule_lag` is how late the pacer
              called say() against its slot (the event loop was busy): it is NOT in the latency.
  saturation  one closed-loop client per session: it says its next message as soon as the
              previous reply was sent. messages_per_s counts replies sent within the window.
              It runs as `switchboard run` does (SQLite's hot-path writes in the store's
              writer process), then again with every write on the writer's thread
              (`saturation_writes_on_thread`; `process_over_thread` is the ratio); --writes
              picks one. CPU figures include the writer process's (`write-process`).
  ceiling     the same rows per message (inbox insert, user and assistant transcript rows,
              outbox insert and its update to sent, session update) written by plain sqlite3
              (WAL, synchronous NORMAL, the project's schema), one transaction per message, in
              one loop: the most this SQLite could do for our workload with no gateway at all.
              Its payload is encoded as the gateway's intake encodes it (the C string encoder,
              the text json.dumps writes) and its update ids come from a counter (a
              platform's arrive with the update): a random id and json.dumps per message cost
              it about 15% of its CPU, a handicap the gateway's path does not have. It
              leaves foreign keys off (the store turns them on; no difference measured
              here), so it is if anything the stronger side.
              It runs before the gateway's phases and after them (the machine is shared:
              its rate drifts with other work) and the mean of the two is the ceiling.
              ratio_to_ceiling = our row rate at saturation / the ceiling's row rate;
              cpu_ratio_to_ceiling = the ceiling's process CPU per message / ours (both
              threads) at saturation, the same comparison less sensitive to the load.

With --postgresql, the saturation phase runs a second time on a throwaway PostgreSQL server
(initdb and pg_ctl as the tests use them, durability off as there), one node, beside the
SQLite run of the same process: `postgresql.ratio_to_sqlite` is its messages/s over SQLite's.

The gateway's phases run on the event loop `switchboard run` runs on (uvloop where installed;
SWITCHBOARD_EVENT_LOOP=asyncio for asyncio's own, `event_loop` in the JSON says which).

Per phase, `writer` is the store's group-commit stats over the measured window (`busy_share`:
the share of it the writer's thread spent in transactions) and `costs` is where the time went:
process CPU in cores (2 means both cores busy; the GIL keeps us near 1) and the share of wall
time spent in Python's cyclic garbage collector. At saturation, `threads_share_of_wall` puts
the event loop thread's CPU beside the writer's busy time: their sum near 1.0 says the two
threads take turns rather than run side by side (docs/architecture.md, 5).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import math
import os
import platform
import sqlite3
import sys
import tempfile
import time
from collections.abc import Coroutine
from dataclasses import dataclass, field
from json.encoder import encode_basestring_ascii as encode_json_string
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.measure import Costs, add_gc_option, apply_gc_option, ms, percentile, writer_delta
from gateway_core.adapters.loopback import LoopbackAdapter, LoopbackUser
from gateway_core.agents.scripted import ScriptedAgent
from gateway_core.clock import SystemClock
from gateway_core.event_loop import chosen_loop, run_server
from gateway_core.gateway import Gateway
from gateway_core.model import Origin
from gateway_core.store import Store
from gateway_core.store.writer import WriterStats
from tests.support.harness import make_config
from tests.support.postgres_server import start_server

REPLY_PREFIX = "You said: "
# Rows one message costs, as the ceiling writes them: inbox insert, two transcript rows,
# outbox insert, outbox update to sent, session update.
ROWS_PER_MESSAGE = 6
TARGET_P99_MS = 50
TARGET_SATURATION = 3000
DRAIN_WAIT_S = 30.0  # bound on waiting for replies still outstanding at the end of a phase


@dataclass
class TimedLoopback(LoopbackAdapter):
    """The loopback adapter, with the moment each reply's send() returned, keyed by token."""

    sent_at: dict[str, float] = field(default_factory=dict)
    waiters: dict[str, asyncio.Future[float]] = field(default_factory=dict)

    async def send(self, origin: Origin, text: str, reply_to: str | None = None) -> str | None:
        message_id = await super().send(origin, text, reply_to)
        # The chat history the loopback keeps for tests would grow by one object per reply
        # (a real platform keeps it on its side), making every full GC pass slower as the run
        # goes on: drop it. Nothing here reads it.
        self.messages.clear()
        if text.startswith(REPLY_PREFIX):
            now = time.perf_counter()
            token = text[len(REPLY_PREFIX) :]
            self.sent_at[token] = now
            waiter = self.waiters.pop(token, None)
            if waiter is not None and not waiter.done():
                waiter.set_result(now)
        return message_id

    def expect(self, token: str) -> asyncio.Future[float]:
        waiter: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        self.waiters[token] = waiter
        return waiter


class Bench:
    """A started gateway on a fresh store, with one loopback user per session."""

    def __init__(
        self,
        directory: Path,
        sessions: int,
        dsn: str | None = None,
        *,
        first: int = 0,
        node_id: str | None = None,
        write_process: bool = True,
    ) -> None:
        """first: the number of the first user (nodes of one cluster bench talk to different
        users); node_id: on PostgreSQL, the node's name; write_process: SQLite's
        `store.write_process` (False: every write on the writer's thread)."""
        sections: dict[str, dict[str, Any]] = {"store": {"write_process": write_process}}
        if dsn is not None:
            sections["store"] = {"backend": "postgresql"}
        if node_id is not None:
            sections["gateway"] = {"node_id": node_id}
        config = make_config(directory / "state", notifier={"interval": 0}, **sections)
        self.adapter = TimedLoopback()
        self.gateway = Gateway(
            config,
            agent=ScriptedAgent(),
            adapters=[self.adapter],
            clock=SystemClock(),
            store_dsn=dsn,
        )
        self.users: list[LoopbackUser] = [
            self.adapter.user(f"u{n}") for n in range(first, first + sessions)
        ]

    async def start(self) -> None:
        await self.gateway.start()
        await self.gateway.store.write_process_started()
        # Warm-up (not measured): every session created and answered once.
        waiters = [self.adapter.expect(f"w{n}") for n in range(len(self.users))]
        await asyncio.gather(*(u.say(f"w{n}") for n, u in enumerate(self.users)))
        async with asyncio.timeout(DRAIN_WAIT_S):
            await asyncio.gather(*waiters)

    def stats(self) -> WriterStats:
        return dataclasses.replace(self.gateway.store.writer_stats)  # a copy, as it is now

    async def stop(self) -> None:
        await self.gateway.stop(0)


async def wait_for_replies(adapter: TimedLoopback, tokens: list[str], within: float) -> None:
    """Wait (bounded) until every token's reply was sent."""
    deadline = time.perf_counter() + within
    while time.perf_counter() < deadline:
        if all(token in adapter.sent_at for token in tokens):
            return
        await asyncio.sleep(0.05)


async def fixed_rate(sessions: int, rate: float, seconds: float) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-intake-") as directory:
        bench = Bench(Path(directory), sessions)
        await bench.start()
        adapter, users = bench.adapter, bench.users
        before = bench.stats()
        total = int(rate * seconds)
        arrivals: dict[str, float] = {}
        lags: list[float] = []
        tasks: set[asyncio.Task[str]] = set()
        with Costs() as costs:
            start = time.perf_counter()
            for n in range(total):
                slot = start + n / rate
                delay = slot - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                token = f"m{n}"
                arrived = time.perf_counter()
                arrivals[token] = arrived
                lags.append(arrived - slot)
                task = asyncio.create_task(users[n % sessions].say(token))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
            offered_s = time.perf_counter() - start
            tokens = list(arrivals)
            await wait_for_replies(adapter, tokens, DRAIN_WAIT_S)
        stats = writer_delta(before, bench.stats())
        await bench.stop()

    answered = [t for t in tokens if t in adapter.sent_at]
    latencies = sorted(adapter.sent_at[t] - arrivals[t] for t in answered)
    last_sent = max((adapter.sent_at[t] for t in answered), default=start)
    lags.sort()
    return {
        "offered_per_s": rate,
        "offered_actual_per_s": round(total / offered_s, 1),
        "achieved_per_s": round(len(answered) / (last_sent - start), 1),
        "p50_ms": ms(percentile(latencies, 0.50)),
        "p95_ms": ms(percentile(latencies, 0.95)),
        "p99_ms": ms(percentile(latencies, 0.99)),
        "max_ms": ms(latencies[-1]) if latencies else None,
        "messages": len(answered),
        "unanswered": total - len(answered),
        "schedule_lag_p99_ms": ms(percentile(lags, 0.99)),
        "schedule_lag_max_ms": ms(lags[-1]) if lags else None,
        "writer": stats,
        "costs": costs.report(),
    }


@dataclass
class ClosedLoop:
    """What the closed-loop clients of one gateway saw over a window."""

    start: float
    seconds: float
    latencies: list[float]
    sent_times: list[float]
    lost: int

    @property
    def in_window(self) -> int:
        return sum(1 for t in self.sent_times if t <= self.start + self.seconds)

    def report(self) -> dict[str, Any]:
        per_second = [0] * max(1, math.ceil(self.seconds))
        for t in self.sent_times:
            if t <= self.start + self.seconds:
                per_second[min(len(per_second) - 1, int(t - self.start))] += 1
        latencies = sorted(self.latencies)
        return {
            "messages_per_s": round(self.in_window / self.seconds, 1),
            "p50_ms": ms(percentile(latencies, 0.50)),
            "p95_ms": ms(percentile(latencies, 0.95)),
            "p99_ms": ms(percentile(latencies, 0.99)),
            "max_ms": ms(latencies[-1]) if latencies else None,
            "messages": self.in_window,
            "messages_incl_tail": len(latencies),
            "per_second_min": min(per_second),
            "per_second_max": max(per_second),
            "lost": self.lost,
        }


async def closed_loop(bench: Bench, seconds: float) -> ClosedLoop:
    """One client per session: it says its next message as soon as the previous reply was
    sent, until the window ends."""
    adapter = bench.adapter
    found = ClosedLoop(time.perf_counter(), seconds, [], [], 0)
    deadline = found.start + seconds

    async def client(index: int, user: LoopbackUser) -> None:
        count = 0
        while time.perf_counter() < deadline:
            token = f"s{index}-{count}"
            count += 1
            waiter = adapter.expect(token)
            arrived = time.perf_counter()
            await user.say(token)
            sent = await waiter
            found.latencies.append(sent - arrived)
            found.sent_times.append(sent)

    clients = [client(n, u) for n, u in enumerate(bench.users)]
    found.lost = await run_clients(clients, seconds + DRAIN_WAIT_S)
    return found


async def saturation(
    sessions: int, seconds: float, dsn: str | None = None, *, write_process: bool = True
) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-intake-") as directory:
        bench = Bench(Path(directory), sessions, dsn, write_process=write_process)
        await bench.start()
        before = bench.stats()
        helper = bench.gateway.store.write_process_pid
        with Costs(helper=helper) as costs:
            loop = await closed_loop(bench, seconds)
        stats = writer_delta(before, bench.stats(), costs.wall_seconds)
        await bench.stop()

    found = loop.report()
    return {
        "messages_per_s": found.pop("messages_per_s"),
        # Process CPU over the window (both threads) per message answered in it.
        "cpu_us_per_message": round(costs.cpu_seconds / max(len(loop.latencies), 1) * 1e6, 1),
        # The same by thread: the event loop's (MainThread) and the store writer's.
        "cpu_us_per_message_by_thread": {
            name: round(seconds / max(len(loop.latencies), 1) * 1e6, 1)
            for name, seconds in sorted(costs.thread_seconds.items())
            if seconds > 0
        },
        **found,
        "clients": sessions,
        # Where SQLite's writes ran: the writer's process (store.write_process) or thread.
        "writes": "thread" if helper is None else "process",
        "writer": stats,
        "threads_share_of_wall": _shares(costs, stats),
        "costs": costs.report(),
    }


def _shares(costs: Costs, writer: dict[str, float | int]) -> dict[str, float]:
    """The event loop thread's CPU and the writer's time in transactions, each as a share of
    the window: `together` near 1.0 says they take turns (the interpreter lock lets one run
    Python at a time), well above 1.0 that they overlap."""
    loop_share = costs.thread_seconds.get("MainThread", 0.0) / costs.wall_seconds
    writer_share = float(writer.get("busy_share", 0.0))
    return {
        "event_loop_cpu": round(loop_share, 3),
        "writer_busy": round(writer_share, 3),
        "together": round(loop_share + writer_share, 3),
    }


async def run_clients(clients: list[Coroutine[Any, Any, None]], within: float) -> int:
    """Run the closed-loop clients; those still waiting for a reply after `within` seconds
    are stopped and counted lost. One bound for the whole phase rather than a timeout per
    message: arming and cancelling a timer for every message was the client's own cost,
    several microseconds a message, charged to the gateway's figure."""
    tasks = [asyncio.ensure_future(client) for client in clients]
    finished, waiting = await asyncio.wait(tasks, timeout=within)
    for task in waiting:
        task.cancel()
    await asyncio.gather(*waiting, return_exceptions=True)
    for task in finished:
        task.result()  # a client that failed fails the run
    return len(waiting)


async def _create_schema(path: Path) -> None:
    store = await Store.open(path)
    await store.close()


def ceiling(sessions: int, messages: int, max_seconds: float) -> dict[str, Any]:
    """Plain sqlite3, one transaction per message, the same rows, no gateway."""
    with tempfile.TemporaryDirectory(prefix="bench-ceiling-") as directory:
        path = Path(directory) / "ceiling.db"
        asyncio.run(_create_schema(path))
        db = sqlite3.connect(path, isolation_level=None)
        db.execute("PRAGMA journal_mode = WAL")
        db.execute("PRAGMA synchronous = NORMAL")
        now = time.time()
        db.execute("BEGIN")
        db.executemany(
            "INSERT INTO sessions (id, key, platform, chat_id, origin, created_at, updated_at)"
            " VALUES (?, ?, 'loopback', ?, ?, ?, ?)",
            (
                (
                    sid,
                    f"loopback:u{sid}:-",
                    f"u{sid}",
                    json.dumps({"platform": "loopback", "chat_id": f"u{sid}"}),
                    now,
                    now,
                )
                for sid in range(1, sessions + 1)
            ),
        )
        db.execute("COMMIT")
        seqs = dict.fromkeys(range(1, sessions + 1), 0)
        done = 0
        cpu_started = time.process_time()
        started = time.perf_counter()
        stop_at = started + max_seconds
        while done < messages and time.perf_counter() < stop_at:
            sid = done % sessions + 1
            token = f"c{done}"
            now = time.time()
            seq = seqs[sid]
            seqs[sid] = seq + 2
            db.execute("BEGIN IMMEDIATE")
            db.execute(
                "INSERT INTO inbox (platform, update_id, session_key, payload, received_at)"
                " VALUES ('loopback', ?, ?, ?, ?)",
                (
                    f"c-{done}",
                    f"loopback:u{sid}:-",
                    '{"text": ' + encode_json_string(token) + "}",
                    now,
                ),
            )
            db.execute(
                "INSERT INTO messages (session_id, seq, role, kind, content, generation,"
                " created_at) VALUES (?, ?, 'user', 'text', ?, ?, ?)",
                (sid, seq + 1, token, seq // 2 + 1, now),
            )
            db.execute(
                "INSERT INTO messages (session_id, seq, role, kind, content, finish_reason,"
                " generation, created_at) VALUES (?, ?, 'assistant', 'text', ?, 'stop', ?, ?)",
                (sid, seq + 2, REPLY_PREFIX + token, seq // 2 + 1, now),
            )
            outbox_id = db.execute(
                "INSERT INTO outbox (session_id, generation, kind, content, created_at)"
                " VALUES (?, ?, 'reply', ?, ?)",
                (sid, seq // 2 + 1, REPLY_PREFIX + token, now),
            ).lastrowid
            db.execute(
                "UPDATE outbox SET status = 'sent', platform_message_id = ?, sent_at = ?"
                " WHERE id = ?",
                (str(outbox_id), now, outbox_id),
            )
            db.execute("UPDATE sessions SET updated_at = ? WHERE id = ?", (now, sid))
            db.execute("COMMIT")
            done += 1
        elapsed = time.perf_counter() - started
        cpu = time.process_time() - cpu_started
        db.close()
    return {
        "messages": done,
        "seconds": round(elapsed, 2),
        "messages_per_s": round(done / elapsed, 1),
        "rows_per_s": round(done * ROWS_PER_MESSAGE / elapsed),
        "cpu_us_per_message": round(cpu / max(done, 1) * 1e6, 1),
    }


def mean_ceiling(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The ceiling measured before and after the gateway's phases: on a machine shared with
    other work its rate drifts with their load, and the mean of both sides of the measured
    phases is a fairer yardstick for them than either alone."""
    return {
        "runs": runs,
        "messages_per_s": round(sum(r["messages_per_s"] for r in runs) / len(runs), 1),
        "rows_per_s": round(sum(r["rows_per_s"] for r in runs) / len(runs)),
        "cpu_us_per_message": round(sum(r["cpu_us_per_message"] for r in runs) / len(runs), 1),
    }


def postgresql_saturation(
    sessions: int, seconds: float, sqlite: dict[str, Any] | None
) -> dict[str, Any]:
    server = start_server()
    if server is None:
        return {"skipped": "PostgreSQL is not installed (initdb, pg_ctl)"}
    try:
        found = run_server(saturation(sessions, seconds, server.new_database()), os.environ)
    finally:
        server.stop()
    if sqlite:
        found["ratio_to_sqlite"] = round(found["messages_per_s"] / sqlite["messages_per_s"], 3)
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0, help="length of each phase")
    parser.add_argument("--sessions", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=500.0, help="fixed-rate messages/s")
    parser.add_argument("--ceiling-seconds", type=float, default=5.0)
    parser.add_argument("--only", choices=("fixed", "saturation", "ceiling"))
    parser.add_argument(
        "--postgresql", action="store_true", help="also run saturation on a throwaway PostgreSQL"
    )
    parser.add_argument(
        "--writes",
        choices=("process", "thread", "both"),
        default="both",
        help="saturation with SQLite's writes in the writer's process (the default), on its "
        "thread, or both (the thread's run reported beside it, with the ratio)",
    )
    add_gc_option(parser)
    args = parser.parse_args()
    gc_mode = apply_gc_option(args)

    result: dict[str, Any] = {
        "bench": "intake",
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "cpus": os.cpu_count(),
        "sessions": args.sessions,
        "seconds": args.seconds,
        "rows_per_message": ROWS_PER_MESSAGE,
        "gc": gc_mode,
        # The gateway's phases run on the loop `switchboard run` runs on.
        "event_loop": str(chosen_loop(os.environ)),
    }
    fixed = sat = ceil = None
    ceilings: list[dict[str, Any]] = []
    if args.only is None:
        ceilings.append(ceiling(args.sessions, 10**9, args.ceiling_seconds))
    if args.only in (None, "fixed"):
        fixed = run_server(fixed_rate(args.sessions, args.rate, args.seconds), os.environ)
        result["fixed_rate"] = fixed
    if args.only in (None, "saturation"):
        if args.writes in ("process", "both"):
            sat = run_server(saturation(args.sessions, args.seconds), os.environ)
            result["saturation"] = sat
        if args.writes in ("thread", "both"):
            on_thread = run_server(
                saturation(args.sessions, args.seconds, write_process=False), os.environ
            )
            if sat is None:
                sat = on_thread
                result["saturation"] = on_thread
            else:
                result["saturation_writes_on_thread"] = on_thread
                result["process_over_thread"] = round(
                    sat["messages_per_s"] / on_thread["messages_per_s"], 3
                )
    if args.only in (None, "ceiling"):
        ceilings.append(ceiling(args.sessions, 10**9, args.ceiling_seconds))
        ceil = mean_ceiling(ceilings)
        result["ceiling"] = ceil
    if args.postgresql:
        result["postgresql"] = postgresql_saturation(args.sessions, args.seconds, sat)
    if sat and ceil:
        ours = sat["messages_per_s"] * ROWS_PER_MESSAGE
        result["ratio_to_ceiling"] = round(ours / ceil["rows_per_s"], 3)
        # The same comparison in CPU time per message: less sensitive to how much of the
        # machine other work left this process during each phase.
        result["cpu_ratio_to_ceiling"] = round(
            ceil["cpu_us_per_message"] / sat["cpu_us_per_message"], 3
        )
    result["targets"] = {"p99_ms_at_500": TARGET_P99_MS, "saturation_per_s": TARGET_SATURATION}
    met: dict[str, bool] = {}
    if fixed:
        met["p99_ms_at_500"] = bool(fixed["p99_ms"] < TARGET_P99_MS and fixed["unanswered"] == 0)
    if sat:
        met["saturation_per_s"] = bool(sat["messages_per_s"] >= TARGET_SATURATION)
    result["met"] = met
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()

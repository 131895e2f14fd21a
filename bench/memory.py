"""Benchmark: what the gateway holds in memory per session, idle in the store or after it spoke.

    python bench/memory.py                       # 100,000 stored sessions, 10,000 speak once
    python bench/memory.py --sessions 20000 --speakers 2000   # quicker

Prints one JSON object. Targets (issue 16): sessions idle in the store cost no memory until
they speak; a session that spoke once and went idle costs under 2 KB.

Each gateway runs in a fresh child process of this script (so one measurement's arenas and
caches never count in another's), with a real store, the loopback adapter and the scripted
agent, gc tuned as `switchboard run` does:

  empty      a started gateway on an empty store, idle
  stored     a started gateway on a store of --sessions sessions (4 transcript rows each,
             every recovery record 'none'), idle: bytes_per_stored_session is its RSS over
             the empty one's, per session (SQLite's page cache is bounded, not per session)
  spoke      the same store, after --speakers of those sessions each said one message in
             this run and got their reply, then went idle (lanes quiet, deliveries done)

Per phase: RSS after a full collection (the gateway's process; the store's writer process's
beside it as `write_process_rss`: its SQLite page cache is bounded and it keeps nothing per
session), and for `spoke` also the Python heap the speakers
left behind (tracemalloc, started just before they speak, after the users and their tokens
were made), divided by the speakers: bytes_per_spoken_session. RSS includes allocator
arenas kept from the burst; the traced heap is what is still referenced.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import platform
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gateway_core.adapters.loopback import LoopbackAdapter, LoopbackUser
from gateway_core.agents.scripted import ScriptedAgent
from gateway_core.clock import SystemClock
from gateway_core.event_loop import chosen_loop, run_server
from gateway_core.gateway import Gateway
from gateway_core.gc_tuning import tune_for_long_running_server
from gateway_core.model import Origin
from gateway_core.store import Store
from tests.support.harness import make_config

TARGET_BYTES_PER_SPOKEN = 2048
ROWS_PER_SESSION = 4
REPLY_WAIT_S = 120.0


def build_store(path: Path, sessions: int) -> None:
    """Sessions as a long-running gateway leaves them: a short transcript, nothing pending."""
    asyncio.run(_create_schema(path))
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA synchronous = OFF")
    now = time.time() - 86_400
    db.execute("BEGIN")
    db.executemany(
        "INSERT INTO sessions (id, key, platform, chat_id, origin, generation, created_at,"
        " updated_at) VALUES (?, ?, 'loopback', ?, ?, 1, ?, ?)",
        (
            (
                sid,
                f"loopback:u{sid}:-",
                f"u{sid}",
                json.dumps({"platform": "loopback", "chat_id": f"u{sid}", "user_id": f"u{sid}"}),
                now,
                now,
            )
            for sid in range(1, sessions + 1)
        ),
    )
    db.executemany(
        "INSERT INTO recovery (session_id, state, updated_at) VALUES (?, 'none', ?)",
        ((sid, now) for sid in range(1, sessions + 1)),
    )
    db.executemany(
        "INSERT INTO messages (session_id, seq, role, kind, content, generation, created_at)"
        " VALUES (?, ?, ?, 'text', ?, 1, ?)",
        (
            (sid, seq, "user" if seq % 2 else "assistant", f"row {seq} of session {sid}", now)
            for sid in range(1, sessions + 1)
            for seq in range(1, ROWS_PER_SESSION + 1)
        ),
    )
    db.execute("COMMIT")
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()


async def _create_schema(path: Path) -> None:
    store = await Store.open(path)
    await store.close()


def rss() -> int:
    gc.collect()
    return int(psutil.Process().memory_info().rss)


def helper_rss(gateway: Gateway) -> int | None:
    """The store's writer process's RSS (store/write_process.py), beside the gateway's."""
    pid = gateway.store.write_process_pid
    return None if pid is None else int(psutil.Process(pid).memory_info().rss)


class Collector(LoopbackAdapter):
    """The loopback adapter without its test history (a platform keeps chats on its side)."""

    def __init__(self) -> None:
        super().__init__()
        self.replies = 0
        self.all_answered = asyncio.Event()
        self.expected = 0

    async def send(self, origin: Origin, text: str, reply_to: str | None = None) -> str | None:
        message_id = await super().send(origin, text, reply_to)
        self.messages.clear()
        self.replies += 1
        if self.replies >= self.expected:
            self.all_answered.set()
        return message_id


async def run_phase(state: Path, speakers: int, trace: bool) -> dict[str, Any]:
    """In the child: start a gateway on `state`, measure, optionally let speakers speak."""
    config = make_config(state, notifier={"interval": 0})
    adapter = Collector()
    gateway = Gateway(config, agent=ScriptedAgent(), adapters=[adapter], clock=SystemClock())
    await gateway.start()
    await gateway.store.write_process_started()
    try:
        users: list[LoopbackUser] = [adapter.user(f"u{n}") for n in range(1, speakers + 1)]
        tokens = [f"hello {n}" for n in range(speakers)]
        await asyncio.sleep(0.5)  # the boot's own work (recovery pass, deliveries) is done
        result: dict[str, Any] = {"rss_idle": rss(), "write_process_rss_idle": helper_rss(gateway)}
        if speakers:
            if trace:
                tracemalloc.start()
            traced_before = tracemalloc.get_traced_memory()[0]
            adapter.expected = speakers
            for start in range(0, speakers, 500):  # a burst, in waves the store takes at once
                chunk = range(start, min(start + 500, speakers))
                await asyncio.gather(*(users[n].say(tokens[n]) for n in chunk))
            async with asyncio.timeout(REPLY_WAIT_S):
                await adapter.all_answered.wait()
            async with asyncio.timeout(REPLY_WAIT_S):
                await gateway.wait_idle()
            await asyncio.sleep(0.5)
            result["replies"] = adapter.replies
            if trace:
                gc.collect()
                traced = tracemalloc.get_traced_memory()[0] - traced_before
                top = tracemalloc.take_snapshot().statistics("lineno")[:12]
                tracemalloc.stop()
                result["traced_heap_kept"] = traced
                result["bytes_per_spoken_session"] = round(traced / speakers)
                result["top_sites"] = [
                    f"{stat.size / speakers:.0f} B/session {stat.traceback[0]}" for stat in top
                ]
            else:
                result["rss_spoke"] = rss()
                result["write_process_rss_spoke"] = helper_rss(gateway)
        return result
    finally:
        await gateway.stop(0)


def child(args: argparse.Namespace) -> None:
    tune_for_long_running_server()
    # On the loop `switchboard run` runs on (uvloop where installed).
    print(
        json.dumps(run_server(run_phase(Path(args.state), args.speakers, args.trace), os.environ))
    )


def spawn(state: Path, speakers: int, trace: bool = False) -> dict[str, Any]:
    command = [sys.executable, __file__, "--child", "--state", str(state)]
    command += ["--speakers", str(speakers)] + (["--trace"] if trace else [])
    output = subprocess.run(
        command,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    result: dict[str, Any] = json.loads(output.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=100_000)
    parser.add_argument("--speakers", type=int, default=10_000)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--state", help=argparse.SUPPRESS)
    parser.add_argument("--trace", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return

    with tempfile.TemporaryDirectory(prefix="bench-memory-") as directory:
        empty_state = Path(directory) / "empty"
        stored_state = Path(directory) / "stored"
        stored_state.mkdir(mode=0o700)
        started = time.perf_counter()
        build_store(stored_state / "switchboard.db", args.sessions)
        traced_state = Path(directory) / "traced"
        traced_state.mkdir(mode=0o700)
        shutil.copy2(stored_state / "switchboard.db", traced_state / "switchboard.db")
        build_s = time.perf_counter() - started
        empty = spawn(empty_state, 0)
        stored = spawn(stored_state, 0)
        spoke = spawn(stored_state, args.speakers)
        # The same again on a copy of the store as it was (the first run's speakers wrote
        # to it), with tracemalloc on: it inflates RSS, so it gets a run of its own.
        traced = spawn(traced_state, args.speakers, trace=True)

    per_stored = (stored["rss_idle"] - empty["rss_idle"]) / args.sessions
    result = {
        "bench": "memory",
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "sessions": args.sessions,
        "speakers": args.speakers,
        "event_loop": str(chosen_loop(os.environ)),
        "build_s": round(build_s, 1),
        "empty": {"rss": empty["rss_idle"], "write_process_rss": empty["write_process_rss_idle"]},
        "stored_idle": {
            "rss": stored["rss_idle"],
            "write_process_rss": stored["write_process_rss_idle"],
        },
        "spoke": spoke,
        "spoke_traced": traced,
        "bytes_per_stored_session": round(per_stored, 1),
        "rss_per_spoken_session": round(
            (spoke["rss_spoke"] - spoke["rss_idle"]) / max(args.speakers, 1)
        ),
        "bytes_per_spoken_session": traced.get("bytes_per_spoken_session"),
        "targets": {"bytes_per_spoken_session": TARGET_BYTES_PER_SPOKEN},
    }
    result["met"] = {
        "bytes_per_spoken_session": (traced.get("bytes_per_spoken_session") or 0)
        < TARGET_BYTES_PER_SPOKEN
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()

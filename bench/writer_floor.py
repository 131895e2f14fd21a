"""Benchmark: what SQLite itself costs of the store writer's work at saturation, and the rest.

    python bench/writer_floor.py                  # 1,000 sessions, 8 s of saturation
    python bench/writer_floor.py --seconds 5      # quicker

Prints one JSON object. bench/intake.py says how much CPU a message costs on each thread (the
event loop's, the writer's); this says how much of the writer's share is SQLite doing the
statements and how much is the Python around them (the transaction bodies, the batch, the
rows decoded), which is what tells a change to the writer's Python from a change to the
statements apart.

1. `measured`: bench/intake.py's saturation phase with every write on the writer's thread
   (`store.write_process = false`: the statements must run in this process to be recorded),
   on uvloop where installed: CPU per message by thread.
2. The same phase again with every statement of the writer's thread recorded, in order with
   its parameters (sqlite3.connect given a recording Connection class for this run only: the
   standard library's, not the gateway's code, is what is wrapped).
3. `replay`: those statements run again, in the same order and the same transactions (the
   BEGIN and COMMIT of each batch are among them), on a fresh store of the same schema by a
   plain loop on one connection: SQLite's work for the writer's statements, with the least
   Python around it (one execute and one fetchall each). `by_statement` is where it goes.

`writer_python_us` = the writer thread's CPU per message in (1) less the replay's: the Python
of the bodies and of the batch. The replay has no other thread contending with it, so it is
if anything the cheaper side.
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Coroutine, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ClassVar

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.intake import saturation
from bench.measure import add_gc_option, apply_gc_option
from gateway_core.event_loop import chosen_loop, run_server
from gateway_core.store.database import open_write_connection

WRITER_THREAD_PREFIX = "sb-writer"  # the store writer's thread (store/writer.py)


def on_thread(sessions: int, seconds: float) -> Coroutine[Any, Any, dict[str, Any]]:
    """bench/intake.py's saturation with every write on the writer's thread."""
    return saturation(sessions, seconds, write_process=False)


Statement = tuple[str, Sequence[Any] | list[Sequence[Any]], bool]  # sql, params, many


class RecordingConnection(sqlite3.Connection):
    """A connection that notes each statement the writer's thread runs on it."""

    log: ClassVar[list[Statement]] = []

    def execute(self, sql: str, parameters: Any = (), /) -> sqlite3.Cursor:
        if threading.current_thread().name.startswith(WRITER_THREAD_PREFIX):
            self.log.append((sql, tuple(parameters), False))
        return super().execute(sql, parameters)

    def executemany(self, sql: str, parameters: Any, /) -> sqlite3.Cursor:
        rows = [tuple(row) for row in parameters]
        if threading.current_thread().name.startswith(WRITER_THREAD_PREFIX):
            self.log.append((sql, rows, True))
        return super().executemany(sql, rows)


@contextmanager
def recording() -> Iterator[list[Statement]]:
    """Every connection opened meanwhile records; the log of the writer's statements."""
    real_connect = sqlite3.connect
    log: list[Statement] = []
    RecordingConnection.log = log

    def connect(*args: Any, **kwargs: Any) -> sqlite3.Connection:
        kwargs.setdefault("factory", RecordingConnection)
        connection: sqlite3.Connection = real_connect(*args, **kwargs)
        return connection

    sqlite3.connect = connect  # type: ignore[assignment]
    try:
        yield log
    finally:
        sqlite3.connect = real_connect


def replay(log: list[Statement], messages: int) -> dict[str, Any]:
    """Run the recorded statements on a fresh store, one plain loop: CPU per message. Twice:
    once timed as a whole, once timed per statement for `by_statement` (reading the clock
    around every statement costs about a microsecond each, so the whole is timed alone)."""
    total = _run(log, None)
    spent: Counter[str] = Counter()
    _run(log, spent)
    itemized = sum(spent.values())
    return {
        "statements": len(log),
        "cpu_us_per_message": round(total / 1e3 / messages, 1),
        # Shares of the itemized run, scaled to the whole run's figure.
        "by_statement": {
            kind: round(ns / itemized * total / 1e3 / messages, 1)
            for kind, ns in spent.most_common()
            if ns / itemized >= 0.001
        },
    }


def _run(log: list[Statement], spent: Counter[str] | None) -> int:
    """The log on a fresh store; the thread's CPU in ns (spent: by statement kind)."""
    with tempfile.TemporaryDirectory(prefix="bench-writer-floor-") as directory:
        db = open_write_connection(Path(directory) / "replay.db", "NORMAL", 5.0)
        clock = time.thread_time_ns
        started = clock()
        for sql, parameters, many in log:
            before = clock() if spent is not None else 0
            if many:
                db.executemany(sql, parameters)
            else:
                db.execute(sql, parameters).fetchall()
            if spent is not None:
                spent[_kind(sql)] += clock() - before
        total = clock() - started
        db.close()
    return total


def _kind(sql: str) -> str:
    """A statement's first words: enough to tell the hot path's statements apart."""
    words = sql.split()
    return " ".join(words[:4]) if words[0] in ("INSERT", "UPDATE") else " ".join(words[:2])


def _writer_us(by_thread: dict[str, float]) -> float:
    return sum(us for name, us in by_thread.items() if name.startswith(WRITER_THREAD_PREFIX))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=8.0, help="length of each run")
    parser.add_argument("--sessions", type=int, default=1000)
    add_gc_option(parser)
    args = parser.parse_args()
    gc_mode = apply_gc_option(args)

    measured = run_server(on_thread(args.sessions, args.seconds), os.environ)
    with recording() as log:
        recorded = run_server(on_thread(args.sessions, args.seconds), os.environ)
    # Every message of the recorded run, warm-up and tail included, went through the log.
    messages = sum(1 for sql, _, _ in log if sql.lstrip().startswith("INSERT INTO inbox"))
    floor = replay(log, max(messages, 1))
    by_thread = measured["cpu_us_per_message_by_thread"]
    writer_us = _writer_us(by_thread)
    result = {
        "bench": "writer_floor",
        "sessions": args.sessions,
        "seconds": args.seconds,
        "gc": gc_mode,
        "event_loop": str(chosen_loop(os.environ)),
        "measured": {
            "messages_per_s": measured["messages_per_s"],
            "cpu_us_per_message": measured["cpu_us_per_message"],
            "cpu_us_per_message_by_thread": by_thread,
        },
        "recorded_messages": messages,
        "recorded_messages_per_s": recorded["messages_per_s"],
        "replay": floor,
        "writer_thread_us": round(writer_us, 1),
        "writer_sqlite_us": floor["cpu_us_per_message"],
        "writer_python_us": round(writer_us - floor["cpu_us_per_message"], 1),
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()

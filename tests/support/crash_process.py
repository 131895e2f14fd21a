"""A real gateway process (tests/support/crash_gateway.py) to SIGKILL and start again.

    gateway = CrashProcess(tmp_path)
    await gateway.start("--say", "work 5", "--no-wait")
    await gateway.until("SELECT count(*) FROM turns WHERE outcome IS NULL")  # a turn runs
    await gateway.sigkill()
    await gateway.start("--no-traffic")

The store is read with plain read-only connections while the gateway may be writing (WAL);
the loopback journal is the users' view (every message in and out, flushed at once).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import sys
from pathlib import Path
from typing import Any

from gateway_core.store import DATABASE_NAME

REPO = Path(__file__).resolve().parents[2]
READY_WITHIN = 20.0
EXIT_WITHIN = 15.0


class CrashProcess:
    def __init__(self, tmp_path: Path) -> None:
        self.state_dir = tmp_path / "state"
        self.journal = tmp_path / "journal.jsonl"
        self.log = tmp_path / "gateway.log"
        self.process: asyncio.subprocess.Process | None = None
        self.starts = 0

    @property
    def db(self) -> Path:
        return self.state_dir / DATABASE_NAME

    async def start(self, *options: str) -> None:
        """Start the gateway and wait (bounded) for its READY line."""
        assert self.process is None or self.process.returncode is not None, "still running"
        self.starts += 1
        with self.log.open("a", encoding="utf-8") as log:
            log.write(f"===== start #{self.starts} {' '.join(options)} =====\n")
            log.flush()
            self.process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "tests.support.crash_gateway",
                *("--state-dir", str(self.state_dir), "--journal", str(self.journal)),
                *options,
                cwd=REPO,
                env={**os.environ, "PYTHONPATH": str(REPO)},
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=log,
            )
        assert self.process.stdout is not None
        try:
            line = await asyncio.wait_for(self.process.stdout.readline(), READY_WITHIN)
        except TimeoutError:
            line = b"(nothing within the bound)"
        if line != b"READY\n":
            await self.reap()
            raise AssertionError(f"no READY from the gateway: {line!r}\n{self.tail()}")

    async def sigkill(self) -> None:
        process = self.process
        assert process is not None and process.returncode is None, "not running"
        os.kill(process.pid, signal.SIGKILL)
        assert await asyncio.wait_for(process.wait(), EXIT_WITHIN) == -signal.SIGKILL

    async def sigterm(self) -> None:
        process = self.process
        assert process is not None and process.returncode is None, "not running"
        os.kill(process.pid, signal.SIGTERM)
        code = await asyncio.wait_for(process.wait(), EXIT_WITHIN)
        assert code == 0, f"SIGTERM exit code {code}\n{self.tail()}"

    async def reap(self) -> None:
        if self.process is not None and self.process.returncode is None:
            self.process.kill()
            await asyncio.wait_for(self.process.wait(), EXIT_WITHIN)

    def query(self, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        if not self.db.exists():
            return []
        connection = sqlite3.connect(f"file:{self.db}?mode=ro", uri=True, timeout=5.0)
        try:
            return connection.execute(sql, params).fetchall()
        except sqlite3.OperationalError:
            return []  # the schema is not there yet (the first boot is still migrating)
        finally:
            connection.close()

    def value(self, sql: str, *params: Any) -> Any:
        rows = self.query(sql, *params)
        return rows[0][0] if rows else None

    async def until(self, sql: str, *params: Any, within: float = 20.0) -> None:
        """Poll (every 10 ms) until the query's first value is truthy."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while not self.value(sql, *params):
            if loop.time() > deadline:
                raise AssertionError(f"never true within {within} s: {sql}\n{self.tail()}")
            await asyncio.sleep(0.01)

    def replies(self, chat: str = "u0") -> list[str]:
        """What the user saw, in order."""
        if not self.journal.exists():
            return []
        entries = []
        for line in self.journal.read_text(encoding="utf-8").splitlines():
            try:
                entries.append(json.loads(line))
            except json.JSONDecodeError:
                continue  # a line torn by the kill
        return [e["text"] for e in entries if e["dir"] == "out" and e["chat"] == chat]

    async def until_replies(self, count: int, chat: str = "u0", within: float = 20.0) -> list[str]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while len(self.replies(chat)) < count:
            if loop.time() > deadline:
                raise AssertionError(
                    f"{chat} got {self.replies(chat)}, wanted {count} replies\n{self.tail()}"
                )
            await asyncio.sleep(0.02)
        return self.replies(chat)

    def tail(self, lines: int = 40) -> str:
        if not self.log.exists():
            return "(no gateway log)"
        text = self.log.read_text(encoding="utf-8", errors="replace")
        return "\n".join(text.splitlines()[-lines:])

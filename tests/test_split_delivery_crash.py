"""A split reply across a real crash: the gateway (tests/support/crash_gateway.py, loopback
adapter at max_length=40, journal file) sends the first piece, gets a 502 on the second and is
SIGKILLed during the backoff. The restarted process, given another message limit on purpose,
sends the stored pieces the user is missing, each once, in order."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from gateway_core.delivery import split_text
from gateway_core.store import DATABASE_NAME

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
LIMIT = 40
LONG = "\n".join(f"line {i} of the text" for i in range(8))
REPLY = f"You said: {LONG}"
WITHIN = 20.0


class Runs:
    """Gateway processes on one state dir and journal; whatever is left is killed."""

    def __init__(self, tmp_path: Path) -> None:
        self.state_dir = tmp_path / "state"
        self.journal = tmp_path / "journal.jsonl"
        self.log = tmp_path / "gateway.log"
        self.processes: list[asyncio.subprocess.Process] = []

    async def start(self, *options: str) -> asyncio.subprocess.Process:
        with self.log.open("a", encoding="utf-8") as log:
            process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "tests.support.crash_gateway",
                "--state-dir", str(self.state_dir), "--journal", str(self.journal),
                "--no-traffic", *options,
                cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)},
                stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=log,
            )  # fmt: skip
        self.processes.append(process)
        assert process.stdout is not None
        line = await asyncio.wait_for(process.stdout.readline(), WITHIN)
        assert line == b"READY\n", f"no READY: {line!r}\n{self.log.read_text()}"
        return process

    def out(self) -> list[str]:
        """What the user saw, in order (the journal is flushed line by line)."""
        if not self.journal.exists():
            return []
        lines = self.journal.read_text(encoding="utf-8").splitlines()
        entries = [json.loads(line) for line in lines]
        return [e["text"] for e in entries if e["dir"] == "out"]

    def outbox(self) -> list[tuple[Any, ...]]:
        db = self.state_dir / DATABASE_NAME
        if not db.exists():
            return []
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5.0) as connection:
            rows = connection.execute(
                "SELECT status, attempts, last_error FROM outbox ORDER BY id"
            ).fetchall()
        connection.close()
        return rows


@pytest.fixture
async def runs(tmp_path: Path) -> AsyncIterator[Runs]:
    started = Runs(tmp_path)
    yield started
    for process in started.processes:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def poll(condition: Callable[[], bool], within: float = WITHIN) -> None:
    """Until condition() holds (the other process writes the files we look at); bounded."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        if condition():
            return
        assert loop.time() < deadline, "the condition never held"
        await asyncio.sleep(0.01)


async def test_a_restart_during_the_backoff_sends_only_the_missing_pieces(runs: Runs) -> None:
    expected = split_text(REPLY, LIMIT)
    assert len(expected) >= 4
    first = await runs.start(
        "--say", LONG, "--no-wait", "--max-length", str(LIMIT), "--fail-send", "2"
    )
    # Piece 1 is out, piece 2 got its 502: the row waits (2 s) for its retry.
    await poll(lambda: [row[:2] for row in runs.outbox()] == [("pending", 1)])
    assert runs.out() == expected[:1]
    first.kill()
    assert await first.wait() == -signal.SIGKILL

    second = await runs.start("--max-length", "60")  # the stored pieces win over a new cut
    await poll(lambda: [row[0] for row in runs.outbox()] == ["sent"])
    second.send_signal(signal.SIGTERM)
    assert await asyncio.wait_for(second.wait(), WITHIN) == 0
    assert runs.out() == expected  # each piece once, in order

"""State files are private: a real `switchboard run` started under umask 022 (Telegram through
the fake Bot API, the scripted agent) leaves its state dir 0700 and every file in it 0600 (the
database, its WAL and shared memory, the lock, the control socket, the log, a job's log and
status), while the job's own command still runs under the umask it was given. A state dir
that already exists with group or other access gets one warning line naming the fix."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import stat
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.fake_bot_api import FakeBotAPI
from tests.support.service_config import CHAT, REPO, environment, write_config

pytestmark = pytest.mark.slow
WITHIN = 30.0


@pytest.fixture
async def fake() -> AsyncIterator[FakeBotAPI]:
    async with FakeBotAPI() as server:
        yield server


class Run:
    """`switchboard run` in a process of its own, started under umask 022."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.lines: list[dict[str, Any]] = []

    @classmethod
    async def start(cls, config: Path, env: dict[str, str]) -> Run:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "console.cli", "run", "-c", str(config),
            cwd=REPO, env=env, umask=0o022,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL,
        )  # fmt: skip
        return cls(process)

    async def stop(self) -> None:
        """SIGTERM, then every line it printed (its stdout ends when it exits)."""
        self.process.send_signal(signal.SIGTERM)
        assert self.process.stdout is not None
        async with asyncio.timeout(WITHIN):
            out = await self.process.stdout.read()
            assert await self.process.wait() == 0
        self.lines += [json.loads(line) for line in out.splitlines() if line.strip()]


def modes(state_dir: Path) -> dict[str, str]:
    """Every path under the state dir (itself included) with its permission bits."""
    found = {".": oct(stat.S_IMODE(state_dir.stat().st_mode))}
    for root, dirs, files in os.walk(state_dir):
        for name in dirs + files:
            path = Path(root) / name
            found[str(path.relative_to(state_dir))] = oct(stat.S_IMODE(path.lstat().st_mode))
    return found


def not_private(found: dict[str, str], state_dir: Path) -> dict[str, str]:
    wrong = {}
    for name, mode in found.items():
        is_dir = (state_dir / name).is_dir()
        if mode != ("0o700" if is_dir else "0o600"):
            wrong[name] = mode
    return wrong


async def test_a_run_under_umask_022_leaves_only_private_files(
    tmp_path: Path, fake: FakeBotAPI
) -> None:
    state = tmp_path / "state"
    config = write_config(tmp_path, fake)
    with config.open("a") as file:
        file.write(f'[log]\nfile = "{state / "gateway.log"}"\n')
    run = await Run.start(config, environment(tmp_path))
    try:
        fake.push_text(CHAT, 'tool terminal {"command": "umask"}')
        assert await fake.wait_for_sent(CHAT, timeout=WITHIN) == ["Tool terminal finished."]
        running = modes(state)  # while it runs: the WAL, shared memory and socket exist
    finally:
        await run.stop()
    stopped = modes(state)

    expected = {"switchboard.db", "switchboard.db-wal", "switchboard.db-shm", "gateway.lock"}
    expected |= {"control.sock", "gateway.log", "jobs"}
    assert expected <= set(running), running
    job_files = sorted(name for name in running if name.startswith("jobs/"))
    assert {Path(name).suffix for name in job_files} >= {".log", ".status"}, running
    assert not_private(running, state) == {}
    assert not_private(stopped, state) == {}
    # The command itself ran under the umask the gateway was started with.
    assert (state / job_files[0]).read_text().strip() == "0022"


async def test_an_existing_state_dir_open_to_others_gets_one_warning(
    tmp_path: Path, fake: FakeBotAPI
) -> None:
    state = tmp_path / "state"
    state.mkdir()
    state.chmod(0o755)
    run = await Run.start(write_config(tmp_path, fake), environment(tmp_path))
    try:
        fake.push_text(CHAT, "hello")
        assert await fake.wait_for_sent(CHAT, timeout=WITHIN) == ["You said: hello"]
    finally:
        await run.stop()
    warnings = [line for line in run.lines if line.get("event") == "state_dir_not_private"]
    assert len(warnings) == 1, run.lines
    assert f"chmod 700 {state}" in warnings[0]["msg"]
    assert str(state) in warnings[0]["msg"]
    assert oct(stat.S_IMODE(state.stat().st_mode)) == "0o755"  # told, not changed behind us
    found = modes(state)
    del found["."]
    assert not_private(found, state) == {}


def test_the_console_file_log_is_private_whatever_the_umask(tmp_path: Path) -> None:
    """console/log_setup.py's file log (`switchboard console`, the demo) in a new state dir."""
    log = tmp_path / "state" / "logs" / "gateway.log"
    script = (
        "import logging, sys; from pathlib import Path;"
        "from console.log_setup import log_to_file;"
        "log_to_file(Path(sys.argv[1]), 'info'); logging.getLogger('x').warning('hello')"
    )
    for umask in (0o022, 0o000):
        subprocess.run(
            [sys.executable, "-c", script, str(log)], cwd=REPO, umask=umask, check=True, timeout=60
        )
    assert "hello" in log.read_text()
    assert not_private(modes(tmp_path / "state"), tmp_path / "state") == {}

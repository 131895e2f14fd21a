"""`switchboard console -c FILE` in a real terminal: the configured gateway (Telegram through the
fake Bot API) with the console in-process, its control socket usable meanwhile, and leaving
with "drain and stop" exiting 0."""

from __future__ import annotations

import asyncio
import json
import shutil
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.support.fake_bot_api import FakeBotAPI
from tests.support.service_config import CHAT, REPO, environment, write_config
from tests.support.terminal import tmux_session

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("tmux") is None, reason="needs tmux (.ci/run installs it)"),
]


@pytest.fixture
async def fake() -> AsyncIterator[FakeBotAPI]:
    async with FakeBotAPI() as server:
        yield server


async def test_the_console_command_runs_the_configured_gateway(
    tmp_path: Path, fake: FakeBotAPI
) -> None:
    config, env = write_config(tmp_path, fake), environment(tmp_path)
    exit_code = tmp_path / "exit-code"
    command = (
        f"cd {REPO} && {sys.executable} -m console.cli console --no-mouse -c {config};"
        f" echo $? > {exit_code}"
    )
    with tmux_session(command, {**env, "TERM": "xterm-256color"}) as terminal:
        # The terminal is polled from a thread: the fake Bot API must keep serving meanwhile.
        await asyncio.to_thread(
            terminal.wait_for, lambda s: "RUNNING" in s, 20, "the gateway running"
        )
        fake.push_text(CHAT, "hello")
        assert await fake.wait_for_sent(CHAT, timeout=20) == ["You said: hello"]
        await asyncio.to_thread(terminal.keys, "2")
        await asyncio.to_thread(
            terminal.wait_for, lambda s: f"telegram:{CHAT}" in s, 10, "the session listed"
        )

        status = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "console.cli", "status", "--json", "-c", str(config),
            cwd=REPO, env=env, stdout=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, _ = await asyncio.wait_for(status.communicate(), 60)
        assert json.loads(out)["counts"]["sessions"] == 1  # the socket serves meanwhile

        await asyncio.to_thread(terminal.keys, "q")
        await asyncio.to_thread(
            terminal.wait_for, lambda s: "Leave the console?" in s, 10, "the leave dialog"
        )
        await asyncio.to_thread(terminal.keys, "Tab", "Tab", "Enter")  # drain and stop
        screen = await asyncio.to_thread(
            terminal.wait_for, lambda _: exit_code.exists(), 30, "the console exiting"
        )
        assert exit_code.read_text().strip() == "0", screen

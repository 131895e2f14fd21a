"""What the command line prints, piped and in a terminal (issue 13, item 18): whole values when
stdout is not a terminal, wrapped (never cut) explanations in one, and the loop guard in
`status` without --json. A real gateway behind a real control socket; the CLI as a process."""

from __future__ import annotations

import asyncio
import os
import re
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from gateway_core.clock import ManualClock
from gateway_core.service.control_server import ControlServer
from tests.support.console_pilot import Crashed, looping_gateway, write_crashed
from tests.support.harness import Running, start_gateway
from tests.test_cli import run_in_pty

REPO = Path(__file__).resolve().parent.parent
SWITCHBOARD = [sys.executable, "-m", "console.cli"]
LONG_CHAT = "-1001234567890123"  # a forum chat id, and a long user name
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
LONG_NAME = "Grzegorz Brzęczyszczykiewicz of the night shift"


def env(tmp_path: Path, columns: int = 80) -> dict[str, str]:
    return {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "COLUMNS": str(columns),
            "LINES": "40", "TERM": "xterm-256color"}  # fmt: skip


async def piped(*args: str, tmp_path: Path) -> str:
    process = await asyncio.create_subprocess_exec(
        *SWITCHBOARD, *args, cwd=REPO, env=env(tmp_path), stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0, err.decode()
    return out.decode()


@pytest.fixture
async def served(tmp_path: Path, clock: ManualClock) -> AsyncIterator[tuple[Running, Path]]:
    state = tmp_path / "state"
    first = await start_gateway(state, clock)
    await first.stop()
    await write_crashed(state, clock, [Crashed(LONG_CHAT, LONG_NAME, tool="a_very_long_tool_name")])
    running = await start_gateway(state, clock)
    server = ControlServer(running.gateway, tmp_path / "control.sock")
    await server.start()
    try:
        yield running, server.path
    finally:
        await server.close()


async def test_piped_recovery_list_prints_whole_values(
    served: tuple[Running, Path], tmp_path: Path
) -> None:
    running, socket = served
    out = await piped("recovery", "list", "--socket", str(socket), tmp_path=tmp_path)
    (candidate,) = running.gateway.snapshot().candidates
    assert candidate.explanation is not None
    assert f"loopback:{LONG_CHAT}" in out
    assert candidate.explanation in out  # the whole explanation, on one line
    assert "…" not in out and "ambiguous-tool" in out


async def test_in_a_terminal_the_explanation_wraps_instead_of_being_cut(
    served: tuple[Running, Path], tmp_path: Path
) -> None:
    running, socket = served
    args = [*SWITCHBOARD, "recovery", "list", "--socket", str(socket)]
    code, screen = await asyncio.to_thread(run_in_pty, args, env(tmp_path, 80))
    assert code == 0, screen
    (candidate,) = running.gateway.snapshot().candidates
    assert candidate.explanation is not None
    assert "…" not in screen
    lines = [ANSI.sub("", line).rstrip("\r") for line in screen.splitlines()]
    assert max(len(line) for line in lines) <= 80
    # The explanation column, read down: the whole explanation, folded onto more lines.
    column = "".join(line.split("│")[-2] for line in lines if line.count("│") >= 8)
    assert "".join(column.split()) == "".join(candidate.explanation.split())


async def test_piped_status_and_config_print_whole_lines(
    served: tuple[Running, Path], tmp_path: Path
) -> None:
    _, socket = served
    out = await piped("status", "--socket", str(socket), tmp_path=tmp_path)
    first = out.splitlines()[0]
    assert first.startswith("switchboard: running, run #2, up ")
    config = tmp_path / "switchboard.toml"
    long_socket = tmp_path / ("a-long-directory-name-" * 4) / "control.sock"
    config.write_text(f'[control]\nsocket = "{long_socket}"\n')
    out = await piped("config", "-c", str(config), tmp_path=tmp_path)
    assert str(long_socket) in out


async def test_status_shows_the_loop_guard_without_json(tmp_path: Path, clock: ManualClock) -> None:
    running, _ada, _cy = await looping_gateway(tmp_path / "state", clock)
    server = ControlServer(running.gateway, tmp_path / "control.sock")
    await server.start()
    try:
        out = await piped("status", "--socket", str(server.path), tmp_path=tmp_path)
    finally:
        await server.close()
    assert "Restart-loop guard tripped: 3 boots with recovery candidates" in out
    assert "reset the guard" in out

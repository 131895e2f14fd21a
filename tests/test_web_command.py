"""`switchboard web` as a real process (issue 18): it refuses to serve beyond loopback
without a token, prints a one-time sign-in URL, keeps its token from the consoles it starts,
and however it ends (a stop, or SIGKILL) its consoles end with it and the gateway, a separate
process it only reaches through the control socket, runs on untouched."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest

from console.attach import SocketBackend
from gateway_core.clock import ManualClock
from tests.support.web_view import TOKEN, Site, alive, gateway_with_socket, gone, open_tab

REPO = Path(__file__).resolve().parent.parent
TOKEN_ENV = "SWITCHBOARD_WEB_TOKEN"
pytestmark = pytest.mark.slow


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != TOKEN_ENV}
    return env | {"PYTHONPATH": str(REPO)} | extra


@dataclass
class WebProcess:
    process: asyncio.subprocess.Process
    printed: list[str]
    site: Site

    def consoles(self) -> list[int]:
        return [child.pid for child in psutil.Process(self.process.pid).children()]


@asynccontextmanager
async def switchboard_web(socket: Path, *args: str, **env: str) -> AsyncIterator[WebProcess]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "console.cli", "web", "--socket", str(socket),
        "--listen", "127.0.0.1:0", *args,
        cwd=REPO, env=_env(**env),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    try:
        assert process.stdout is not None
        printed: list[str] = []
        async with asyncio.timeout(30):
            while not any("sign in once with" in line for line in printed):
                line = (await process.stdout.readline()).decode()
                assert line, f"switchboard web ended first: {printed}"
                printed.append(line.rstrip("\n"))
        found = re.search(r"(http://127\.0\.0\.1:\d+/)\?token=(\S+)", "\n".join(printed))
        assert found is not None, printed
        token = TOKEN if env.get(TOKEN_ENV) else found[2]
        yield WebProcess(process, printed, Site(found[1], token))
    finally:
        if process.returncode is None:
            process.kill()
        await process.wait()


async def test_beyond_loopback_without_a_token_it_will_not_start(tmp_path: Path) -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "console.cli", "web", "--listen", "0.0.0.0:0",
        "--socket", str(tmp_path / "control.sock"),
        cwd=REPO, env=_env(), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode == 78 and out == b""
    assert b"not a loopback address" in err and TOKEN_ENV.encode() in err


async def test_a_port_in_use_is_one_clear_line(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "console.cli", "web", "--listen", f"127.0.0.1:{port}",
            "--socket", str(tmp_path / "control.sock"),
            cwd=REPO, env=_env(), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, err = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode == 1 and out == b""
    assert err.decode() == (
        f"switchboard: web: cannot listen on 127.0.0.1:{port}: Address already in use\n"
    )


async def test_it_prints_a_sign_in_url_and_its_token_stays_out_of_the_consoles(
    tmp_path: Path, clock: ManualClock
) -> None:
    async with (
        gateway_with_socket(tmp_path / "state", clock) as (_, server),
        switchboard_web(server.path, **{TOKEN_ENV: TOKEN}) as web,
        web.site.browser() as client,
    ):
        text = "\n".join(web.printed)
        assert "read-only" in text and "ssh -L" in text and TOKEN not in text
        assert f"?token=<the token in ${TOKEN_ENV}>" in text
        await web.site.sign_in(client)
        async with open_tab(web.site, client) as tab:
            await tab.live()
            (console,) = web.consoles()
            assert TOKEN_ENV not in psutil.Process(console).environ()
        await gone(console)
        async with open_tab(web.site, client) as tab:  # open while the server stops
            await tab.live()
            (console,) = web.consoles()
            web.process.send_signal(signal.SIGTERM)
            await tab.ended()
            assert await asyncio.wait_for(web.process.wait(), 30) == 0
        await gone(console)


async def test_a_killed_web_server_takes_its_consoles_and_leaves_the_gateway_running(
    tmp_path: Path, clock: ManualClock
) -> None:
    async with (
        gateway_with_socket(tmp_path / "state", clock) as (running, server),
        switchboard_web(server.path) as web,
        web.site.browser() as client,
    ):
        await web.site.sign_in(client)
        async with open_tab(web.site, client) as first, open_tab(web.site, client) as second:
            await first.live()
            await second.live()
            consoles = web.consoles()
            assert len(consoles) == 2
            web.process.kill()
            await web.process.wait()
            await first.ended()
            await second.ended()
        try:
            for console in consoles:
                await gone(console)  # their input closed with the server: they quit
        finally:
            for console in consoles:  # orphans, had they not: nobody else would end them
                if alive(console):
                    os.kill(console, signal.SIGKILL)
        assert running.gateway.state == "running"
        backend = await SocketBackend.connect(server.path)
        try:
            assert (await backend.snapshot()).state == "running"
        finally:
            await backend.close()

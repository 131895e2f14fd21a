"""`switchboard run` as a real process: Telegram through the fake Bot API, the control socket,
signals, systemd notifications, the state-dir lock and the scripting commands."""

from __future__ import annotations

import asyncio
import json
import os
import pwd
import signal
import socket
import sqlite3
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from console.attach import ControlClient, SocketBackend
from tests.support.fake_bot_api import DEFAULT_TOKEN, FakeBotAPI
from tests.support.service_config import CHAT, environment, write_config

REPO = Path(__file__).resolve().parent.parent
ME = pwd.getpwuid(os.getuid()).pw_name
pytestmark = pytest.mark.slow


@pytest.fixture
async def fake() -> AsyncIterator[FakeBotAPI]:
    async with FakeBotAPI() as server:
        yield server


@dataclass
class Gateway:
    process: asyncio.subprocess.Process
    config: Path
    logs: list[dict[str, Any]] = field(default_factory=list)
    raw: list[bytes] = field(default_factory=list)
    _reader: asyncio.Task[None] | None = None
    _changed: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def socket(self) -> Path:
        return self.config.parent / "state" / "control.sock"

    @property
    def db(self) -> Path:
        return self.config.parent / "state" / "switchboard.db"

    async def _read(self) -> None:
        assert self.process.stdout is not None
        while line := await self.process.stdout.readline():
            self.raw.append(line)
            self.logs.append(json.loads(line))  # every line is JSON, or this fails the test
            self._changed.set()

    async def log_event(self, name: str, within: float = 20) -> dict[str, Any]:
        async with asyncio.timeout(within):
            while True:
                found = [entry for entry in self.logs if entry.get("event") == name]
                if found:
                    return found[0]
                self._changed.clear()
                await self._changed.wait()

    async def exit_code(self, within: float = 30) -> int:
        return await asyncio.wait_for(self.process.wait(), within)


async def start(config: Path, env: dict[str, str], *, ready: bool = True) -> Gateway:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "console.cli", "run", "-c", str(config),
        cwd=REPO, env=env,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    gateway = Gateway(process, config)
    gateway._reader = asyncio.create_task(gateway._read())
    if ready:
        await gateway.log_event("ready")
    return gateway


@pytest.fixture
async def gateways() -> AsyncIterator[list[Gateway]]:
    started: list[Gateway] = []
    yield started
    for gateway in started:
        if gateway.process.returncode is None:
            gateway.process.kill()
            await gateway.process.wait()


async def cli(config: Path, env: dict[str, str], *args: str) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "console.cli", *args, "-c", str(config),
        cwd=REPO, env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_attach_act_and_script_then_sigterm_exits_0(
    tmp_path: Path, fake: FakeBotAPI, gateways: list[Gateway]
) -> None:
    config, env = write_config(tmp_path, fake), environment(tmp_path)
    gateway = await start(config, env)
    gateways.append(gateway)
    fake.push_text(CHAT, "hello")
    assert await fake.wait_for_sent(CHAT, timeout=20) == ["You said: hello"]
    assert oct(gateway.socket.stat().st_mode & 0o777) == "0o600"

    client = await ControlClient.connect(gateway.socket)
    try:
        result = await SocketBackend(client).act("quiet")
        assert result.ok
        (entry,) = await SocketBackend(client).audit_tail(5)
        assert (entry.actor, entry.action) == (ME, "quiet")
    finally:
        await client.close()

    code, out, _ = await cli(config, env, "status", "--json")
    status = json.loads(out)
    assert code == 0 and status["state"] == "quiet" and status["counts"]["sessions"] == 1
    code, out, _ = await cli(config, env, "recovery", "list", "--json")
    assert (code, json.loads(out)) == (0, [])
    assert (await cli(config, env, "resume-intake"))[0] == 0
    code, _, err = await cli(config, env, "resume-intake")
    assert code == 1 and "resume-intake refused: not quiet" in err
    code, _, err = await cli(config, env, "recovery", "approve", "999")
    assert code == 1 and "no session 999" in err

    gateway.process.send_signal(signal.SIGTERM)
    assert await gateway.exit_code() == 0
    events = {entry.get("event") for entry in gateway.logs}
    assert {"ready", "TurnStarted", "TurnFinished", "OperatorActed", "stopped"} <= events
    assert any(e.get("session") == f"telegram:{CHAT}:-" for e in gateway.logs)
    assert DEFAULT_TOKEN.split(":")[1] not in b"".join(gateway.raw).decode()


async def test_sigterm_during_a_long_turn_drains_and_leaves_the_marker(
    tmp_path: Path, fake: FakeBotAPI, gateways: list[Gateway]
) -> None:
    config, env = write_config(tmp_path, fake, drain_timeout=1), environment(tmp_path)
    gateway = await start(config, env)
    gateways.append(gateway)
    fake.push_text(CHAT, "think 60")
    await gateway.log_event("TurnStarted")
    gateway.process.send_signal(signal.SIGTERM)
    assert await gateway.exit_code() == 0
    with sqlite3.connect(gateway.db) as db:
        (state, reason), = db.execute("SELECT state, reason FROM recovery").fetchall()  # fmt: skip
    assert (state, reason) == ("pending", "drain-timeout")

    # Booted again with the operator gate, the interrupted turn waits for an operator.
    with config.open("a") as extra:
        extra.write('[recovery]\ngate = "operator"\n')
    again = await start(config, env)
    gateways.append(again)
    code, out, _ = await cli(config, env, "recovery", "list", "--json")
    (entry,) = json.loads(out)
    assert code == 0
    assert entry["session"] == {"platform": "telegram", "chat": str(CHAT), "thread": None}
    assert (entry["verdict"], entry["state"], entry["reason"]) == (
        "resumable",
        "held",
        "drain-timeout",
    )
    assert entry["explanation"] and entry["tail_age_s"] >= 0 and isinstance(entry["id"], int)
    code, _, err = await cli(config, env, "recovery", "force-resume", str(entry["id"]))
    assert code == 2 and "--reason" in err  # a reason is required, before anything is sent
    code, out, _ = await cli(config, env, "recovery", "approve", str(entry["id"]))
    assert code == 0 and "resume turn started" in out
    await fake.wait_for_sent(CHAT, timeout=20)
    again.process.send_signal(signal.SIGTERM)
    assert await again.exit_code() == 0


async def test_a_second_sigterm_forces_the_stop(
    tmp_path: Path, fake: FakeBotAPI, gateways: list[Gateway]
) -> None:
    config, env = write_config(tmp_path, fake, drain_timeout=600), environment(tmp_path)
    gateway = await start(config, env)
    gateways.append(gateway)
    fake.push_text(CHAT, "think 600")
    await gateway.log_event("TurnStarted")
    gateway.process.send_signal(signal.SIGTERM)
    await gateway.log_event("signal_drain")
    gateway.process.send_signal(signal.SIGTERM)
    assert await gateway.exit_code(within=20) == 0  # not 600 s
    await gateway.log_event("signal_force")


async def test_systemd_hears_ready_then_stopping_then_extend_timeout(
    tmp_path: Path, fake: FakeBotAPI, gateways: list[Gateway]
) -> None:
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(tmp_path / "notify.sock"))
    notify.setblocking(False)
    config = write_config(tmp_path, fake, drain_timeout=2)
    env = environment(tmp_path, NOTIFY_SOCKET=str(tmp_path / "notify.sock"))
    gateway = await start(config, env)
    gateways.append(gateway)
    fake.push_text(CHAT, "think 60")
    await gateway.log_event("TurnStarted")
    gateway.process.send_signal(signal.SIGTERM)
    assert await gateway.exit_code() == 0
    messages = []
    while True:
        try:
            messages.append(notify.recv(4096).decode())
        except BlockingIOError:
            break
    notify.close()
    kinds = [m.splitlines()[0].split("=")[0] for m in messages]
    assert kinds[0] == "READY" and "STOPPING" in kinds and "EXTEND_TIMEOUT_USEC" in kinds
    assert kinds.index("STOPPING") < kinds.index("EXTEND_TIMEOUT_USEC")
    extend = next(m for m in messages if m.startswith("EXTEND_TIMEOUT_USEC="))
    assert int(extend.split("=")[1]) > 2_000_000  # at least the drain's own timeout


async def test_restart_over_the_socket_drains_and_exits_75(
    tmp_path: Path, fake: FakeBotAPI, gateways: list[Gateway]
) -> None:
    config, env = write_config(tmp_path, fake), environment(tmp_path)
    gateway = await start(config, env)
    gateways.append(gateway)
    code, out, _ = await cli(config, env, "restart", "--timeout", "5")
    assert code == 0
    assert out.strip() == (
        "drained cleanly; exiting with code 75 so the service manager starts the gateway again"
    )
    assert await gateway.exit_code() == 75


async def test_one_gateway_per_state_dir_and_a_dead_ones_lock_is_taken_over(
    tmp_path: Path, fake: FakeBotAPI, gateways: list[Gateway]
) -> None:
    config, env = write_config(tmp_path, fake), environment(tmp_path)
    first = await start(config, env)
    gateways.append(first)
    second = await start(config, env, ready=False)
    gateways.append(second)
    assert await second.exit_code() == 1
    assert second.process.stderr is not None
    err = (await second.process.stderr.read()).decode()
    assert f"is in use by another gateway (pid {first.process.pid})" in err
    first.process.kill()  # SIGKILL: the lock is left behind in the file, not in the kernel
    await first.process.wait()
    third = await start(config, env)
    gateways.append(third)
    await third.log_event("lock_taken_over")
    third.process.send_signal(signal.SIGTERM)
    assert await third.exit_code() == 0


async def test_the_headless_gateway_runs_on_uvloop_unless_told_otherwise(
    tmp_path: Path, fake: FakeBotAPI, gateways: list[Gateway]
) -> None:
    config = write_config(tmp_path, fake)
    for count, (asked, runs_on) in enumerate(((None, "uvloop"), ("asyncio", "asyncio")), 1):
        env = environment(tmp_path)
        if asked is not None:
            env["SWITCHBOARD_EVENT_LOOP"] = asked
        gateway = await start(config, env)
        gateways.append(gateway)
        ready = await gateway.log_event("ready")
        assert ready["msg"] == f"gateway ready (event loop: {runs_on})"
        fake.push_text(CHAT, f"hello from {runs_on}")
        sent = await fake.wait_for_sent(CHAT, count, timeout=20)
        assert sent[-1] == f"You said: hello from {runs_on}"
        gateway.process.send_signal(signal.SIGTERM)
        assert await gateway.exit_code() == 0


async def test_an_unknown_event_loop_exits_78_with_one_line(
    tmp_path: Path, fake: FakeBotAPI
) -> None:
    config = write_config(tmp_path, fake)
    env = environment(tmp_path) | {"SWITCHBOARD_EVENT_LOOP": "trio"}
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "console.cli", "run", "-c", str(config),
        cwd=REPO, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(process.communicate(), 60)
    (line,) = err.decode().strip().splitlines()
    assert process.returncode == 78 and out == b"", line
    assert "SWITCHBOARD_EVENT_LOOP='trio'" in line and "uvloop, asyncio" in line


async def test_a_bad_config_value_exits_78_with_one_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text('[gateway]\ndrain_timeout = "soon"\n')
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "console.cli", "run", "-c", str(path),
        cwd=REPO, env=environment(tmp_path),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 78 and out == b""
    (line,) = err.decode().strip().splitlines()
    assert "drain_timeout" in line and str(path) in line

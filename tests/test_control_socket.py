"""The control socket with a real gateway, real Unix sockets and the real client."""

from __future__ import annotations

import asyncio
import json
import os
import pwd
import shutil
import stat
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from console.app import ConsoleApp
from console.attach import ControlClient, ControlError, SocketBackend
from console.screens.dialogs import LeaveScreen
from console.widgets.keyed_table import KeyedTable
from gateway_core.clock import ManualClock
from gateway_core.service.control_server import MAX_LINE, ControlServer, peer_allowed
from gateway_core.snapshot import SessionQuery
from tests.support.harness import Running, start_gateway

ME = pwd.getpwuid(os.getuid()).pw_name
NOBODY = pwd.getpwnam("nobody").pw_uid


@pytest.fixture
async def served(
    tmp_path: Path, clock: ManualClock
) -> AsyncIterator[tuple[Running, ControlServer]]:
    running = await start_gateway(tmp_path / "s", clock, notifier={"interval": 0})
    server = ControlServer(running.gateway, tmp_path / "s" / "control.sock")
    await server.start()
    try:
        yield running, server
    finally:
        await server.close()


async def raw_connection(
    server: ControlServer,
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_unix_connection(str(server.path), limit=8 << 20)


async def ask(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, line: bytes
) -> dict[str, Any]:
    writer.write(line)
    await writer.drain()
    answer: dict[str, Any] = json.loads(await asyncio.wait_for(reader.readline(), 10))
    return answer


async def test_the_socket_is_private_to_the_gateways_user(
    served: tuple[Running, ControlServer],
) -> None:
    _, server = served
    assert stat.S_IMODE(server.path.stat().st_mode) == 0o600
    assert peer_allowed(os.getuid(), os.getuid())
    assert peer_allowed(0, 1000)  # root can open a 0600 socket anyway
    assert not peer_allowed(1001, 1000)


CONNECT_AS_OTHER = """
import socket, sys
s = socket.socket(socket.AF_UNIX)
s.settimeout(10)
try:
    s.connect(sys.argv[1])
except PermissionError:
    print("permission denied"); raise SystemExit
print(s.makefile().readline().strip())  # a refusal comes unasked
"""


SYSTEM_PYTHON = shutil.which("python3", path="/usr/bin:/bin")  # runnable by any user


async def _as_nobody(path: Path) -> str:
    assert SYSTEM_PYTHON is not None
    process = await asyncio.create_subprocess_exec(
        SYSTEM_PYTHON, "-c", CONNECT_AS_OTHER, str(path),
        stdout=asyncio.subprocess.PIPE,
        preexec_fn=lambda: os.setuid(NOBODY),
    )  # fmt: skip
    out, _ = await asyncio.wait_for(process.communicate(), 20)
    return out.decode().strip()


@pytest.mark.skipif(os.getuid() != 0 or SYSTEM_PYTHON is None, reason="switching users needs root")
async def test_another_users_connection_is_refused(
    served: tuple[Running, ControlServer],
) -> None:
    running, _ = served
    with tempfile.TemporaryDirectory(dir="/tmp") as public:
        os.chmod(public, 0o755)  # the other user can reach the socket file itself
        server = ControlServer(running.gateway, Path(public) / "control.sock")
        await server.start()
        try:
            assert await _as_nobody(server.path) == "permission denied"  # 0600 keeps them out
            os.chmod(server.path, 0o666)  # were the mode wrong, the peer check still refuses
            answer = json.loads(await _as_nobody(server.path))
            assert answer == {"ok": False, "error": "refused: not the gateway's user"}
        finally:
            await server.close()


async def test_a_server_owned_by_someone_else_refuses_us(
    tmp_path: Path, served: tuple[Running, ControlServer]
) -> None:
    running, _ = served
    stranger = ControlServer(running.gateway, tmp_path / "other.sock", owner_uid=NOBODY)
    await stranger.start()
    try:
        if os.getuid() == 0:
            assert await SocketBackend(await ControlClient.connect(stranger.path)).snapshot()
        else:
            with pytest.raises(ControlError, match="refused: not the gateway's user"):
                await ControlClient.connect(stranger.path)
    finally:
        await stranger.close()


async def test_an_action_is_audited_with_the_callers_os_user(
    served: tuple[Running, ControlServer],
) -> None:
    running, server = served
    client = await ControlClient.connect(server.path)
    try:
        backend = SocketBackend(client)
        assert backend.actor == ME
        result = await backend.act("quiet")
        assert result.ok and running.gateway.state.value == "quiet"
        (entry,) = await backend.audit_tail(10)
        assert (entry.actor, entry.action, entry.outcome) == (ME, "quiet", "ok")
        snap = await backend.snapshot()
        assert snap.state == "quiet"
    finally:
        await client.close()


async def test_a_read_only_attach_is_refused_by_the_gateway_itself(
    served: tuple[Running, ControlServer],
) -> None:
    running, server = served
    client = await ControlClient.connect(server.path, read_only=True)
    try:
        result = await SocketBackend(client).act("quiet")
        assert not result.ok and "read-only" in result.message
        assert running.gateway.state.value == "running"
    finally:
        await client.close()


async def test_the_same_snapshot_and_transcript_as_in_process(
    served: tuple[Running, ControlServer],
) -> None:
    running, server = served
    ada = running.adapter.user("ada", name="[/x] \x1b[5m")
    await ada.say("hello")
    await ada.wait_for(1)
    client = await ControlClient.connect(server.path)
    try:
        backend = SocketBackend(client)
        remote = await backend.snapshot()
        local = running.gateway.snapshot()
        assert remote.sessions == local.sessions
        assert remote.counts == local.counts
        rows = await backend.transcript_tail(local.sessions[0].session_id)
        assert [r.content for r in rows] == ["hello", "You said: hello"]
    finally:
        await client.close()


async def test_events_are_streamed_to_a_subscriber(
    served: tuple[Running, ControlServer],
) -> None:
    running, server = served
    client = await ControlClient.connect(server.path)
    try:
        await client.request("subscribe")
        await running.adapter.user("ada").say("hello")
        kinds = set()
        async with asyncio.timeout(10):
            while "TurnFinished" not in kinds:
                kinds.add((await client.events.get())["type"])
        assert {"MessageReceived", "TurnStarted", "TurnFinished"} <= kinds
    finally:
        await client.close()


async def test_garbage_gets_clear_errors_and_the_connection_lives_on(
    served: tuple[Running, ControlServer],
) -> None:
    _, server = served
    reader, writer = await raw_connection(server)
    try:
        assert (await ask(reader, writer, b"not json\n"))["ok"] is False
        assert "JSON object" in (await ask(reader, writer, b"[1, 2]\n"))["error"]
        unknown = await ask(reader, writer, b'{"id": 7, "op": "explode"}\n')
        assert unknown["id"] == 7 and "unknown op" in unknown["error"]
        bad = await ask(reader, writer, b'{"id": 8, "op": "act", "action": 5}\n')
        assert bad == {"id": 8, "ok": False, "error": "action must be a string"}
        bad_limit = await ask(reader, writer, b'{"id": 9, "op": "audit", "limit": -1}\n')
        assert "limit" in bad_limit["error"]
        fine = await ask(reader, writer, b'{"id": 10, "op": "snapshot"}\n')
        assert fine["ok"] is True and fine["result"]["state"] == "running"
    finally:
        writer.close()


async def test_a_huge_request_line_is_refused_and_skipped(
    served: tuple[Running, ControlServer],
) -> None:
    _, server = served
    reader, writer = await raw_connection(server)
    try:
        writer.write(b'{"id": 1, "op": "' + b"x" * (3 * MAX_LINE) + b'"}\n')
        await writer.drain()
        refused = json.loads(await asyncio.wait_for(reader.readline(), 10))
        assert "longer than" in refused["error"]
        after = await ask(reader, writer, b'{"id": 2, "op": "snapshot"}\n')
        assert after["id"] == 2 and after["ok"] is True  # nothing of the long line leaked
    finally:
        writer.close()


async def test_a_client_that_never_reads_is_dropped_and_others_are_served(
    served: tuple[Running, ControlServer],
) -> None:
    running, server = served
    for n in range(200):  # a snapshot worth reading many times over
        await running.adapter.user(f"user{n}").say("hello")
    reader, writer = await raw_connection(server)
    request = b'{"id": 1, "op": "snapshot"}\n'
    dropped = False
    async with asyncio.timeout(30):
        while not dropped:
            try:
                writer.write(request * 50)
                await asyncio.wait_for(writer.drain(), 1)
            except (ConnectionError, TimeoutError):
                dropped = True
            if writer.transport.is_closing() or reader.at_eof():
                dropped = True
            await asyncio.sleep(0)
    other = await ControlClient.connect(server.path)
    try:
        assert (await SocketBackend(other).snapshot()).state == "running"
    finally:
        await other.close()
    writer.close()


async def test_the_console_attached_over_the_socket_shows_and_leaves_without_stopping(
    served: tuple[Running, ControlServer],
) -> None:
    running, server = served
    await running.adapter.user("ada").say("hello")
    await running.adapter.user("ada").wait_for(1)
    client = await ControlClient.connect(server.path)
    app = ConsoleApp(SocketBackend(client), refresh_every=0.2, attached=True)
    try:
        async with app.run_test(size=(140, 40)) as pilot:
            await pilot.press("2")
            await app.tick()
            await pilot.pause()
            table = app.query_one("#session-table", KeyedTable)
            assert table.keys == [str(running.gateway.snapshot().sessions[0].session_id)]
            await pilot.press("q")
            await pilot.pause()
            assert isinstance(app.screen, LeaveScreen)
            assert not app.screen.query("#stop")  # attached: leaving cannot stop the gateway
            await pilot.click("#detach")
            await pilot.pause()
        assert app.return_value == "detach"
        assert running.gateway.state.value == "running"
    finally:
        await client.close()


async def test_a_snapshot_sends_only_the_sessions_asked_for_with_counts_of_all(
    served: tuple[Running, ControlServer],
) -> None:
    running, server = served
    for name in ("ada", "bob", "cy", "dee"):
        await running.adapter.user(name).say("hello")
        await running.adapter.user(name).wait_for(1)
    client = await ControlClient.connect(server.path)
    try:
        backend = SocketBackend(client)
        snap = await backend.snapshot(SessionQuery(order="id", text="", limit=2))
        assert [s.session_id for s in snap.sessions] == [1, 2]
        assert snap.counts.sessions == 4
        found = await backend.snapshot(SessionQuery(text="CY", limit=10))
        assert [s.key for s in found.sessions] == ["loopback:cy:-"]
        assert (await backend.snapshot(SessionQuery(limit=0))).sessions == ()
        with pytest.raises(ControlError, match=r"sessions\.order"):
            await client.request("snapshot", sessions={"order": "sideways"})
    finally:
        await client.close()


async def test_a_line_just_over_the_limit_does_not_swallow_the_next_request(
    served: tuple[Running, ControlServer],
) -> None:
    _, server = served
    reader, writer = await raw_connection(server)
    try:
        writer.write(b'{"id": 1, "op": "' + b"x" * MAX_LINE + b'"}\n{"id": 2, "op": "snapshot"}\n')
        await writer.drain()
        refused = json.loads(await asyncio.wait_for(reader.readline(), 10))
        answered = json.loads(await asyncio.wait_for(reader.readline(), 10))
        assert "longer than" in refused["error"]
        assert (answered["id"], answered["ok"]) == (2, True)
    finally:
        writer.close()


async def test_a_client_that_half_closes_after_asking_still_gets_the_answer(
    served: tuple[Running, ControlServer],
) -> None:
    _, server = served
    reader, writer = await raw_connection(server)
    writer.write(b'{"id": 1, "op": "audit"}\n{"id": 2, "op": "act", "action": "quiet"}\n')
    await writer.drain()
    writer.write_eof()  # as `echo ... | socat - UNIX-CONNECT:...` does
    lines = [json.loads(line) for line in (await asyncio.wait_for(reader.read(), 10)).splitlines()]
    assert sorted(line["id"] for line in lines) == [1, 2]
    writer.close()


@pytest.mark.parametrize("timeout", ["NaN", "Infinity", "-1"])
async def test_a_drain_timeout_that_is_not_a_finite_number_of_seconds_is_refused(
    served: tuple[Running, ControlServer], timeout: str
) -> None:
    running, server = served
    reader, writer = await raw_connection(server)
    try:
        line = f'{{"id": 1, "op": "act", "action": "drain", "timeout": {timeout}}}\n'
        answer = await ask(reader, writer, line.encode())
        assert answer["ok"] is False and "finite number of seconds" in answer["error"]
        assert running.gateway.state.value == "running"
    finally:
        writer.close()


async def test_the_socket_path_is_only_replaced_when_it_is_a_dead_socket(
    tmp_path: Path, served: tuple[Running, ControlServer]
) -> None:
    running, live = served
    not_a_socket = tmp_path / "notes.txt"
    not_a_socket.write_text("keep me")
    with pytest.raises(OSError, match="not a socket"):
        await ControlServer(running.gateway, not_a_socket).start()
    assert not_a_socket.read_text() == "keep me"
    with pytest.raises(OSError, match="another gateway is listening"):
        await ControlServer(running.gateway, live.path).start()
    assert (await SocketBackend(await ControlClient.connect(live.path)).snapshot()).state

"""The client an operator acts through ("via": "web" in the socket's hello) is recorded beside
the OS user the socket's peer credentials prove (issue 18): the audit says "alice via web",
an unknown client name is refused, and neither a later hello nor a reconnection drops it."""

from __future__ import annotations

import asyncio
import json
import os
import pwd
from pathlib import Path

import pytest

from console.attach import ControlClient, ControlError, SocketBackend
from gateway_core.clock import ManualClock
from gateway_core.control import Via, actor_name
from gateway_core.service.control_server import ControlServer
from tests.support.harness import Running, start_gateway

ME = pwd.getpwuid(os.getuid()).pw_name


async def serve(state: Path, clock: ManualClock) -> tuple[Running, ControlServer]:
    running = await start_gateway(state, clock, notifier={"interval": 0})
    server = ControlServer(running.gateway, state / "control.sock")
    await server.start()
    return running, server


async def test_an_action_through_the_web_view_is_audited_beside_the_os_user(
    tmp_path: Path, clock: ManualClock
) -> None:
    running, server = await serve(tmp_path / "s", clock)
    backend = await SocketBackend.connect(server.path, via=Via.WEB)
    try:
        assert backend.actor == f"{ME} via web" == actor_name(ME, Via.WEB)
        assert (await backend.act("quiet")).ok
        (entry,) = await backend.audit_tail(10)
        assert (entry.actor, entry.action, entry.outcome) == (f"{ME} via web", "quiet", "ok")
    finally:
        await backend.close()
        await server.close()
        await running.stop()


async def test_an_unknown_client_name_is_refused_and_a_later_hello_keeps_the_first(
    tmp_path: Path, clock: ManualClock
) -> None:
    running, server = await serve(tmp_path / "s", clock)
    reader, writer = await asyncio.open_unix_connection(str(server.path))
    try:

        async def hello(**params: object) -> dict[str, object]:
            writer.write(json.dumps({"id": 1, "op": "hello", **params}).encode() + b"\n")
            await writer.drain()
            answer: dict[str, object] = json.loads(await asyncio.wait_for(reader.readline(), 10))
            return answer

        refused = await hello(via="browser")
        assert refused["ok"] is False and "via must be one of web" in str(refused["error"])
        assert (await hello(via="web"))["result"]["actor"] == f"{ME} via web"  # type: ignore[index]
        assert (await hello())["result"]["actor"] == f"{ME} via web"  # type: ignore[index]
    finally:
        writer.close()
        await server.close()
        await running.stop()


async def test_a_reconnection_says_where_it_comes_from_again(
    tmp_path: Path, clock: ManualClock
) -> None:
    running, server = await serve(tmp_path / "s", clock)
    backend = await SocketBackend.connect(server.path, via=Via.WEB, backoff=(0.05,))
    changed = asyncio.Event()
    backend.on_link_change(changed.set)
    try:
        await server.close()
        await running.stop()
        await asyncio.wait_for(changed.wait(), 10)
        assert not backend.link.connected
        changed.clear()
        running, server = await serve(tmp_path / "s", clock)
        await asyncio.wait_for(changed.wait(), 10)
        assert backend.link.connected and backend.actor == f"{ME} via web"
        assert (await backend.act("quiet")).ok
        entry = (await backend.audit_tail(1))[0]
        assert entry.actor == f"{ME} via web"
    finally:
        await backend.close()
        await server.close()
        await running.stop()


async def test_without_a_via_the_actor_is_the_os_user_alone(
    tmp_path: Path, clock: ManualClock
) -> None:
    running, server = await serve(tmp_path / "s", clock)
    client = await ControlClient.connect(server.path)
    try:
        assert client.hello["actor"] == ME
        with pytest.raises(ControlError, match="via must be one of"):
            await client.request("hello", via="")
    finally:
        await client.close()
        await server.close()
        await running.stop()

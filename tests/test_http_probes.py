"""/healthz and /readyz over real HTTP on loopback, on a real gateway: readiness through start,
quiet, drain (before intake stops), a store another process holds locked, and Telegram going
away; the listener on a Unix socket."""

from __future__ import annotations

import asyncio
import os
import socket
import sqlite3
import stat
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from gateway_core.adapters.loopback import LoopbackAdapter
from gateway_core.adapters.telegram import TelegramAdapter
from gateway_core.agents.scripted import ScriptedAgent
from gateway_core.clock import ManualClock
from gateway_core.config import Config
from gateway_core.gateway import Gateway
from gateway_core.service.http_server import HttpListenError
from gateway_core.service.http_surface import HttpSurface
from gateway_core.store import DATABASE_NAME
from tests.support.fake_bot_api import FakeBotAPI
from tests.support.harness import Stops, make_config, stop_gateway, track
from tests.support.scrape import get

ADA = 7


class Surfaces:
    """HTTP surfaces started by a test, closed after it."""

    def __init__(self) -> None:
        self.started: list[HttpSurface] = []

    async def start(
        self, config: Config, gateway: Gateway, adapters: list[Any], **options: Any
    ) -> HttpSurface:
        surface = HttpSurface(config, gateway, adapters, probe_reuse=0, **options)
        await surface.start()
        self.started.append(surface)
        return surface


@pytest.fixture
async def surfaces() -> AsyncIterator[Surfaces]:
    opened = Surfaces()
    yield opened
    for surface in opened.started:
        await surface.close()


def loopback_config(tmp_path: Path, **sections: dict[str, Any]) -> Config:
    sections = {"http": {"listen": "127.0.0.1:0"}, "notifier": {"interval": 0}, **sections}
    return make_config(tmp_path / "state", **sections)


async def test_healthz_is_liveness_only(
    tmp_path: Path, clock: ManualClock, surfaces: Surfaces
) -> None:
    config = loopback_config(tmp_path)
    adapter = LoopbackAdapter()
    gateway = Gateway(config, agent=ScriptedAgent(), adapters=[adapter], clock=clock)
    surface = await surfaces.start(config, gateway, [adapter])
    status, body = await get(surface.base_url, "/healthz")
    assert status == 200
    assert body["status"] == "alive" and body["state"] == "stopped" and body["run_id"] is None
    assert (await get(surface.base_url, "/readyz")) == (
        503,
        {
            "ready": False,
            "reason": "stopped",
            "detail": "the gateway is stopped",
            "checks": {"state": "stopped"},
        },
    )
    await gateway.start()
    track(Stops(gateway))
    status, body = await get(surface.base_url, "/healthz")
    assert status == 200 and body["state"] == "running"
    assert gateway.run is not None and body["run_id"] == gateway.run.id
    assert body["uptime_s"] >= 0


async def test_readiness_through_quiet_and_back(
    tmp_path: Path, clock: ManualClock, surfaces: Surfaces
) -> None:
    config = loopback_config(tmp_path)
    adapter = LoopbackAdapter()
    gateway = Gateway(config, agent=ScriptedAgent(), adapters=[adapter], clock=clock)
    surface = await surfaces.start(config, gateway, [adapter])
    await gateway.start()
    track(Stops(gateway))
    status, body = await get(surface.base_url, "/readyz")
    assert (status, body["ready"], body["reason"]) == (200, True, None)
    assert body["checks"] == {"state": "running", "store": "ok", "platforms": {}}
    assert gateway.quiet()
    status, body = await get(surface.base_url, "/readyz")
    assert (status, body["reason"], body["detail"]) == (503, "quiet", "the gateway is quiet")
    # Quiet still takes messages (they are stored; no turn starts): liveness is untouched.
    await adapter.user("ada").say("hello")
    assert (await get(surface.base_url, "/healthz"))[0] == 200
    assert gateway.resume_intake()
    assert (await get(surface.base_url, "/readyz"))[0] == 200
    await adapter.user("ada").wait_for(1)


class ProbingAdapter(LoopbackAdapter):
    """A loopback platform that, when told to stop intake, first asks /readyz over HTTP: what
    a load balancer would see at that moment."""

    base_url = ""
    seen_at_stop: tuple[int, Any] | None = None

    async def stop_intake(self) -> None:
        if self.seen_at_stop is None and self.base_url:
            self.seen_at_stop = await get(self.base_url, "/readyz")
        await super().stop_intake()


async def test_readiness_flips_to_draining_before_intake_stops(
    tmp_path: Path, clock: ManualClock, surfaces: Surfaces
) -> None:
    config = loopback_config(tmp_path)
    adapter = ProbingAdapter()
    gateway = Gateway(config, agent=ScriptedAgent(), adapters=[adapter], clock=clock)
    surface = await surfaces.start(config, gateway, [adapter])
    adapter.base_url = surface.base_url
    await gateway.start()
    assert (await get(surface.base_url, "/readyz"))[0] == 200
    await stop_gateway(gateway)
    assert adapter.seen_at_stop is not None
    status, body = adapter.seen_at_stop
    assert (status, body["reason"]) == (503, "draining")
    assert (await get(surface.base_url, "/readyz"))[1]["reason"] == "stopped"


async def test_readiness_while_another_process_holds_the_store(
    tmp_path: Path, clock: ManualClock, surfaces: Surfaces
) -> None:
    """The store is not taking writes (another process holds its write lock past
    store.busy_timeout): not ready, and ready again once it is released. Liveness stays 200."""
    config = loopback_config(tmp_path, store={"busy_timeout": 0.3})
    adapter = LoopbackAdapter()
    gateway = Gateway(config, agent=ScriptedAgent(), adapters=[adapter], clock=clock)
    surface = await surfaces.start(config, gateway, [adapter])
    await gateway.start()
    track(Stops(gateway))
    assert (await get(surface.base_url, "/readyz"))[0] == 200

    other = sqlite3.connect(config.gateway.state_dir / DATABASE_NAME, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
        status, body = await get(surface.base_url, "/readyz")
        assert (status, body["reason"]) == (503, "store failing")
        assert "database is locked" in body["detail"] and body["checks"]["state"] == "running"
        assert (await get(surface.base_url, "/healthz"))[0] == 200
        other.execute("ROLLBACK")
    finally:
        other.close()
    assert (await get(surface.base_url, "/readyz"))[0] == 200


async def test_readiness_says_starting_while_the_boot_waits_for_the_store(
    tmp_path: Path, clock: ManualClock, surfaces: Surfaces
) -> None:
    config = loopback_config(tmp_path, store={"busy_timeout": 30})
    adapter = LoopbackAdapter()
    gateway = Gateway(config, agent=ScriptedAgent(), adapters=[adapter], clock=clock)
    surface = await surfaces.start(config, gateway, [adapter])
    await gateway.start()  # creates the database
    await stop_gateway(gateway)

    other = sqlite3.connect(config.gateway.state_dir / DATABASE_NAME, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
        booting = asyncio.ensure_future(gateway.start())
        track(Stops(gateway))
        # Stopped until the store is open (a runtime is born starting, so there is no event to
        # wait for); then the boot's first write waits for the lock.
        async with asyncio.timeout(10):
            while (answer := await get(surface.base_url, "/readyz"))[1]["reason"] == "stopped":
                pass
        status, body = answer
        assert (status, body["reason"]) == (503, "starting")
        other.execute("ROLLBACK")
    finally:
        other.close()
    await asyncio.wait_for(booting, 30)
    assert (await get(surface.base_url, "/readyz"))[0] == 200


async def pump_until(clock: ManualClock, check: Any, step: float = 1.0) -> None:
    """Advance the clock (Telegram's backoff waits on it) until check() holds."""
    async with asyncio.timeout(20):
        while not await check():
            clock.advance(step)
            await asyncio.sleep(0.05)


async def test_readiness_follows_telegram_reachability(
    tmp_path: Path, clock: ManualClock, surfaces: Surfaces
) -> None:
    async with FakeBotAPI() as fake:
        config = loopback_config(tmp_path)
        adapter = TelegramAdapter(
            fake.token, api_base=fake.base_url, allowed_users=[ADA], clock=clock, poll_timeout=1
        )
        gateway = Gateway(config, agent=ScriptedAgent(), adapters=[adapter], clock=clock)
        surface = await surfaces.start(config, gateway, [adapter])
        await gateway.start()
        track(Stops(gateway))

        async def reason() -> str | None:
            return str((await get(surface.base_url, "/readyz"))[1]["reason"])

        await fake.wait_for_calls("getUpdates")
        status, body = await get(surface.base_url, "/readyz")
        assert status == 200 and body["checks"]["platforms"] == {"telegram": "ok"}

        await fake.go_down()
        # One failed poll is a blip; the retry failing too makes it unreachable.
        await pump_until(clock, lambda: _is(reason, "platform unreachable"))
        status, body = await get(surface.base_url, "/readyz")
        assert status == 503 and body["detail"].startswith("telegram: 2 poll(s) failed in a row")
        assert (await get(surface.base_url, "/healthz"))[0] == 200

        await fake.come_up()
        await pump_until(clock, lambda: _is(reason, "None"))
        fake.push_text(ADA, "hello", user_id=ADA)
        await fake.wait_for_sent(ADA)


async def _is(reason: Any, expected: str) -> bool:
    return bool(await reason() == expected)


async def unix_get(path: Path, route: str) -> int:
    connector = aiohttp.UnixConnector(path=str(path))
    async with (
        aiohttp.ClientSession(connector=connector) as client,
        client.get(f"http://localhost{route}") as response,
    ):
        return response.status


async def test_listener_on_a_unix_socket(
    tmp_path: Path, clock: ManualClock, surfaces: Surfaces
) -> None:
    path = tmp_path / "run" / "http.sock"
    path.parent.mkdir()
    stale = socket.socket(socket.AF_UNIX)  # what a killed gateway leaves behind
    stale.bind(str(path))
    stale.close()
    config = loopback_config(tmp_path, http={"listen": str(path)})
    adapter = LoopbackAdapter()
    gateway = Gateway(config, agent=ScriptedAgent(), adapters=[adapter], clock=clock)
    surface = await surfaces.start(config, gateway, [adapter])
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o660
    assert await unix_get(path, "/healthz") == 200
    assert await unix_get(path, "/readyz") == 503  # not started
    with pytest.raises(HttpListenError, match="another process is listening"):
        await surfaces.start(config, gateway, [adapter])
    await surface.close()
    assert not path.exists()

    path.write_text("not a socket")
    with pytest.raises(HttpListenError, match="exists and is not a socket"):
        await surfaces.start(config, gateway, [adapter])
    assert path.read_text() == "not a socket"


async def test_a_port_in_use_is_one_clear_error(
    tmp_path: Path, clock: ManualClock, surfaces: Surfaces
) -> None:
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    try:
        port = taken.getsockname()[1]
        config = loopback_config(tmp_path, http={"listen": f"127.0.0.1:{port}"})
        adapter = LoopbackAdapter()
        gateway = Gateway(config, agent=ScriptedAgent(), adapters=[adapter], clock=clock)
        with pytest.raises(HttpListenError) as error:
            await surfaces.start(config, gateway, [adapter])
        assert str(error.value) == (
            f"http.listen 127.0.0.1:{port}: cannot listen: "
            f"error while attempting to bind on address ('127.0.0.1', {port}): "
            "address already in use"
        ) or str(error.value).startswith(f"http.listen 127.0.0.1:{port}: cannot listen: ")
    finally:
        taken.close()

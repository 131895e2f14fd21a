"""Telegram webhook mode in a real gateway: real aiogram against the fake Bot API, which
registers the webhook and POSTs updates to our listener over real HTTP (retrying what is not
answered 2xx), and requests of our own for what Telegram would never send."""

from __future__ import annotations

import asyncio
import json
import socket
import sqlite3
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from gateway_core.adapters.factory import telegram_from_config
from gateway_core.agents.scripted import ScriptedAgent
from gateway_core.clock import ManualClock
from gateway_core.config import Config, ConfigError
from gateway_core.events import GatewayStateChanged, TurnStarted
from gateway_core.gateway import Gateway
from gateway_core.service.http_surface import HttpSurface
from gateway_core.store import DATABASE_NAME
from tests.support.fake_bot_api import FakeBotAPI
from tests.support.harness import Stops, make_config, next_event, track
from tests.support.scrape import Samples, by, get, scrape, scrape_until

ADA = 7
SECRET = "hook-Secret_42"
PATH = "/tg/hook"


@dataclass
class Hooked:
    gateway: Gateway
    surface: HttpSurface
    url: str
    config: Config

    @property
    def base(self) -> str:
        return self.surface.base_url

    def inbox(self) -> list[tuple[Any, ...]]:
        db = sqlite3.connect(self.config.gateway.state_dir / DATABASE_NAME)
        try:
            return db.execute("SELECT update_id, status, error FROM inbox ORDER BY id").fetchall()
        finally:
            db.close()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
async def fake() -> AsyncIterator[FakeBotAPI]:
    async with FakeBotAPI(webhook_retry_delay=0.05) as server:
        yield server


@pytest.fixture
async def surfaces() -> AsyncIterator[list[HttpSurface]]:
    opened: list[HttpSurface] = []
    yield opened
    for surface in opened:
        await surface.close()


async def start(
    tmp_path: Path,
    clock: ManualClock,
    fake: FakeBotAPI,
    surfaces: list[HttpSurface],
    *,
    started: bool = True,
    **sections: dict[str, Any],
) -> Hooked:
    port = free_port()
    url = f"http://127.0.0.1:{port}{PATH}"
    telegram = {
        "api_base": fake.base_url,
        "allowed_users": [ADA],
        "mode": "webhook",
        "webhook_url": url,
        "webhook_max_body": 4096,
    } | sections.pop("telegram", {})
    config = make_config(
        tmp_path / "state",
        telegram=telegram,
        http={"listen": f"127.0.0.1:{port}"},
        notifier={"interval": 0},
        **sections,
    )
    env = {"SWITCHBOARD_TELEGRAM_TOKEN": fake.token, "SWITCHBOARD_TELEGRAM_WEBHOOK_SECRET": SECRET}
    adapter = telegram_from_config(config, env, clock)
    gateway = Gateway(config, agent=ScriptedAgent(), adapters=[adapter], clock=clock)
    surface = HttpSurface(config, gateway, [adapter], probe_reuse=0)
    await surface.start()
    surfaces.append(surface)
    if started:
        await gateway.start()
        track(Stops(gateway))
    return Hooked(gateway, surface, url, config)


async def post(
    url: str, body: bytes | str, *, secret: str | None = SECRET, chunked: bool = False
) -> int:
    headers = {"Content-Type": "application/json"}
    if secret is not None:
        headers["X-Telegram-Bot-Api-Secret-Token"] = secret
    data: Any = body.encode() if isinstance(body, str) else body
    if chunked:
        payload = data

        async def chunks() -> AsyncIterator[bytes]:
            yield payload

        data = chunks()
    async with aiohttp.ClientSession() as client, client.post(url, data=data, headers=headers) as r:
        return r.status


def update(update_id: int, text: str, user: int = ADA) -> str:
    chat = {"id": user, "type": "private", "first_name": "Ada"}
    message = {
        "message_id": update_id,
        "date": 1,
        "chat": chat,
        "from": {"id": user, "is_bot": False, "first_name": "Ada"},
        "text": text,
    }
    return json.dumps({"update_id": update_id, "message": message})


async def test_the_webhook_is_registered_and_each_update_answered_once(
    tmp_path: Path, clock: ManualClock, fake: FakeBotAPI, surfaces: list[HttpSurface]
) -> None:
    hooked = await start(tmp_path, clock, fake, surfaces)
    (registered,) = await fake.wait_for_calls("setWebhook")
    assert registered.params == {
        "url": hooked.url,
        "secret_token": SECRET,
        "allowed_updates": ["message"],
        "max_connections": 40,
        "drop_pending_updates": False,
    }
    ids = [fake.push_text(ADA, f"m{n}", user_id=ADA) for n in range(3)]
    await fake.wait_for_sent(ADA, count=3)
    assert sorted(fake.sent(ADA)) == ["You said: m0", "You said: m1", "You said: m2"]
    assert [len(fake.answered(update_id)) for update_id in ids] == [1, 1, 1]
    assert fake.pending_updates() == []
    status, body = await get(hooked.base, "/readyz")
    assert status == 200 and body["checks"]["platforms"] == {"telegram": "ok"}
    assert fake.calls("getUpdates") == []  # no polling in webhook mode
    samples = await scrape(hooked.base)
    assert by(samples, "switchboard_webhook_requests_total", "code", platform="telegram") == {
        "200": 3
    }


async def test_requests_telegram_would_not_send_are_refused_and_store_nothing(
    tmp_path: Path, clock: ManualClock, fake: FakeBotAPI, surfaces: list[HttpSurface]
) -> None:
    hooked = await start(tmp_path, clock, fake, surfaces)
    good = update(500, "hello")
    assert await post(hooked.url, good, secret=None) == 401
    assert await post(hooked.url, good, secret="hook-Secret_43") == 401
    assert await post(hooked.url, good, secret=SECRET[:-1]) == 401
    big = update(501, "x" * 5000)
    assert await post(hooked.url, big) == 413
    assert await post(hooked.url, big, chunked=True) == 413  # no Content-Length to go by
    assert await post(hooked.url, b"{not json") == 400
    assert await post(hooked.url, b"\xff\xfe") == 400
    assert hooked.inbox() == []

    # JSON, but not an update Telegram would send: recorded as skipped, answered 200 (a retry
    # would only repeat it), and the next update goes through.
    assert await post(hooked.url, json.dumps({"update_id": 502, "message": "nope"})) == 200
    assert await post(hooked.url, good) == 200
    await fake.wait_for_sent(ADA)
    assert fake.sent(ADA) == ["You said: hello"]
    assert hooked.inbox() == [("502", "skipped", "malformed update"), ("500", "done", None)]
    async with aiohttp.ClientSession() as client, client.get(hooked.url) as response:
        assert response.status == 405


async def test_a_redelivered_update_is_answered_once(
    tmp_path: Path, clock: ManualClock, fake: FakeBotAPI, surfaces: list[HttpSurface]
) -> None:
    hooked = await start(tmp_path, clock, fake, surfaces)
    assert await post(hooked.url, update(600, "once")) == 200
    await fake.wait_for_sent(ADA)
    # Telegram did not get our 200 (a timeout, a proxy) and sends it again.
    assert await post(hooked.url, update(600, "once")) == 200
    assert await post(hooked.url, update(600, "once")) == 200
    assert fake.sent(ADA) == ["You said: once"]
    assert hooked.inbox() == [("600", "done", None)]

    def received(samples: Samples) -> dict[str, float]:
        return by(samples, "switchboard_messages_received_total", "outcome", platform="telegram")

    samples = await scrape_until(hooked.base, lambda samples: received(samples)["duplicate"] == 2)
    assert received(samples) == {"accepted": 1, "duplicate": 2, "skipped": 0, "refused": 0}


@pytest.mark.parametrize("on_stop", ["keep", "delete"])
async def test_quiet_stores_draining_refuses_and_the_webhook_is_kept_or_deleted(
    tmp_path: Path,
    clock: ManualClock,
    fake: FakeBotAPI,
    surfaces: list[HttpSurface],
    on_stop: str,
) -> None:
    hooked = await start(
        tmp_path,
        clock,
        fake,
        surfaces,
        telegram={"webhook_on_stop": on_stop},
        gateway={"drain_timeout": 100},
    )
    gateway = hooked.gateway
    await fake.wait_for_calls("setWebhook")
    assert gateway.quiet()
    assert await post(hooked.url, update(700, "while quiet")) == 200
    assert hooked.inbox() == [("700", "new", None)]  # stored; no turn starts while quiet
    assert fake.sent(ADA) == []
    events = gateway.events.subscribe()
    assert gateway.resume_intake()
    await fake.wait_for_sent(ADA)

    assert await post(hooked.url, update(701, "think 50")) == 200
    await next_event(events, TurnStarted)
    await clock.wait_for_sleepers(1)
    drain = asyncio.ensure_future(gateway.stop())
    while (await next_event(events, GatewayStateChanged)).state != "draining":
        pass
    assert await post(hooked.url, update(702, "during the drain")) == 503
    clock.advance(50)
    await drain
    assert await post(hooked.url, update(703, "after the stop")) == 503
    assert [row[0] for row in hooked.inbox()] == ["700", "701"]
    if on_stop == "keep":
        assert fake.calls("deleteWebhook") == [] and fake.webhook_url == hooked.url
    else:
        (deleted,) = fake.calls("deleteWebhook")
        assert deleted.params == {"drop_pending_updates": False}
        assert fake.webhook_url is None


async def test_until_the_webhook_is_registered_telegram_counts_as_unreachable(
    tmp_path: Path, clock: ManualClock, fake: FakeBotAPI, surfaces: list[HttpSurface]
) -> None:
    fake.fail("setWebhook", 502, times=2)
    hooked = await start(tmp_path, clock, fake, surfaces)
    await fake.wait_for_calls("setWebhook")
    status, body = await get(hooked.base, "/readyz")
    assert (status, body["reason"]) == (503, "platform unreachable")
    assert "setWebhook failed 1 time(s)" in body["detail"]
    for count in (2, 3):
        await clock.wait_for_sleepers(1)
        clock.advance(30)
        await fake.wait_for_calls("setWebhook", count)
    async with asyncio.timeout(10):
        while (await get(hooked.base, "/readyz"))[0] != 200:
            pass
    fake.push_text(ADA, "hello", user_id=ADA)
    await fake.wait_for_sent(ADA)


async def test_a_store_that_fails_gets_500_and_telegram_retries(
    tmp_path: Path, clock: ManualClock, fake: FakeBotAPI, surfaces: list[HttpSurface]
) -> None:
    hooked = await start(tmp_path, clock, fake, surfaces, store={"busy_timeout": 0.2})
    await fake.wait_for_calls("setWebhook")
    other = sqlite3.connect(hooked.config.gateway.state_dir / DATABASE_NAME, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
        update_id = fake.push_text(ADA, "stored later", user_id=ADA)
        await fake.wait_until(
            lambda: any(a.status == 500 for a in fake.webhook_attempts), timeout=10
        )
    finally:
        other.execute("ROLLBACK")
        other.close()
    await fake.wait_for_sent(ADA, timeout=10)
    assert fake.sent(ADA) == ["You said: stored later"]
    assert len(fake.answered(update_id)) == 1


async def test_webhook_mode_needs_its_secret(tmp_path: Path, fake: FakeBotAPI) -> None:
    config = make_config(
        tmp_path / "state",
        telegram={"mode": "webhook", "webhook_url": "https://bot.example/hook"},
        http={"listen": "127.0.0.1:0"},
    )
    token = {"SWITCHBOARD_TELEGRAM_TOKEN": fake.token}
    with pytest.raises(ConfigError, match=r"SWITCHBOARD_TELEGRAM_WEBHOOK_SECRET .*not set"):
        telegram_from_config(config, token, ManualClock())
    bad = token | {"SWITCHBOARD_TELEGRAM_WEBHOOK_SECRET": "has spaces in it"}
    with pytest.raises(ConfigError, match="A-Z, a-z, 0-9, _ and - only") as error:
        telegram_from_config(config, bad, ManualClock())
    assert "has spaces" not in str(error.value)

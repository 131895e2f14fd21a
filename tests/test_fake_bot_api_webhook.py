"""The fake Bot API's webhooks (driven by a real aiogram Bot) and the fake run by hand."""

from __future__ import annotations

import asyncio
import json
import socket
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiogram import Bot
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiogram.exceptions import TelegramBadRequest, TelegramConflictError
from aiohttp import web

from tests.support.fake_bot_api import DEFAULT_HAND_USER, DEFAULT_TOKEN, FakeBotAPI

REPO = Path(__file__).resolve().parent.parent
CHAT = 7
SECRET = "s3cret_TOKEN-1"


@dataclass
class Receiver:
    """A webhook endpoint on loopback that answers the statuses it is told to, in order
    (then 200), holding each request while `hold` is clear."""

    statuses: list[int] = field(default_factory=list)
    seen: list[tuple[str | None, dict[str, Any]]] = field(default_factory=list)
    hold: asyncio.Event = field(default_factory=asyncio.Event)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)
    in_flight: int = 0
    most_in_flight: int = 0
    runner: web.AppRunner | None = None
    port: int = 0

    def __post_init__(self) -> None:
        self.hold.set()

    async def handle(self, request: web.Request) -> web.Response:
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            self.seen.append(
                (request.headers.get("X-Telegram-Bot-Api-Secret-Token"), await request.json())
            )
            self.arrived.set()
            await self.hold.wait()
            return web.Response(status=self.statuses.pop(0) if self.statuses else 200)
        finally:
            self.in_flight -= 1

    async def wait_seen(self, count: int) -> None:
        while len(self.seen) < count:
            self.arrived.clear()
            await self.arrived.wait()

    async def start(self, port: int = 0) -> str:
        app = web.Application()
        app.router.add_post("/hook", self.handle)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", port)
        await site.start()
        self.port = int(self.runner.addresses[0][1])
        return f"http://127.0.0.1:{self.port}/hook"

    async def stop(self) -> None:
        self.hold.set()
        if self.runner is not None:
            await self.runner.cleanup()


@pytest.fixture
async def fake() -> AsyncIterator[FakeBotAPI]:
    async with FakeBotAPI(webhook_retry_delay=0.05) as server:
        yield server


@pytest.fixture
async def bot(fake: FakeBotAPI) -> AsyncIterator[Bot]:
    api = TelegramAPIServer.from_base(fake.base_url)
    client = Bot(DEFAULT_TOKEN, session=AiohttpSession(api=api, timeout=10))
    try:
        yield client
    finally:
        await client.session.close()


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    endpoint = Receiver()
    yield endpoint
    await endpoint.stop()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def test_updates_are_posted_with_the_secret_and_retried_until_a_2xx(
    fake: FakeBotAPI, bot: Bot, receiver: Receiver
) -> None:
    url = await receiver.start()
    receiver.statuses = [500, 503]
    first = fake.push_text(CHAT, "before the webhook")
    async with asyncio.timeout(10):
        assert await bot.set_webhook(url, secret_token=SECRET, allowed_updates=["message"])
        second = fake.push_text(CHAT, "after")
        await fake.wait_until(lambda: fake.pending_updates() == [], timeout=10)
        info = await bot.get_webhook_info()
    assert {a.update_id for a in fake.webhook_attempts if a.ok} == {first, second}
    assert sorted(a.status or 0 for a in fake.webhook_attempts) == [200, 200, 500, 503]
    assert all(secret == SECRET for secret, _ in receiver.seen)
    texts = [update["message"]["text"] for _, update in receiver.seen]
    assert sorted(set(texts)) == ["after", "before the webhook"] and len(texts) == 4
    assert info.url == url and info.pending_update_count == 0
    assert info.max_connections == 40 and info.allowed_updates == ["message"]
    assert info.last_error_message == "Wrong response from the webhook: 503" or (
        info.last_error_message == "Wrong response from the webhook: 500"
    )


async def test_get_updates_conflicts_while_a_webhook_is_set_and_keeps_the_updates(
    fake: FakeBotAPI, bot: Bot
) -> None:
    unreachable = f"http://127.0.0.1:{free_port()}/hook"
    async with asyncio.timeout(10):
        await bot.set_webhook(unreachable)
        update_id = fake.push_text(CHAT, "kept")
        await fake.wait_until(lambda: len(fake.webhook_attempts) >= 2, timeout=5)
        with pytest.raises(TelegramConflictError, match="webhook is active"):
            await bot.get_updates(timeout=0)
        assert await bot.delete_webhook() is True
        updates = await bot.get_updates(timeout=0)
    assert [u.update_id for u in updates] == [update_id]
    assert all(a.status is None and a.error for a in fake.webhook_attempts)
    assert fake.webhook_url is None


async def test_an_endpoint_that_comes_up_later_gets_everything_once(
    fake: FakeBotAPI, bot: Bot, receiver: Receiver
) -> None:
    port = free_port()
    async with asyncio.timeout(10):
        await bot.set_webhook(f"http://127.0.0.1:{port}/hook")
        ids = [fake.push_text(CHAT, f"m{n}") for n in range(3)]
        await fake.wait_until(lambda: len(fake.webhook_attempts) >= 3, timeout=5)
        await receiver.start(port)
        await fake.wait_until(lambda: fake.pending_updates() == [], timeout=5)
    assert [len(fake.answered(update_id)) for update_id in ids] == [1, 1, 1]
    assert sorted(update["message"]["text"] for _, update in receiver.seen) == ["m0", "m1", "m2"]


async def test_max_connections_bounds_the_requests_in_flight(
    fake: FakeBotAPI, bot: Bot, receiver: Receiver
) -> None:
    url = await receiver.start()
    receiver.hold.clear()
    async with asyncio.timeout(10):
        await bot.set_webhook(url, max_connections=2)
        for n in range(5):
            fake.push_text(CHAT, f"m{n}")
        await receiver.wait_seen(2)
        await asyncio.sleep(0.2)  # would a third request arrive? (nothing to wait on)
        assert receiver.in_flight == 2
        receiver.hold.set()
        await fake.wait_until(lambda: fake.pending_updates() == [], timeout=5)
    assert receiver.most_in_flight == 2 and len(receiver.seen) == 5


async def test_bad_webhook_parameters_are_refused(fake: FakeBotAPI, bot: Bot) -> None:
    async with asyncio.timeout(10):
        with pytest.raises(TelegramBadRequest, match="unallowed characters"):
            await bot.set_webhook("http://127.0.0.1:1/hook", secret_token="no spaces")
        with pytest.raises(TelegramBadRequest, match="max_connections"):
            await bot.set_webhook("http://127.0.0.1:1/hook", max_connections=101)
    assert fake.webhook_url is None


async def test_run_by_hand_prints_the_token_and_takes_messages() -> None:
    port = free_port()
    server = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.support.fake_bot_api", "--port", str(port),
        cwd=REPO, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        assert server.stdout is not None
        banner: list[str] = []
        async with asyncio.timeout(20):
            while not banner or banner[-1] != "Ctrl+C stops it.":
                banner.append((await server.stdout.readline()).decode().rstrip("\n"))
        text = "\n".join(banner)
        assert f"token:   {DEFAULT_TOKEN}" in text
        assert f"send --port {port} hello" in text and "/fake/send" in text

        # `send` waits for the bot's answer and shows it: here the test is the bot.
        sender = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "tests.support.fake_bot_api", "send", "--port", str(port),
            "hello", "there", cwd=REPO, stdout=asyncio.subprocess.PIPE,
        )  # fmt: skip
        base = f"http://127.0.0.1:{port}"
        http = AiohttpSession(api=TelegramAPIServer.from_base(base), timeout=30)
        bot = Bot(DEFAULT_TOKEN, session=http)
        try:
            async with asyncio.timeout(20):
                (update,) = await bot.get_updates(timeout=15)  # parks until the send arrives
                assert update.message is not None and update.message.text == "hello there"
                await bot.send_message(DEFAULT_HAND_USER, "You said: \x1b[31mhello")
                line = (await server.stdout.readline()).decode()
                session = await http.create_session()
                async with session.get(f"{base}/fake/messages") as response:
                    listing = json.loads(await response.text())
                out, _ = await sender.communicate()
        finally:
            await bot.session.close()
        assert sender.returncode == 0
        assert out.decode() == (
            f"sent update 1000 from user {DEFAULT_HAND_USER}: hello there\n"
            f"bot -> chat {DEFAULT_HAND_USER}: You said: \\x1b[31mhello\n"
        )
        # The reply is shown where the operator runs the fake, its escape sequence inert.
        assert line == f"bot -> chat {DEFAULT_HAND_USER}: You said: \\x1b[31mhello\n"
        assert listing == [
            {
                "chat_id": DEFAULT_HAND_USER,
                "message_id": 2,
                "text": "You said: \x1b[31mhello",
                "thread_id": None,
                "deleted": False,
            }
        ]

        # Waiting for the answer (none comes: no gateway runs here) is bounded and says so.
        waiting = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "tests.support.fake_bot_api", "send", "--port", str(port),
            "--wait", "0.3", "anyone?", cwd=REPO,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, err = await asyncio.wait_for(waiting.communicate(), 20)
        assert waiting.returncode == 1 and b"no answer within 0.3 s" in err
    finally:
        server.terminate()
        assert await asyncio.wait_for(server.wait(), 10) == 0

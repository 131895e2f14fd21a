"""Two real `switchboard run` nodes in webhook mode on one PostgreSQL, each with its own HTTP
listener. A test client posts Telegram updates to either node, some of them (the same update
id) to both at once, as a load balancer in front of the cluster would after a retry: every
message is answered exactly once, by its session's owner, whichever node took it in, and the
duplicate is stored once (checked from the inbox and turns tables)."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import psycopg
import pytest

from tests.support.cluster_nodes import Node, assert_no_overlap_across_nodes, start_node
from tests.support.fake_bot_api import FakeBotAPI
from tests.support.postgres_server import PostgresServer

pytestmark = pytest.mark.slow
TTL = 3.0
SECRET = "cluster-webhook-secret"
CHATS = [8101 + n for n in range(6)]
ROUNDS = 4


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
async def fake() -> AsyncIterator[FakeBotAPI]:
    async with FakeBotAPI() as server:
        yield server


def _update(update_id: int, chat: int, message_id: int, text: str) -> dict[str, Any]:
    """A private chat's text message as Telegram posts it to a webhook."""
    return {
        "update_id": update_id,
        "message": {
            "message_id": message_id,
            "date": int(time.time()),
            "chat": {"id": chat, "type": "private", "first_name": "Alice"},
            "from": {"id": chat, "is_bot": False, "first_name": "Alice"},
            "text": text,
        },
    }


async def _post(client: aiohttp.ClientSession, url: str, update: dict[str, Any]) -> int:
    headers = {"Content-Type": "application/json", "X-Telegram-Bot-Api-Secret-Token": SECRET}
    async with client.post(url, data=json.dumps(update), headers=headers) as response:
        await response.read()
        return response.status


async def test_two_webhook_nodes_answer_every_message_once_by_its_owner(
    tmp_path: Path, fake: FakeBotAPI, postgres_server: PostgresServer, nodes: list[Node]
) -> None:
    dsn = postgres_server.new_database()
    urls: list[str] = []
    for name in ("web-a", "web-b"):
        port = _free_port()
        url = f"http://127.0.0.1:{port}/telegram"
        await start_node(
            tmp_path, fake, dsn, name, nodes, chats=CHATS, ttl=TTL,
            telegram={"mode": "webhook", "webhook_url": url},
            sections={"http": {"listen": f"127.0.0.1:{port}"}},
            env={"SWITCHBOARD_TELEGRAM_WEBHOOK_SECRET": SECRET},
        )  # fmt: skip
        urls.append(url)
    expected: dict[int, list[str]] = {chat: [] for chat in CHATS}
    update_ids = iter(range(1, 10_000))
    doubled = 0
    async with aiohttp.ClientSession() as client:
        for round_ in range(ROUNDS):
            for index, chat in enumerate(CHATS):
                text = f"hello {round_} #w{chat}"
                update = _update(next(update_ids), chat, round_ + 1, text)
                # Alternate the node each chat's messages arrive at, so every session's
                # owner also answers messages the other node took in; every third update
                # reaches both nodes at once (a redelivery through the other one).
                first = urls[(index + round_) % 2]
                if (index + round_) % 3 == 0:
                    statuses = await asyncio.gather(*(_post(client, url, update) for url in urls))
                    doubled += 1
                else:
                    statuses = [await _post(client, first, update)]
                assert statuses == [200] * len(statuses)
                expected[chat].append(f"You said: {text}")
            for chat in CHATS:  # each round answered before the next is sent: in order
                await fake.wait_for_sent(chat, count=len(expected[chat]), timeout=30)
    await asyncio.sleep(1)  # a second answer would come now
    assert {chat: fake.sent(chat) for chat in CHATS} == expected
    assert doubled > 0
    with psycopg.connect(dsn) as raw:
        inbox = raw.execute("SELECT update_id, count(*) FROM inbox GROUP BY update_id").fetchall()
        owners = raw.execute(
            "SELECT t.session_id, count(DISTINCT t.run_id), min(l.owner)"
            " FROM turns t JOIN session_leases l ON l.session_id = t.session_id"
            " GROUP BY t.session_id"
        ).fetchall()
        runs = raw.execute("SELECT count(*) FROM runs").fetchone()
    assert len(inbox) == len(CHATS) * ROUNDS and {count for _, count in inbox} == {1}
    # Every session's turns ran in one run (its owner's), though both nodes took its
    # messages in (each POST above was answered 200 by the node it went to).
    assert len(owners) == len(CHATS) and {count for _, count, _ in owners} == {1}
    assert {owner for _, _, owner in owners} <= {"web-a", "web-b"}
    assert runs is not None and runs[0] == 2
    assert_no_overlap_across_nodes(dsn)

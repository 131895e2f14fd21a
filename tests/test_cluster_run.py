"""Two real `switchboard run` nodes on one PostgreSQL, Telegram through the fake Bot API (which
answers 409 to a second concurrent getUpdates, as Telegram does): a SIGKILLed node's busy
session taken over and finished once by the survivor; a rolling restart under traffic with
every message answered exactly once; never a session running turns on two nodes at once
(checked from the turns table)."""

from __future__ import annotations

import asyncio
import json
import shutil
import signal
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.cluster_nodes import (
    DSN_ENV,
    Node,
    assert_no_overlap_across_nodes,
    owner_of_the_running_turn,
    start_node,
)
from tests.support.fake_bot_api import FakeBotAPI
from tests.support.postgres_server import PostgresServer
from tests.support.service_config import REPO, environment

pytestmark = pytest.mark.slow
TTL = 3.0
CHATS = [8001 + n for n in range(8)]


@pytest.fixture
async def fake() -> AsyncIterator[FakeBotAPI]:
    async with FakeBotAPI(conflict_on_concurrent_polls=True) as server:
        yield server


async def _start(tmp_path: Path, fake: FakeBotAPI, dsn: str, name: str, nodes: list[Node]) -> Node:
    return await start_node(tmp_path, fake, dsn, name, nodes, chats=CHATS, ttl=TTL)


async def _nodes_json(home: Path, dsn: str) -> list[dict[str, Any]]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "console.cli", "nodes", "--json",
        "-c", str(home / "switchboard.toml"),
        cwd=REPO, env=environment(home, **{DSN_ENV: dsn}),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0, err.decode()
    listed: list[dict[str, Any]] = json.loads(out)
    return listed


async def test_the_survivor_finishes_the_busy_session_of_a_killed_node(
    tmp_path: Path, fake: FakeBotAPI, postgres_server: PostgresServer, nodes: list[Node]
) -> None:
    dsn = postgres_server.new_database()
    by_name = {
        name: await _start(tmp_path, fake, dsn, name, nodes) for name in ("node-a", "node-b")
    }
    chat = CHATS[0]
    fake.push_text(chat, f"think 30 #k{chat}")
    owner = by_name[await owner_of_the_running_turn(dsn, chat)]
    survivor = next(node for node in nodes if node is not owner)
    owner.process.send_signal(signal.SIGKILL)
    killed_at = time.monotonic()
    await owner.process.wait()
    answers = await fake.wait_for_sent(chat, count=1, timeout=4 * TTL + 10)
    took = time.monotonic() - killed_at
    assert answers == [f"Back after a restart. You had asked: 'think 30 #k{chat}'"]
    assert "sessions_taken_over" in survivor.events()
    assert took < 2 * TTL + 5, took
    # The survivor answers new messages too (it took the intake over if the dead held it).
    fake.push_text(CHATS[1], "hello after")
    assert await fake.wait_for_sent(CHATS[1], count=1, timeout=4 * TTL + 10) == [
        "You said: hello after"
    ]
    await asyncio.sleep(1)
    assert len(fake.sent(chat)) == 1  # never answered twice
    assert_no_overlap_across_nodes(dsn)


async def test_a_rolling_restart_under_traffic_loses_nothing(
    tmp_path: Path, fake: FakeBotAPI, postgres_server: PostgresServer, nodes: list[Node]
) -> None:
    dsn = postgres_server.new_database()
    await _start(tmp_path, fake, dsn, "node-a", nodes)
    await _start(tmp_path, fake, dsn, "node-b", nodes)
    expected: dict[int, list[str]] = {chat: [] for chat in CHATS}

    def traffic(round_: int) -> None:
        for chat in CHATS:
            fake.push_text(chat, f"hello {round_} #c{chat}")
            expected[chat].append(f"You said: hello {round_} #c{chat}")

    traffic(0)
    for chat in CHATS:
        assert await fake.wait_for_sent(chat, count=1, timeout=30)
    listed = await _nodes_json(tmp_path / "node-a", dsn)
    assert sorted((n["node"], n["state"]) for n in listed) == [
        ("node-a", "running"),
        ("node-b", "running"),
    ]
    assert sorted(name for n in listed for name in n["intake"]) == ["telegram"]
    assert sum(n["sessions"] for n in listed) == len(CHATS)
    for round_, name in enumerate(["node-a", "node-b"], start=1):
        draining = next(
            node for node in nodes if node.name == name and node.process.returncode is None
        )
        draining.process.send_signal(signal.SIGTERM)
        traffic(round_)  # while it drains
        assert await asyncio.wait_for(draining.process.wait(), 30) == 0
        stopped_at = time.monotonic()
        for chat in CHATS:
            assert await fake.wait_for_sent(chat, count=len(expected[chat]), timeout=30)
        # Released at once: well within one TTL, not after it.
        assert time.monotonic() - stopped_at < TTL
        home = tmp_path / name
        (home / "state" / "control.sock").unlink(missing_ok=True)
        shutil.rmtree(home)
        await _start(tmp_path, fake, dsn, name, nodes)  # back, under the same node id
    traffic(3)
    for chat in CHATS:
        assert await fake.wait_for_sent(chat, count=len(expected[chat]), timeout=30)
    await asyncio.sleep(1)
    assert {chat: fake.sent(chat) for chat in CHATS} == expected  # 0 lost, 0 twice
    assert_no_overlap_across_nodes(dsn)
    # Only ever one poller: the fake answers a second concurrent getUpdates with 409.
    assert not any("Conflict" in line for node in nodes for line in node.lines)


async def test_a_node_paused_past_its_lease_delivers_nothing_for_what_it_lost(
    tmp_path: Path, fake: FakeBotAPI, postgres_server: PostgresServer, nodes: list[Node]
) -> None:
    dsn = postgres_server.new_database()
    by_name = {name: await _start(tmp_path, fake, dsn, name, nodes) for name in ("a", "b")}
    chat = CHATS[0]
    fake.push_text(chat, f"think 4 #s{chat}")
    paused = by_name[await owner_of_the_running_turn(dsn, chat)]
    paused.process.send_signal(signal.SIGSTOP)
    try:
        # The other node takes the session over and resumes it.
        assert await fake.wait_for_sent(chat, count=1, timeout=4 * TTL + 10) == [
            f"Back after a restart. You had asked: 'think 4 #s{chat}'"
        ]
    finally:
        paused.process.send_signal(signal.SIGCONT)
    # Woken, its turn's think is long over: it ends fenced, writing and sending nothing.
    await paused.wait_event("TurnFinished", within=30)
    await asyncio.sleep(2)
    assert fake.sent(chat) == [f"Back after a restart. You had asked: 'think 4 #s{chat}'"]
    finished = [json.loads(line) for line in paused.lines if "TurnFinished" in line]
    assert len(finished) == 1 and "outcome=superseded" in finished[0]["msg"]
    assert_no_overlap_across_nodes(dsn)

"""Two real `switchboard run` nodes on one PostgreSQL, Telegram through the fake Bot API (which
answers 409 to a second concurrent getUpdates, as Telegram does): a SIGKILLed node's busy
session taken over and finished once by the survivor; a rolling restart under traffic with
every message answered exactly once; never a session running turns on two nodes at once
(checked from the turns table)."""

from __future__ import annotations

import asyncio
import itertools
import json
import shutil
import signal
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.support.fake_bot_api import FakeBotAPI
from tests.support.postgres_server import PostgresServer
from tests.support.service_config import REPO, environment, write_config

pytestmark = pytest.mark.slow
DSN_ENV = "SB_TEST_DSN"
TTL = 3.0
CHATS = [8001 + n for n in range(8)]


@dataclass
class Node:
    name: str
    process: asyncio.subprocess.Process
    lines: list[str] = field(default_factory=list)
    reader: asyncio.Task[None] | None = None
    _changed: asyncio.Event = field(default_factory=asyncio.Event)

    async def read(self) -> None:
        assert self.process.stdout is not None
        while line := await self.process.stdout.readline():
            self.lines.append(line.decode())
            self._changed.set()

    def events(self) -> list[str]:
        return [str(json.loads(line).get("event")) for line in self.lines]

    async def wait_event(self, name: str, within: float = 30) -> None:
        async with asyncio.timeout(within):
            while name not in self.events():
                self._changed.clear()
                await self._changed.wait()


@pytest.fixture
async def fake() -> AsyncIterator[FakeBotAPI]:
    async with FakeBotAPI(conflict_on_concurrent_polls=True) as server:
        yield server


@pytest.fixture
async def nodes() -> AsyncIterator[list[Node]]:
    started: list[Node] = []
    yield started
    for node in started:
        if node.process.returncode is None:
            node.process.kill()
            await node.process.wait()


async def _start(tmp_path: Path, fake: FakeBotAPI, dsn: str, name: str, nodes: list[Node]) -> Node:
    home = tmp_path / name
    home.mkdir()
    config = write_config(
        home,
        fake,
        telegram={"allowed_users": CHATS},
        sections={
            "store": {"backend": "postgresql", "dsn_env": DSN_ENV},
            "cluster": {"lease_ttl": TTL, "inbox_poll": 0.5},
        },
        node_id=f'"{name}"',
    )
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "console.cli", "run", "-c", str(config),
        cwd=REPO, env=environment(home, **{DSN_ENV: dsn}),
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    node = Node(name, process)
    node.reader = asyncio.create_task(node.read())
    nodes.append(node)
    await node.wait_event("ready")
    return node


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


async def _owner_of_the_running_turn(dsn: str) -> str:
    with psycopg.connect(dsn, autocommit=True) as raw:
        async with asyncio.timeout(30):
            while True:
                row = raw.execute(
                    "SELECT l.owner FROM sessions s JOIN session_leases l ON l.session_id = s.id"
                    " WHERE s.active_turn IS NOT NULL"
                ).fetchone()
                if row is not None:
                    return str(row[0])
                await asyncio.sleep(0.05)


def _no_overlap_across_nodes(dsn: str) -> None:
    """From the turns table: within a session, no turn of one run (node) overlaps a turn of
    another. An open turn (a killed node's) ends when the session was taken over."""
    with psycopg.connect(dsn) as raw:
        rows = raw.execute(
            "SELECT session_id, run_id, started_at, coalesce(ended_at, started_at)"
            " FROM turns ORDER BY session_id, started_at"
        ).fetchall()
    by_session: dict[int, list[tuple[int, float, float]]] = {}
    for session_id, run_id, started, ended in rows:
        by_session.setdefault(session_id, []).append((run_id, started, ended))
    for session_id, turns in by_session.items():
        for (run_a, _, end_a), (run_b, start_b, _) in itertools.pairwise(turns):
            assert run_a == run_b or start_b >= end_a, f"session {session_id} overlapped"


async def test_the_survivor_finishes_the_busy_session_of_a_killed_node(
    tmp_path: Path, fake: FakeBotAPI, postgres_server: PostgresServer, nodes: list[Node]
) -> None:
    dsn = postgres_server.new_database()
    by_name = {
        name: await _start(tmp_path, fake, dsn, name, nodes) for name in ("node-a", "node-b")
    }
    chat = CHATS[0]
    fake.push_text(chat, f"think 30 #k{chat}")
    owner = by_name[await _owner_of_the_running_turn(dsn)]
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
    _no_overlap_across_nodes(dsn)


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
    _no_overlap_across_nodes(dsn)
    # Only ever one poller: the fake answers a second concurrent getUpdates with 409.
    assert not any("Conflict" in line for node in nodes for line in node.lines)


async def test_a_node_paused_past_its_lease_delivers_nothing_for_what_it_lost(
    tmp_path: Path, fake: FakeBotAPI, postgres_server: PostgresServer, nodes: list[Node]
) -> None:
    dsn = postgres_server.new_database()
    by_name = {name: await _start(tmp_path, fake, dsn, name, nodes) for name in ("a", "b")}
    chat = CHATS[0]
    fake.push_text(chat, f"think 4 #s{chat}")
    paused = by_name[await _owner_of_the_running_turn(dsn)]
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
    _no_overlap_across_nodes(dsn)

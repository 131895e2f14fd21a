"""Real `switchboard run` nodes on one PostgreSQL database, Telegram through the fake Bot API:
started, watched (their JSON log), and the durable facts about them read from the database.
For tests/test_cluster_run.py and bench/failover.py."""

from __future__ import annotations

import asyncio
import itertools
import json
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

from tests.support.fake_bot_api import FakeBotAPI
from tests.support.service_config import REPO, environment, write_config

DSN_ENV = "SB_TEST_DSN"


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


async def start_node(
    tmp_path: Path,
    fake: FakeBotAPI,
    dsn: str,
    name: str,
    nodes: list[Node],
    *,
    chats: Sequence[int],
    ttl: float,
    telegram: Mapping[str, object] | None = None,
    sections: Mapping[str, Mapping[str, object]] | None = None,
    env: Mapping[str, str] | None = None,
) -> Node:
    """A node named `name` (its node_id), its home in tmp_path/name, ready. `telegram`,
    `sections`: more config (webhook mode, its listener); `env`: more environment."""
    home = tmp_path / name
    home.mkdir()
    config = write_config(
        home,
        fake,
        telegram={"allowed_users": list(chats), **(telegram or {})},
        sections={
            "store": {"backend": "postgresql", "dsn_env": DSN_ENV},
            "cluster": {"lease_ttl": ttl, "inbox_poll": 0.5},
            **(sections or {}),
        },
        node_id=f'"{name}"',
    )
    stderr = (home / "stderr.log").open("wb")  # read when a node did not become ready
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "console.cli", "run", "-c", str(config),
        cwd=REPO, env=environment(home, **{DSN_ENV: dsn, **(env or {})}),
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
        stderr=stderr,
    )  # fmt: skip
    stderr.close()
    node = Node(name, process)
    node.reader = asyncio.create_task(node.read())
    nodes.append(node)
    try:
        await node.wait_event("ready")
    except TimeoutError:
        problem = (home / "stderr.log").read_text()[-2000:] or "".join(node.lines[-20:])
        raise AssertionError(f"node {name} did not become ready: {problem}") from None
    return node


async def owner_of_the_running_turn(dsn: str, chat: int) -> str:
    """The node running a turn of the chat's session, as soon as one runs."""
    with psycopg.connect(dsn, autocommit=True) as raw:
        async with asyncio.timeout(30):
            while True:
                row = raw.execute(
                    "SELECT l.owner FROM sessions s JOIN session_leases l ON l.session_id = s.id"
                    " WHERE s.active_turn IS NOT NULL AND s.chat_id = %s",
                    (str(chat),),
                ).fetchone()
                if row is not None:
                    return str(row[0])
                await asyncio.sleep(0.05)


def assert_no_overlap_across_nodes(dsn: str) -> None:
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

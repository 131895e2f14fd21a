"""The restart-loop guard per session across real `switchboard run` nodes on one PostgreSQL:
the node running a long turn is SIGKILLed, a survivor takes the session over and resumes it,
and is killed in turn, and so on. No node ever boots twice, so no boot chain forms; the
session's own chain (its turns found dead at each takeover) trips the guard at the third
takeover: the session is held and its user told once, not resumed forever."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import psycopg
import pytest

from tests.support.cluster_nodes import Node, assert_no_overlap_across_nodes, start_node
from tests.support.fake_bot_api import FakeBotAPI
from tests.support.postgres_server import PostgresServer

pytestmark = pytest.mark.slow
TTL = 3.0
CHAT = 8201


@pytest.fixture
async def fake() -> AsyncIterator[FakeBotAPI]:
    async with FakeBotAPI(conflict_on_concurrent_polls=True) as server:
        yield server


async def _running_on(dsn: str, chat: int, after: int) -> tuple[str, int]:
    """The node running a turn of the chat's session newer than generation `after`, and that
    turn's generation, as soon as one runs. (The killed node's own turn stays open until a
    survivor closes it as crashed, and a survivor takes the lease first: waiting for a newer
    turn is what tells a node that runs the session from one still taking it over.)"""
    with psycopg.connect(dsn, autocommit=True) as raw:
        async with asyncio.timeout(6 * TTL + 20):
            while True:
                row = raw.execute(
                    "SELECT l.owner, t.generation FROM sessions s"
                    " JOIN session_leases l ON l.session_id = s.id"
                    " JOIN turns t ON t.session_id = s.id AND t.generation = s.active_turn"
                    " WHERE s.chat_id = %s AND t.outcome IS NULL AND t.generation > %s",
                    (str(chat), after),
                ).fetchone()
                if row is not None:
                    return str(row[0]), int(row[1])
                await asyncio.sleep(0.05)


def _recovery(dsn: str, chat: int) -> tuple[str, str, int]:
    with psycopg.connect(dsn) as raw:
        row = raw.execute(
            "SELECT r.state, r.last_explanation, (SELECT count(*) FROM turns t"
            "  WHERE t.session_id = s.id AND t.outcome = 'crashed')"
            " FROM recovery r JOIN sessions s ON s.id = r.session_id WHERE s.chat_id = %s",
            (str(chat),),
        ).fetchone()
    assert row is not None
    return str(row[0]), str(row[1]), int(row[2])


async def test_a_session_whose_nodes_keep_dying_under_its_turn_is_held_not_resumed_forever(
    tmp_path: Path, fake: FakeBotAPI, postgres_server: PostgresServer, nodes: list[Node]
) -> None:
    dsn = postgres_server.new_database()

    async def start(name: str) -> Node:
        return await start_node(tmp_path, fake, dsn, name, nodes, chats=[CHAT], ttl=TTL)

    by_name = {name: await start(name) for name in ("n1", "n2")}
    fake.push_text(CHAT, f"work 60 #L{CHAT}")  # a resumed `work` works its 60 s again
    dead: set[str] = set()
    generation = 0
    for spare in ("n3", "n4", None):
        name, generation = await _running_on(dsn, CHAT, after=generation)
        owner = by_name[name]
        if spare is not None:
            by_name[spare] = await start(spare)  # a node to take over next
        owner.process.send_signal(signal.SIGKILL)
        await owner.process.wait()
        dead.add(owner.name)
        if spare is None:
            break
    # Three turns died with their node; at the third takeover the session is held and its
    # user told (once), instead of a fourth resume.
    (notice,) = await fake.wait_for_sent(CHAT, count=1, timeout=4 * TTL + 20)
    assert "operator will review" in notice
    state, explanation, crashed = _recovery(dsn, CHAT)
    assert (state, crashed) == ("held", 3), explanation
    assert "loop guard tripped for this session" in explanation
    await asyncio.sleep(TTL)
    assert fake.sent(CHAT) == [notice]  # no resume answered, nothing told twice
    survivor = next(node for node in nodes if node.name not in dead)
    assert "recovery_held" in survivor.events()
    assert_no_overlap_across_nodes(dsn)

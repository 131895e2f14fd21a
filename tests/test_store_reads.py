"""Reads see every commit made before they were asked for, even while other reads run.

The reader is one connection: a query whose rows were not fetched yet keeps its read
transaction (and its old snapshot) open, so a second query slipped in between would not see
a commit made meanwhile. The delivery of a brand-new session's first reply looked its origin
up that way and failed with "no route to the chat" while the console was reading."""

from __future__ import annotations

import asyncio

import pytest

from gateway_core.model import Origin, SessionKey
from gateway_core.store import Store

pytestmark = pytest.mark.both_backends


async def test_a_read_after_a_commit_sees_it_while_other_reads_run(store: Store) -> None:
    for number in range(50):  # something for the busy reader to read
        await store.sessions.ensure(SessionKey("loopback", f"old-{number}"), None)
    stop = asyncio.Event()

    async def busy_reader() -> None:
        while not stop.is_set():
            await store.sessions.search("", "recent", None)

    readers = [asyncio.ensure_future(busy_reader()) for _ in range(3)]
    try:
        for number in range(200):
            key = SessionKey("loopback", f"new-{number}")
            session = await store.sessions.ensure(key, Origin("loopback", f"new-{number}"))
            found = await store.sessions.get(session.id)
            assert found is not None, f"session {session.id} committed but not seen"
    finally:
        stop.set()
        await asyncio.gather(*readers)

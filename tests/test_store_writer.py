"""The writer's group commit: bodies of one batch share a transaction, and one that raises
is rolled back alone (its caller gets the exception, the others commit)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from gateway_core.model import NewMessage, Role, SessionKey
from gateway_core.store import Store
from gateway_core.store.transaction import Transaction
from gateway_core.store.transcript import append_rows


class BodyBroke(Exception):
    pass


def _append(session_id: int, text: str) -> Callable[[Transaction], int]:
    def txn(db: Transaction) -> int:
        return append_rows(db, session_id, [NewMessage(Role.USER, text)], 1.0)[0].seq

    return txn


def _append_then_fail(session_id: int) -> Callable[[Transaction], int]:
    def txn(db: Transaction) -> int:
        append_rows(db, session_id, [NewMessage(Role.USER, "never kept")], 1.0)
        raise BodyBroke("this body fails after writing")

    return txn


async def test_a_failing_body_is_rolled_back_alone_and_the_others_commit(store: Store) -> None:
    session = await store.sessions.ensure(SessionKey("loopback", "w1"), None)
    before = store.writer_stats.batches
    # Queued in the same tick: one batch, one transaction.
    first = store.write_soon(_append(session.id, "first"))
    broken = store.write_soon(_append_then_fail(session.id))
    last = store.write_soon(_append(session.id, "last"))
    results = await asyncio.gather(first, broken, last, return_exceptions=True)

    assert store.writer_stats.batches - before == 1
    # The bodies around the failing one see exactly what they would have alone: the first
    # row is seq 1 (not counted twice by a second run), the last follows it.
    assert results[0] == 1 and results[2] == 2
    assert isinstance(results[1], BodyBroke)
    rows = await store.transcript.all(session.id)
    assert [(m.seq, m.content) for m in rows] == [(1, "first"), (2, "last")]


async def test_a_batch_without_failures_commits_every_body(store: Store) -> None:
    sessions = [
        await store.sessions.ensure(SessionKey("loopback", f"b{n}"), None) for n in range(3)
    ]
    futures = [store.write_soon(_append(s.id, "hi")) for s in sessions]
    assert await asyncio.gather(*futures) == [1, 1, 1]
    for s in sessions:
        assert [m.content for m in await store.transcript.all(s.id)] == ["hi"]


async def test_writes_after_close_are_refused(store: Store) -> None:
    await store.close()
    with pytest.raises(Exception, match="closing"):
        store.write_soon(lambda db: None)

"""A large scan's reads on several connections at once (`Store.bulk_reads`) return what the
store's one reader returns; on SQLite the pool's threads and connections live only as long as
the scan (or the store), and a read after the store closed fails with the store's error."""

from __future__ import annotations

import asyncio
import os
import threading

import pytest

from gateway_core.clock import ManualClock
from gateway_core.model import Origin, RecoveryState, SessionKey, TurnKind
from gateway_core.recovery import RecoveryPolicy
from gateway_core.recovery.startup import PARALLEL_FROM, _list, scan
from gateway_core.storage_reads import storage_read_bytes
from gateway_core.store import Store, StoreClosed
from gateway_core.store.sessions import generation_row
from gateway_core.store.transaction import Transaction
from gateway_core.store.turns import begin_row, close_crashed_rows
from tests.support.transcripts import answer, asks, call, result, user

pytestmark = pytest.mark.both_backends

ORIGIN_CHAT = "chat"


def _pool_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("store-read")]


async def _candidates(store: Store, clock: ManualClock, count: int) -> list[int]:
    """`count` marked sessions of several shapes (and one suspended, one unmarked)."""
    ids: list[int] = []
    now = clock.now()
    for number in range(count):
        origin = None if number % 7 == 3 else Origin("loopback", f"{ORIGIN_CHAT}-{number}")
        session = await store.sessions.ensure(SessionKey("loopback", f"s{number}"), origin)
        rows = [user(f"ask {number}", now - 10), answer("ok", now - 9)]
        if number % 3 == 1:
            rows += [
                user(f"build {number}", now - 8),
                asks(call("terminal", f"c{number}", command="make"), at=now - 7),
            ]
        if number % 5 == 2:
            rows.append(result(f"c{number}", "done", now - 6))
        if number % 4 != 0:
            rows.append(user(f"again {number}", now - 5))
        await store.transcript.append(session.id, rows)
        ids.append(session.id)

        def turn(db: Transaction, sid: int = session.id) -> None:
            begin_row(db, sid, generation_row(db, sid), TurnKind.MESSAGE, None, now)

        await store.write(turn)
    await store.write(lambda db: close_crashed_rows(db, now))
    await store.recovery.mark_many(ids[1:], "crash")
    await store.recovery.suspend(ids[2], "operator")
    return ids


async def test_bulk_reads_return_what_the_reader_returns(store: Store, clock: ManualClock) -> None:
    ids = await _candidates(store, clock, 24)
    async with store.bulk_reads(3) as reads:
        assert reads.parallel >= 2
        listed = await reads.recovery.candidate_states()
        # All asked for at once, so on a pool they run side by side.
        records_a, records_b, from_a, from_b, (tails, last, chains) = await asyncio.gather(
            reads.recovery.candidates(ids[:12]),
            reads.recovery.candidates(ids[12:]),
            reads.transcript.from_request(ids[:8]),
            reads.transcript.from_request(ids[8:]),
            asyncio.gather(
                reads.transcript.tails(ids, 2),
                reads.turns.last(ids),
                reads.turns.crash_chains(ids, 3),
            ),
        )
    expected = await store.recovery.candidates()
    assert listed == [(record.session_id, record.state) for record, _ in expected]
    assert RecoveryState.SUSPENDED in {state for _, state in listed}
    assert records_a + records_b == expected
    assert {**from_a, **from_b} == await store.transcript.from_request(ids)
    assert {sid: list(tail) for sid, tail in tails.items()} == {
        sid: list(tail) for sid, tail in (await store.transcript.tails(ids, 2)).items()
    }
    assert last == await store.turns.last(ids)
    assert chains == await store.turns.crash_chains(ids, 3)
    assert chains  # the turns found dead at "boot" make chains: the comparison is not empty


async def test_the_scan_decides_alike_on_one_connection_and_on_several(
    store: Store, clock: ManualClock
) -> None:
    await _candidates(store, clock, PARALLEL_FROM + 6)
    policy = RecoveryPolicy()
    one = await scan(store, clock.now(), policy, read_connections=1)
    several = await scan(store, clock.now(), policy, read_connections=4)
    default = await scan(store, clock.now(), policy)
    assert len(one) == PARALLEL_FROM + 5  # every marked session, the suspended one included
    assert several == one
    assert default == one
    assert len({c.decision.verdict for c in one}) >= 3  # several shapes were decided


async def test_the_pools_threads_end_with_the_scan(store: Store, clock: ManualClock) -> None:
    if store.path is None:
        pytest.skip("PostgreSQL's bulk reads are its read pool, which lives with the store")
    await _candidates(store, clock, 8)
    before = _pool_threads()
    async with store.bulk_reads(3) as reads:
        await asyncio.gather(*(reads.transcript.from_request([i]) for i in range(1, 9)))
        assert len(_pool_threads()) > len(before)
    assert _pool_threads() == before
    await scan(store, clock.now(), RecoveryPolicy(), read_connections=4)
    assert _pool_threads() == before


async def test_a_read_after_the_store_closed_fails_with_the_stores_error(
    store: Store, clock: ManualClock
) -> None:
    await _candidates(store, clock, 3)
    before = _pool_threads()
    async with store.bulk_reads(2) as reads:
        assert await reads.recovery.candidate_states()
        await store.close()
        assert _pool_threads() == before  # closing the store ended the scan's pool
        if store.path is not None:
            with pytest.raises(StoreClosed, match="closed"):
                await reads.transcript.from_request([1])
    with pytest.raises(StoreClosed, match="closed"):
        async with store.bulk_reads(2):
            pass


async def test_the_listing_tells_whether_the_pages_came_from_the_disk(
    store: Store, clock: ManualClock
) -> None:
    """What decides between one connection and several: after the file's pages were evicted
    from the page cache, the listing reads from storage; right after, it does not."""
    if store.path is None or storage_read_bytes() is None:
        pytest.skip("a SQLite file, on an OS that counts a process's reads from storage")
    await _candidates(store, clock, 5)
    path = store.path
    await store.close()
    for file in (path, path.with_name(path.name + "-wal")):
        if file.exists():
            descriptor = os.open(file, os.O_RDONLY)
            try:
                os.fsync(descriptor)  # dirty pages cannot be evicted
                os.posix_fadvise(descriptor, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(descriptor)
    async with await Store.open(path, clock=clock) as reopened:
        listed, from_disk = await _list(reopened, None)
        assert len(listed) == 4 and from_disk
    async with await Store.open(path, clock=clock) as again:
        listed, from_disk = await _list(again, None)
        assert len(listed) == 4 and not from_disk


async def test_closing_the_store_under_a_running_scan_read_fails_it_clearly(
    store: Store, clock: ManualClock
) -> None:
    """A read still running (or still queued) when the store closes is stopped, and its
    caller hears StoreClosed, not a cancellation or SQLite's "interrupted"."""
    if store.path is None:
        pytest.skip("PostgreSQL's bulk reads are its read pool, closed with the store")
    endless = (
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n) SELECT count(*) FROM n"
    )
    before = _pool_threads()
    async with store.bulk_reads(2) as reads:
        pool = reads.turns._reader  # the pool itself: no store read runs this long
        running = [asyncio.ensure_future(pool.all(endless)) for _ in range(3)]
        await asyncio.sleep(0)  # the reads are handed to the pool's threads
        await store.close()
        for read in running:
            with pytest.raises(StoreClosed, match="closed"):
                await read
    assert _pool_threads() == before

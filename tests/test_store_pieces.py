"""The pieces of a split reply in the outbox, on a real file: cut once at the first claim,
confirmed one by one, and a piece in flight when the process died is 'unknown' at boot."""

from __future__ import annotations

import pytest

from gateway_core.clock import ManualClock
from gateway_core.model import Origin, PieceStatus, SessionKey
from gateway_core.store import LeaseLost, Store
from tests.support.backends import StoreOpener

pytestmark = pytest.mark.both_backends

KEY = SessionKey("loopback", "chat-1")
ORIGIN = Origin("loopback", "chat-1", user_id="u1")
TEXT = "one\ntwo\nthree"


def by_lines(text: str) -> list[str]:
    return text.split("\n")


def in_halves(text: str) -> list[str]:
    return [text[: len(text) // 2], text[len(text) // 2 :]]


async def test_a_reply_is_cut_once_and_a_retry_starts_after_the_confirmed_pieces(
    store: Store,
) -> None:
    session = await store.sessions.ensure(KEY, ORIGIN)
    item_id = await store.outbox.enqueue(session.id, 1, "reply", TEXT)
    first = await store.outbox.claim_pieces(item_id, by_lines)
    assert first is not None
    assert [(p.content, p.status) for p in first.owed] == [
        ("one", PieceStatus.SENDING),
        ("two", PieceStatus.PENDING),
        ("three", PieceStatus.PENDING),
    ]
    assert await store.outbox.piece_sent(item_id, 0, "m1") is False
    await store.outbox.mark_attempt_failed(item_id, "HTTP 502", final=False)

    # Another split now (say the limit changed): the stored pieces win.
    again = await store.outbox.claim_pieces(item_id, in_halves)
    assert again is not None
    assert [(p.content, p.status) for p in again.owed] == [
        ("two", PieceStatus.SENDING),
        ("three", PieceStatus.PENDING),
    ]
    assert await store.outbox.piece_sent(item_id, 1, "m2") is False
    assert await store.outbox.piece_sent(item_id, 2, "m3") is True
    item = await store.outbox.get(item_id)
    assert item is not None
    assert (item.status, item.platform_message_id, item.attempts) == ("sent", "m3", 2)
    assert item.last_error == "piece 2 of 3 (piece 3 not sent yet): HTTP 502"
    pieces = await store.outbox.pieces(item_id)
    assert [(p.status, p.platform_message_id) for p in pieces] == [
        (PieceStatus.SENT, "m1"),
        (PieceStatus.SENT, "m2"),
        (PieceStatus.SENT, "m3"),
    ]
    assert await store.outbox.claim_pieces(item_id, by_lines) is None


async def test_a_reply_that_fits_in_one_message_stores_no_pieces(store: Store) -> None:
    session = await store.sessions.ensure(KEY, ORIGIN)
    item_id = await store.outbox.enqueue(session.id, 1, "reply", "short")
    claimed = await store.outbox.claim_pieces(item_id, lambda text: [text])
    assert claimed is not None
    assert [(p.content, p.status) for p in claimed.owed] == [("short", PieceStatus.SENDING)]
    assert await store.outbox.piece_sent(item_id, 0, "m1") is True
    assert await store.outbox.pieces(item_id) == []
    item = await store.outbox.get(item_id)
    assert item is not None and (item.status, item.platform_message_id) == ("sent", "m1")


async def test_a_piece_in_flight_at_a_crash_is_unknown_and_the_rest_are_held(
    store: Store, store_opener: StoreOpener, clock: ManualClock
) -> None:
    session = await store.sessions.ensure(KEY, ORIGIN)
    item_id = await store.outbox.enqueue(session.id, 1, "reply", TEXT)
    assert await store.outbox.claim_pieces(item_id, by_lines) is not None
    await store.outbox.piece_sent(item_id, 0, "m1")  # piece 2 is now being sent...
    await store.close()  # ...when the process dies
    async with await store_opener(clock) as rebooted:
        (unknown,) = await rebooted.outbox.mark_unknown_at_boot()
        expected = "the gateway stopped while sending piece 2 of 3 (piece 3 not sent yet)"
        assert (unknown.id, unknown.status, unknown.last_error) == (item_id, "unknown", expected)
        assert await rebooted.outbox.pending() == []
        assert await rebooted.outbox.claim_pieces(item_id, by_lines) is None
        statuses = [p.status for p in await rebooted.outbox.pieces(item_id)]
        assert statuses == [PieceStatus.SENT, PieceStatus.UNKNOWN, PieceStatus.PENDING]
        stored = await rebooted.outbox.get(item_id)
        assert stored is not None and stored.last_error == expected


TTL = 15.0


async def test_a_node_that_lost_the_session_records_no_piece_and_claims_no_next(
    store: Store, clock: ManualClock
) -> None:
    session = await store.sessions.ensure(KEY, ORIGIN)
    await store.leases.acquire(session.id, "a", TTL)
    item_id = await store.outbox.enqueue(session.id, 1, "reply", TEXT)
    fence_a = (session.id, "a")
    assert await store.outbox.claim_pieces(item_id, by_lines, fence_a) is not None
    assert await store.outbox.piece_sent(item_id, 0, "m1", fence_a) is False
    # Node a pauses past its lease; node b takes the session over and settles the send.
    clock.advance(TTL + 1)
    await store.leases.acquire(session.id, "b", TTL)
    # a wakes up, its piece 2 went out: it may record nothing, nor claim piece 3.
    with pytest.raises(LeaseLost, match="not recorded"):
        await store.outbox.piece_sent(item_id, 1, "m2", fence_a)
    pieces = await store.outbox.pieces(item_id)
    assert [(p.status, p.platform_message_id) for p in pieces] == [
        (PieceStatus.SENT, "m1"),
        (PieceStatus.SENDING, None),
        (PieceStatus.PENDING, None),
    ]
    item = await store.outbox.get(item_id)
    assert item is not None and item.status == "sending"


async def test_a_piece_of_a_send_settled_meanwhile_is_not_recorded(store: Store) -> None:
    """The new owner marked the send unknown (its outcome cannot be known): a late
    confirmation from the old attempt must not turn it into 'sent' or send the next piece."""
    session = await store.sessions.ensure(KEY, ORIGIN)
    item_id = await store.outbox.enqueue(session.id, 1, "reply", TEXT)
    assert await store.outbox.claim_pieces(item_id, by_lines) is not None
    (settled,) = await store.outbox.mark_unknown_at_boot(only=[session.id])
    assert settled.id == item_id
    with pytest.raises(LeaseLost, match="no longer being sent"):
        await store.outbox.piece_sent(item_id, 0, "m1")
    statuses = [p.status for p in await store.outbox.pieces(item_id)]
    assert statuses == [PieceStatus.UNKNOWN, PieceStatus.PENDING, PieceStatus.PENDING]
    item = await store.outbox.get(item_id)
    assert item is not None and (item.status, item.platform_message_id) == ("unknown", None)


async def test_a_short_reply_of_a_session_taken_over_is_not_marked_sent(
    store: Store, clock: ManualClock
) -> None:
    session = await store.sessions.ensure(KEY, ORIGIN)
    await store.leases.acquire(session.id, "a", TTL)
    item_id = await store.outbox.enqueue(session.id, 1, "reply", "short")
    fence_a = (session.id, "a")
    assert await store.outbox.claim_pieces(item_id, lambda text: [text], fence_a) is not None
    clock.advance(TTL + 1)
    await store.leases.acquire(session.id, "b", TTL)
    with pytest.raises(LeaseLost):
        await store.outbox.piece_sent(item_id, 0, "m1", fence_a)
    item = await store.outbox.get(item_id)
    assert item is not None and (item.status, item.platform_message_id) == ("sending", None)
    # Its own owner confirms it: recorded.
    assert await store.outbox.piece_sent(item_id, 0, "m1", (session.id, "b")) is True


async def test_a_claim_refused_for_the_lease_says_so(store: Store, clock: ManualClock) -> None:
    session = await store.sessions.ensure(KEY, ORIGIN)
    await store.leases.acquire(session.id, "b", TTL)
    item_id = await store.outbox.enqueue(session.id, 1, "reply", "short")
    with pytest.raises(LeaseLost, match="owned by node b"):
        await store.outbox.claim_pieces(item_id, lambda text: [text], (session.id, "a"))
    assert await store.outbox.claim_pieces(item_id, lambda text: [text], (session.id, "b"))

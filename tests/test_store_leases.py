"""Session leases and fencing, on both backends: one owner at a time, a new epoch each time a
session changes hands, and a node that lost its lease cannot write for the session."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from gateway_core.clock import ManualClock
from gateway_core.model import InboxStatus, NodeState, Origin, SessionKey
from gateway_core.store import LeaseHeld, LeaseLost, Store
from gateway_core.store.leases import fence_row
from gateway_core.store.transaction import Transaction
from gateway_core.store.transcript import append_rows
from tests.support.transcripts import user

pytestmark = pytest.mark.both_backends
KEY = SessionKey("telegram", "42")
TTL = 15.0


async def test_one_owner_at_a_time_and_a_new_epoch_per_hand_over(
    store: Store, clock: ManualClock
) -> None:
    session = await store.sessions.ensure(KEY, Origin("telegram", "42"))
    assert await store.leases.acquire(session.id, "a", TTL) == 1
    assert await store.leases.acquire(session.id, "a", TTL) == 1  # still a's: same epoch
    with pytest.raises(LeaseHeld, match="owned by node a"):
        await store.leases.acquire(session.id, "b", TTL)
    clock.advance(TTL + 1)
    assert await store.leases.acquire(session.id, "b", TTL) == 2
    with pytest.raises(LeaseHeld, match="owned by node b"):
        await store.leases.acquire(session.id, "a", TTL)


async def test_the_heartbeat_renews_and_a_drain_releases_at_once(
    store: Store, clock: ManualClock
) -> None:
    session = await store.sessions.ensure(KEY, Origin("telegram", "42"))
    await store.leases.acquire(session.id, "a", TTL)
    clock.advance(TTL - 1)
    assert await store.leases.heartbeat("a", "host-a", 11, NodeState.RUNNING, TTL) == 1
    clock.advance(TTL - 1)  # past the first expiry, within the renewed one
    with pytest.raises(LeaseHeld):
        await store.leases.acquire(session.id, "b", TTL)
    assert await store.leases.release_all("a") == 1
    assert await store.leases.acquire(session.id, "b", TTL) == 2  # no TTL wait
    (node,) = await store.leases.nodes()
    assert (node.id, node.host, node.pid, node.state) == ("a", "host-a", 11, NodeState.RUNNING)


async def test_a_node_that_lost_its_lease_writes_nothing_for_the_session(
    store: Store, clock: ManualClock
) -> None:
    session = await store.sessions.ensure(KEY, Origin("telegram", "42"))
    epoch_a = await store.leases.acquire(session.id, "a", TTL)

    def fenced_append(node: str, epoch: int, text: str) -> Callable[[Transaction], None]:
        def txn(db: Transaction) -> None:
            append_rows(db, session.id, [user(text)], clock.now())  # written, then refused
            fence_row(db, session.id, node, epoch)

        return txn

    await store.write(fenced_append("a", epoch_a, "while a owns it"))
    clock.advance(TTL + 1)
    epoch_b = await store.leases.acquire(session.id, "b", TTL)
    with pytest.raises(LeaseLost, match="node a lost its lease"):
        await store.write(fenced_append("a", epoch_a, "a after losing it"))
    await store.write(fenced_append("b", epoch_b, "b now"))
    rows = await store.transcript.all(session.id)
    assert [m.content for m in rows] == ["while a owns it", "b now"]


async def test_a_nodes_pickup_reads_open_items_of_sessions_it_may_own_in_one_go(
    store: Store, clock: ManualClock
) -> None:
    """Its own, released, lapsed and never-leased sessions' open items, with their sessions;
    not those another node holds; `only` narrows the read to the items named."""
    names = ["mine", "theirs", "lapsed", "released", "never"]
    sessions = {
        name: await store.sessions.ensure(SessionKey("telegram", name), Origin("telegram", name))
        for name in names
    }
    await store.leases.acquire(sessions["lapsed"].id, "b", TTL)
    clock.advance(TTL + 1)
    await store.leases.acquire(sessions["mine"].id, "a", TTL)
    await store.leases.acquire(sessions["theirs"].id, "b", TTL)
    await store.leases.acquire(sessions["released"].id, "c", TTL)
    await store.leases.release_all("c")
    ids = await store.inbox.add_batch(
        "telegram",
        [(f"u-{name}", str(sessions[name].key), '{"text": "hi"}') for name in names],
    )
    found = await store.inbox.open_for_node("a")
    assert [(item.update_id, session.key.chat_id) for item, session in found] == [
        ("u-mine", "mine"),
        ("u-lapsed", "lapsed"),
        ("u-released", "released"),
        ("u-never", "never"),
    ]
    assert found[0][1] == sessions["mine"]
    named = await store.inbox.open_for_node("a", [ids[1], ids[4]])
    assert [item.id for item, _ in named] == [ids[4]]
    assert await store.inbox.open_for_node("a", []) == []
    await store.inbox.finish(ids[0], InboxStatus.DONE)
    assert [item.id for item, _ in await store.inbox.open_for_node("a")] == ids[2:]


async def test_the_sweep_takes_the_left_over_sessions_whose_lease_is_free_or_lapsed(
    store: Store, clock: ManualClock
) -> None:
    names = ["free", "lapsed", "held", "mine", "released", "clean"]
    ids = {
        name: (
            await store.sessions.ensure(SessionKey("telegram", name), Origin("telegram", name))
        ).id
        for name in names
    }
    for name in names[:-1]:  # a reply not yet sent: something left over to recover
        await store.outbox.enqueue(ids[name], 1, "reply", "owed")
    await store.leases.acquire(ids["lapsed"], "b", TTL)
    clock.advance(TTL + 1)
    await store.leases.acquire(ids["held"], "b", TTL)
    await store.leases.acquire(ids["mine"], "a", TTL)
    await store.leases.acquire(ids["released"], "c", TTL)
    await store.leases.release_all("c")

    taken = await store.leases.claim_left_over("a", TTL, include_own=False)
    assert taken == sorted(ids[name] for name in ("free", "lapsed", "released"))
    epochs = {}
    for name in names:
        lease = await store.leases.of_session(ids[name])
        epochs[name] = None if lease is None else (lease.owner, lease.epoch)
    assert epochs == {
        "free": ("a", 1),
        "lapsed": ("a", 2),
        "held": ("b", 1),
        "mine": ("a", 1),
        "released": ("a", 2),
        "clean": None,
    }
    # At boot (a restart under the same node id) its own are recovered too, epoch kept.
    again = await store.leases.claim_left_over("a", TTL, include_own=True)
    assert again == sorted(ids[name] for name in ("free", "lapsed", "mine", "released"))
    mine = await store.leases.of_session(ids["mine"])
    assert mine is not None and (mine.owner, mine.epoch) == ("a", 1)

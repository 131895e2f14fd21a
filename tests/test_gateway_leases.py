"""A real gateway as a node on PostgreSQL: the lease its turn takes, fencing when another
node took the session over, and the release at once when it stops. And on SQLite, no node."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import psycopg

from gateway_core.clock import ManualClock
from gateway_core.events import TurnFinished
from gateway_core.model import NodeState, Origin, Role
from gateway_core.store import Store
from gateway_core.store.leases import INBOX_CHANNEL
from tests.support.harness import next_event, start_gateway, wait_for_sleepers

TTL = 15.0


async def test_a_node_whose_lease_was_taken_writes_and_delivers_nothing(
    dsn: str, tmp_path: Path, clock: ManualClock
) -> None:
    running = await start_gateway(
        tmp_path / "a", clock, gateway={"node_id": "node-a"}, notifier={"interval": 0}
    )
    ada = running.adapter.user("ada")
    finished = running.gateway.events.subscribe()
    await ada.say('tool sleep {"seconds": 100}')
    await wait_for_sleepers(clock, 1)  # the turn is inside its tool call
    session_id = running.gateway.lanes.all()[0].session.id
    store = running.gateway.store
    lease = await store.leases.of_session(session_id)
    assert lease is not None and (lease.owner, lease.epoch) == ("node-a", 1)

    # node-a stops beating (paused, partitioned) past its TTL; node-b takes the session.
    clock.advance(TTL + 1)
    async with await Store.open_postgresql(dsn, clock=clock) as node_b:
        # node-b is a bare store with no heartbeat: a lease long enough for the whole test
        # (a lapsed one would rightly be taken back by node-a's sweep).
        assert await node_b.leases.acquire(session_id, "node-b", 10 * 60) == 2
        clock.advance(100)  # node-a's tool call returns; its turn goes on writing
        ended = await next_event(finished, TurnFinished)
        assert ended.outcome == "superseded"
        rows = await node_b.transcript.all(session_id)
        # The request and the tool call from before the takeover; nothing after it.
        assert [m.role for m in rows] == [Role.USER, Role.ASSISTANT]
        assert rows[1].tool_calls and rows[1].tool_calls[0].name == "sleep"
        assert await node_b.outbox.pending() == []
        assert ada.received() == []
        lease = await node_b.leases.of_session(session_id)
        assert lease is not None and (lease.owner, lease.epoch) == ("node-b", 2)
        clock.advance(TTL)  # node-a's heartbeat does not take it back
        lease = await node_b.leases.of_session(session_id)
        assert lease is not None and lease.owner == "node-b"
    await running.stop()


async def test_a_stopping_node_releases_its_leases_at_once(
    dsn: str, tmp_path: Path, clock: ManualClock
) -> None:
    running = await start_gateway(tmp_path / "a", clock, gateway={"node_id": "node-a"})
    ada = running.adapter.user("ada")
    await ada.say("hello")
    assert [m.text for m in await ada.wait_for(1)] == ["You said: hello"]
    session_id = running.gateway.lanes.all()[0].session.id
    await running.stop()
    async with await Store.open_postgresql(dsn, clock=clock) as node_b:
        lease = await node_b.leases.of_session(session_id)
        assert lease is not None and (lease.owner, lease.epoch) == (None, 1)
        (node,) = await node_b.leases.nodes()
        assert (node.id, node.state) == ("node-a", NodeState.STOPPED)
        # No TTL wait: node-b owns the session at once, with a new epoch.
        assert await node_b.leases.acquire(session_id, "node-b", TTL) == 2


async def test_a_node_keeps_a_turns_lease_epoch_only_while_the_turn_runs(
    dsn: str, tmp_path: Path, clock: ManualClock
) -> None:
    # The epoch fences the turn's writes; kept after the turn, every session that ever spoke
    # on the node would hold an entry for the rest of the run.
    running = await start_gateway(
        tmp_path / "a", clock, gateway={"node_id": "node-a"}, notifier={"interval": 0}
    )
    runner = running.gateway.live.runner
    for name in ("ada", "bob", "cy"):
        user = running.adapter.user(name)
        await user.say("hello")
        assert [m.text for m in await user.wait_for(1)] == ["You said: hello"]
    await running.gateway.wait_idle()
    assert runner.leased_turns == 0

    finished = running.gateway.events.subscribe()
    await running.adapter.user("dee").say('tool sleep {"seconds": 5}')
    await wait_for_sleepers(clock, 1)  # the turn is inside its tool call, under its lease
    assert runner.leased_turns == 1
    clock.advance(5)
    assert (await next_event(finished, TurnFinished)).outcome == "completed"
    assert runner.leased_turns == 0
    await running.stop()


async def test_a_sqlite_gateway_is_no_node_and_takes_no_lease(
    tmp_path: Path, clock: ManualClock
) -> None:
    running = await start_gateway(tmp_path / "s", clock)
    ada = running.adapter.user("ada")
    await ada.say("hello")
    assert [m.text for m in await ada.wait_for(1)] == ["You said: hello"]
    store = running.gateway.store
    session_id = running.gateway.lanes.all()[0].session.id
    assert await store.leases.of_session(session_id) is None
    assert await store.leases.nodes() == []
    await running.stop()


async def test_a_message_taken_in_by_one_node_is_answered_once_by_the_sessions_owner(
    dsn: str, tmp_path: Path, clock: ManualClock
) -> None:
    node_a = await start_gateway(tmp_path / "a", clock, gateway={"node_id": "node-a"})
    ada_at_a = node_a.adapter.user("ada")
    # node-a answers the first message alone, and so owns the session. (With node-b already
    # up, its pickup, woken by the same NOTIFY, could rightly win the never-leased session's
    # first turn and answer through its own loopback chat.)
    await ada_at_a.say("one")
    assert [m.text for m in await ada_at_a.wait_for(1)] == ["You said: one"]
    node_b = await start_gateway(tmp_path / "b", clock, gateway={"node_id": "node-b"})
    ada_at_b = node_b.adapter.user("ada")
    # The same chat reaches node-b's intake: node-a owns the session, NOTIFY wakes its
    # pickup (the clock does not move, so no poll could have), and node-a answers.
    await ada_at_b.say("two")
    assert [m.text for m in await ada_at_a.wait_for(2)] == ["You said: one", "You said: two"]
    assert ada_at_b.received() == []
    store = node_a.gateway.store
    session_id = node_a.gateway.lanes.all()[0].session.id
    run_a = node_a.gateway.run
    assert run_a is not None
    assert [t.run_id for t in await store.turns.of_session(session_id)] == [run_a.id] * 2
    assert [m.content for m in await store.transcript.all(session_id)] == [
        "one",
        "You said: one",
        "two",
        "You said: two",
    ]


async def test_at_boot_a_node_queues_only_the_backlog_of_sessions_it_may_own(
    dsn: str, tmp_path: Path, clock: ManualClock
) -> None:
    bob, cy = Origin("loopback", "bob", user_id="bob"), Origin("loopback", "cy", user_id="cy")
    async with await Store.open_postgresql(dsn, clock=clock) as node_b:
        held = await node_b.sessions.ensure(bob.key, bob)
        await node_b.sessions.ensure(cy.key, cy)
        await node_b.leases.acquire(held.id, "node-b", 10 * 60)  # node-b is alive and owns bob
        await node_b.inbox.add_batch(
            "loopback",
            [
                ("b1", str(bob.key), json.dumps({"text": "from bob"})),
                ("c1", str(cy.key), json.dumps({"text": "from cy"})),
            ],
        )
        running = await start_gateway(tmp_path / "a", clock, gateway={"node_id": "node-a"})
        cy_chat = running.adapter.user("cy")
        assert [m.text for m in await cy_chat.wait_for(1)] == ["You said: from cy"]
        # bob's message is node-b's to answer: node-a did not even queue it.
        assert held.id not in {lane.session.id for lane in running.gateway.lanes.all()}
        assert [item.update_id for item in await node_b.inbox.open_items()] == ["b1"]
        await running.stop()


async def test_a_nodes_intake_commits_messages_arriving_together_in_one_transaction(
    dsn: str, tmp_path: Path, clock: ManualClock
) -> None:
    """Group commit holds on a node as on SQLite: intake batches are not committed one at a
    time (each message would pay a commit of its own)."""
    running = await start_gateway(tmp_path / "a", clock, gateway={"node_id": "node-a"})
    users = [running.adapter.user(f"u{n}") for n in range(10)]
    store = running.gateway.store
    before = store.writer_stats.batches
    await asyncio.gather(*(user.say(f"hi {n}") for n, user in enumerate(users)))
    # The ten intake commits went in one transaction (a turn's start may follow in one more).
    assert store.writer_stats.batches - before <= 2
    for n, user in enumerate(users):
        assert [m.text for m in await user.wait_for(1)] == [f"You said: hi {n}"]
    await running.stop()


async def test_under_steady_notifications_a_node_still_looks_at_every_open_item(
    dsn: str, tmp_path: Path, clock: ManualClock
) -> None:
    """A woken pickup reads what was named; yet at least every inbox_poll seconds it looks at
    everything, even when notifications keep it from ever reaching its poll's timer."""
    running = await start_gateway(
        tmp_path / "a", clock, gateway={"node_id": "node-a"}, cluster={"inbox_poll": 2}
    )
    chats = {name: Origin("loopback", name, user_id=name) for name in ("dan", "eve", "fay")}
    async with await Store.open_postgresql(dsn, clock=clock) as other:
        for origin in chats.values():
            await other.sessions.ensure(origin.key, origin)

        async def stored(name: str) -> int:
            (item_id,) = await other.inbox.add_batch(
                "loopback", [(f"u-{name}", str(chats[name].key), json.dumps({"text": name}))]
            )
            return item_id

        await stored("dan")  # committed without a notification (as if it had been lost)
        clock.advance(1.5)  # not yet the poll's time
        await notify(dsn, await stored("eve"))
        eve = running.adapter.user("eve")
        assert [m.text for m in await eve.wait_for(1)] == ["You said: eve"]
        dan = running.adapter.user("dan")
        assert dan.received() == []  # the wake-up read only what it named
        clock.advance(1.0)  # past inbox_poll since the last full look; the timer restarted
        await notify(dsn, await stored("fay"))
        assert [m.text for m in await dan.wait_for(1)] == ["You said: dan"]
    await running.stop()


async def notify(dsn: str, inbox_id: int) -> None:
    """A notification naming one inbox item, as an intake transaction sends it."""
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as raw:
        await raw.execute("SELECT pg_notify(%s, %s)", (INBOX_CHANNEL, str(inbox_id)))

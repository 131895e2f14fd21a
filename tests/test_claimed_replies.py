"""A reply claimed by its turn's end transaction (store/outbox.py, delivery.py): sent once, in
order, and never left 'sending' when it cannot go out at once.

Real gateway, real store file, a loopback adapter whose sends can be held open (a platform
that has not answered yet), manual clock."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from pathlib import Path

from gateway_core.adapters.loopback import LoopbackAdapter, LoopbackUser
from gateway_core.clock import ManualClock
from gateway_core.events import DeliveryFailed, ReplySent
from gateway_core.model import ClaimedReply, Origin, OutboxStatus
from gateway_core.store import outbox
from gateway_core.store.transaction import Transaction
from tests.support.harness import Running, next_event, start_gateway, wait_for_sleepers


@dataclass
class HeldLoopback(LoopbackAdapter):
    """A loopback adapter whose send() waits, once called, until `release` is set."""

    release: asyncio.Event = field(default_factory=asyncio.Event)
    entered: asyncio.Event = field(default_factory=asyncio.Event)

    async def send(self, origin: Origin, text: str, reply_to: str | None = None) -> str | None:
        self.entered.set()
        await self.release.wait()
        return await super().send(origin, text, reply_to)


async def started(tmp_path: Path, clock: ManualClock) -> tuple[Running, HeldLoopback, int]:
    """A gateway whose user "ada" has spoken once and been answered; her session's id."""
    adapter = HeldLoopback()
    running = await start_gateway(tmp_path / "state", clock, adapter, notifier={"interval": 0})
    sent = running.gateway.events.subscribe()
    adapter.release.set()
    await adapter.user("ada").say("hello")
    await next_event(sent, ReplySent)
    (first,) = await running.gateway.store.outbox.by_status(OutboxStatus.SENT)
    adapter.release.clear()
    adapter.entered.clear()
    return running, adapter, first.session_id


def ada(adapter: HeldLoopback) -> LoopbackUser:
    return adapter.user("ada")


async def claimed_reply(running: Running, session_id: int, text: str) -> ClaimedReply:
    """A reply committed already claimed, as a turn's end writes one."""
    store = running.gateway.store
    session = await store.sessions.get(session_id)
    assert session is not None
    generation, now = session.generation, running.gateway.clock.now()

    def txn(db: Transaction) -> ClaimedReply:
        rowid = outbox.enqueue_row(db, session_id, generation, "reply", text, now, claimed=True)
        return outbox.claimed_reply(rowid, session_id, generation, "reply", text, now)

    return await store.write(txn)


async def test_a_turns_reply_goes_out_on_its_first_attempt_and_once(
    tmp_path: Path, clock: ManualClock
) -> None:
    running, adapter, _ = await started(tmp_path, clock)
    (reply,) = await running.gateway.store.outbox.by_status(OutboxStatus.SENT)
    assert reply.attempts == 1
    assert [m.text for m in ada(adapter).received()] == ["You said: hello"]
    await running.stop()


async def test_a_claimed_reply_whose_session_got_busy_is_released_and_sent_after(
    tmp_path: Path, clock: ManualClock
) -> None:
    running, adapter, session_id = await started(tmp_path, clock)
    gateway = running.gateway
    sent = gateway.events.subscribe()
    await gateway.deliverer.post_notice(session_id, "a notice")
    await adapter.entered.wait()  # the notice's send is under way: the session is busy
    claimed = await claimed_reply(running, session_id, "the answer")
    gateway.deliverer.send_claimed(session_id, claimed, ada(adapter).origin)
    await gateway.deliverer.claims_released()
    # Pending behind the notice, not 'sending': a crash now must not leave it of unknown
    # outcome, since it has not gone out.
    row = await gateway.store.outbox.get(claimed.item.id)
    assert row is not None and (row.status, row.attempts) == ("pending", 0)

    adapter.release.set()
    await next_event(sent, ReplySent)
    await next_event(sent, ReplySent)
    texts = [m.text for m in ada(adapter).received()]
    assert texts == ["You said: hello", "a notice", "the answer"]
    row = await gateway.store.outbox.get(claimed.item.id)
    assert row is not None and (row.status, row.attempts) == ("sent", 1)
    await running.stop()


async def test_a_claimed_reply_being_sent_when_a_stop_begins_is_let_finish(
    tmp_path: Path, clock: ManualClock
) -> None:
    running, adapter, session_id = await started(tmp_path, clock)
    deliverer = running.gateway.deliverer
    claimed = await claimed_reply(running, session_id, "the answer")
    deliverer.send_claimed(session_id, claimed, ada(adapter).origin)
    closing = asyncio.ensure_future(deliverer.close())
    await adapter.entered.wait()  # its send began even though the stop had
    adapter.release.set()
    await closing
    row = await running.gateway.store.outbox.get(claimed.item.id)
    assert row is not None and row.status == "sent"  # not cut: never of unknown outcome
    await running.stop()


async def test_a_claimed_reply_handed_over_after_a_stop_began_is_left_pending(
    tmp_path: Path, clock: ManualClock
) -> None:
    running, adapter, session_id = await started(tmp_path, clock)
    deliverer = running.gateway.deliverer
    claimed = await claimed_reply(running, session_id, "the answer")
    await deliverer.close()
    deliverer.send_claimed(session_id, claimed, ada(adapter).origin)
    await deliverer.claims_released()
    row = await running.gateway.store.outbox.get(claimed.item.id)
    # Owed to the next run, which sends it; not 'sending', which it would call unknown.
    assert row is not None and (row.status, row.attempts) == ("pending", 0)
    assert not adapter.entered.is_set()
    await running.stop()


async def test_a_claimed_reply_whose_send_fails_is_claimed_again_for_its_retry(
    tmp_path: Path, clock: ManualClock
) -> None:
    running, adapter, _ = await started(tmp_path, clock)
    events = running.gateway.events.subscribe()
    adapter.release.set()
    adapter.fail_next(1, reason="HTTP 502 Bad Gateway")
    await ada(adapter).say("again")
    failed = await next_event(events, DeliveryFailed)
    assert not failed.final
    await wait_for_sleepers(clock, 1)  # the retry's backoff (at most 2 s for a first retry)
    clock.advance(30)
    await next_event(events, ReplySent)
    texts = [m.text for m in ada(adapter).received()]
    assert texts == ["You said: hello", "You said: again"]
    (retried,) = [
        r for r in await running.gateway.store.outbox.by_status(OutboxStatus.SENT) if r.id != 1
    ]
    assert retried.attempts == 2
    await running.stop()

"""Turns on a real gateway: loopback users, scripted agent, real store file, manual clock."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from gateway_core.adapters.loopback import LoopbackAdapter
from gateway_core.agents.base import AgentEvent, Answer, TurnContext
from gateway_core.clock import ManualClock
from gateway_core.events import NotifierFired, ReplySent, TurnFinished
from gateway_core.gateway import Gateway
from gateway_core.model import MessageKind, Origin, OutboxStatus, SessionKey
from tests.support.harness import (
    Running,
    background_sleepers,
    make_config,
    next_event,
    open_store,
    start_gateway,
    store_dsn,
    track,
    wait_for_sleepers,
)
from tests.support.transcripts import user

pytestmark = pytest.mark.both_backends


@pytest.fixture
async def running(tmp_path: Path, clock: ManualClock) -> AsyncIterator[Running]:
    gateway = await start_gateway(tmp_path / "state", clock, notifier={"interval": 60})
    try:
        yield gateway
    finally:
        await gateway.stop()


async def test_a_message_is_answered_and_everything_is_on_disk(running: Running) -> None:
    ada = running.adapter.user("ada", name="Ada")
    sent = running.gateway.events.subscribe()
    await ada.say("hello")
    assert [m.text for m in await ada.wait_for(1)] == ["You said: hello"]
    await next_event(sent, ReplySent)
    store = running.gateway.store
    session = (await store.sessions.list())[0]
    rows = await store.transcript.all(session.id)
    assert [(m.role, m.content) for m in rows] == [
        ("user", "hello"),
        ("assistant", "You said: hello"),
    ]
    assert rows[0].generation == rows[1].generation == 1
    record = await store.recovery.get(session.id)
    assert record is not None and record.state == "none"
    assert await store.inbox.open_items() == []
    (reply,) = await store.outbox.by_status(OutboxStatus.SENT)
    assert (reply.content, reply.platform_message_id) == ("You said: hello", "1")


async def test_a_turn_that_completes_clears_a_marker_set_while_it_ran(
    running: Running, clock: ManualClock
) -> None:
    """A drain that runs out marks a session before it interrupts its turn; a turn that
    completes in between must still clear the marker (and a turn that ends with none reads
    the record in its end statement instead of writing it)."""
    ada, bob = running.adapter.user("ada"), running.adapter.user("bob")
    store = running.gateway.store
    await ada.say("think 100")
    await bob.say("think 100")
    await wait_for_sleepers(clock, 4)  # both turns thinking, each with its notifier
    ada_lane, bob_lane = sorted(running.gateway.lanes.all(), key=lambda lane: lane.session.id)
    assert await store.recovery.mark(ada_lane.session.id, "drain-timeout")
    clock.advance(100)
    assert [m.text for m in await ada.wait_for(1)] == ["Thought for 100 s about it. Done."]
    assert [m.text for m in await bob.wait_for(1)] == ["Thought for 100 s about it. Done."]
    for lane in (ada_lane, bob_lane):
        record = await store.recovery.get(lane.session.id)
        assert record is not None and (record.state, record.reason) == ("none", None)


async def test_messages_for_a_busy_session_wait_their_turn_in_order(
    running: Running, clock: ManualClock
) -> None:
    ada = running.adapter.user("ada")
    await ada.say("think 100")
    await wait_for_sleepers(clock, 2)  # the turn's think + its notifier
    await ada.say("first follow-up")
    await ada.say("second follow-up")
    lane = running.gateway.lanes.all()[0]
    assert len(lane.queue) == 2 and lane.busy
    clock.advance(100)
    texts = [m.text for m in await ada.wait_for(3)]
    assert texts == [
        "Thought for 100 s about it. Done.",
        "You said: first follow-up",
        "You said: second follow-up",
    ]
    rows = await running.gateway.store.transcript.all(lane.session.id)
    assert [m.generation for m in rows] == [1, 1, 2, 2, 3, 3]


async def test_interrupt_mode_cancels_the_running_turn_and_never_sends_its_answer(
    tmp_path: Path, clock: ManualClock
) -> None:
    running = await start_gateway(tmp_path / "s", clock, lanes={"busy_mode": "interrupt"})
    try:
        ada = running.adapter.user("ada")
        await ada.say('tool sleep {"seconds": 500}')
        await wait_for_sleepers(clock, 2)
        await ada.say("never mind")
        assert [m.text for m in await ada.wait_for(1)] == ["You said: never mind"]
        # Nothing of the interrupted turn is still waiting to speak.
        assert clock.sleepers == background_sleepers()
        assert [m.text for m in ada.received()] == ["You said: never mind"]
        session_id = running.gateway.lanes.all()[0].session.id
        rows = await running.gateway.store.transcript.all(session_id)
        # The interrupted tool call is recorded as interrupted: its effect is unknown.
        assert [(m.role, m.kind) for m in rows[:3]] == [
            ("user", "text"),
            ("assistant", "text"),
            ("tool", MessageKind.TOOL_INTERRUPTED),
        ]
        assert rows[-1].content == "You said: never mind"
    finally:
        await running.stop()


async def test_a_failing_agent_tells_the_user_and_the_gateway_carries_on(running: Running) -> None:
    ada = running.adapter.user("ada")
    await ada.say("fail the disk is on fire")
    await ada.say("still there?")
    texts = [m.text for m in await ada.wait_for(2)]
    assert texts[0].startswith("⚠️ Sorry, this turn failed: ScriptedAgentError: the disk is on fire")
    assert texts[1] == "You said: still there?"


async def test_still_working_notice_is_one_message_edited_then_removed(
    running: Running, clock: ManualClock
) -> None:
    fired = running.gateway.events.subscribe()
    ada = running.adapter.user("ada")
    await ada.say("think 150")
    await wait_for_sleepers(clock, 2)
    clock.advance(60)
    notices = await ada.wait_for(1)
    assert notices[0].text == "⏳ Still working — 1 min so far"
    async with asyncio.timeout(5):  # counted once the send has returned, a step later
        while running.gateway.snapshot().notifiers[0].sent != 1:  # noqa: ASYNC110
            await asyncio.sleep(0)
    view = running.gateway.snapshot().notifiers[0]
    assert (view.sent, view.interval) == (1, 60)
    await wait_for_sleepers(clock, 2)
    clock.advance(60)
    await running.adapter.wait_until(lambda: notices[0].edits == 1)
    assert notices[0].text == "⏳ Still working — 2 min so far"
    clock.advance(30)
    # The answer arrives and the notice it replaces is deleted.
    await running.adapter.wait_until(
        lambda: [m.text for m in ada.received()] == ["Thought for 150 s about it. Done."]
    )
    assert notices[0].deleted
    assert running.gateway.snapshot().notifiers == ()
    events = []
    while not fired.queue.empty():
        events.append(fired.queue.get_nowait())
    assert [e.count for e in events if isinstance(e, NotifierFired)] == [1, 2]


async def test_no_notifier_outlives_its_turn_across_queued_follow_ups(
    running: Running, clock: ManualClock
) -> None:
    ada = running.adapter.user("ada")
    await ada.say("think 90")
    await wait_for_sleepers(clock, 2)
    await ada.say("think 30")
    clock.advance(90)  # first turn: notifier fired once at 60, turn ends at 90
    await wait_for_sleepers(clock, 2)  # second turn thinking, its own notifier waiting
    notifiers = running.gateway.snapshot().notifiers
    assert len(notifiers) == 1 and notifiers[0].generation == 2
    clock.advance(30)
    await ada.wait_for(2)
    assert running.gateway.snapshot().notifiers == ()
    texts = [m.text for m in ada.received()]
    assert texts == ["Thought for 90 s about it. Done.", "Thought for 30 s about it. Done."]


async def test_turn_events_carry_outcome_and_generation(running: Running) -> None:
    events = running.gateway.events.subscribe()
    ada = running.adapter.user("ada")
    await ada.say("hi")
    finished = await next_event(events, TurnFinished)
    assert (finished.generation, finished.outcome) == (1, "completed")


async def test_a_late_answer_of_an_old_generation_is_kept_but_never_delivered(
    running: Running, clock: ManualClock
) -> None:
    ada = running.adapter.user("ada")
    await ada.say("think 100")
    await wait_for_sleepers(clock, 2)
    session_id = running.gateway.lanes.all()[0].session.id
    # The session moves on to a newer generation while the turn still thinks.
    assert await running.gateway.store.sessions.next_generation(session_id) == 2
    events = running.gateway.events.subscribe()
    clock.advance(100)
    finished = await next_event(events, TurnFinished)
    assert (finished.generation, finished.outcome) == (1, "superseded")
    rows = await running.gateway.store.transcript.all(session_id)
    assert rows[-1].content == "Thought for 100 s about it. Done."  # kept for the record
    assert ada.received() == []  # never delivered into the newer generation
    assert await running.gateway.store.outbox.pending() == []


class SlowResumeAgent:
    """Resume turns take 100 s (on the clock); ordinary turns answer at once."""

    async def run_turn(self, context: TurnContext) -> AsyncIterator[AgentEvent]:
        if context.resume:
            await context.clock.sleep(100)
            yield Answer("resumed work finished")
        else:
            yield Answer(f"re: {context.input.rsplit(chr(10), 1)[-1]}")


async def test_inbound_is_held_behind_a_fresh_resume_turn_then_released(
    tmp_path: Path, clock: ManualClock
) -> None:
    state = tmp_path / "state"
    async with await open_store(state, clock) as store:
        session = await store.sessions.ensure(
            SessionKey("loopback", "ada"), Origin("loopback", "ada")
        )
        await store.transcript.append(session.id, [user("long job", clock.now() - 5)])
        await store.recovery.mark(session.id, "crash")
    adapter = LoopbackAdapter()
    config = make_config(state, lanes={"busy_mode": "interrupt"}, recovery={"hold_inbound": 30},
                         notifier={"interval": 0})  # fmt: skip
    gateway = Gateway(
        config, agent=SlowResumeAgent(), adapters=[adapter], clock=clock, store_dsn=store_dsn()
    )
    await gateway.start()
    track(Running(gateway, adapter))
    ada = adapter.user("ada")
    await wait_for_sleepers(clock, 1)  # the resume turn is working
    await ada.say("hello?")  # within hold_inbound: queued, does not kill the resume
    lane = gateway.lanes.all()[0]
    assert len(lane.queue) == 1 and lane.current is not None
    clock.advance(40)  # past hold_inbound: a new message may interrupt again
    await ada.say("stop that")
    texts = [m.text for m in await ada.wait_for(2)]
    assert texts == ["re: hello?", "re: stop that"]
    assert "resumed work finished" not in texts


async def test_a_message_beyond_the_queue_limit_is_refused_and_the_user_told(
    tmp_path: Path, clock: ManualClock
) -> None:
    running = await start_gateway(
        tmp_path / "s", clock, lanes={"max_queue": 1}, notifier={"interval": 0}
    )
    ada = running.adapter.user("ada")
    await ada.say("think 100")
    await wait_for_sleepers(clock, 1)
    await ada.say("queued")
    await ada.say("one too many")
    (notice,) = await ada.wait_for(1)
    assert notice.text.startswith("⚠️ 1 messages are already waiting; this one was not processed")
    refused = await running.gateway.store.write(
        lambda db: db.execute(
            "SELECT payload, error FROM inbox WHERE status = 'refused'"
        ).fetchall()
    )
    assert refused == [('{"text": "one too many"}', "more than 1 messages queued")]
    clock.advance(100)
    texts = [m.text for m in await ada.wait_for(3)]
    assert texts[1:] == ["Thought for 100 s about it. Done.", "You said: queued"]

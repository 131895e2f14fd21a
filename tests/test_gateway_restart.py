"""Restarts on a real gateway: exactly the right turns come back, once.

Where a test needs the state a crash leaves on disk, it writes that state through the store
(the same rows a killed gateway leaves); tests/test_crash_recovery.py kills a real process.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import pytest

from gateway_core.adapters.loopback import LoopbackAdapter
from gateway_core.agents.base import AgentEvent, Answer, TurnContext
from gateway_core.clock import ManualClock
from gateway_core.gateway import Gateway
from gateway_core.model import MessageKind, NewMessage, Origin, RecoveryAction, SessionKey
from tests.support.harness import (
    Running,
    make_config,
    open_store,
    start_gateway,
    store_dsn,
    track,
    wait_for_sleepers,
)
from tests.support.transcripts import answer, asks, call, user

pytestmark = pytest.mark.both_backends

HOUR = 3600.0


async def _seed(
    state_dir: Path, clock: ManualClock, chat: str, rows: Sequence[NewMessage], mark: bool = True
) -> int:
    """Write a conversation as a gateway would have left it, optionally marked for recovery."""
    async with await open_store(state_dir, clock) as store:
        session = await store.sessions.ensure(
            SessionKey("loopback", chat), Origin("loopback", chat, user_name=chat)
        )
        await store.transcript.append(session.id, list(rows))
        if mark:
            assert await store.recovery.mark(session.id, "crash")
        return session.id


async def _texts(running: Running, chat: str) -> list[str]:
    return [m.text for m in running.adapter.user(chat).received()]


async def test_a_restart_during_a_long_turn_resumes_it_once(
    tmp_path: Path, clock: ManualClock
) -> None:
    state = tmp_path / "state"
    running = await start_gateway(state, clock, notifier={"interval": 0})
    ada = running.adapter.user("ada")
    await ada.say("think 1000")
    await wait_for_sleepers(clock, 1)
    boot = await running.gateway.restart(0)
    assert [c.decision.action for c in boot.candidates] == [RecoveryAction.RESUME]
    resumed = "Back after a restart. You had asked: 'think 1000'"
    assert [m.text for m in await ada.wait_for(1)] == [resumed]
    session_id = boot.candidates[0].session.id
    record = await running.gateway.store.recovery.get(session_id)
    assert record is not None and record.state == "none"  # cleared: the resume completed
    rows = await running.gateway.store.transcript.all(session_id)
    assert [m.kind for m in rows].count(MessageKind.RECOVERY_NOTE) == 1

    again = await running.gateway.restart(0)  # nothing left to resume
    assert again.candidates == ()
    assert [m.text for m in ada.received()] == [resumed]


async def test_an_answer_persisted_but_not_sent_is_delivered_not_re_run(
    tmp_path: Path, clock: ManualClock
) -> None:
    state = tmp_path / "state"
    now = clock.now()
    session_id = await _seed(
        state, clock, "bob", [user("weather?", now - 5), answer("Rain.", now - 4)]
    )
    async with await open_store(state, clock) as store:
        await store.outbox.enqueue(session_id, 1, "reply", "Rain.")  # produced, never sent
    running = await start_gateway(state, clock)
    assert [m.text for m in await running.adapter.user("bob").wait_for(1)] == ["Rain."]
    boot = running.gateway.boot
    assert boot is not None
    assert [(c.decision.verdict, c.decision.action) for c in boot.candidates] == [
        ("complete", RecoveryAction.CLEAR)
    ]
    rows = await running.gateway.store.transcript.all(session_id)
    assert len(rows) == 2  # the agent did not run again


async def test_a_session_idle_past_the_freshness_window_is_not_resumed(
    tmp_path: Path, clock: ManualClock
) -> None:
    state = tmp_path / "state"
    # The marker is stamped "now" (as every restart does); the transcript is 2 hours old.
    session_id = await _seed(state, clock, "cy", [user("pip install sdk", clock.now() - 2 * HOUR)])
    running = await start_gateway(state, clock)
    boot = running.gateway.boot
    assert boot is not None
    assert [(c.decision.verdict, c.decision.action) for c in boot.candidates] == [
        ("stale", RecoveryAction.CLEAR)
    ]
    record = await running.gateway.store.recovery.get(session_id)
    assert record is not None and record.state == "none"
    # No answer: at most the notice that it was not resumed (it may already be out: on
    # PostgreSQL the boot awaits the node's first heartbeat, and the deliverer runs meanwhile).
    assert all("not resumed" in m.text for m in running.adapter.messages)


async def test_a_resume_interrupted_again_is_resumed_again_then_held_and_the_user_told_once(
    tmp_path: Path, clock: ManualClock
) -> None:
    # `work` resumes by working again, so a restart can interrupt the resume itself. Quick
    # restarts, as in a crash storm; the loop guard is set wide so the attempt limit shows.
    state = tmp_path / "state"
    running = await start_gateway(
        state,
        clock,
        notifier={"interval": 0},
        recovery={"max_attempts": 2, "loop_boots": 10},
    )
    fay = running.adapter.user("fay")
    await fay.say("work 1000")
    await wait_for_sleepers(clock, 1)
    first = await running.gateway.restart(0)  # interrupts the turn
    assert [c.decision.action for c in first.candidates] == [RecoveryAction.RESUME]
    await wait_for_sleepers(clock, 1)  # the resume works again
    second = await running.gateway.restart(0)  # interrupts the resume: attempt 1 of 2
    (candidate,) = second.candidates
    assert (candidate.decision.verdict, candidate.decision.action) == (
        "resumable",
        RecoveryAction.RESUME,
    )
    assert "interrupted" in candidate.decision.explanation
    await wait_for_sleepers(clock, 1)
    third = await running.gateway.restart(0)  # attempt 2 of 2 interrupted: held, user told
    (candidate,) = third.candidates
    assert candidate.decision.action is RecoveryAction.HOLD
    assert "interrupted 2 times while resuming" in candidate.decision.explanation
    told = ["⚠️ Your request “work 1000” was interrupted by a restart. An operator will review "
            "it before I continue."]  # fmt: skip
    assert [m.text for m in await fay.wait_for(1)] == told
    fourth = await running.gateway.restart(0)  # still held, and not told a second time
    assert [c.decision.action for c in fourth.candidates] == [RecoveryAction.HOLD]
    snapshot = running.gateway.snapshot()
    assert [(c.state, c.told) for c in snapshot.candidates] == [("held", "held")]
    assert [m.text for m in fay.received()] == told


async def test_three_quick_restarts_trip_the_loop_guard(tmp_path: Path, clock: ManualClock) -> None:
    state = tmp_path / "state"
    running = await start_gateway(state, clock, notifier={"interval": 0})
    ada = running.adapter.user("ada")
    actions = []
    for round_ in range(3):
        await ada.say(f"think {1000 + round_}")
        await wait_for_sleepers(clock, 1)
        boot = await running.gateway.restart(0)
        actions.append(boot.candidates[0].decision.action)
        if boot.loop_guard_tripped:
            break
        await ada.wait_for(round_ + 1)  # the resumed turn answered
    assert actions == [RecoveryAction.RESUME, RecoveryAction.RESUME, RecoveryAction.HOLD]
    snapshot = running.gateway.snapshot()
    assert snapshot.loop_guard_tripped is True
    assert [(c.state, c.verdict) for c in snapshot.candidates] == [("held", "resumable")]


async def test_an_interrupted_mutating_tool_call_is_held_for_the_operator(
    tmp_path: Path, clock: ManualClock
) -> None:
    state = tmp_path / "state"
    running = await start_gateway(state, clock, notifier={"interval": 0})
    await running.adapter.user("dee").say('tool sleep {"seconds": 600}')
    await wait_for_sleepers(clock, 1)
    boot = await running.gateway.restart(0)
    decision = boot.candidates[0].decision
    assert (decision.verdict, decision.action) == ("ambiguous-tool", RecoveryAction.HOLD)
    assert decision.unresolved_tools == ("sleep",)
    # Nothing was re-run behind the operator's back; the user was told it waits for one.
    assert [m.text for m in await running.adapter.user("dee").wait_for(1)] == [
        '⚠️ Your request “tool sleep {"seconds": 600}” was interrupted by a restart. An '
        "operator will review it before I continue."
    ]


class RecordingAgent:
    """An agent that remembers what each turn was given and answers at once."""

    def __init__(self) -> None:
        self.inputs: list[str] = []

    async def run_turn(self, context: TurnContext) -> AsyncIterator[AgentEvent]:
        self.inputs.append(context.input)
        yield Answer("ok")


async def test_a_message_to_a_marked_session_carries_one_note_and_is_stored_clean(
    tmp_path: Path, clock: ManualClock
) -> None:
    state = tmp_path / "state"
    now = clock.now()
    deploy = asks(call("terminal", "t1", command="./deploy.sh"), at=now - 30)
    session_id = await _seed(state, clock, "dee", [user("deploy", now - 40), deploy])
    agent = RecordingAgent()
    adapter = LoopbackAdapter()
    gateway = Gateway(
        make_config(state), agent=agent, adapters=[adapter], clock=clock, store_dsn=store_dsn()
    )
    await gateway.start()
    track(Running(gateway, adapter))
    assert gateway.snapshot().candidates[0].state == "held"
    await adapter.user("dee").say("what happened?")
    await adapter.user("dee").wait_for(2)  # the held notice, then the answer
    (seen,) = agent.inputs
    assert seen.startswith("[System note:") and seen.endswith("\n\nwhat happened?")
    assert seen.count("[System note:") == 1
    rows = await gateway.store.transcript.all(session_id)
    assert rows[-2].content == "what happened?"  # persisted as the user wrote it
    record = await gateway.store.recovery.get(session_id)
    assert record is not None and record.state == "none"  # a real turn completed


async def test_a_reply_caught_mid_send_is_not_resent_and_is_counted_for_the_operator(
    tmp_path: Path, clock: ManualClock
) -> None:
    state = tmp_path / "state"
    session_id = await _seed(
        state, clock, "gus", [user("hi", clock.now()), answer("hello", clock.now())], mark=False
    )
    async with await open_store(state, clock) as store:
        item = await store.outbox.enqueue(session_id, 1, "reply", "hello")
        assert await store.outbox.claim(item) is not None  # the process died mid-send
    running = await start_gateway(state, clock)
    assert running.gateway.snapshot().counts.unknown_deliveries == 1
    assert running.adapter.messages == []  # never blindly sent again
    with pytest.raises(RuntimeError, match="already started"):
        await running.gateway.start()


async def test_the_boots_decisions_name_their_sessions_by_key_before_any_lane_exists(
    tmp_path: Path, clock: ManualClock
) -> None:
    """A boot's RecoveryDecided events are logged by session key, like every other event,
    although a cleared or held session gets no lane in this run."""
    state = tmp_path / "state"
    session_id = await _seed(state, clock, "cy", [user("pip install sdk", clock.now() - 2 * HOUR)])
    running = await start_gateway(state, clock)
    assert running.gateway.lanes.find(session_id) is None  # cleared as stale: no turn, no lane
    assert running.gateway.session_key(session_id) == "loopback:cy:-"

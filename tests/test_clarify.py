"""The clarify tool on a real gateway: the user's next message answers the agent's question."""

from __future__ import annotations

import json
from pathlib import Path

from gateway_core.clock import ManualClock
from gateway_core.model import MessageKind, RecoveryAction
from tests.support.harness import start_gateway


async def test_the_next_message_answers_the_question_instead_of_starting_a_turn(
    tmp_path: Path, clock: ManualClock
) -> None:
    running = await start_gateway(tmp_path / "s", clock, notifier={"interval": 0})
    eve = running.adapter.user("eve")
    await eve.say("ask Which branch?")
    assert [m.text for m in await eve.wait_for(1)] == ["❓ Which branch?"]
    await eve.say("main")
    texts = [m.text for m in await eve.wait_for(2)]
    assert texts == ["❓ Which branch?", "Thanks, noted: main"]
    gateway = running.gateway
    session_id = gateway.lanes.all()[0].session.id
    rows = await gateway.store.transcript.all(session_id)
    assert [(m.role, m.kind) for m in rows] == [
        ("user", "text"),
        ("assistant", "text"),
        ("tool", "text"),
        ("assistant", "text"),
    ]
    assert json.loads(rows[2].content) == {"answer": "main"}
    assert {m.generation for m in rows} == {1}  # one turn: the answer did not start another
    assert await gateway.store.inbox.open_items() == []


async def test_an_unanswered_question_times_out_and_is_recorded_as_such(
    tmp_path: Path, clock: ManualClock
) -> None:
    running = await start_gateway(
        tmp_path / "s", clock, notifier={"interval": 0}, agent={"clarify_timeout": 600}
    )
    eve = running.adapter.user("eve")
    await eve.say("ask Deploy now?")
    await eve.wait_for(1)
    await clock.wait_for_sleepers(1)
    clock.advance(600)
    texts = [m.text for m in await eve.wait_for(2)]
    assert texts[-1] == "No answer yet; tell me when you have decided."
    session_id = running.gateway.lanes.all()[0].session.id
    rows = await running.gateway.store.transcript.all(session_id)
    assert rows[2].kind == MessageKind.CLARIFY_TIMEOUT
    assert "did not answer within 10 min" in rows[2].content


async def test_a_question_that_cannot_be_delivered_is_recorded_as_undelivered(
    tmp_path: Path, clock: ManualClock
) -> None:
    running = await start_gateway(tmp_path / "s", clock, notifier={"interval": 0})
    eve = running.adapter.user("eve")
    running.adapter.fail_next(1, final=True, reason="chat not found")
    await eve.say("ask Anyone there?")
    texts = [m.text for m in await eve.wait_for(1)]
    assert texts == ["No answer yet; tell me when you have decided."]
    session_id = running.gateway.lanes.all()[0].session.id
    rows = await running.gateway.store.transcript.all(session_id)
    assert rows[2].kind == MessageKind.CLARIFY_UNDELIVERED
    assert "chat not found" in rows[2].content


async def test_a_restart_while_a_question_is_open_waits_for_the_user(
    tmp_path: Path, clock: ManualClock
) -> None:
    state = tmp_path / "s"
    running = await start_gateway(state, clock, notifier={"interval": 0})
    eve = running.adapter.user("eve")
    await eve.say("ask Which branch?")
    await eve.wait_for(1)
    boot = await running.gateway.restart(0)
    decision = boot.candidates[0].decision
    # No synthetic turn re-asks or guesses: the user's next message continues.
    assert (decision.verdict, decision.action) == ("awaiting-user", RecoveryAction.WAIT)
    assert [m.text for m in eve.received()] == ["❓ Which branch?"]
    await eve.say("main")
    texts = [m.text for m in await eve.wait_for(2)]
    assert texts[-1] == "You said: main"
    session_id = boot.candidates[0].session.id
    record = await running.gateway.store.recovery.get(session_id)
    assert record is not None and record.state == "none"


async def test_a_timeout_under_a_minute_is_said_in_seconds(
    tmp_path: Path, clock: ManualClock
) -> None:
    running = await start_gateway(
        tmp_path / "s", clock, notifier={"interval": 0}, agent={"clarify_timeout": 25}
    )
    eve = running.adapter.user("eve")
    await eve.say("ask Deploy now?")
    await eve.wait_for(1)
    await clock.wait_for_sleepers(1)
    clock.advance(25)
    await eve.wait_for(2)
    session_id = running.gateway.lanes.all()[0].session.id
    rows = await running.gateway.store.transcript.all(session_id)
    assert json.loads(rows[2].content) == {"error": "the user did not answer within 25 s"}

"""The "still working" message on a real gateway (loopback users, scripted agent, real store
file, manual clock): recorded while it shows, edited in place even after a failed edit, never
sent twice when a send's outcome is unknown, and its record gone when the turn ends."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from gateway_core.clock import ManualClock
from gateway_core.events import NotifierFired, TurnFinished
from gateway_core.model import WorkingNotice
from tests.support.harness import Running, next_event, start_gateway


@pytest.fixture
async def running(tmp_path: Path, clock: ManualClock) -> AsyncIterator[Running]:
    gateway = await start_gateway(tmp_path / "state", clock, notifier={"interval": 60})
    try:
        yield gateway
    finally:
        await gateway.stop()


def bubbles(running: Running) -> list[str]:
    """Every still-working message ever sent, deleted ones included."""
    return [m.message_id for m in running.adapter.messages if "Still working" in m.text]


async def test_a_failed_edit_is_tried_again_as_an_edit_never_as_a_second_message(
    running: Running, clock: ManualClock
) -> None:
    events = running.gateway.events.subscribe()
    ada = running.adapter.user("ada")
    await ada.say("think 200")
    await clock.wait_for_sleepers(2)
    clock.advance(60)
    (notice,) = await ada.wait_for(1)
    await next_event(events, NotifierFired)  # sent, and its id recorded
    store = running.gateway.store
    (session,) = await store.sessions.list()
    assert await store.working_notices.all() == [
        WorkingNotice(session.id, 1, session.origin, notice.message_id)
    ]

    running.adapter.fail_next(1, reason="HTTP 502 Bad Gateway")
    await clock.wait_for_sleepers(2)
    clock.advance(60)  # this edit fails
    await clock.wait_for_sleepers(2)  # the notifier waits for its next beat
    assert bubbles(running) == [notice.message_id]
    clock.advance(60)  # and this one edits the same message
    await running.adapter.wait_until(lambda: notice.edits == 1)
    assert notice.text == "⏳ Still working — 3 min so far"

    clock.advance(20)
    await next_event(events, TurnFinished)
    await ada.wait_for(1)
    assert [m.text for m in ada.received()] == ["Thought for 200 s about it. Done."]
    assert bubbles(running) == [notice.message_id] and notice.deleted
    assert await store.working_notices.all() == []


async def test_a_send_of_unknown_outcome_is_never_followed_by_a_second_message(
    running: Running, clock: ManualClock
) -> None:
    events = running.gateway.events.subscribe()
    ada = running.adapter.user("ada")
    await ada.say("think 200")
    await clock.wait_for_sleepers(2)
    running.adapter.fail_next(1, unknown=True, reason="timed out")
    for _ in range(3):
        clock.advance(60)
        await clock.wait_for_sleepers(2)
    clock.advance(20)
    await next_event(events, TurnFinished)
    await ada.wait_for(1)
    assert [m.text for m in ada.received()] == ["Thought for 200 s about it. Done."]
    assert bubbles(running) == []  # the one that timed out may show: no other joins it
    assert await running.gateway.store.working_notices.all() == []

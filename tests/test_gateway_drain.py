"""Drain on a real gateway: markers before waiting, cleared per session, timeouts interrupted."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path

import pytest

from gateway_core.adapters.loopback import LoopbackAdapter
from gateway_core.clock import ManualClock
from gateway_core.events import DrainProgress, Subscription, TurnFinished
from gateway_core.gateway import DrainReport
from tests.support.harness import (
    next_event,
    open_store,
    start_gateway,
    wait_for_sleepers,
)

pytestmark = pytest.mark.both_backends


async def _run_out(
    clock: ManualClock, events: Subscription, drain: asyncio.Future[DrainReport]
) -> DrainReport:
    """Move the clock to the drain's deadline. Whether or not the drain's periodic re-check is
    armed yet, its next look at the clock finds the deadline passed and interrupts the rest."""
    progress = await next_event(events, DrainProgress)
    while not events.queue.empty():  # the latest view among what is already published
        event = events.queue.get_nowait()  # (not next_event: what is queued may hold none)
        if isinstance(event, DrainProgress):
            progress = event
    if progress.phase == "waiting":
        clock.advance(progress.seconds_left)
    return await drain


async def _record(state_dir: Path, clock: ManualClock, chat: str) -> tuple[str, str | None]:
    async with await open_store(state_dir, clock) as store:
        for session in await store.sessions.list():
            if session.key.chat_id == chat:
                record = await store.recovery.get(session.id)
                assert record is not None
                return str(record.state), record.reason
    raise AssertionError(f"no session {chat}")


async def test_one_session_finishes_in_the_window_and_one_does_not(
    tmp_path: Path, clock: ManualClock
) -> None:
    state = tmp_path / "state"
    running = await start_gateway(state, clock, notifier={"interval": 0}, gateway={"grace": 2})
    gateway = running.gateway
    quick, slow = running.adapter.user("quick"), running.adapter.user("slow")
    await quick.say("think 5")
    await slow.say("think 100")
    await wait_for_sleepers(clock, 2)
    events = gateway.events.subscribe()
    drain = asyncio.ensure_future(gateway.stop(10))

    progress = await next_event(events, DrainProgress)
    assert progress.phase == "marking" and progress.total == 2
    waiting = await next_event(events, DrainProgress)
    assert waiting.phase == "waiting"
    # Both were marked before the drain waited: a SIGKILL now would leave both markers.
    ids = {lane.session.key.chat_id: lane.session.id for lane in gateway.lanes.all()}
    for chat in ("quick", "slow"):
        record = await gateway.store.recovery.get(ids[chat])
        assert record is not None and (record.state, record.reason) == ("pending", "drain")

    clock.advance(5)  # the quick turn ends inside the window...
    finished = await next_event(events, TurnFinished)
    assert (finished.session_id, finished.outcome) == (ids["quick"], "completed")
    record = await gateway.store.recovery.get(ids["quick"])
    assert record is not None and record.state == "none"  # ...and its marker is gone at once

    report = await _run_out(clock, events, drain)
    assert report.clean is False
    assert (report.finished, report.interrupted) == ((ids["quick"],), (ids["slow"],))
    assert [m.text for m in quick.received()] == ["Thought for 5 s about it. Done."]
    assert slow.received() == []
    assert await _record(state, clock, "quick") == ("none", None)
    assert await _record(state, clock, "slow") == ("pending", "drain-timeout")
    async with await open_store(state, clock) as store:
        (run,) = await store.runs.recent(1)
        assert run.clean is False and run.stopped_at is not None


async def test_no_still_working_message_once_the_drain_started(
    tmp_path: Path, clock: ManualClock
) -> None:
    running = await start_gateway(tmp_path / "s", clock, notifier={"interval": 3})
    gateway = running.gateway
    ada = running.adapter.user("ada")
    await ada.say("think 100")
    await wait_for_sleepers(clock, 2)
    clock.advance(3)
    await ada.wait_for(1)  # the notifier works before the drain...
    events = gateway.events.subscribe()
    drain = asyncio.ensure_future(gateway.stop(10))
    await next_event(events, DrainProgress)
    sent_before = len(running.adapter.messages)
    await _run_out(clock, events, drain)
    # ...and after it started nothing new was sent and the notice was never edited again;
    # the interrupted turn's notice was removed.
    assert len(running.adapter.messages) == sent_before
    assert running.adapter.messages[0].edits == 0
    assert running.adapter.messages[0].deleted


async def test_a_drain_with_nothing_running_is_clean_and_immediate(
    tmp_path: Path, clock: ManualClock
) -> None:
    state = tmp_path / "state"
    running = await start_gateway(state, clock)
    ada = running.adapter.user("ada")
    await ada.say("hello")
    await ada.wait_for(1)
    report = await running.gateway.stop(30)
    assert report.clean is True and report.interrupted == ()
    async with await open_store(state, clock) as store:
        (run,) = await store.runs.recent(1)
        assert run.clean is True


async def test_kill_hooks_run_only_when_the_drain_timed_out(
    tmp_path: Path, clock: ManualClock
) -> None:
    calls: list[tuple[int, ...]] = []

    async def kill_tool_processes(sessions: Sequence[int]) -> None:
        calls.append(tuple(sessions))

    running = await start_gateway(tmp_path / "s", clock, notifier={"interval": 0})
    running.gateway.add_kill_hook(kill_tool_processes)
    await running.gateway.stop(5)
    assert calls == []

    running = await start_gateway(tmp_path / "s", clock, notifier={"interval": 0})
    running.gateway.add_kill_hook(kill_tool_processes)
    await running.adapter.user("ada").say('tool sleep {"seconds": 60}')
    await wait_for_sleepers(clock, 1)
    report = await running.gateway.stop(0)
    assert report.interrupted and calls == [report.interrupted]


async def test_stop_is_single_flight(tmp_path: Path, clock: ManualClock) -> None:
    running = await start_gateway(tmp_path / "s", clock)
    first, second = await asyncio.gather(running.gateway.stop(0), running.gateway.stop(0))
    assert first is second
    assert running.gateway.state.value == "stopped"


async def test_messages_during_a_drain_are_kept_for_the_next_run(
    tmp_path: Path, clock: ManualClock
) -> None:
    state = tmp_path / "state"
    running = await start_gateway(state, clock, notifier={"interval": 0})
    ada = running.adapter.user("ada")
    await ada.say("think 50")
    await wait_for_sleepers(clock, 1)
    await ada.say("and then this")  # queued behind the running turn
    await running.gateway.stop(0)
    again = await start_gateway(state, clock, adapter=running.adapter, notifier={"interval": 0})
    try:
        replies = [m.text for m in await ada.wait_for(2)]
        # The interrupted think is resumed first, then the queued message is answered.
        assert replies == [
            "Back after a restart. You had asked: 'think 50'",
            "You said: and then this",
        ]
    finally:
        await again.stop()


async def test_the_drain_kills_jobs_of_interrupted_turns_only(
    tmp_path: Path, clock: ManualClock
) -> None:
    state = tmp_path / "state"
    running = await start_gateway(state, clock, notifier={"interval": 0})
    gateway = running.gateway
    done_user, busy_user = running.adapter.user("done"), running.adapter.user("busy")
    await done_user.say("hello")
    await done_user.wait_for(1)
    await busy_user.say("think 500")
    await wait_for_sleepers(clock, 1)  # the busy turn thinks
    ids = {lane.session.key.chat_id: lane.session.id for lane in gateway.lanes.all()}
    kept = await gateway.processes.start("sleep 1000", session_id=ids["done"], generation=1)
    doomed = await gateway.processes.start("sleep 1000", session_id=ids["busy"], generation=1)
    views = {p.process_id: p for p in gateway.snapshot().processes}
    assert views[kept.id].state == views[doomed.id].state == "running"
    assert gateway.snapshot().counts.processes == 2

    report = await gateway.stop(0)
    assert report.interrupted == (ids["busy"],)
    assert doomed.state == "killed"
    assert kept.state == "running"  # a finished turn's job is left alone...

    again = await start_gateway(state, clock, adapter=running.adapter, notifier={"interval": 0})
    adopted = again.gateway.processes.get(kept.id)
    assert adopted is not None and adopted.detached and adopted.state == "running"
    assert (await again.gateway.processes.kill(kept.id, grace=0.5)).killed  # ...and re-adopted


class _BrokenOnClose(LoopbackAdapter):
    async def close(self) -> None:
        raise RuntimeError("the platform library blew up while closing")


async def test_a_step_that_fails_while_closing_still_leaves_the_gateway_stopped(
    tmp_path: Path, clock: ManualClock
) -> None:
    adapter = _BrokenOnClose()
    running = await start_gateway(tmp_path / "s", clock, adapter, notifier={"interval": 0})
    report = await running.gateway.stop(0)
    assert running.gateway.state.value == "stopped"
    await asyncio.wait_for(running.gateway.wait_stopped(), 5)
    assert report.clean  # nothing was interrupted; only the adapter's close failed
    again = await start_gateway(tmp_path / "s", clock, notifier={"interval": 0})
    assert again.gateway.state.value == "running"  # the store was closed properly

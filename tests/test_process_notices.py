"""Completion notices and watch matches reach the right conversation once, or not at all.

Real gateway, real store, real subprocesses; the agent's tool calls run inside real turns of
the scripted agent, so consumption races happen the way they do in production. Every
"nothing was delivered" is read from a BackgroundNotice event that says so, never from a sleep.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from gateway_core.adapters.loopback import LoopbackAdapter, LoopbackUser
from gateway_core.clock import ManualClock
from gateway_core.events import BackgroundNotice, Subscription, TurnStarted
from gateway_core.model import MessageKind
from gateway_core.processes.registry import TrackedProcess
from gateway_core.turn import Notice, RequestKind, TurnRequest
from tests.support.harness import Running, make_gateway, next_event, start_gateway, track


def gated(go: Path, then: str = "echo built") -> str:
    """A job that waits (bounded) until the test creates `go`, then does `then` and exits."""
    return f"for i in $(seq 400); do [ -e {go} ] && break; sleep 0.025; done; {then}"


async def notice_for(subscription: Subscription, process_id: str) -> BackgroundNotice:
    """The next settled BackgroundNotice of one job (queued ones are skipped)."""
    while True:
        event = await next_event(subscription, BackgroundNotice, within=20)
        if event.process_id == process_id and event.outcome != "queued":
            return event


async def start(tmp_path: Path, clock: ManualClock) -> Running:
    return await start_gateway(tmp_path / "s", clock, notifier={"interval": 0})


async def only_job(running: Running) -> TrackedProcess:
    (job,) = running.gateway.processes.all()
    return job


async def notice_rows(running: Running, session_id: int) -> list[str]:
    rows = await running.gateway.store.transcript.all(session_id)
    return [row.content for row in rows if row.kind == MessageKind.NOTICE]


async def job_started_by_the_agent(
    running: Running, user: LoopbackUser, command: str
) -> TrackedProcess:
    """The user asks for a background job with notify_on_complete; the agent starts it in a
    real turn (its reply is the user's first message)."""
    arguments = json.dumps({"command": command, "background": True, "notify_on_complete": True})
    await user.say(f"tool terminal {arguments}")
    await user.wait_for(1)
    return await only_job(running)


async def test_poll_only_the_completion_is_told_once_in_a_turn_of_its_own(
    tmp_path: Path, clock: ManualClock
) -> None:
    running = await start(tmp_path, clock)
    events = running.gateway.events.subscribe()
    ada = running.adapter.user("ada")
    go = tmp_path / "go"
    job = await job_started_by_the_agent(running, ada, gated(go))
    await ada.say(f'tool process {{"action": "poll", "process_id": "{job.id}"}}')
    await ada.wait_for(2)
    assert job.state == "running"
    go.touch()

    assert (await notice_for(events, job.id)).outcome == "delivered"
    replies = [m.text for m in await ada.wait_for(3)]
    assert replies[2].startswith(f"Background update: Background process {job.id} completed")
    session_id = job.record.session_id
    assert session_id is not None
    (told,) = await notice_rows(running, session_id)
    assert "built" in told and "Internal notification" in told
    stored = await running.gateway.store.processes.get(job.id)
    assert stored is not None and stored.consumed  # a restart will not tell it again


async def test_kill_by_the_agent_means_no_completion_notice(
    tmp_path: Path, clock: ManualClock
) -> None:
    running = await start(tmp_path, clock)
    events = running.gateway.events.subscribe()
    ada = running.adapter.user("ada")
    command = json.dumps({"command": "sleep 30", "background": True, "notify_on_complete": True})
    await ada.say(f"tool terminal {command}")
    await ada.wait_for(1)
    job = await only_job(running)
    await ada.say(f'tool process {{"action": "kill", "process_id": "{job.id}"}}')

    assert (await notice_for(events, job.id)).outcome == "dropped-consumed"
    await ada.wait_for(2)
    assert job.state == "killed"
    assert job.record.session_id is not None
    assert await notice_rows(running, job.record.session_id) == []


async def test_a_wait_that_saw_the_exit_means_no_completion_notice(
    tmp_path: Path, clock: ManualClock
) -> None:
    running = await start(tmp_path, clock)
    events = running.gateway.events.subscribe()
    ada = running.adapter.user("ada")
    go = tmp_path / "go"
    job = await job_started_by_the_agent(running, ada, gated(go))
    await ada.say(f'tool process {{"action": "wait", "process_id": "{job.id}", "timeout": 30}}')
    await next_event(events, TurnStarted)  # the waiting turn runs...
    go.touch()  # ...when the job ends: the completion is queued behind it, then found consumed

    assert (await notice_for(events, job.id)).outcome == "dropped-consumed"
    assert [m.text for m in await ada.wait_for(2)][1] == "Tool process finished."
    assert job.record.session_id is not None
    assert await notice_rows(running, job.record.session_id) == []


async def test_a_completion_owed_across_a_restart_is_told_once(
    tmp_path: Path, clock: ManualClock
) -> None:
    running = await start(tmp_path, clock)
    ada = running.adapter.user("ada")
    go = tmp_path / "go"
    job = await job_started_by_the_agent(running, ada, gated(go))
    await running.stop()  # the job keeps running without us
    go.touch()
    status = Path(str(job.record.log_path)).with_suffix(".status")
    async with asyncio.timeout(15):
        # A file has no event to wait on: poll it, bounded.
        while not status.exists():  # noqa: ASYNC110
            await asyncio.sleep(0.02)

    adapter = LoopbackAdapter()
    again = track(Running(make_gateway(running.gateway.config, clock, adapter), adapter))
    events = again.gateway.events.subscribe()  # before start: the boot pass tells it
    await again.gateway.start()
    assert (await notice_for(events, job.id)).outcome == "delivered"
    session_id = job.record.session_id
    assert session_id is not None
    await again.stop()

    third = await start(tmp_path, clock)
    assert len(await notice_rows(third, session_id)) == 1
    assert third.gateway.snapshot().processes == ()  # nothing left to adopt or tell


async def test_a_watch_match_of_the_running_turn_is_not_reinjected(
    tmp_path: Path, clock: ManualClock
) -> None:
    running = await start(tmp_path, clock)
    events = running.gateway.events.subscribe()
    ada = running.adapter.user("ada")
    await ada.say("think 30")
    turn = await next_event(events, TurnStarted)
    job = await running.gateway.processes.start(
        "echo READY",
        session_id=turn.session_id,
        generation=turn.generation,
        watch_patterns=("READY",),
    )
    assert (await notice_for(events, job.id)).outcome == "dropped-same-turn"
    assert await notice_rows(running, turn.session_id) == []


async def test_a_watch_match_stamped_before_the_session_moved_on_is_dropped(
    tmp_path: Path, clock: ManualClock
) -> None:
    running = await start(tmp_path, clock)
    events = running.gateway.events.subscribe()
    ada = running.adapter.user("ada")
    await ada.say("hello")
    first = await next_event(events, TurnStarted)
    await ada.wait_for(1)
    await ada.say("hello again")  # generation g+1: the conversation moved on
    await ada.wait_for(2)
    go = tmp_path / "go"
    job = await running.gateway.processes.start(
        gated(go, "echo READY"),
        session_id=first.session_id,
        generation=first.generation,
        watch_patterns=("READY",),
    )
    go.touch()
    assert (await notice_for(events, job.id)).outcome == "dropped-stale"
    assert await notice_rows(running, first.session_id) == []


async def test_a_watch_match_goes_to_its_own_topic_not_the_foreground_one(
    tmp_path: Path, clock: ManualClock
) -> None:
    running = await start(tmp_path, clock)
    events = running.gateway.events.subscribe()
    topic42 = running.adapter.user("group", "42", name="ada")
    topic7 = running.adapter.user("group", "7", name="bob")
    await topic42.say("hello")
    started = await next_event(events, TurnStarted)
    await topic42.wait_for(1)
    go = tmp_path / "go"
    job = await running.gateway.processes.start(
        gated(go, "echo 'ERROR disk full'"),
        session_id=started.session_id,
        generation=started.generation,
        watch_patterns=("ERROR",),
    )
    await topic7.say("think 30")  # the foreground conversation is topic 7, mid-turn
    await next_event(events, TurnStarted)
    go.touch()

    assert (await notice_for(events, job.id)).outcome == "delivered"
    told = await topic42.wait_for(2)
    assert "matched watch pattern" in told[1].text
    assert (told[1].chat_id, told[1].thread_id) == ("group", "42")
    assert topic7.received() == []  # still thinking, and nothing of topic 42 leaked in
    (row,) = await notice_rows(running, started.session_id)
    assert "ERROR disk full" in row


async def test_a_completion_after_the_conversation_moved_on_tells_the_user_briefly(
    tmp_path: Path, clock: ManualClock
) -> None:
    running = await start(tmp_path, clock)
    events = running.gateway.events.subscribe()
    ada = running.adapter.user("ada")
    go = tmp_path / "go"
    command = json.dumps(
        {"command": gated(go, "echo secret-output; exit 2"), "background": True,
         "notify_on_complete": True}
    )  # fmt: skip
    await ada.say(f"tool terminal {command}")
    await ada.wait_for(1)
    job = await only_job(running)
    await ada.say("something else")  # a newer turn: waking the agent now would be a phantom
    await ada.wait_for(2)
    go.touch()

    assert (await notice_for(events, job.id)).outcome == "told-user"
    told = (await ada.wait_for(3))[2].text
    assert told.startswith("❌ A background job hit a problem (exit 2)")
    assert "secret-output" not in told  # a receipt, not a log
    assert job.record.session_id is not None
    (row,) = await notice_rows(running, job.record.session_id)
    assert "secret-output" in row  # the agent reads it in its next turn's history


async def test_a_notice_queued_before_an_earlier_notice_took_the_job_over_is_still_told(
    tmp_path: Path, clock: ManualClock
) -> None:
    """The cap's last match and its "watch disabled" are stamped alike; the match's notice
    turn takes the job over, and the second notice must not then look stale."""
    running = await start(tmp_path, clock)
    events = running.gateway.events.subscribe()
    ada = running.adapter.user("ada")
    await ada.say("hello")
    started = await next_event(events, TurnStarted)
    await ada.wait_for(1)
    job = await running.gateway.processes.start(
        "sleep 30", session_id=started.session_id, generation=started.generation
    )
    lane = running.gateway.lanes.find(started.session_id)
    assert lane is not None
    for what in ("watch-match", "watch-disabled"):
        notice = Notice(job.id, started.generation, what, consumes=False)
        running.gateway.lanes.submit(
            lane.session, TurnRequest(RequestKind.NOTICE, f"[{what}]", notice=notice)
        )
    outcomes = [(await notice_for(events, job.id)).outcome for _ in range(2)]
    assert outcomes == ["delivered", "delivered"]
    assert len(await ada.wait_for(3)) == 3
    await running.gateway.processes.kill(job.id, grace=0.5)

"""Operator actions (Control) on a real gateway: each action, its refusals and its audit row.

Real parts only: a real store file, the loopback adapter, the scripted agent and a manual
clock. Recovery candidates are made the way production makes them: rows in the durable
transcript plus a marker, then a fresh boot whose recovery pass classifies them.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from gateway_core.clock import ManualClock
from gateway_core.control import MUTATING, ActionResult, Control
from gateway_core.events import DrainProgress, OperatorActed, TurnFinished
from gateway_core.gateway import Gateway
from gateway_core.lanes import Lane
from gateway_core.model import (
    MessageKind,
    Origin,
    RecoveryAction,
    RecoveryRecord,
    SessionKey,
)
from gateway_core.runtime import GatewayState
from gateway_core.store import DATABASE_NAME, Store
from tests.support.harness import Running, next_event, start_gateway
from tests.support.transcripts import asks, call, result, user

ACTOR = "alice"
UNKNOWN = 999

# What one audit row says: actor, action, targets, reason, outcome, detail.
AuditRow = tuple[str, str, tuple[str, ...], str | None, str, str | None]


def ok(action: str, targets: Sequence[int], detail: str, reason: str | None = None) -> AuditRow:
    return (ACTOR, action, tuple(str(t) for t in targets), reason, "ok", detail)


def refused(
    action: str, targets: Sequence[int | str], detail: str, reason: str | None = None
) -> AuditRow:
    return (ACTOR, action, tuple(str(t) for t in targets), reason, "refused", detail)


async def audit_rows(store: Store) -> list[AuditRow]:
    """Every audit row, oldest first."""
    entries = await store.audit.recent(1000)
    return [
        (e.actor, e.action, e.targets, e.reason, e.outcome, e.detail) for e in reversed(entries)
    ]


async def record_of(gateway: Gateway, session_id: int) -> RecoveryRecord:
    record = await gateway.store.recovery.get(session_id)
    assert record is not None
    return record


def candidate_states(gateway: Gateway) -> dict[int, str]:
    return {c.session_id: c.state for c in gateway.snapshot().candidates}


def state_of(gateway: Gateway) -> GatewayState:
    """The gateway's state, read fresh (a plain attribute read would be narrowed by mypy)."""
    return gateway.state


async def went_idle(lane: Lane, within: float = 10.0) -> None:
    """Wait (at most `within` s) until the lane's loop has nothing left to run."""
    async with asyncio.timeout(within):
        await lane.idle.wait()


def session_states(gateway: Gateway) -> dict[str, str]:
    return {s.chat_id: s.state for s in gateway.snapshot().sessions}


# -- fixtures -------------------------------------------------------------------------------


@pytest.fixture
async def running(tmp_path: Path, clock: ManualClock) -> AsyncIterator[Running]:
    gateway = await start_gateway(tmp_path / "state", clock)
    try:
        yield gateway
    finally:
        await gateway.stop()


@dataclass
class Recovering:
    """A gateway booted with two recovery candidates left by a crashed run."""

    running: Running
    held: int  # ada: interrupted during ./deploy.sh -> ambiguous-tool, held
    waiting: int  # bob: a clarify that timed out -> awaiting-user, pending (action wait)

    @property
    def gateway(self) -> Gateway:
        return self.running.gateway


async def _prepare_crashed_sessions(state_dir: Path, clock: ManualClock) -> tuple[int, int]:
    now = clock.now()
    store = await Store.open(state_dir / DATABASE_NAME, clock=clock)
    try:
        ada = await store.sessions.ensure(
            SessionKey("loopback", "ada"), Origin("loopback", "ada", user_name="Ada")
        )
        await store.transcript.append(
            ada.id,
            [user("deploy", now), asks(call("terminal", "t1", command="./deploy.sh"), at=now)],
        )
        bob = await store.sessions.ensure(
            SessionKey("loopback", "bob"), Origin("loopback", "bob", user_name="Bob")
        )
        await store.transcript.append(
            bob.id,
            [
                user("plan my trip", now),
                asks(call("clarify", "q1", question="Where to?"), at=now),
                result("q1", "[no reply]", now, kind=MessageKind.CLARIFY_TIMEOUT),
            ],
        )
        for session in (ada, bob):
            assert await store.recovery.mark(session.id, "crash")
    finally:
        await store.close()
    return ada.id, bob.id


@pytest.fixture
async def recovering(tmp_path: Path, clock: ManualClock) -> AsyncIterator[Recovering]:
    state_dir = tmp_path / "state"
    first = await start_gateway(state_dir, clock)
    await first.stop()
    held, waiting = await _prepare_crashed_sessions(state_dir, clock)
    # These tests count the replies users get after an action; what users are told when a
    # request is held is tested on its own (test_the_user_hears_about_a_held_request_once).
    second = await start_gateway(state_dir, clock, recovery={"notify_user": False})
    try:
        yield Recovering(second, held, waiting)
    finally:
        await second.stop()


async def test_the_boot_holds_the_risky_candidate_and_keeps_the_clarify_one_pending(
    recovering: Recovering,
) -> None:
    gateway = recovering.gateway
    boot = gateway.boot
    assert boot is not None
    actions = {c.session.id: c.decision.action for c in boot.candidates}
    assert actions == {
        recovering.held: RecoveryAction.HOLD,
        recovering.waiting: RecoveryAction.WAIT,
    }
    assert candidate_states(gateway) == {recovering.held: "held", recovering.waiting: "pending"}
    verdicts = {c.session_id: c.verdict for c in gateway.snapshot().candidates}
    assert verdicts == {recovering.held: "ambiguous-tool", recovering.waiting: "awaiting-user"}
    assert await audit_rows(gateway.store) == []


def test_every_public_action_of_control_counts_as_mutating() -> None:
    """The read-only guard covers exactly the actions Control offers."""
    actions = {
        name.replace("_", "-")
        for name, _ in inspect.getmembers(Control, inspect.iscoroutinefunction)
        if not name.startswith("_") and name != "perform"  # perform: any action, by name
    }
    assert actions == MUTATING


async def test_perform_reaches_every_action_by_name(recovering: Recovering) -> None:
    control = Control(recovering.gateway, read_only=True)
    for action in sorted(MUTATING):
        result = await control.perform(action, ["1"], actor=ACTOR, reason="r", timeout=0)
        assert result == ActionResult(False, "this console is read-only")
    unknown = await control.perform("explode", ["1"], actor=ACTOR)
    assert unknown == ActionResult(False, "unknown action 'explode'")


# -- approve --------------------------------------------------------------------------------


async def test_approve_runs_a_held_candidate_and_refuses_anything_else(
    recovering: Recovering,
) -> None:
    gateway, held, waiting = recovering.gateway, recovering.held, recovering.waiting
    control = Control(gateway)
    ada = recovering.running.adapter.user("ada", name="Ada")
    acted = gateway.events.subscribe()

    assert await control.approve(waiting, actor=ACTOR) == ActionResult(
        False, f"session {waiting} is not held (state pending)"
    )
    assert await control.approve(UNKNOWN, actor=ACTOR) == ActionResult(
        False, f"no session {UNKNOWN}"
    )
    assert (await record_of(gateway, waiting)).state == "pending"
    assert gateway.lanes.find(waiting) is None  # nothing was started for the pending one

    approved = await control.approve(held, actor=ACTOR)
    assert approved == ActionResult(True, f"session {held}: resume turn started")
    assert [m.text for m in await ada.wait_for(1)] == [
        "Back after a restart. You had asked: 'deploy'"
    ]
    rows = await gateway.store.transcript.all(held)
    assert [(m.role, m.kind) for m in rows[-2:]] == [
        ("user", MessageKind.RECOVERY_NOTE),
        ("assistant", "text"),
    ]
    # The resumed turn really completed, so the marker is gone: approving again is refused.
    assert (await record_of(gateway, held)).state == "none"
    assert await control.approve(held, actor=ACTOR) == ActionResult(
        False, f"session {held} is not held (state none)"
    )

    assert await audit_rows(gateway.store) == [
        refused("approve", [waiting], f"session {waiting} is not held (state pending)"),
        refused("approve", [UNKNOWN], f"no session {UNKNOWN}"),
        ok("approve", [held], f"session {held}: resume turn started"),
        refused("approve", [held], f"session {held} is not held (state none)"),
    ]
    events = [await next_event(acted, OperatorActed) for _ in range(4)]
    assert [(e.actor, e.action, e.targets, e.outcome) for e in events] == [
        (ACTOR, "approve", (str(waiting),), "refused"),
        (ACTOR, "approve", (str(UNKNOWN),), "refused"),
        (ACTOR, "approve", (str(held),), "ok"),
        (ACTOR, "approve", (str(held),), "refused"),
    ]


async def test_approve_is_refused_while_quiet_and_while_the_session_runs_a_turn(
    recovering: Recovering, clock: ManualClock
) -> None:
    gateway, held = recovering.gateway, recovering.held
    control = Control(gateway)
    ada = recovering.running.adapter.user("ada", name="Ada")

    assert (await control.quiet(actor=ACTOR)).ok
    assert await control.approve(held, actor=ACTOR) == ActionResult(
        False, "the gateway is quiet; no turn can start"
    )
    assert gateway.lanes.find(held) is None
    assert (await control.resume_intake(actor=ACTOR)).ok

    await ada.say("think 100")  # the user writes again: a normal turn starts
    await clock.wait_for_sleepers(2)
    assert await control.approve(held, actor=ACTOR) == ActionResult(
        False, f"session {held} is running a turn already"
    )
    assert (await record_of(gateway, held)).state == "held"
    clock.advance(100)
    assert [m.text for m in await ada.wait_for(1)] == ["Thought for 100 s about it. Done."]

    assert await audit_rows(gateway.store) == [
        ok("quiet", [], "quiet: messages are stored, no new turn starts"),
        refused("approve", [held], "the gateway is quiet; no turn can start"),
        ok("resume-intake", [], "intake resumed: queued messages run now"),
        refused("approve", [held], f"session {held} is running a turn already"),
    ]


async def test_an_approved_candidate_leaves_the_snapshot_once_its_turn_completed(
    recovering: Recovering,
) -> None:
    gateway, held = recovering.gateway, recovering.held
    ada = recovering.running.adapter.user("ada", name="Ada")
    assert (await Control(gateway).approve(held, actor=ACTOR)).ok
    await ada.wait_for(1)
    assert (await record_of(gateway, held)).state == "none"  # cleared with the reply's commit
    # The reply can reach ada before the turn's task has ended and asked the board to
    # refresh: wait until that refresh is published, not merely until the reply is sent.
    await gateway.wait_idle()
    assert held not in candidate_states(gateway)


# -- clear ----------------------------------------------------------------------------------


async def test_clear_drops_a_candidate_and_refuses_a_session_that_is_not_one(
    recovering: Recovering,
) -> None:
    gateway, held, waiting = recovering.gateway, recovering.held, recovering.waiting
    control = Control(gateway)
    acted = gateway.events.subscribe()

    assert await control.clear(held, actor=ACTOR) == ActionResult(
        True, f"session {held}: recovery marker cleared"
    )
    record = await record_of(gateway, held)
    assert (record.state, record.reason) == ("none", None)
    assert candidate_states(gateway) == {waiting: "pending"}  # the snapshot was refreshed
    assert gateway.lanes.find(held) is None  # cleared means: no turn is run for it

    assert await control.clear(held, actor=ACTOR) == ActionResult(
        False, f"session {held} is not a recovery candidate"
    )
    assert await control.clear(UNKNOWN, actor=ACTOR) == ActionResult(
        False, f"session {UNKNOWN} is not a recovery candidate"
    )

    assert await audit_rows(gateway.store) == [
        ok("clear", [held], f"session {held}: recovery marker cleared"),
        refused("clear", [held], f"session {held} is not a recovery candidate"),
        refused("clear", [UNKNOWN], f"session {UNKNOWN} is not a recovery candidate"),
    ]
    event = await next_event(acted, OperatorActed)
    assert (event.actor, event.action, event.targets, event.reason, event.outcome) == (
        ACTOR,
        "clear",
        (str(held),),
        None,
        "ok",
    )


# -- force-resume ---------------------------------------------------------------------------


async def test_force_resume_needs_a_reason(recovering: Recovering) -> None:
    gateway, held = recovering.gateway, recovering.held
    control = Control(gateway)
    for reason in ("", "   \t"):
        assert await control.force_resume(held, actor=ACTOR, reason=reason) == ActionResult(
            False, "force-resume needs a reason"
        )
    assert (await record_of(gateway, held)).state == "held"
    assert gateway.lanes.find(held) is None
    assert await audit_rows(gateway.store) == [
        refused("force-resume", [held], "force-resume needs a reason"),
        refused("force-resume", [held], "force-resume needs a reason"),
    ]


async def test_force_resume_runs_pending_and_held_candidates_and_refuses_the_rest(
    recovering: Recovering,
) -> None:
    gateway, held, waiting = recovering.gateway, recovering.held, recovering.waiting
    control = Control(gateway)
    ada = recovering.running.adapter.user("ada", name="Ada")
    bob = recovering.running.adapter.user("bob", name="Bob")

    pending = await control.force_resume(waiting, actor=ACTOR, reason="  Bob asked on the phone  ")
    assert pending == ActionResult(True, f"session {waiting}: resume turn started")
    assert [m.text for m in await bob.wait_for(1)] == [
        "Back after a restart. You had asked: 'plan my trip'"
    ]

    forced = await control.force_resume(held, actor=ACTOR, reason="deploy.sh is idempotent")
    assert forced == ActionResult(True, f"session {held}: resume turn started")
    assert [m.text for m in await ada.wait_for(1)] == [
        "Back after a restart. You had asked: 'deploy'"
    ]
    for session_id in (waiting, held):
        rows = await gateway.store.transcript.all(session_id)
        assert rows[-2].kind == MessageKind.RECOVERY_NOTE
        assert rows[-1].content.startswith("Back after a restart.")
        assert (await record_of(gateway, session_id)).state == "none"

    # Both turns completed: neither session is a candidate any more.
    assert await control.force_resume(held, actor=ACTOR, reason="again") == ActionResult(
        False, f"session {held} is not a recovery candidate (state none)"
    )
    assert await control.force_resume(UNKNOWN, actor=ACTOR, reason="why not") == ActionResult(
        False, f"no session {UNKNOWN}"
    )

    assert await audit_rows(gateway.store) == [
        ok(
            "force-resume",
            [waiting],
            f"session {waiting}: resume turn started",
            reason="Bob asked on the phone",
        ),
        ok(
            "force-resume",
            [held],
            f"session {held}: resume turn started",
            reason="deploy.sh is idempotent",
        ),
        refused(
            "force-resume",
            [held],
            f"session {held} is not a recovery candidate (state none)",
            reason="again",
        ),
        refused("force-resume", [UNKNOWN], f"no session {UNKNOWN}", reason="why not"),
    ]


# -- suspend / unsuspend --------------------------------------------------------------------


async def test_suspend_keeps_a_session_out_of_recovery_until_unsuspended(
    recovering: Recovering,
) -> None:
    gateway, held = recovering.gateway, recovering.held
    control = Control(gateway)

    assert await control.suspend(held, actor=ACTOR, reason="customer asked") == ActionResult(
        True, f"session {held} suspended: never resumed automatically"
    )
    record = await record_of(gateway, held)
    assert (record.state, record.reason) == ("suspended", "customer asked")
    assert candidate_states(gateway)[held] == "suspended"
    # A later drain or crash cannot mark it, and no operator shortcut resumes it.
    assert await gateway.store.recovery.mark(held, "drain") is False
    assert (await control.approve(held, actor=ACTOR)).ok is False
    assert (await control.force_resume(held, actor=ACTOR, reason="try")).ok is False
    assert (await control.clear(held, actor=ACTOR)).ok is False
    assert (await record_of(gateway, held)).state == "suspended"
    assert gateway.lanes.find(held) is None

    assert await control.unsuspend(held, actor=ACTOR) == ActionResult(
        True, f"session {held} is no longer suspended"
    )
    assert (await record_of(gateway, held)).state == "none"
    assert held not in candidate_states(gateway)
    assert await control.unsuspend(held, actor=ACTOR) == ActionResult(
        False, f"session {held} is not suspended"
    )
    assert await control.suspend(UNKNOWN, actor=ACTOR) == ActionResult(
        False, f"no session {UNKNOWN}"
    )
    assert await control.unsuspend(UNKNOWN, actor=ACTOR) == ActionResult(
        False, f"session {UNKNOWN} is not suspended"
    )
    # Unsuspended, it can be marked again.
    assert await gateway.store.recovery.mark(held, "drain") is True

    assert await audit_rows(gateway.store) == [
        ok(
            "suspend",
            [held],
            f"session {held} suspended: never resumed automatically",
            reason="customer asked",
        ),
        refused("approve", [held], f"session {held} is not held (state suspended)"),
        refused(
            "force-resume",
            [held],
            f"session {held} is not a recovery candidate (state suspended)",
            reason="try",
        ),
        refused("clear", [held], f"session {held} is not a recovery candidate"),
        ok("unsuspend", [held], f"session {held} is no longer suspended"),
        refused("unsuspend", [held], f"session {held} is not suspended"),
        refused("suspend", [UNKNOWN], f"no session {UNKNOWN}"),
        refused("unsuspend", [UNKNOWN], f"session {UNKNOWN} is not suspended"),
    ]


async def test_a_drain_interrupting_a_suspended_session_does_not_mark_it(
    tmp_path: Path, clock: ManualClock
) -> None:
    state_dir = tmp_path / "state"
    running = await start_gateway(state_dir, clock)
    try:
        ada = running.adapter.user("ada")
        await ada.say("think 100")
        await clock.wait_for_sleepers(2)
        session_id = running.gateway.lanes.all()[0].session.id
        control = Control(running.gateway)
        assert (await control.suspend(session_id, actor=ACTOR)).ok
        drained = await control.drain(actor=ACTOR, timeout=0)
        assert drained.ok and "1 interrupted" in drained.message
    finally:
        await running.stop()

    store = await Store.open(state_dir / DATABASE_NAME, clock=clock)
    try:
        record = await store.recovery.get(session_id)
        assert record is not None
        assert (record.state, record.reason) == ("suspended", "operator")
        assert (await audit_rows(store))[0] == ok(
            "suspend", [session_id], f"session {session_id} suspended: never resumed automatically"
        )
    finally:
        await store.close()

    # The next boot leaves it alone: no resume turn is queued for it.
    again = await start_gateway(state_dir, clock)
    try:
        boot = again.gateway.boot
        assert boot is not None
        assert [(c.session.id, c.decision.action) for c in boot.candidates] == [
            (session_id, RecoveryAction.SKIP)
        ]
        assert again.gateway.lanes.find(session_id) is None
    finally:
        await again.stop()


# -- interrupt ------------------------------------------------------------------------------


async def test_interrupt_stops_a_running_turn_and_is_refused_without_one(
    running: Running, clock: ManualClock
) -> None:
    gateway = running.gateway
    control = Control(gateway)
    finished = gateway.events.subscribe()
    ada = running.adapter.user("ada")
    await ada.say("hello")
    await ada.wait_for(1)
    lane = gateway.lanes.all()[0]
    sid = lane.session.id
    assert (await next_event(finished, TurnFinished)).outcome == "completed"
    await lane.idle.wait()  # its reply may go out before the turn's task has ended

    assert await control.interrupt(sid, actor=ACTOR) == ActionResult(
        False, f"session {sid} has no running turn"
    )
    assert await control.interrupt(UNKNOWN, actor=ACTOR) == ActionResult(
        False, f"session {UNKNOWN} has no running turn"
    )

    await ada.say("think 100")
    await clock.wait_for_sleepers(2)  # the turn's think and its notifier
    assert session_states(gateway) == {"ada": "running"}
    assert await control.interrupt(sid, actor=ACTOR) == ActionResult(
        True, f"session {sid}: turn interrupted"
    )
    await went_idle(lane)
    ended = await next_event(finished, TurnFinished)
    assert (ended.session_id, ended.generation, ended.outcome) == (sid, 2, "interrupted")
    assert lane.current is None
    assert session_states(gateway) == {"ada": "idle"}
    assert clock.sleepers == 0  # neither the think nor its notifier is still waiting
    assert [m.text for m in ada.received()] == ["You said: hello"]
    rows = await gateway.store.transcript.all(sid)
    assert [(m.role, m.content) for m in rows] == [
        ("user", "hello"),
        ("assistant", "You said: hello"),
        ("user", "think 100"),
    ]
    assert await control.interrupt(sid, actor=ACTOR) == ActionResult(
        False, f"session {sid} has no running turn"
    )

    # The session carries on normally.
    await ada.say("still there?")
    assert [m.text for m in await ada.wait_for(2)][-1] == "You said: still there?"

    assert await audit_rows(gateway.store) == [
        refused("interrupt", [sid], f"session {sid} has no running turn"),
        refused("interrupt", [UNKNOWN], f"session {UNKNOWN} has no running turn"),
        ok("interrupt", [sid], f"session {sid}: turn interrupted"),
        refused("interrupt", [sid], f"session {sid} has no running turn"),
    ]


# -- quiet / resume intake ------------------------------------------------------------------


async def test_quiet_stores_messages_without_starting_turns_until_intake_resumes(
    running: Running, clock: ManualClock
) -> None:
    gateway = running.gateway
    control = Control(gateway)
    ada = running.adapter.user("ada")
    bob = running.adapter.user("bob")

    assert await control.resume_intake(actor=ACTOR) == ActionResult(
        False, "not quiet (state running)"
    )
    await bob.say("think 100")
    await clock.wait_for_sleepers(2)

    assert await control.quiet(actor=ACTOR) == ActionResult(
        True, "quiet: messages are stored, no new turn starts"
    )
    assert state_of(gateway) is GatewayState.QUIET
    assert await control.quiet(actor=ACTOR) == ActionResult(False, "cannot go quiet while quiet")

    await ada.say("hello")
    await bob.say("follow-up")
    open_items = await gateway.store.inbox.open_items()
    assert [item.payload for item in open_items] == ['{"text": "hello"}', '{"text": "follow-up"}']
    assert session_states(gateway) == {"bob": "running", "ada": "queued"}
    ada_lane = next(lane for lane in gateway.lanes.all() if lane.session.key.chat_id == "ada")
    assert ada_lane.current is None and not ada_lane.busy

    # The running turn is not touched by quiet; its queued follow-up does not start.
    bob_lane = next(lane for lane in gateway.lanes.all() if lane.session.key.chat_id == "bob")
    clock.advance(100)
    assert [m.text for m in await bob.wait_for(1)] == ["Thought for 100 s about it. Done."]
    await went_idle(bob_lane)
    assert session_states(gateway) == {"bob": "queued", "ada": "queued"}
    assert len(await gateway.store.inbox.open_items()) == 2
    assert ada.received() == []

    assert await control.resume_intake(actor=ACTOR) == ActionResult(
        True, "intake resumed: queued messages run now"
    )
    assert state_of(gateway) is GatewayState.RUNNING
    assert [m.text for m in await ada.wait_for(1)] == ["You said: hello"]
    assert [m.text for m in await bob.wait_for(2)][-1] == "You said: follow-up"
    assert await gateway.store.inbox.open_items() == []
    assert await control.resume_intake(actor=ACTOR) == ActionResult(
        False, "not quiet (state running)"
    )

    assert await audit_rows(gateway.store) == [
        refused("resume-intake", [], "not quiet (state running)"),
        ok("quiet", [], "quiet: messages are stored, no new turn starts"),
        refused("quiet", [], "cannot go quiet while quiet"),
        ok("resume-intake", [], "intake resumed: queued messages run now"),
        refused("resume-intake", [], "not quiet (state running)"),
    ]


# -- drain ----------------------------------------------------------------------------------


async def test_drain_stops_the_gateway_and_its_audit_row_is_on_disk(
    tmp_path: Path, clock: ManualClock
) -> None:
    state_dir = tmp_path / "state"
    running = await start_gateway(state_dir, clock)
    try:
        gateway = running.gateway
        control = Control(gateway)
        assert await control.drain(actor=ACTOR, timeout=-1) == ActionResult(
            False, "drain timeout must be >= 0"
        )
        assert state_of(gateway) is GatewayState.RUNNING
        drained = await control.drain(actor=ACTOR, timeout=0)
        assert drained == ActionResult(True, "drained cleanly in 0.0 s (0 turns finished)")
        assert state_of(gateway) is GatewayState.STOPPED
        assert gateway.snapshot().state == "stopped"
    finally:
        await running.stop()

    store = await Store.open(state_dir / DATABASE_NAME, clock=clock)
    try:
        assert await audit_rows(store) == [
            refused("drain", [], "drain timeout must be >= 0"),
            ok("drain", [], "draining (0 s)"),
        ]
        (run,) = await store.runs.recent(1)
        assert run.clean is True and run.stopped_at is not None
    finally:
        await store.close()


async def test_a_drain_waits_for_running_turns_and_refuses_actions_meanwhile(
    tmp_path: Path, clock: ManualClock
) -> None:
    state_dir = tmp_path / "state"
    running = await start_gateway(state_dir, clock)
    try:
        gateway = running.gateway
        control = Control(gateway)
        ada = running.adapter.user("ada")
        await ada.say("think 100")
        await clock.wait_for_sleepers(2)
        sid = gateway.lanes.all()[0].session.id
        progress = gateway.events.subscribe()

        draining = asyncio.create_task(control.drain(actor=ACTOR, timeout=500))
        assert (await next_event(progress, DrainProgress)).phase == "marking"
        assert state_of(gateway) is GatewayState.DRAINING
        assert await control.drain(actor=ACTOR) == ActionResult(False, "the gateway is draining")
        assert await control.restart(actor=ACTOR) == ActionResult(False, "the gateway is draining")
        assert await control.quiet(actor=ACTOR) == ActionResult(
            False, "cannot go quiet while draining"
        )
        assert await control.resume_intake(actor=ACTOR) == ActionResult(
            False, "not quiet (state draining)"
        )
        assert (await record_of(gateway, sid)).reason == "drain"  # marked before waiting

        await clock.wait_for_sleepers(3)  # think, notifier and the drain's tick
        clock.advance(100)
        async with asyncio.timeout(10):
            drained = await draining
        assert drained == ActionResult(True, "drained cleanly in 100.0 s (1 turn finished)")
        assert [m.text for m in ada.received()] == ["Thought for 100 s about it. Done."]
        assert state_of(gateway) is GatewayState.STOPPED
    finally:
        await running.stop()

    store = await Store.open(state_dir / DATABASE_NAME, clock=clock)
    try:
        assert await audit_rows(store) == [
            ok("drain", [], "draining (500 s)"),
            refused("drain", [], "the gateway is draining"),
            refused("restart", [], "the gateway is draining"),
            refused("quiet", [], "cannot go quiet while draining"),
            refused("resume-intake", [], "not quiet (state draining)"),
        ]
        record = await store.recovery.get(sid)
        assert record is not None and record.state == "none"  # the turn finished in time
    finally:
        await store.close()


@pytest.mark.parametrize("action", ["drain", "restart"])
async def test_drain_or_restart_of_a_stopped_gateway_is_refused(
    running: Running, action: str
) -> None:
    control = Control(running.gateway)
    assert (await control.drain(actor=ACTOR, timeout=0)).ok
    again = (
        await control.drain(actor=ACTOR, timeout=0)
        if action == "drain"
        else await control.restart(actor=ACTOR, timeout=0)
    )
    assert again == ActionResult(False, "the gateway is stopped")


# -- restart --------------------------------------------------------------------------------


async def test_restart_brings_the_gateway_back_with_a_new_run_and_resumes_the_cut_turn(
    running: Running, clock: ManualClock
) -> None:
    gateway = running.gateway
    control = Control(gateway)
    ada = running.adapter.user("ada")
    await ada.say("think 100")
    await clock.wait_for_sleepers(2)
    sid = gateway.lanes.all()[0].session.id
    old_run = gateway.snapshot().run_id
    assert old_run is not None

    restarted = await control.restart(actor=ACTOR, timeout=0)
    assert restarted == ActionResult(
        True, f"restarted as run {old_run + 1}: 1 turn resumed, 0 held for an operator"
    )
    assert state_of(gateway) is GatewayState.RUNNING
    snapshot = gateway.snapshot()
    assert snapshot.state == "running" and snapshot.run_id == old_run + 1
    # The turn the restart cut off was resumed by the new run, and new messages work.
    assert [m.text for m in await ada.wait_for(1)] == [
        "Back after a restart. You had asked: 'think 100'"
    ]
    await ada.say("hello again")
    assert [m.text for m in await ada.wait_for(2)][-1] == "You said: hello again"
    runs = await gateway.store.runs.recent(2)
    assert [(r.id, r.clean) for r in runs] == [(old_run + 1, None), (old_run, False)]
    assert (await record_of(gateway, sid)).state == "none"

    assert await audit_rows(gateway.store) == [ok("restart", [], "restarting")]


# -- read-only ------------------------------------------------------------------------------


async def test_a_read_only_control_refuses_every_action_and_changes_nothing(
    recovering: Recovering, clock: ManualClock
) -> None:
    gateway, held, waiting = recovering.gateway, recovering.held, recovering.waiting
    carl = recovering.running.adapter.user("carl")
    await carl.say("think 100")
    await clock.wait_for_sleepers(2)
    busy = next(lane for lane in gateway.lanes.all() if lane.session.key.chat_id == "carl")
    run_id = gateway.snapshot().run_id
    control = Control(gateway, read_only=True)

    results = {
        "approve": await control.approve(held, actor=ACTOR),
        "clear": await control.clear(held, actor=ACTOR),
        "force-resume": await control.force_resume(held, actor=ACTOR, reason="because"),
        "suspend": await control.suspend(held, actor=ACTOR, reason="hush"),
        "unsuspend": await control.unsuspend(held, actor=ACTOR),
        "interrupt": await control.interrupt(busy.session.id, actor=ACTOR),
        "quiet": await control.quiet(actor=ACTOR),
        "resume-intake": await control.resume_intake(actor=ACTOR),
        "drain": await control.drain(actor=ACTOR, timeout=0),
        "restart": await control.restart(actor=ACTOR, timeout=0),
        "kill-process": await control.kill_process("proc_0", actor=ACTOR),
        "resend": await control.resend(1, actor=ACTOR),
        "reset-loop-guard": await control.reset_loop_guard(actor=ACTOR),
    }
    assert set(results) == MUTATING
    for _action, outcome in results.items():
        assert outcome == ActionResult(False, "this console is read-only")
        assert "read-only" in outcome.message

    def row(action: str, targets: Sequence[int | str], reason: str | None = None) -> AuditRow:
        return refused(action, targets, "this console is read-only", reason)

    assert await audit_rows(gateway.store) == [
        row("approve", [held]),
        row("clear", [held]),
        row("force-resume", [held], "because"),
        row("suspend", [held], "hush"),
        row("unsuspend", [held]),
        row("interrupt", [busy.session.id]),
        row("quiet", []),
        row("resume-intake", []),
        row("drain", []),
        row("restart", []),
        row("kill-process", ["proc_0"]),
        row("resend", [1]),
        row("reset-loop-guard", []),
    ]

    # Nothing changed: the candidates, the gateway, the run and the running turn.
    assert (await record_of(gateway, held)).state == "held"
    assert (await record_of(gateway, waiting)).state == "pending"
    assert candidate_states(gateway) == {held: "held", waiting: "pending"}
    assert state_of(gateway) is GatewayState.RUNNING
    assert gateway.snapshot().run_id == run_id
    assert busy.busy and gateway.lanes.find(held) is None
    clock.advance(100)
    assert [m.text for m in await carl.wait_for(1)] == ["Thought for 100 s about it. Done."]
    assert [m.text for m in recovering.running.adapter.messages] == [
        "Thought for 100 s about it. Done."
    ]


async def test_the_user_hears_about_a_held_request_once_and_approving_answers_it_once(
    tmp_path: Path, clock: ManualClock
) -> None:
    state_dir = tmp_path / "state"
    first = await start_gateway(state_dir, clock)
    await first.stop()
    held, _ = await _prepare_crashed_sessions(state_dir, clock)
    running = await start_gateway(state_dir, clock)
    try:
        ada = running.adapter.user("ada")
        notice = (
            "⚠️ Your request “deploy” was interrupted by a restart. An operator will review it "
            "before I continue."
        )
        assert [m.text for m in await ada.wait_for(1)] == [notice]
        control = Control(running.gateway)
        assert (await control.approve(held, actor=ACTOR)).ok
        # A second approval before the resume ran (a double click, two operators) is refused.
        again = await control.approve(held, actor=ACTOR)
        assert again.ok is False, again.message
        resumed = "Back after a restart. You had asked: 'deploy'"
        assert [m.text for m in await ada.wait_for(2)] == [notice, resumed]
        assert (await control.approve(held, actor=ACTOR)).ok is False  # no longer held
        await went_idle(running.gateway.lanes.find(held))  # type: ignore[arg-type]
        assert [m.text for m in ada.received()] == [notice, resumed]
    finally:
        await running.stop()


async def test_an_operator_clear_tells_the_user_once(tmp_path: Path, clock: ManualClock) -> None:
    state_dir = tmp_path / "state"
    first = await start_gateway(state_dir, clock)
    await first.stop()
    held, _ = await _prepare_crashed_sessions(state_dir, clock)
    running = await start_gateway(state_dir, clock)
    try:
        ada = running.adapter.user("ada")
        await ada.wait_for(1)  # held: an operator will review it
        control = Control(running.gateway)
        cleared = await control.clear(held, actor=ACTOR)
        assert cleared == ActionResult(
            True, f"session {held}: recovery marker cleared; the user was told"
        )
        texts = [m.text for m in await ada.wait_for(2)]
        assert texts[1] == (
            "⚠️ Your request “deploy” was interrupted by a restart, and an operator decided not "
            "to resume it. Send it again if you still need it."
        )
        assert (await control.clear(held, actor=ACTOR)).ok is False
        assert len(ada.received()) == 2
    finally:
        await running.stop()


async def test_an_operator_clear_quotes_a_request_far_behind_its_tool_calls(
    tmp_path: Path, clock: ManualClock
) -> None:
    """The request is 14 rows back, far beyond the boot's first read of each transcript: the
    clear's notice still quotes it (it reads back to the request, as the boot's scan does)."""
    state_dir = tmp_path / "state"
    first = await start_gateway(state_dir, clock)
    await first.stop()
    now = clock.now()
    async with await Store.open(state_dir / DATABASE_NAME, clock=clock) as store:
        ada = await store.sessions.ensure(
            SessionKey("loopback", "ada"), Origin("loopback", "ada", user_name="Ada")
        )
        rows = [user("deploy", now)]
        for i in range(6):
            rows += [asks(call("process", f"p{i}", action="poll"), at=now), result(f"p{i}")]
        rows.append(asks(call("terminal", "t1", command="./deploy.sh"), at=now))
        await store.transcript.append(ada.id, rows)
        assert await store.recovery.mark(ada.id, "crash")
    running = await start_gateway(state_dir, clock)
    try:
        user_ada = running.adapter.user("ada")
        await user_ada.wait_for(1)  # held: an operator will review it
        cleared = await Control(running.gateway).clear(ada.id, actor=ACTOR)
        assert cleared == ActionResult(
            True, f"session {ada.id}: recovery marker cleared; the user was told"
        )
        assert "“deploy”" in [m.text for m in await user_ada.wait_for(2)][1]
    finally:
        await running.stop()


async def test_resend_sends_a_reply_of_unknown_outcome_once_and_only_that(
    tmp_path: Path, clock: ManualClock
) -> None:
    # A reply the gateway died sending: never resent by itself; an operator who checked the
    # chat can send it again, once.
    state_dir = tmp_path / "state"
    first = await start_gateway(state_dir, clock)
    await first.stop()
    async with await Store.open(state_dir / DATABASE_NAME, clock=clock) as store:
        session = await store.sessions.ensure(
            SessionKey("loopback", "ada"), Origin("loopback", "ada", user_name="Ada")
        )
        item = await store.outbox.enqueue(session.id, 1, "reply", "the answer")
        assert await store.outbox.claim(item) is not None  # killed mid-send
        sent = await store.outbox.enqueue(session.id, 1, "reply", "an earlier one")
        await store.outbox.mark_sent(sent, "5")
    running = await start_gateway(state_dir, clock)
    try:
        gateway = running.gateway
        assert gateway.snapshot().counts.unknown_deliveries == 1
        assert running.adapter.messages == []
        control = Control(gateway)
        assert await control.resend(item, actor=ACTOR) == ActionResult(
            True, f"delivery {item} queued to be sent again"
        )
        ada = running.adapter.user("ada")
        assert [m.text for m in await ada.wait_for(1)] == ["the answer"]
        assert (await control.resend(item, actor=ACTOR)).ok is False  # sent now: not again
        assert (await control.resend(sent, actor=ACTOR)).ok is False  # never unknown
        assert gateway.snapshot().counts.unknown_deliveries == 0
        assert [m.text for m in ada.received()] == ["the answer"]
    finally:
        await running.stop()

"""The boot-time recovery pass on a real store: scan, loop guard, decisions applied durably."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from gateway_core.clock import ManualClock
from gateway_core.model import (
    Gate,
    MessageKind,
    NewMessage,
    Origin,
    RecoveryAction,
    Session,
    SessionKey,
)
from gateway_core.recovery import RecoveryPolicy
from gateway_core.recovery.startup import BootRecovery, recover_at_boot
from gateway_core.store import Store
from tests.support.transcripts import answer, asks, call, result, user

pytestmark = pytest.mark.both_backends

WEEK = 7 * 24 * 3600


async def _session(
    store: Store, name: str, rows: Sequence[NewMessage], origin: bool = True
) -> Session:
    key = SessionKey("loopback", name)
    session = await store.sessions.ensure(key, Origin("loopback", name) if origin else None)
    await store.transcript.append(session.id, list(rows))
    return session


async def _boot(store: Store, policy: RecoveryPolicy | None = None) -> BootRecovery:
    run = await store.runs.begin(pid=1)
    return await recover_at_boot(store, run, policy or RecoveryPolicy())


async def _state(store: Store, session: Session) -> tuple[str, str | None]:
    record = await store.recovery.get(session.id)
    assert record is not None
    return str(record.state), record.last_verdict


async def test_each_kind_of_tail_gets_its_action_and_it_is_stored(
    store: Store, clock: ManualClock
) -> None:
    now = clock.now()
    asked = await _session(store, "asked", [user("build it", now - 60)])
    answered = await _session(store, "answered", [user("hi", now - 60), answer("hello", now - 50)])
    ancient = await _session(store, "ancient", [user("pip install x", now - 6 * WEEK)])
    looped = await _session(
        store, "looped", [user("[System note: ...]", now - 30, kind=MessageKind.RECOVERY_NOTE)]
    )
    risky = await _session(
        store,
        "risky",
        [
            user("deploy", now - 90),
            asks(call("terminal", "t1", command="./deploy.sh"), at=now - 80),
        ],
    )
    waiting = await _session(
        store,
        "waiting",
        [
            user("plan my trip", now - 100),
            asks(call("clarify", "q1", question="Where to?"), at=now - 90),
            result("q1", "[no answer within 60 min]", now - 80, kind=MessageKind.CLARIFY_TIMEOUT),
        ],
    )
    nowhere = await _session(store, "nowhere", [user("x", now - 10)], origin=False)
    resting = await _session(store, "resting", [user("y", now - 10)])
    for session in (asked, answered, ancient, looped, risky, waiting, nowhere):
        # The marker is stamped now, as every restart does: it must not make anything fresh.
        assert await store.recovery.mark(session.id, "crash")
    await store.recovery.suspend(resting.id, "operator")

    boot = await _boot(store)

    actions = {c.session.key.chat_id: c.decision.action for c in boot.candidates}
    assert actions == {
        "asked": RecoveryAction.RESUME,
        "answered": RecoveryAction.CLEAR,
        "ancient": RecoveryAction.CLEAR,
        # Our note alone at the tail: a resume that was killed before it wrote anything.
        "looped": RecoveryAction.RESUME,
        "risky": RecoveryAction.HOLD,
        "waiting": RecoveryAction.WAIT,
        "nowhere": RecoveryAction.HOLD,
        "resting": RecoveryAction.SKIP,
    }
    assert await _state(store, asked) == ("pending", "resumable")
    assert await _state(store, answered) == ("none", "complete")
    assert await _state(store, ancient) == ("none", "stale")
    assert await _state(store, looped) == ("pending", "resumable")
    assert await _state(store, risky) == ("held", "ambiguous-tool")
    assert await _state(store, waiting) == ("pending", "awaiting-user")
    assert await _state(store, nowhere) == ("held", "no-origin")
    assert await _state(store, resting) == ("suspended", None)
    risky_decision = next(c.decision for c in boot.candidates if c.session.id == risky.id)
    assert risky_decision.unresolved_tools == ("terminal",)
    record = await store.recovery.get(risky.id)
    assert record is not None and "terminal" in (record.last_explanation or "")
    # Seven candidates (the suspended session does not count) are recorded on the run.
    assert (await store.runs.recent(1))[0].candidates == 7
    # The users whose requests are not resumed are told, in the decision's transaction: the
    # held one (risky; "nowhere" has no origin to tell) and the stale one.
    notices = {
        (await store.sessions.get(item.session_id)).key.chat_id: item.content  # type: ignore[union-attr]
        for item in await store.outbox.pending()
    }
    assert set(notices) == {"risky", "ancient"}
    assert "“deploy”" in notices["risky"] and "operator will review" in notices["risky"]
    assert "“pip install x”" in notices["ancient"] and "send it again" in notices["ancient"].lower()
    assert [c.notice_id is not None for c in boot.candidates if c.session.id == risky.id] == [True]
    # Exactly once: the next boot decides the held one again and tells nobody anything new.
    await _boot(store)
    assert len(await store.outbox.pending()) == 2
    record = await store.recovery.get(risky.id)
    assert record is not None and record.told == "held"


async def test_re_marking_on_every_restart_never_makes_an_old_task_fresh(
    store: Store, clock: ManualClock
) -> None:
    old = await _session(store, "old", [asks(call("process", "p1", action="poll"), at=clock.now())])
    for _ in range(4):
        clock.advance(1200)  # restarts 20 min apart, each re-stamping the marker
        await store.recovery.mark(old.id, "crash")
        boot = await _boot(store, RecoveryPolicy(loop_window=60))
        if boot.candidates[0].decision.action is RecoveryAction.CLEAR:
            break
    # 4 x 1200 s > 3600 s: the tail aged out although the marker was always brand new.
    assert boot.candidates[0].decision.verdict == "stale"
    assert await _state(store, old) == ("none", "stale")


async def test_the_third_quick_boot_with_candidates_holds_everything(
    store: Store, clock: ManualClock
) -> None:
    session = await _session(store, "s", [user("go", clock.now())])
    actions = []
    for _ in range(3):
        await store.recovery.mark(session.id, "crash")
        boot = await _boot(store)
        actions.append(boot.candidates[0].decision.action)
        assert boot.loop_guard_tripped is (len(actions) == 3)
        clock.advance(100)
    assert actions == [RecoveryAction.RESUME, RecoveryAction.RESUME, RecoveryAction.HOLD]
    record = await store.recovery.get(session.id)
    assert record is not None and record.state == "held"
    assert "loop guard" in (record.last_explanation or "")


async def test_a_quiet_gap_resets_the_loop_guard(store: Store, clock: ManualClock) -> None:
    session = await _session(store, "s", [user("go", clock.now())])
    for gap in (100, 400, 100):  # the 400 s gap breaks the chain
        await store.recovery.mark(session.id, "crash")
        await store.transcript.append(session.id, [user("again", clock.now())])
        boot = await _boot(store)
        assert boot.loop_guard_tripped is False
        clock.advance(gap)


async def test_boots_without_candidates_do_not_count_toward_the_guard(
    store: Store, clock: ManualClock
) -> None:
    session = await _session(store, "s", [user("go", clock.now())])
    for _ in range(5):
        await _boot(store)  # nothing marked: not part of any loop
        clock.advance(10)
    await store.recovery.mark(session.id, "crash")
    boot = await _boot(store)
    assert boot.loop_guard_tripped is False
    assert boot.candidates[0].decision.action is RecoveryAction.RESUME


async def test_operator_gate_holds_what_safe_would_resume(store: Store, clock: ManualClock) -> None:
    session = await _session(store, "s", [user("go", clock.now())])
    await store.recovery.mark(session.id, "drain-timeout")
    boot = await _boot(store, RecoveryPolicy(gate=Gate.OPERATOR))
    assert boot.with_action(RecoveryAction.HOLD)[0].session.id == session.id
    assert await _state(store, session) == ("held", "resumable")


async def test_a_turn_resumed_too_often_is_held(store: Store, clock: ManualClock) -> None:
    session = await _session(store, "s", [user("go", clock.now())])
    await store.recovery.mark(session.id, "crash")
    for _ in range(3):
        await store.recovery.begin_attempt(session.id)  # each resume died before completing
    boot = await _boot(store)
    decision = boot.candidates[0].decision
    assert (decision.verdict, decision.action) == ("resumable", RecoveryAction.HOLD)
    assert "3 times" in decision.explanation


async def test_a_tool_block_longer_than_the_tail_is_still_read_whole(
    store: Store, clock: ManualClock
) -> None:
    """The first read is short; a tail that starts mid-block is re-read wide enough."""
    now = clock.now()
    polls = [call("process", f"p{i}", action="poll") for i in range(30)]
    rows = [user("watch the jobs", now - 60), asks(*polls, at=now - 50)]
    rows += [result(f"p{i}", "running", now - 40) for i in range(29)]  # p29 unanswered
    session = await _session(store, "long", rows)
    await store.recovery.mark(session.id, "crash")
    boot = await _boot(store, RecoveryPolicy(tail_rows=5))
    decision = boot.candidates[0].decision
    # With only the last 5 rows it would look like orphan results (ambiguous); read whole,
    # it is one read-only call left to re-run.
    assert (decision.verdict, decision.action) == ("resumable", RecoveryAction.RESUME)
    assert "read-only process" in decision.explanation

"""Failover as a restart for the sessions a dead node owned: the loop guard per session (the
decision table's rows first, then the recovery pass of a takeover on a real store), and the
jobs a dead node ran on another machine (never looked up or signalled by PID here; settled
from the status its node recorded, or held as unknown). Store tests run on both backends."""

from __future__ import annotations

from pathlib import Path

import psutil
import pytest

from gateway_core.clock import ManualClock
from gateway_core.model import (
    JobRecord,
    Message,
    MessageKind,
    NewMessage,
    Origin,
    ProcessState,
    RecoveryAction,
    RecoveryRecord,
    RecoveryState,
    Session,
    SessionKey,
    Settlement,
    TurnKind,
    TurnOutcome,
    Verdict,
)
from gateway_core.processes.registry import ProcessRegistry
from gateway_core.recovery import RecoveryPolicy, decide
from gateway_core.recovery.startup import BootRecovery, loop_guard_tripped_for, recover_at_boot
from gateway_core.store import Store
from gateway_core.store.recovery_records import finish_turn_row
from gateway_core.store.sessions import promote_crashed_turns, start_turn_row
from gateway_core.store.transaction import Transaction
from gateway_core.store.turns import begin_row, end_row
from tests.support.transcripts import answer, asks, call, user

pytestmark = pytest.mark.both_backends

POLICY = RecoveryPolicy()  # loop_boots 3, loop_window 300 s
NOW = 1_700_000_000.0


# -- the decision table: the guard per session overrides a resume only -----------------------


def _decide(tail: list[NewMessage], *, session_loop: bool) -> tuple[Verdict, RecoveryAction, str]:
    record = RecoveryRecord(1, RecoveryState.PENDING, reason="crash", marked_at=NOW)
    decision = decide(
        record,
        Origin("telegram", "42"),
        [_stored(seq, row) for seq, row in enumerate(tail, start=1)],
        NOW,
        POLICY,
        session_loop=session_loop,
    )
    return decision.verdict, decision.action, decision.explanation


def _stored(seq: int, row: NewMessage) -> Message:
    """A transcript row as it is read back from the store."""
    return Message(
        session_id=1, seq=seq, role=row.role, content=row.content, kind=row.kind,
        tool_calls=row.tool_calls, tool_call_id=row.tool_call_id, tool_name=row.tool_name,
        finish_reason=row.finish_reason, generation=1, created_at=row.created_at,
    )  # fmt: skip


def test_row_a_resumable_session_whose_turns_keep_dying_with_their_node_is_held() -> None:
    verdict, action, why = _decide([user("build it", NOW - 30)], session_loop=True)
    assert (verdict, action) == (Verdict.RESUMABLE, RecoveryAction.HOLD)
    assert "loop guard tripped for this session" in why and "3 times in a row" in why
    # The same evidence without the chain resumes.
    assert _decide([user("build it", NOW - 30)], session_loop=False)[1] is RecoveryAction.RESUME


def test_row_the_guard_per_session_changes_no_other_verdict() -> None:
    done = [user("hi", NOW - 30), answer("hello", NOW - 20)]
    assert _decide(done, session_loop=True)[:2] == (Verdict.COMPLETE, RecoveryAction.CLEAR)
    asked = [user("go", NOW - 30), asks(call("clarify", "q1"), at=NOW - 20)]
    assert _decide(asked, session_loop=True)[:2] == (Verdict.AWAITING_USER, RecoveryAction.WAIT)
    stale = [user("pip install x", NOW - 7 * 86400)]
    assert _decide(stale, session_loop=True)[:2] == (Verdict.STALE, RecoveryAction.CLEAR)


def test_row_a_chain_is_loop_boots_crashes_each_within_the_window_of_the_last() -> None:
    assert loop_guard_tripped_for([NOW, NOW + 20, NOW + 40], POLICY) is True
    assert loop_guard_tripped_for([NOW, NOW + 200, NOW + 400, NOW + 600], POLICY) is True
    assert loop_guard_tripped_for([NOW, NOW + 20], POLICY) is False  # a single handover: no
    assert loop_guard_tripped_for([NOW, NOW + 400, NOW + 420], POLICY) is False  # a quiet gap
    assert loop_guard_tripped_for(None, POLICY) is False
    assert loop_guard_tripped_for([], POLICY) is False


# -- the recovery pass of a takeover, on a real store ----------------------------------------


async def _session(store: Store, name: str, rows: list[NewMessage]) -> Session:
    session = await store.sessions.ensure(
        SessionKey("loopback", name), Origin("loopback", name, user_name=name)
    )
    await store.transcript.append(session.id, rows)
    return session


async def _turn_runs(store: Store, session: Session, now: float) -> int:
    """A turn of the session starts on some node (and is left running: the node dies)."""

    def txn(db: Transaction) -> int:
        generation = start_turn_row(db, session.id, now)
        begin_row(db, session.id, generation, TurnKind.RESUME, None, now)
        return generation

    return await store.write(txn)


async def _take_over(store: Store, sessions: list[Session], clock: ManualClock) -> BootRecovery:
    """What a survivor does with the sessions of a node that died: promote, decide."""
    only = [session.id for session in sessions]
    await store.write(lambda db: promote_crashed_turns(db, clock.now(), only))
    run = (await store.runs.recent(1))[0]
    return await recover_at_boot(store, run, POLICY, only=only, takeover=True)


async def test_a_session_handed_over_again_and_again_mid_turn_is_held_at_the_third(
    store: Store, clock: ManualClock
) -> None:
    await store.runs.begin(pid=1)  # the survivor's own run
    session = await _session(store, "loop", [user("work 30", clock.now())])
    actions = []
    for _ in range(3):
        await _turn_runs(store, session, clock.now())  # resumed on a node, which then dies
        clock.advance(20)  # its lease lapses; another node takes the session over
        boot = await _take_over(store, [session], clock)
        actions.append(boot.candidates[0].decision.action)
    assert actions == [RecoveryAction.RESUME, RecoveryAction.RESUME, RecoveryAction.HOLD]
    record = await store.recovery.get(session.id)
    assert record is not None and record.state == RecoveryState.HELD
    assert "loop guard tripped for this session" in (record.last_explanation or "")
    (notice,) = await store.outbox.pending()  # the user is told once
    assert notice.session_id == session.id and "operator will review" in notice.content
    # Held stays held: another takeover (without a new crash) tells nobody anything new.
    clock.advance(20)
    boot = await _take_over(store, [session], clock)
    assert boot.candidates[0].decision.action is RecoveryAction.HOLD
    assert len(await store.outbox.pending()) == 1


async def test_a_takeover_of_a_healthy_session_does_not_trip_the_guard(
    store: Store, clock: ManualClock
) -> None:
    await store.runs.begin(pid=1)
    session = await _session(store, "ok", [user("work 30", clock.now())])
    for _ in range(2):  # two handovers mid-turn...
        await _turn_runs(store, session, clock.now())
        clock.advance(20)
        await _take_over(store, [session], clock)
    generation = await _turn_runs(store, session, clock.now())  # ...then a turn completes

    def completes(db: Transaction) -> None:
        end_row(db, session.id, generation, TurnOutcome.COMPLETED, clock.now())
        finish_turn_row(db, session.id, generation, clock.now())

    await store.write(completes)
    await store.transcript.append(session.id, [user("again", clock.now())])
    await _turn_runs(store, session, clock.now())  # and the next one's node dies
    clock.advance(20)
    boot = await _take_over(store, [session], clock)
    assert boot.candidates[0].decision.action is RecoveryAction.RESUME
    # A session taken over with no turn running (an idle one the node had answered) is no
    # candidate at all.
    idle = await _session(store, "idle", [user("hi", clock.now()), answer("hey", clock.now())])
    assert (await _take_over(store, [idle], clock)).candidates == ()


async def test_a_takeover_does_not_answer_to_the_boot_chain(
    store: Store, clock: ManualClock
) -> None:
    """Quick boots of the cluster's nodes are not a loop of a session they never ran."""
    marked = await _session(store, "marked", [user("go", clock.now())])
    for _ in range(3):  # three quick boots with candidates: the boot guard trips
        await store.recovery.mark(marked.id, "crash")
        booted = await recover_at_boot(store, await store.runs.begin(pid=1), POLICY)
        clock.advance(10)
    assert booted.loop_guard_tripped
    session = await _session(store, "fresh", [user("build it", clock.now())])
    await _turn_runs(store, session, clock.now())
    boot = await _take_over(store, [session], clock)
    assert not boot.loop_guard_tripped
    assert boot.candidates[0].decision.action is RecoveryAction.RESUME


# -- a dead node's jobs on another machine ---------------------------------------------------


def _foreign_job(
    session: Session,
    job_id: str,
    at: float,
    *,
    pid: int | None,
    started: float | None,
    state: ProcessState = ProcessState.RUNNING,
    exit_code: int | None = None,
    log_path: str | None = None,
) -> JobRecord:
    return JobRecord(
        id=job_id, session_id=session.id, generation=1, command="deploy", cwd=None, pid=pid,
        pid_started_at=started, notify_on_complete=False, watch_patterns=(), log_path=log_path,
        state=state, exit_code=exit_code, end_reason=None if state is ProcessState.RUNNING
        else "exited", consumed=False, started_at=at, tool_call_id=f"c-{job_id}",
        host="gone-host", node="node-a",
    )  # fmt: skip


async def test_a_job_on_another_host_is_never_adopted_by_pid_and_its_call_is_held(
    store: Store, clock: ManualClock, tmp_path: Path, live_process: psutil.Process
) -> None:
    await store.runs.begin(pid=1)
    at = clock.now()
    running = await _session(
        store,
        "running",
        [user("deploy it", at), asks(call("terminal", "c-j1", command="deploy"), at=at)],
    )
    finished = await _session(
        store,
        "finished",
        [user("test it", at), asks(call("terminal", "c-j2", command="test"), at=at)],
    )
    # The dead node's jobs: one it never saw end (its PID, by chance, is a live process of
    # this machine: a PID means nothing off its own host), one whose exit it recorded.
    await store.processes.save(
        _foreign_job(running, "j1", at, pid=live_process.pid, started=live_process.create_time())
    )
    log = tmp_path / "j2.log"
    log.write_text("this file is not the job's: its log is on gone-host\n")
    await store.processes.save(
        _foreign_job(
            finished, "j2", at, pid=4242, started=1.0, state=ProcessState.EXITED, exit_code=0,
            log_path=str(log),
        )
    )  # fmt: skip
    for session in (running, finished):
        await _turn_runs(store, session, at)
    clock.advance(20)
    registry = ProcessRegistry(store, clock, tmp_path / "jobs", host="this-host", node="node-b")
    taken = [running.id, finished.id]
    await store.write(lambda db: promote_crashed_turns(db, clock.now(), taken))
    assert await registry.adopt_jobs(taken) == []  # nothing watched by PID here
    j1 = await store.processes.get("j1")
    assert j1 is not None and j1.state is ProcessState.LOST
    assert j1.end_reason == (
        "ran on host gone-host (node node-a), which is gone; its outcome cannot be known here"
    )
    assert live_process.is_running() and live_process.status() != psutil.STATUS_ZOMBIE
    run = (await store.runs.recent(1))[0]
    boot = await recover_at_boot(store, run, POLICY, registry.log_tail, only=taken, takeover=True)
    decided = {c.session.id: c.decision for c in boot.candidates}
    held = decided[running.id]
    assert (held.verdict, held.action) == (Verdict.AMBIGUOUS_TOOL, RecoveryAction.HOLD)
    assert "ran on host gone-host" in held.explanation
    # The exit its node recorded settles the call; its output is not read from a path of
    # this machine.
    resumed = decided[finished.id]
    assert resumed.action is RecoveryAction.RESUME
    (settled,) = resumed.settled
    assert settled.how is Settlement.FINISHED and settled.exit_code == 0
    assert settled.result is not None and "not the job's" not in settled.result
    rows = await store.transcript.all(finished.id)
    assert rows[-1].kind == MessageKind.TOOL_RECOVERED
    # And nothing of this registry may signal the live process: it tracks no running job.
    assert [job.state for job in registry.all()] == [ProcessState.LOST]
    assert (await registry.kill("j1")).killed and live_process.is_running()


async def test_without_a_node_a_renamed_machine_keeps_its_jobs(
    store: Store, clock: ManualClock, tmp_path: Path, live_process: psutil.Process
) -> None:
    """SQLite is one machine per file: the recorded host is not consulted there."""
    session = await _session(store, "renamed", [user("deploy it", clock.now())])
    await store.processes.save(
        _foreign_job(
            session, "j3", clock.now(), pid=live_process.pid, started=live_process.create_time()
        )
    )
    registry = ProcessRegistry(store, clock, tmp_path / "jobs", host="new-name")
    try:
        (adopted,) = await registry.adopt_jobs()
        assert adopted.id == "j3" and adopted.state is ProcessState.RUNNING
    finally:
        await registry.close()

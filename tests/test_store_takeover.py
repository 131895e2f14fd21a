"""What a boot or a takeover does to a set of sessions, in the store, on both backends: each
step one statement for the whole set (not one per session), with the results the per-session
statements gave; the crash times the loop guard per session reads; where each job runs."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import Any

import pytest

from gateway_core.clock import ManualClock
from gateway_core.model import (
    Decision,
    JobRecord,
    Origin,
    ProcessState,
    RecoveryAction,
    RecoveryState,
    Session,
    SessionKey,
    TurnKind,
    TurnOutcome,
    Verdict,
)
from gateway_core.store import Store
from gateway_core.store.recovery_records import finish_turn_row
from gateway_core.store.sessions import promote_crashed_turns, start_turn_row
from gateway_core.store.transaction import Transaction
from gateway_core.store.turns import begin_row, end_row

pytestmark = pytest.mark.both_backends


async def _sessions(store: Store, count: int) -> list[Session]:
    return [
        await store.sessions.ensure(SessionKey("loopback", f"s{n}"), Origin("loopback", f"s{n}"))
        for n in range(count)
    ]


async def _start_turn(store: Store, session: Session, now: float) -> int:
    def txn(db: Transaction) -> int:
        generation = start_turn_row(db, session.id, now)
        begin_row(db, session.id, generation, TurnKind.MESSAGE, None, now)
        return generation

    return await store.write(txn)


async def _end_turn(store: Store, session: Session, generation: int, now: float) -> None:
    def txn(db: Transaction) -> None:
        end_row(db, session.id, generation, TurnOutcome.COMPLETED, now)
        finish_turn_row(db, session.id, generation, now)

    await store.write(txn)


async def _promote(store: Store, now: float, only: list[int] | None) -> list[int]:
    return await store.write(lambda db: promote_crashed_turns(db, now, only))


async def test_promoting_a_set_of_sessions_gives_what_promoting_each_one_gave(
    store: Store, clock: ManualClock
) -> None:
    s = await _sessions(store, 6)
    now = clock.now()
    for session in (s[0], s[1], s[2], s[3], s[5]):
        await _start_turn(store, session, now)
    await store.recovery.hold(s[5].id, _any_decision())  # an operator's hold stays a hold
    await store.recovery.mark(s[5].id, "crash")
    clock.advance(10)
    taken = [s[0].id, s[1].id, s[2].id, s[4].id, s[5].id]  # s3 is another node's, s4 idle
    promoted = await _promote(store, clock.now(), taken)
    assert promoted == sorted([s[0].id, s[1].id, s[2].id, s[5].id])
    for session in (s[0], s[1], s[2]):
        record = await store.recovery.get(session.id)
        assert record is not None and (record.state, record.reason) == ("pending", "crash")
        (turn,) = await store.turns.of_session(session.id)
        assert turn.outcome is TurnOutcome.CRASHED
    held = await store.recovery.get(s[5].id)
    assert held is not None and held.state == RecoveryState.HELD
    # Another node's running turn is left alone: still running, its session no candidate.
    (other,) = await store.turns.of_session(s[3].id)
    assert other.outcome is None
    untouched = await store.recovery.get(s[3].id)
    assert untouched is not None and untouched.state == RecoveryState.NONE
    idle = await store.recovery.get(s[4].id)
    assert idle is not None and idle.state == RecoveryState.NONE
    # At a SQLite boot (no set): everything still running, here s3.
    assert await _promote(store, clock.now(), None) == [s[3].id]
    # And nothing twice: promoted turns are no longer running.
    assert await _promote(store, clock.now(), taken) == []


async def test_each_step_is_one_statement_whatever_the_number_of_sessions(
    store: Store, clock: ManualClock
) -> None:
    sessions = await _sessions(store, 40)
    for session in sessions:
        await _start_turn(store, session, clock.now())
    counts = []
    for chosen in ([sessions[0]], sessions[1:]):
        only = [session.id for session in chosen]
        statements: list[str] = []
        counts.append(await store.write(_counting(statements, promote_crashed_turns, only)))
    assert counts[0] == counts[1] == 3, counts  # recovery, turns, sessions


def _counting(
    statements: list[str], step: Callable[[Any, float, list[int]], object], only: list[int]
) -> Callable[[Transaction], int]:
    """The step, counting the statements it sends (SQLite's trace; on PostgreSQL the
    transaction's execute is wrapped)."""

    def txn(db: Transaction) -> int:
        if isinstance(db, sqlite3.Connection):
            db.set_trace_callback(statements.append)
            try:
                step(db, 0.0, only)
            finally:
                db.set_trace_callback(None)
        else:
            step(_Counted(db, statements), 0.0, only)
        control = ("SAVEPOINT", "RELEASE")
        return len([s for s in statements if not s.lstrip().upper().startswith(control)])

    return txn


class _Counted:
    def __init__(self, db: Transaction, statements: list[str]) -> None:
        self._db, self._statements = db, statements

    def execute(self, sql: str, parameters: Any = (), /) -> Any:
        self._statements.append(sql)
        return self._db.execute(sql, parameters)


def _any_decision() -> Decision:
    return Decision(Verdict.AMBIGUOUS_TOOL, RecoveryAction.HOLD, "held by an operator")


async def test_the_takeover_reads_only_the_sessions_taken(store: Store, clock: ManualClock) -> None:
    s = await _sessions(store, 3)
    origin = Origin("loopback", "s0")
    replies = {
        session.id: await store.outbox.enqueue(session.id, 1, "reply", "hi") for session in s
    }
    sending = await store.outbox.claim(replies[s[1].id])
    assert sending is not None
    await store.outbox.claim(replies[s[2].id])
    for session in s:
        await store.working_notices.begin(session.id, 1, origin)
    for session in s:
        await store.recovery.mark(session.id, "crash")
    taken = [s[0].id, s[1].id]

    unknown = await store.outbox.mark_unknown_at_boot(taken)
    assert [item.id for item in unknown] == [replies[s[1].id]]
    assert (await store.outbox.get(replies[s[2].id])).status == "sending"  # type: ignore[union-attr]
    assert [item.session_id for item in await store.outbox.pending_of(taken)] == [s[0].id]
    assert [n.session_id for n in await store.working_notices.of_sessions(taken)] == taken
    assert [r.session_id for r, _ in await store.recovery.candidates(taken)] == taken
    assert len(await store.recovery.candidates()) == 3
    assert await store.outbox.pending_of([]) == []


async def test_jobs_record_their_host_and_node_and_are_read_by_session(
    store: Store, clock: ManualClock
) -> None:
    s = await _sessions(store, 2)
    for n, session in enumerate(s):
        await store.processes.save(_job(f"proc_{n}", session.id, host=f"host-{n}", node=f"n{n}"))
    await store.processes.save(
        _job("proc_ended", s[0].id, state=ProcessState.EXITED, exit_code=0, notify=True)
    )
    (mine,) = await store.processes.live([s[0].id])
    assert (mine.id, mine.host, mine.node) == ("proc_0", "host-0", "n0")
    assert len(await store.processes.live()) == 2
    assert [j.id for j in await store.processes.untold_completions([s[1].id])] == []
    assert [j.id for j in await store.processes.untold_completions([s[0].id])] == ["proc_ended"]
    # The host a job was started on is never rewritten by a later save.
    await store.processes.save(_job("proc_0", s[0].id, host="elsewhere", node="n9"))
    got = await store.processes.get("proc_0")
    assert got is not None and (got.host, got.node) == ("host-0", "n0")


def _job(
    job_id: str,
    session_id: int,
    *,
    host: str | None = None,
    node: str | None = None,
    state: ProcessState = ProcessState.RUNNING,
    exit_code: int | None = None,
    notify: bool = False,
) -> JobRecord:
    return JobRecord(
        id=job_id, session_id=session_id, generation=1, command="sleep 1", cwd=None, pid=None,
        pid_started_at=None, notify_on_complete=notify, watch_patterns=(), log_path=None,
        state=state, exit_code=exit_code, end_reason=None, consumed=False, started_at=1.0,
        tool_call_id=None, host=host, node=node,
    )  # fmt: skip


async def test_the_crash_chain_of_a_session_ends_at_a_turn_that_ended_otherwise(
    store: Store, clock: ManualClock
) -> None:
    looping, recovered, fresh = await _sessions(store, 3)
    times = []
    for _ in range(3):  # looping: three turns in a row died with their gateway
        await _start_turn(store, looping, clock.now())
        clock.advance(20)
        times.append(clock.now())
        await _promote(store, clock.now(), [looping.id])
    # recovered: two crashes, then a turn that completed, then one more crash.
    for n in range(4):
        generation = await _start_turn(store, recovered, clock.now())
        if n == 2:
            await _end_turn(store, recovered, generation, clock.now())
        else:
            clock.advance(1)
            await _promote(store, clock.now(), [recovered.id])
    last_crash = clock.now()
    await _start_turn(store, fresh, clock.now())  # still running: no crash
    chains = await store.turns.crash_chains([looping.id, recovered.id, fresh.id], depth=3)
    assert chains == {looping.id: times, recovered.id: [last_crash]}
    # At most `depth` of them, the newest.
    assert await store.turns.crash_chains([looping.id], depth=2) == {looping.id: times[1:]}
    assert await store.turns.crash_chains([], depth=3) == {}

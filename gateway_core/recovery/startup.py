"""The recovery pass a booting gateway runs before it takes new messages.

1. list every recovery record that is not 'none' (a partial index: only the candidates);
2. read the evidence in a few indexed queries: their transcripts from the user's request on
   (a short tail of each, read further back only where it does not reach the request:
   recovery/tails.py), their last turn rows, and the jobs their interrupted tool calls
   started (with the end of each job's output);
3. record this boot's candidate count and ask the loop guard about recent boots;
4. decide each candidate (the pure function in decision.py);
5. apply every decision in one transaction: the tool results the evidence recovered, the
   clear or hold, the verdict for the console, and the user's one notice where a request is
   not resumed automatically.

Starting the resume turns and sending the notices is the caller's job (the lanes own turns,
the deliverer owns sends); this returns which. `decide_again` runs steps 2, 4 and 5 for a few
sessions later in the run (after a job a candidate was waiting for ended).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Collection, Sequence
from dataclasses import dataclass

from gateway_core.model import (
    Decision,
    JobEvidence,
    JobRecord,
    Message,
    ProcessState,
    RecoveryAction,
    RecoveryRecord,
    RecoveryState,
    RunRecord,
    Session,
    positional_builder,
)
from gateway_core.recovery.decision import decide
from gateway_core.recovery.evidence import is_replayable, trailing_tool_block
from gateway_core.recovery.loop_guard import loop_guard_tripped
from gateway_core.recovery.policy import RecoveryPolicy
from gateway_core.recovery.tails import request_tails
from gateway_core.store import Store
from gateway_core.store.recovery_records import apply_decision_row
from gateway_core.store.transaction import Transaction

# Reads the end of a job's output (its log file) for a recovered tool result.
OutputOf = Callable[[JobRecord], Awaitable[str]]


async def _no_output(job: JobRecord) -> str:
    return ""


@dataclass(frozen=True, slots=True)
class Candidate:
    record: RecoveryRecord
    session: Session
    decision: Decision
    notice_id: int | None = None  # the outbox row of the user's notice, once applied


_candidate = positional_builder(Candidate)  # one per candidate at boot


@dataclass(frozen=True, slots=True)
class BootRecovery:
    run: RunRecord
    loop_guard_tripped: bool
    candidates: tuple[Candidate, ...]

    def with_action(self, action: RecoveryAction) -> list[Candidate]:
        return [c for c in self.candidates if c.decision.action is action]


async def _jobs_of(
    store: Store, tails: dict[int, list[Message]], output_of: OutputOf
) -> dict[int, dict[str, JobEvidence]]:
    """The job each unresolved tool call at the end of a tail started, per session."""
    wanted: list[tuple[int, str]] = []
    for session_id, tail in tails.items():
        if not any(m.tool_calls for m in tail):
            continue  # no row asked for a tool: no call is unresolved (most tails)
        block = trailing_tool_block([m for m in tail if is_replayable(m)])
        if block is not None:
            wanted.extend((session_id, call.id) for call in block.unresolved if call.id)
    if not wanted:
        return {}
    found = await store.processes.started_by(wanted)
    evidence: dict[int, dict[str, JobEvidence]] = {}
    for (session_id, call_id), job in found.items():
        evidence.setdefault(session_id, {})[call_id] = JobEvidence(
            process_id=job.id,
            tool_call_id=call_id,
            state=job.state,
            exit_code=job.exit_code,
            end_reason=job.end_reason,
            started_at=job.started_at,
            pid=job.pid,
            output_tail="" if job.state == ProcessState.RUNNING else await output_of(job),
        )
    return evidence


async def scan(
    store: Store,
    now: float,
    policy: RecoveryPolicy,
    *,
    records: Sequence[tuple[RecoveryRecord, Session]] | None = None,
    loop_guard_tripped: bool = False,
    output_of: OutputOf = _no_output,
) -> list[Candidate]:
    """Classify every candidate from durable evidence. Reads only; changes nothing."""
    if records is None:
        records = await store.recovery.candidates()
    readable = [r.session_id for r, _ in records if r.state != RecoveryState.SUSPENDED]
    # Each transcript from its user's request on: all the decision reads (recovery/tails.py).
    # Both at once: the reader runs them back to back (a round trip to its thread costs
    # more than the query when the machine is busy).
    tails, last_turns = await asyncio.gather(
        request_tails(store, readable, policy.tail_rows), store.turns.last(readable)
    )
    jobs = await _jobs_of(store, tails, output_of)
    return [
        _candidate(
            record,
            session,
            decide(
                record,
                session.origin,
                tails.get(record.session_id, ()),
                now,
                policy,
                loop_guard_tripped=loop_guard_tripped,
                last_turn=last_turns.get(record.session_id),
                jobs=jobs.get(record.session_id),
            ),
            None,
        )
        for record, session in records
    ]


async def apply(store: Store, candidates: Sequence[Candidate], now: float) -> list[Candidate]:
    """Apply decisions in one transaction; the returned candidates carry their notice ids."""

    def txn(db: Transaction) -> list[int | None]:
        return [apply_decision_row(db, c.record.session_id, c.decision, now) for c in candidates]

    notice_ids = await store.write(txn)
    return [
        Candidate(c.record, c.session, c.decision, notice_id)
        for c, notice_id in zip(candidates, notice_ids, strict=True)
    ]


async def recover_at_boot(
    store: Store,
    run: RunRecord,
    policy: RecoveryPolicy,
    output_of: OutputOf = _no_output,
    only: Collection[int] | None = None,
) -> BootRecovery:
    """`only`: on a node, the sessions it took over; another node's candidates are its own."""
    now = store.clock.now()
    records = await store.recovery.candidates()
    if only is not None:
        records = [(r, s) for r, s in records if r.session_id in only]
    active = sum(1 for r, _ in records if r.state != RecoveryState.SUSPENDED)
    await store.runs.set_candidates(run.id, active)
    tripped = False
    if active:
        # A chain of `loop_boots` boots spans at most loop_boots * loop_window seconds.
        since = now - policy.loop_window * policy.loop_boots
        earlier = await store.runs.candidate_boot_times(since, exclude_run=run.id)
        tripped = loop_guard_tripped(
            [*earlier, run.started_at], policy.loop_window, policy.loop_boots
        )
    candidates = await scan(
        store, now, policy, records=records, loop_guard_tripped=tripped, output_of=output_of
    )
    applied = await apply(store, candidates, now)
    return BootRecovery(run, tripped, tuple(applied))


async def decide_again(
    store: Store,
    session_ids: Sequence[int],
    policy: RecoveryPolicy,
    *,
    loop_guard_tripped: bool,
    output_of: OutputOf = _no_output,
) -> list[Candidate]:
    """Decide and apply again for a few candidates (a job they waited for has ended)."""
    wanted = set(session_ids)
    records = [(r, s) for r, s in await store.recovery.candidates() if r.session_id in wanted]
    if not records:
        return []
    now = store.clock.now()
    candidates = await scan(
        store, now, policy, records=records, loop_guard_tripped=loop_guard_tripped,
        output_of=output_of,
    )  # fmt: skip
    return await apply(store, candidates, now)

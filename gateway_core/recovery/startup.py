"""The recovery pass a booting gateway runs before it takes new messages.

1. list every recovery record that is not 'none' (a partial index: only the candidates);
2. read their transcript tails in one indexed query;
3. record this boot's candidate count and ask the loop guard about recent boots;
4. decide each candidate (the pure function in decision.py);
5. apply clear/hold and remember every verdict, all in one transaction.

Starting the resume turns is the caller's job (the lanes own turns); this returns which.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass

from gateway_core.model import (
    Decision,
    Message,
    RecoveryAction,
    RecoveryRecord,
    RecoveryState,
    Role,
    RunRecord,
    Session,
)
from gateway_core.recovery.decision import decide
from gateway_core.recovery.evidence import is_replayable
from gateway_core.recovery.loop_guard import loop_guard_tripped
from gateway_core.recovery.policy import RecoveryPolicy
from gateway_core.store import Store
from gateway_core.store.recovery_records import apply_decision_row

WIDEN_FACTOR = 50


def _starts_mid_block(tail: Sequence[Message], limit: int) -> bool:
    if len(tail) < limit:
        return False  # the whole transcript was read
    return tail[0].role == Role.TOOL or not any(is_replayable(m) for m in tail)


@dataclass(frozen=True, slots=True)
class Candidate:
    record: RecoveryRecord
    session: Session
    decision: Decision


@dataclass(frozen=True, slots=True)
class BootRecovery:
    run: RunRecord
    loop_guard_tripped: bool
    candidates: tuple[Candidate, ...]

    def with_action(self, action: RecoveryAction) -> list[Candidate]:
        return [c for c in self.candidates if c.decision.action is action]


async def scan(
    store: Store,
    now: float,
    policy: RecoveryPolicy,
    *,
    records: Sequence[tuple[RecoveryRecord, Session]] | None = None,
    loop_guard_tripped: bool = False,
) -> list[Candidate]:
    """Classify every candidate from durable evidence. Reads only; changes nothing."""
    if records is None:
        records = await store.recovery.candidates()
    readable = [r.session_id for r, _ in records if r.state != RecoveryState.SUSPENDED]
    tails = await store.transcript.tails(readable, policy.tail_rows)
    # A short tail is enough for almost every session; re-read the few whose tail starts in
    # the middle of a tool block (or holds no evidence at all) with a window wide enough to
    # reach the assistant row that asked for those tools.
    cut = [sid for sid, tail in tails.items() if _starts_mid_block(tail, policy.tail_rows)]
    if cut:
        tails.update(await store.transcript.tails(cut, policy.tail_rows * WIDEN_FACTOR))
    return [
        Candidate(
            record,
            session,
            decide(
                record,
                session.origin,
                tails.get(record.session_id, ()),
                now,
                policy,
                loop_guard_tripped=loop_guard_tripped,
            ),
        )
        for record, session in records
    ]


async def recover_at_boot(store: Store, run: RunRecord, policy: RecoveryPolicy) -> BootRecovery:
    now = store.clock.now()
    records = await store.recovery.candidates()
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
    candidates = await scan(store, now, policy, records=records, loop_guard_tripped=tripped)

    def apply(db: sqlite3.Connection) -> None:
        for candidate in candidates:
            apply_decision_row(db, candidate.record.session_id, candidate.decision, now)

    await store.write(apply)
    return BootRecovery(run, tripped, tuple(candidates))

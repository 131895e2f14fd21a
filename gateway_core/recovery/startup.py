"""The recovery pass a booting gateway runs before it takes new messages.

1. list every recovery record that is not 'none' (a partial index: only the candidates'
   ids and states);
2. read the evidence in a few indexed queries per chunk of candidates, every chunk's reads
   asked for at once (side by side on several read connections when the listing found the
   pages on the disk): their records and sessions, their transcripts from the user's request
   on (recovery/tails.py), their last turn rows and crash chains; then the jobs their
   interrupted tool calls started (with the end of each job's output);
3. record this boot's candidate count and ask the loop guard about recent boots (and about
   each candidate's own chain of turns found dead: the guard per session);
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
    TurnRecord,
)
from gateway_core.quick_init import positional_builder
from gateway_core.recovery.decision import decide
from gateway_core.recovery.evidence import is_replayable, trailing_tool_block
from gateway_core.recovery.loop_guard import loop_guard_tripped
from gateway_core.recovery.policy import RecoveryPolicy
from gateway_core.recovery.tails import request_tails
from gateway_core.storage_reads import storage_read_bytes
from gateway_core.store import Store
from gateway_core.store.bulk_reads import BulkReads
from gateway_core.store.recovery_records import apply_decision_row
from gateway_core.store.store import BULK_READ_CONNECTIONS
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


# Below this many candidates the scan reads on the store's reader alone: a pool's threads and
# connections would cost more than reading side by side saves.
PARALLEL_FROM = 64
# The most sessions in one chunk of reads (each read is one query per chunk; the store cuts
# larger sets itself).
CHUNK = 500


@dataclass(slots=True)
class _Evidence:
    """What the reads of one chunk of candidates found."""

    records: list[tuple[RecoveryRecord, Session]] | None
    tails: dict[int, list[Message]]
    last_turns: dict[int, TurnRecord]
    crashes: dict[int, list[float]]


async def _read_chunk(
    reads: BulkReads,
    chunk: Sequence[tuple[int, RecoveryState]],
    policy: RecoveryPolicy,
    with_records: bool,
) -> _Evidence:
    """Every read of one chunk, asked for at once: on a pool they run side by side."""
    readable = [sid for sid, state in chunk if state != RecoveryState.SUSPENDED]
    records, tails, last_turns, crashes = await asyncio.gather(
        reads.recovery.candidates([sid for sid, _ in chunk]) if with_records else _nothing(),
        request_tails(reads.transcript, readable, policy.tail_rows),
        reads.turns.last(readable),
        reads.turns.crash_chains(readable, policy.loop_boots),
    )
    return _Evidence(records, tails, last_turns, crashes)


async def _nothing() -> None:
    return None


def _chunks(
    listed: Sequence[tuple[int, RecoveryState]], parallel: int
) -> list[Sequence[tuple[int, RecoveryState]]]:
    """`parallel` chunks of about equal size (more when that would exceed CHUNK), in order."""
    if not listed:
        return []
    count = max(parallel, -(-len(listed) // CHUNK))
    size = -(-len(listed) // count)
    return [listed[start : start + size] for start in range(0, len(listed), size)]


async def scan(
    store: Store,
    now: float,
    policy: RecoveryPolicy,
    *,
    records: Sequence[tuple[RecoveryRecord, Session]] | None = None,
    only: Collection[int] | None = None,
    loop_guard_tripped: bool = False,
    output_of: OutputOf = _no_output,
    read_connections: int | None = None,
) -> list[Candidate]:
    """Classify every candidate (`only`: of these sessions), or the given records, from
    durable evidence. Reads only; changes nothing.

    The candidates are listed from the partial index alone; then their records, transcripts
    from the request on, last turns and crash chains are read in chunks, all side by side on
    the store's bulk reads: `read_connections` at once (default: `_connections`, several
    only when there are many candidates and the listing found its pages on the disk)."""
    if records is None:
        listed, from_disk = await _list(store, only)
    else:
        listed, from_disk = [(r.session_id, r.state) for r, _ in records], True
    connections = read_connections
    if connections is None:
        connections = _connections(len(listed), from_disk)
    return await _scan_listed(
        store, now, policy, listed, records, loop_guard_tripped, output_of, connections
    )


async def _list(
    store: Store, only: Collection[int] | None
) -> tuple[list[tuple[int, RecoveryState]], bool]:
    """The candidates from the partial index, and whether that read had to go to the disk
    (or nobody can tell): if it did, the scan's other pages are most likely not in the OS's
    page cache either."""
    before = storage_read_bytes()
    listed = await store.recovery.candidate_states(only)
    after = storage_read_bytes()
    return listed, before is None or after is None or after > before


def _connections(candidates: int, from_disk: bool) -> int:
    """How many connections the scan reads on at once. Side by side only for many
    candidates whose pages come from the disk: the disk serves several random reads at once,
    while pages already in memory are read faster by one thread than by several contending
    for the interpreter (each row a thread fetches takes and gives back the GIL)."""
    return BULK_READ_CONNECTIONS if from_disk and candidates >= PARALLEL_FROM else 1


async def _scan_listed(
    store: Store,
    now: float,
    policy: RecoveryPolicy,
    listed: Sequence[tuple[int, RecoveryState]],
    records: Sequence[tuple[RecoveryRecord, Session]] | None,
    loop_guard_tripped: bool,
    output_of: OutputOf,
    connections: int,
) -> list[Candidate]:
    async with store.bulk_reads(connections) as reads:
        parts = await asyncio.gather(
            *(
                _read_chunk(reads, chunk, policy, records is None)
                for chunk in _chunks(listed, reads.parallel)
            )
        )
    if records is None:
        records = [pair for part in parts for pair in part.records or ()]
    tails: dict[int, list[Message]] = {}
    last_turns: dict[int, TurnRecord] = {}
    crashes: dict[int, list[float]] = {}
    for part in parts:
        tails.update(part.tails)
        last_turns.update(part.last_turns)
        crashes.update(part.crashes)
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
                session_loop=loop_guard_tripped_for(crashes.get(record.session_id), policy),
                last_turn=last_turns.get(record.session_id),
                jobs=jobs.get(record.session_id),
            ),
            None,
        )
        for record, session in records
    ]


def loop_guard_tripped_for(crashed_at: Sequence[float] | None, policy: RecoveryPolicy) -> bool:
    """The loop guard per session, from when its last turns were found dead (oldest first)."""
    return bool(crashed_at) and loop_guard_tripped(
        crashed_at or (), policy.loop_window, policy.loop_boots
    )


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
    *,
    takeover: bool = False,
) -> BootRecovery:
    """`only`: on a node, the sessions it took over; another node's candidates are its own.
    `takeover`: not a boot but sessions taken over later in the run: the same pass, except
    that the run's candidate count and the boot-chain guard are a boot's (the guard per
    session applies to both)."""
    now = store.clock.now()
    listed, from_disk = await _list(store, only)
    active = sum(1 for _, state in listed if state != RecoveryState.SUSPENDED)
    if not takeover:
        await store.runs.set_candidates(run.id, active)
    tripped = False
    if active and not takeover:
        # A chain of `loop_boots` boots spans at most loop_boots * loop_window seconds.
        since = now - policy.loop_window * policy.loop_boots
        earlier = await store.runs.candidate_boot_times(since, exclude_run=run.id)
        tripped = loop_guard_tripped(
            [*earlier, run.started_at], policy.loop_window, policy.loop_boots
        )
    connections = _connections(len(listed), from_disk)
    candidates = await _scan_listed(
        store, now, policy, listed, None, tripped, output_of, connections
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
    now = store.clock.now()
    candidates = await scan(
        store, now, policy, only=session_ids, loop_guard_tripped=loop_guard_tripped,
        output_of=output_of,
    )  # fmt: skip
    if not candidates:
        return []
    return await apply(store, candidates, now)

"""Checkpoints of background processes, for re-adoption after a restart."""

from __future__ import annotations

import json
from collections.abc import Collection, Sequence
from typing import Any

from gateway_core.model import JobRecord, ProcessState
from gateway_core.safe_json import parse_json
from gateway_core.store.id_sets import IN_IDS, ids_param
from gateway_core.store.transaction import RowReader, Transaction, TransactionQueue

_COLUMNS = (
    "id, session_id, generation, command, cwd, pid, pid_started_at, notify_on_complete,"
    " watch_patterns, log_path, state, exit_code, end_reason, consumed, started_at, ended_at,"
    " tool_call_id, host, node"
)


def _job_state(raw: object) -> ProcessState:
    """A state this version does not know (a newer one wrote it) is read as "lost": the job
    is not watched as running, and a tool call it settles stays of unknown effect."""
    try:
        return ProcessState(str(raw))
    except ValueError:
        return ProcessState.LOST


def _decode(row: tuple[Any, ...]) -> JobRecord:
    decoded = parse_json(row[8])
    patterns = tuple(str(p) for p in decoded) if isinstance(decoded, list) else ()
    return JobRecord(
        id=row[0],
        session_id=row[1],
        generation=int(row[2]),
        command=row[3],
        cwd=row[4],
        pid=row[5],
        pid_started_at=row[6],
        notify_on_complete=bool(row[7]),
        watch_patterns=patterns,
        log_path=row[9],
        state=_job_state(row[10]),
        exit_code=row[11],
        end_reason=row[12],
        consumed=bool(row[13]),
        started_at=float(row[14]),
        ended_at=row[15],
        tool_call_id=row[16],
        host=row[17],
        node=row[18],
    )


def hand_over_row(db: Transaction, process_id: str, generation: int, *, consume: bool) -> bool:
    """Inside a notice turn's start transaction: the turn takes the job over (its later
    events are stamped with this generation) and, for a completion, consumes it. False when
    the completion was consumed already (by wait, log or kill): nothing is to be told."""
    row = db.execute("SELECT consumed FROM processes WHERE id = ?", (process_id,)).fetchone()
    if row is None or (consume and row[0]):
        return False
    db.execute(
        "UPDATE processes SET generation = MAX(generation, ?), consumed = consumed OR ?"
        " WHERE id = ?",
        (generation, int(consume), process_id),
    )
    return True


def owner_generation_row(db: Transaction, process_id: str) -> int | None:
    row = db.execute("SELECT generation FROM processes WHERE id = ?", (process_id,)).fetchone()
    return None if row is None else int(row[0])


def reply_to_of_job_row(db: Transaction, process_id: str) -> str | None:
    """The platform id of the request whose turn started the job (None: not known)."""
    row = db.execute("SELECT reply_to FROM processes WHERE id = ?", (process_id,)).fetchone()
    return None if row is None or row[0] is None else str(row[0])


def is_consumed_row(db: Transaction, process_id: str) -> bool:
    row = db.execute("SELECT consumed FROM processes WHERE id = ?", (process_id,)).fetchone()
    return row is None or bool(row[0])


class Processes:
    def __init__(self, writer: TransactionQueue, reader: RowReader) -> None:
        self._writer, self._reader = writer, reader

    async def save(self, record: JobRecord) -> None:
        c = record
        params = (
            c.id, c.session_id, c.generation, c.command, c.cwd, c.pid, c.pid_started_at,
            int(c.notify_on_complete), json.dumps(list(c.watch_patterns)), c.log_path, c.state,
            c.exit_code, c.end_reason, int(c.consumed), c.started_at, c.ended_at, c.tool_call_id,
            c.host, c.node,
        )  # fmt: skip

        def txn(db: Transaction) -> None:
            # An upsert, not a replace: the owning generation and consumption only ever move
            # forward, even if this in-memory copy is older than what a notice turn's start
            # transaction wrote meanwhile.
            # The first save names the request of the turn that started the job (its notices
            # are answers to it) and the host and node it runs on; these are never updated,
            # whoever owns the job later.
            db.execute(
                f"INSERT INTO processes ({_COLUMNS}, reply_to)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?,"
                "  (SELECT reply_to FROM turns WHERE session_id = ? AND generation = ?))"
                " ON CONFLICT(id) DO UPDATE SET"
                " generation = MAX(processes.generation, excluded.generation),"
                " consumed = MAX(processes.consumed, excluded.consumed),"
                " notify_on_complete = excluded.notify_on_complete,"
                " state = excluded.state, exit_code = excluded.exit_code,"
                " end_reason = excluded.end_reason, ended_at = excluded.ended_at,"
                " pid = excluded.pid, pid_started_at = excluded.pid_started_at",
                (*params, c.session_id, c.generation),
            )

        await self._writer.submit(txn)

    async def live(self, only: Collection[int] | None = None) -> list[JobRecord]:
        """Jobs recorded running (`only`: those of these sessions, on a node taking them over)."""
        if only is None:
            rows = await self._reader.all(
                f"SELECT {_COLUMNS} FROM processes WHERE state = 'running' ORDER BY started_at"
            )
        else:
            rows = await self._reader.all(
                f"SELECT {_COLUMNS} FROM processes WHERE state = 'running'"
                f" AND session_id {IN_IDS} ORDER BY started_at",
                (ids_param(only),),
            )
        return [_decode(row) for row in rows]

    async def untold_completions(self, only: Collection[int] | None = None) -> list[JobRecord]:
        """Ended jobs whose completion notice is still owed (crash or stop before it ran);
        `only`: of these sessions."""
        where = "" if only is None else f" AND session_id {IN_IDS}"
        rows = await self._reader.all(
            f"SELECT {_COLUMNS} FROM processes WHERE state != 'running'"
            " AND notify_on_complete != 0 AND consumed = 0 AND session_id IS NOT NULL"
            f"{where} ORDER BY ended_at",
            () if only is None else (ids_param(only),),
        )
        return [_decode(row) for row in rows]

    async def started_by(
        self, calls: Sequence[tuple[int, str]]
    ) -> dict[tuple[int, str], JobRecord]:
        """The job each (session, tool call) started, newest first wins (a tool call id is
        only unique within its turn; the caller checks the job started after the call)."""
        wanted = set(calls)
        found: dict[tuple[int, str], JobRecord] = {}
        call_ids = sorted({call_id for _, call_id in wanted})
        for start in range(0, len(call_ids), 500):  # under SQLite's bound-parameter limit
            chunk = call_ids[start : start + 500]
            marks = ",".join("?" * len(chunk))
            rows = await self._reader.all(
                f"SELECT {_COLUMNS} FROM processes INDEXED BY processes_by_tool_call"
                f" WHERE tool_call_id IN ({marks}) ORDER BY started_at",
                tuple(chunk),
            )
            for row in rows:
                job = _decode(row)
                if job.session_id is not None and job.tool_call_id is not None:
                    key = (job.session_id, job.tool_call_id)
                    if key in wanted:
                        found[key] = job  # ordered by start: the newest stays
        return found

    async def get(self, process_id: str) -> JobRecord | None:
        row = await self._reader.one(
            f"SELECT {_COLUMNS} FROM processes WHERE id = ?", (process_id,)
        )
        return None if row is None else _decode(row)

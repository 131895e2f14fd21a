"""One row per turn: what kind it was, which boot ran it, and how it ended.

A turn's row is written in its start transaction and closed in its end transaction (or by the
interruption that cancelled it). A row still open at boot belonged to a gateway that died
under it: the boot closes it as crashed. Restart recovery reads the last row of a candidate to
tell a resume that was killed while it ran from one that ran to its end and wrote nothing.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from enum import StrEnum
from typing import Any, TypeVar

from gateway_core.model import TurnKind, TurnOutcome, TurnRecord
from gateway_core.store.codec import decode_timestamp
from gateway_core.store.id_sets import IN_IDS, ids_param
from gateway_core.store.transaction import RowReader, Transaction

_COLUMNS = "session_id, generation, kind, run_id, started_at, ended_at, outcome"
E = TypeVar("E", bound=StrEnum)


def decode_turn(row: tuple[Any, ...]) -> TurnRecord:
    session_id, generation, kind, run_id, started_at, ended_at, outcome = row
    return TurnRecord(
        session_id=int(session_id),
        generation=int(generation),
        kind=_enum(TurnKind, kind, TurnKind.MESSAGE),
        run_id=None if run_id is None else int(run_id),
        started_at=decode_timestamp(started_at) or 0.0,
        ended_at=decode_timestamp(ended_at),
        # An outcome this version does not know counts as an interruption: a resume is then
        # attempted again, and the attempt limit still ends it.
        outcome=None if outcome is None else _enum(TurnOutcome, outcome, TurnOutcome.CRASHED),
    )


def _enum(kind: type[E], raw: object, unknown: E) -> E:
    try:
        return kind(str(raw))
    except ValueError:
        return unknown


def begin_row(
    db: Transaction,
    session_id: int,
    generation: int,
    kind: TurnKind,
    run_id: int | None,
    now: float,
    reply_to: str | None = None,
) -> None:
    """Inside a turn's start transaction. reply_to: the platform id of the request the
    turn answers."""
    # An upsert with REPLACE's effect (the row written anew, its end cleared), in the
    # spelling both backends accept.
    db.execute(
        "INSERT INTO turns (session_id, generation, kind, run_id, started_at, reply_to)"
        " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (session_id, generation) DO UPDATE SET"
        " kind = excluded.kind, run_id = excluded.run_id, started_at = excluded.started_at,"
        " reply_to = excluded.reply_to, ended_at = NULL, outcome = NULL",
        (session_id, generation, str(kind), run_id, now, reply_to),
    )


def reply_to_row(db: Transaction, session_id: int, generation: int | None = None) -> str | None:
    """Inside a transaction: the request a turn answers; without a generation, the request
    of the session's newest turn that has one (what a resume or a recovery notice is about:
    the interrupted request, however many resumes were interrupted since)."""
    if generation is not None:
        row = db.execute(
            "SELECT reply_to FROM turns WHERE session_id = ? AND generation = ?",
            (session_id, generation),
        ).fetchone()
    else:
        row = db.execute(
            "SELECT reply_to FROM turns WHERE session_id = ? AND reply_to IS NOT NULL"
            " ORDER BY generation DESC LIMIT 1",
            (session_id,),
        ).fetchone()
    return None if row is None or row[0] is None else str(row[0])


def end_row(
    db: Transaction, session_id: int, generation: int, outcome: TurnOutcome, now: float
) -> None:
    """Inside a turn's end (or interruption) transaction. Only an open row is closed: a turn
    the boot already found crashed keeps that outcome."""
    db.execute(
        "UPDATE turns SET outcome = ?, ended_at = ?"
        " WHERE session_id = ? AND generation = ? AND outcome IS NULL",
        (str(outcome), now, session_id, generation),
    )


def close_crashed_rows(db: Transaction, now: float, only: Collection[int] | None = None) -> int:
    """At boot: every turn still open died with the previous run (its end time is unknown;
    `recovered_at` is when it was found dead, the restart-loop guard's evidence). On a node,
    `only` the sessions it took over (the others' turns may be running): one statement for
    the whole set."""
    if only is not None:
        cursor = db.execute(
            f"UPDATE turns SET outcome = ?, recovered_at = ? WHERE session_id {IN_IDS}"
            " AND outcome IS NULL",
            (str(TurnOutcome.CRASHED), now, ids_param(only)),
        )
        return cursor.rowcount
    cursor = db.execute(
        "UPDATE turns INDEXED BY turns_open SET outcome = ?, recovered_at = ?"
        " WHERE outcome IS NULL",
        (str(TurnOutcome.CRASHED), now),
    )
    return cursor.rowcount


# The newest turn rows of each of a set of sessions, newest first (the loop guard's read).
_RECENT_SQL = (
    "SELECT session_id, outcome, recovered_at FROM ("
    " SELECT session_id, outcome, recovered_at, row_number() OVER"
    " (PARTITION BY session_id ORDER BY generation DESC) AS newest"
    f" FROM turns WHERE session_id {IN_IDS}) AS recent"
    " WHERE newest <= ? ORDER BY session_id, newest"
)


def _last_sql(count: int) -> str:
    marks = ",".join("?" * count)
    return (
        f"SELECT {_COLUMNS} FROM turns WHERE (session_id, generation) IN"
        f" (SELECT session_id, max(generation) FROM turns WHERE session_id IN ({marks})"
        "  GROUP BY session_id)"
    )


class Turns:
    def __init__(self, reader: RowReader) -> None:
        self._reader = reader

    async def last(self, session_ids: Iterable[int]) -> dict[int, TurnRecord]:
        """The newest turn row of each session that has one (the recovery scan's read)."""
        ids = list(session_ids)
        found: dict[int, TurnRecord] = {}
        for start in range(0, len(ids), 500):  # under SQLite's bound-parameter limit
            chunk = ids[start : start + 500]
            for row in await self._reader.all(_last_sql(len(chunk)), tuple(chunk)):
                turn = decode_turn(row)
                found[turn.session_id] = turn
        return found

    async def crash_chains(self, session_ids: Iterable[int], depth: int) -> dict[int, list[float]]:
        """For each session, when its newest turns were found dead with their gateway (at a
        boot or a takeover), oldest first: the unbroken run of crashed turns at the end of
        its history, at most `depth` of them. A turn that ended any other way (completed,
        failed, interrupted by a drain) ends the run: a session that got through a turn is
        not in a loop. Sessions with no such crash are left out. One query for the set."""
        ids = list(session_ids)
        if not ids or depth <= 0:
            return {}
        rows = await self._reader.all(_RECENT_SQL, (ids_param(ids), depth))
        chains: dict[int, list[float]] = {}
        broken: set[int] = set()
        for session_id, outcome, recovered_at in rows:  # newest first within each session
            sid = int(session_id)
            if sid in broken:
                continue
            found = decode_timestamp(recovered_at)
            if outcome != str(TurnOutcome.CRASHED) or found is None:
                broken.add(sid)
                continue
            chains.setdefault(sid, []).insert(0, found)
        return chains

    async def of_session(self, session_id: int, limit: int = 100) -> list[TurnRecord]:
        """A session's turns, newest first."""
        rows = await self._reader.all(
            f"SELECT {_COLUMNS} FROM turns WHERE session_id = ? ORDER BY generation DESC LIMIT ?",
            (session_id, limit),
        )
        return [decode_turn(row) for row in rows]

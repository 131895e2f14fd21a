"""The explicit recovery record of each session: a small state machine, not flags.

none ─mark─▶ pending ─(scan)─▶ held | resuming | none
                 ▲                  │
                 └──── mark ────────┘        suspended: never leaves by itself
"""

from __future__ import annotations

import sqlite3
from typing import Any

from gateway_core.clock import Clock
from gateway_core.model import Decision, RecoveryRecord, RecoveryState, Session
from gateway_core.store.codec import SESSION_COLUMNS, decode_session, decode_timestamp
from gateway_core.store.reader import Reader
from gateway_core.store.writer import Writer

_COLUMNS = (
    "session_id, state, reason, marked_at, last_verdict, last_explanation, attempts,"
    " last_attempt_at, updated_at"
)


CANDIDATES_SQL = (
    "SELECT "
    + ", ".join(f"r.{c.strip()}" for c in _COLUMNS.split(","))
    + ", "
    + ", ".join(f"s.{c.strip()}" for c in SESSION_COLUMNS.split(","))
    + " FROM recovery AS r INDEXED BY recovery_candidates JOIN sessions AS s ON s.id = r.session_id"
    " WHERE r.state != 'none' ORDER BY r.session_id"
)


def decode_record(row: tuple[Any, ...]) -> RecoveryRecord:
    sid, state, reason, marked_at, verdict, explanation, attempts, last_attempt, updated = row
    return RecoveryRecord(
        session_id=int(sid),
        state=str(state),
        reason=reason,
        marked_at=decode_timestamp(marked_at),
        last_verdict=verdict,
        last_explanation=explanation,
        attempts=int(attempts or 0),
        last_attempt_at=decode_timestamp(last_attempt),
        updated_at=decode_timestamp(updated),
    )


def mark_row(db: sqlite3.Connection, session_id: int, reason: str, now: float) -> bool:
    """Mark inside an open transaction. Refuses (False) for unknown or suspended sessions.

    A held or resuming record keeps its state (an operator decision or a running resume is
    not undone by a new mark); its reason and mark time are refreshed.
    """
    cursor = db.execute(
        "UPDATE recovery SET"
        " state = CASE WHEN state IN ('held', 'resuming') THEN state ELSE 'pending' END,"
        " reason = ?, marked_at = ?, updated_at = ?"
        " WHERE session_id = ? AND state != 'suspended'",
        (reason, now, now, session_id),
    )
    return cursor.rowcount == 1


def clear_row(db: sqlite3.Connection, session_id: int, now: float) -> bool:
    """Drop the marker inside an open transaction; False if there was none (or suspended)."""
    cursor = db.execute(
        "UPDATE recovery SET state = 'none', reason = NULL, marked_at = NULL, attempts = 0,"
        " updated_at = ? WHERE session_id = ? AND state IN ('pending', 'held', 'resuming')",
        (now, session_id),
    )
    return cursor.rowcount == 1


def begin_attempt_row(db: sqlite3.Connection, session_id: int, now: float) -> RecoveryRecord | None:
    """Inside an open transaction: a resume turn starts (state resuming, one more attempt).
    None if the session is not a candidate."""
    row = db.execute(
        "UPDATE recovery SET state = 'resuming', attempts = attempts + 1,"
        " last_attempt_at = ?, updated_at = ?"
        " WHERE session_id = ? AND state IN ('pending', 'held', 'resuming')"
        f" RETURNING {_COLUMNS}",
        (now, now, session_id),
    ).fetchone()
    return None if row is None else decode_record(row)


class RecoveryRecords:
    def __init__(self, writer: Writer, reader: Reader, clock: Clock) -> None:
        self._writer, self._reader, self._clock = writer, reader, clock

    async def get(self, session_id: int) -> RecoveryRecord | None:
        row = await self._reader.one(
            f"SELECT {_COLUMNS} FROM recovery WHERE session_id = ?", (session_id,)
        )
        return None if row is None else decode_record(row)

    async def mark(self, session_id: int, reason: str) -> bool:
        now = self._clock.now()
        return await self._writer.submit(lambda db: mark_row(db, session_id, reason, now))

    async def mark_many(self, session_ids: list[int], reason: str) -> list[int]:
        """Mark several sessions in one commit; returns the ids that were marked."""
        now = self._clock.now()

        def job(db: sqlite3.Connection) -> list[int]:
            return [sid for sid in session_ids if mark_row(db, sid, reason, now)]

        return await self._writer.submit(job)

    async def clear(self, session_id: int) -> bool:
        now = self._clock.now()
        return await self._writer.submit(lambda db: clear_row(db, session_id, now))

    async def hold(self, session_id: int, decision: Decision) -> bool:
        return await self._set_state(session_id, RecoveryState.HELD, decision)

    async def begin_attempt(self, session_id: int) -> RecoveryRecord | None:
        """A resume turn starts: state resuming, one more attempt. None if not a candidate."""
        now = self._clock.now()
        return await self._writer.submit(lambda db: begin_attempt_row(db, session_id, now))

    async def suspend(self, session_id: int, reason: str) -> bool:
        now = self._clock.now()

        def job(db: sqlite3.Connection) -> bool:
            cursor = db.execute(
                "UPDATE recovery SET state = 'suspended', reason = ?, updated_at = ?"
                " WHERE session_id = ?",
                (reason, now, session_id),
            )
            return cursor.rowcount == 1

        return await self._writer.submit(job)

    async def unsuspend(self, session_id: int) -> bool:
        now = self._clock.now()

        def job(db: sqlite3.Connection) -> bool:
            cursor = db.execute(
                "UPDATE recovery SET state = 'none', reason = NULL, marked_at = NULL,"
                " attempts = 0, updated_at = ? WHERE session_id = ? AND state = 'suspended'",
                (now, session_id),
            )
            return cursor.rowcount == 1

        return await self._writer.submit(job)

    async def candidates(self) -> list[tuple[RecoveryRecord, Session]]:
        """Every record that is not 'none', with its session. Reads the partial index only."""
        rows = await self._reader.all(CANDIDATES_SQL)
        width = len(_COLUMNS.split(","))
        return [(decode_record(row[:width]), decode_session(row[width:])) for row in rows]

    async def _set_state(
        self, session_id: int, state: RecoveryState | None, decision: Decision
    ) -> bool:
        now = self._clock.now()

        def job(db: sqlite3.Connection) -> bool:
            cursor = db.execute(
                "UPDATE recovery SET state = coalesce(?, state), last_verdict = ?,"
                " last_explanation = ?, updated_at = ?"
                " WHERE session_id = ? AND state != 'suspended'",
                (
                    None if state is None else str(state),
                    str(decision.verdict),
                    decision.explanation,
                    now,
                    session_id,
                ),
            )
            return cursor.rowcount == 1

        return await self._writer.submit(job)


def apply_decision_row(
    db: sqlite3.Connection, session_id: int, decision: Decision, now: float
) -> None:
    """Apply a startup decision inside an open transaction.

    clear drops the marker; hold parks the record for an operator; every other action keeps
    the state (a resume turn moves it to resuming when it really starts). The verdict and its
    explanation are always remembered for the console.
    """
    action = str(decision.action)
    if action == "skip":
        return
    if action == "clear":
        clear_row(db, session_id, now)
    db.execute(
        "UPDATE recovery SET last_verdict = ?, last_explanation = ?, updated_at = ?,"
        " state = CASE WHEN ? THEN 'held' ELSE state END"
        " WHERE session_id = ? AND state != 'suspended'",
        (str(decision.verdict), decision.explanation, now, int(action == "hold"), session_id),
    )

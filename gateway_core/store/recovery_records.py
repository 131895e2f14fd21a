"""The explicit recovery record of each session: a small state machine, not flags.

none ─mark─▶ pending ─(scan)─▶ held | resuming | none
                 ▲                  │
                 └──── mark ────────┘        suspended: never leaves by itself
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from gateway_core.clock import Clock
from gateway_core.model import (
    Decision,
    MessageKind,
    NewMessage,
    RecoveryAction,
    RecoveryRecord,
    RecoveryState,
    Role,
    Session,
    Told,
)
from gateway_core.quick_init import positional_builder
from gateway_core.store.codec import SESSION_COLUMNS, decode_session, decode_timestamp
from gateway_core.store.id_sets import IN_IDS, ids_param
from gateway_core.store.outbox import enqueue_row
from gateway_core.store.sessions import generation_row
from gateway_core.store.transaction import RowReader, Transaction, TransactionQueue
from gateway_core.store.transcript import append_rows
from gateway_core.store.turns import reply_to_row

_COLUMNS = (
    "session_id, state, reason, marked_at, last_verdict, last_explanation, attempts,"
    " last_attempt_at, updated_at, told"
)


# Every candidate's record with its session. On SQLite the records come from the candidates'
# partial index alone (it covers every column of a record: schema version 9), a few adjacent
# pages, and each session by its id.
CANDIDATES_SQL = (
    "SELECT "
    + ", ".join(f"r.{c.strip()}" for c in _COLUMNS.split(","))
    + ", "
    + ", ".join(f"s.{c.strip()}" for c in SESSION_COLUMNS.split(","))
    + " FROM recovery AS r INDEXED BY recovery_candidates JOIN sessions AS s ON s.id = r.session_id"
    " WHERE r.state != 'none' ORDER BY r.session_id"
)

CANDIDATES_OF_SQL = CANDIDATES_SQL.replace(" ORDER BY", f" AND r.session_id {IN_IDS} ORDER BY")

# A record that holds a marker: the session is a recovery candidate (model.CANDIDATE_STATES).
_MARKED = "state IN ('pending', 'held', 'resuming')"

# The candidates' ids and states from the partial index alone (it holds the state and the
# rowid, which is the session id): a few pages, however large the tables.
CANDIDATE_STATES_SQL = (
    "SELECT session_id, state FROM recovery INDEXED BY recovery_candidates"
    " WHERE state != 'none' ORDER BY session_id"
)
_CANDIDATE_STATES_OF_SQL = CANDIDATE_STATES_SQL.replace(
    " ORDER BY", f" AND session_id {IN_IDS} ORDER BY"
)


_record = positional_builder(RecoveryRecord)  # the scan decodes one per candidate
_STATES = {state.value: state for state in RecoveryState}
_TOLD = {told.value: told for told in Told}
_HELD, _TOLD_HELD = RecoveryState.HELD, Told.HELD
_RECORD_WIDTH = len(_COLUMNS.split(","))


def decode_record(row: tuple[Any, ...]) -> RecoveryRecord:
    """One record's columns (_state's lookup written out: the startup scan decodes one per
    candidate). An unknown "told" value counts as told: a user hears too little rather than
    twice."""
    sid, state, reason, marked_at, verdict, explanation, attempts, last_attempt, updated, told = row
    return _record(
        int(sid),
        _STATES.get(str(state), _HELD),
        reason,
        decode_timestamp(marked_at),
        verdict,
        explanation,
        int(attempts or 0),
        decode_timestamp(last_attempt),
        decode_timestamp(updated),
        None if told is None else _TOLD.get(str(told), _TOLD_HELD),
    )


def _decode_candidate(row: tuple[Any, ...]) -> tuple[RecoveryRecord, Session]:
    """A row of CANDIDATES_SQL: the record's columns, then its session's."""
    return decode_record(row[:_RECORD_WIDTH]), decode_session(row[_RECORD_WIDTH:])


def _state(raw: object) -> RecoveryState:
    """A stored state this version does not know (a newer one wrote it) waits for an
    operator: it is never resumed, nor cleared, on a guess."""
    return _STATES.get(str(raw), _HELD)


def mark_row(db: Transaction, session_id: int, reason: str, now: float) -> bool:
    """Mark inside an open transaction. Refuses (False) for unknown or suspended sessions.

    A held or resuming record keeps its state (an operator decision or a running resume is
    not undone by a new mark); its reason and mark time are refreshed. A mark from 'none'
    starts a new episode, of which the user has been told nothing yet.
    """
    cursor = db.execute(
        "UPDATE recovery SET"
        " told = CASE WHEN state = 'none' THEN NULL ELSE told END,"
        " state = CASE WHEN state IN ('held', 'resuming') THEN state ELSE 'pending' END,"
        " reason = ?, marked_at = ?, updated_at = ?"
        " WHERE session_id = ? AND state != 'suspended'",
        (reason, now, now, session_id),
    )
    return cursor.rowcount == 1


def clear_row(db: Transaction, session_id: int, now: float) -> bool:
    """Drop the marker inside an open transaction; False if there was none (or suspended)."""
    cursor = db.execute(
        "UPDATE recovery SET state = 'none', reason = NULL, marked_at = NULL, attempts = 0,"
        f" updated_at = ? WHERE session_id = ? AND {_MARKED}",
        (now, session_id),
    )
    return cursor.rowcount == 1


def state_row(db: Transaction, session_id: int) -> tuple[RecoveryState, str | None] | None:
    """The record's state and reason only, inside an open transaction (a turn's start reads
    nothing else, and it runs for every message)."""
    row = db.execute(
        "SELECT state, reason FROM recovery WHERE session_id = ?", (session_id,)
    ).fetchone()
    return None if row is None else (_state(row[0]), row[1])


def start_turn_with_state_row(
    db: Transaction, session_id: int, now: float
) -> tuple[int, tuple[RecoveryState, str | None] | None]:
    """start_turn_row and state_row in one statement, for a turn whose start does not depend
    on the record (a user's message: the hot path). The record is read by the same statement
    that starts the turn, so it is the state the turn starts in, as with the two apart."""
    row = db.execute(
        "UPDATE sessions SET generation = generation + 1, active_turn = generation + 1,"
        " turn_started_at = ?, updated_at = ? WHERE id = ? RETURNING generation,"
        " (SELECT state FROM recovery WHERE session_id = ?),"
        " (SELECT reason FROM recovery WHERE session_id = ?)",
        (now, now, session_id, session_id, session_id),
    ).fetchone()
    if row is None:
        raise KeyError(f"no session {session_id}")
    generation, state, reason = row
    return int(generation), None if state is None else (_state(state), reason)


def finish_turn_row(
    db: Transaction, session_id: int, generation: int, now: float
) -> tuple[int, bool]:
    """A turn's end in one statement (the hot path): the running-turn marker cleared only if
    it still names this generation (as sessions.end_turn_row), the session touched. Returns the
    session's newest generation (a newer one means this turn was superseded) and whether the
    session's recovery record holds a marker (pending, held or resuming) for the caller to
    clear: read in the same statement, so a turn that ends with none (nearly all) needs no
    statement of its own for the record."""
    row = db.execute(
        "UPDATE sessions SET"
        " turn_started_at = CASE WHEN active_turn = ? THEN NULL ELSE turn_started_at END,"
        " active_turn = CASE WHEN active_turn = ? THEN NULL ELSE active_turn END,"
        " updated_at = ? WHERE id = ? RETURNING generation,"
        f" EXISTS (SELECT 1 FROM recovery WHERE session_id = ? AND {_MARKED})",
        (generation, generation, now, session_id, session_id),
    ).fetchone()
    if row is None:
        raise KeyError(f"no session {session_id}")
    return int(row[0]), bool(row[1])


def told_row(db: Transaction, session_id: int, told: Told, now: float) -> None:
    """Inside the transaction that queued the user's notice: it is told once per episode."""
    db.execute(
        "UPDATE recovery SET told = ?, updated_at = ? WHERE session_id = ?",
        (str(told), now, session_id),
    )


def begin_attempt_row(db: Transaction, session_id: int, now: float) -> RecoveryRecord | None:
    """Inside an open transaction: a resume turn starts (state resuming, one more attempt).
    None if the session is not a candidate."""
    row = db.execute(
        "UPDATE recovery SET state = 'resuming', attempts = attempts + 1,"
        " last_attempt_at = ?, updated_at = ?"
        f" WHERE session_id = ? AND {_MARKED} RETURNING {_COLUMNS}",
        (now, now, session_id),
    ).fetchone()
    return None if row is None else decode_record(row)


class RecoveryRecords:
    def __init__(self, writer: TransactionQueue, reader: RowReader, clock: Clock) -> None:
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

        def txn(db: Transaction) -> list[int]:
            return [sid for sid in session_ids if mark_row(db, sid, reason, now)]

        return await self._writer.submit(txn)

    async def clear(self, session_id: int) -> bool:
        now = self._clock.now()
        return await self._writer.submit(lambda db: clear_row(db, session_id, now))

    async def clear_and_tell(
        self, session_id: int, notice: str | None, told: Told | None
    ) -> tuple[bool, int | None]:
        """An operator's clear: drop the marker and, in the same transaction, queue the user's
        notice. Returns (cleared, the notice's outbox id)."""
        now = self._clock.now()

        def txn(db: Transaction) -> tuple[bool, int | None]:
            if not clear_row(db, session_id, now):
                return False, None
            if notice is None or told is None:
                return True, None
            return True, tell_user_row(db, session_id, notice, told, now)

        return await self._writer.submit(txn)

    async def hold(self, session_id: int, decision: Decision) -> bool:
        return await self._set_state(session_id, RecoveryState.HELD, decision)

    async def begin_attempt(self, session_id: int) -> RecoveryRecord | None:
        """A resume turn starts: state resuming, one more attempt. None if not a candidate."""
        now = self._clock.now()
        return await self._writer.submit(lambda db: begin_attempt_row(db, session_id, now))

    async def suspend(self, session_id: int, reason: str) -> bool:
        now = self._clock.now()

        def txn(db: Transaction) -> bool:
            cursor = db.execute(
                "UPDATE recovery SET state = 'suspended', reason = ?, updated_at = ?"
                " WHERE session_id = ?",
                (reason, now, session_id),
            )
            return cursor.rowcount == 1

        return await self._writer.submit(txn)

    async def unsuspend(self, session_id: int) -> bool:
        now = self._clock.now()

        def txn(db: Transaction) -> bool:
            cursor = db.execute(
                "UPDATE recovery SET state = 'none', reason = NULL, marked_at = NULL,"
                " attempts = 0, updated_at = ? WHERE session_id = ? AND state = 'suspended'",
                (now, session_id),
            )
            return cursor.rowcount == 1

        return await self._writer.submit(txn)

    async def candidates(
        self, only: Collection[int] | None = None
    ) -> list[tuple[RecoveryRecord, Session]]:
        """Every record that is not 'none', with its session (`only`: of these sessions, on a
        node that took them over). Reads the partial index only."""
        if only is None:
            rows = await self._reader.all(CANDIDATES_SQL)
        else:
            rows = await self._reader.all(CANDIDATES_OF_SQL, (ids_param(only),))
        return [_decode_candidate(row) for row in rows]

    async def candidate_states(
        self, only: Collection[int] | None = None
    ) -> list[tuple[int, RecoveryState]]:
        """The session id and state of every record that is not 'none' (`only`: of these
        sessions), from the partial index alone: what a scan lists before it reads the
        records themselves (`candidates`, in chunks read side by side)."""
        if only is None:
            rows = await self._reader.all(CANDIDATE_STATES_SQL)
        else:
            rows = await self._reader.all(_CANDIDATE_STATES_OF_SQL, (ids_param(only),))
        return [(int(sid), _state(state)) for sid, state in rows]

    async def _set_state(
        self, session_id: int, state: RecoveryState | None, decision: Decision
    ) -> bool:
        now = self._clock.now()

        def txn(db: Transaction) -> bool:
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

        return await self._writer.submit(txn)


def apply_decision_row(
    db: Transaction, session_id: int, decision: Decision, now: float
) -> int | None:
    """Apply a recovery decision inside an open transaction; returns the outbox id of the
    user's notice when one was queued.

    First the tool results its evidence recovered are recorded (they are the truth about
    those calls whatever happens next). Then: clear drops the marker; hold parks the record
    for an operator; every other action keeps the state (a resume turn moves it to resuming
    when it really starts). The verdict and its explanation are remembered for the console,
    and the user's notice is queued with the note that it was told, in this same
    transaction: a crash can neither lose it nor send it twice.
    """
    if decision.action is RecoveryAction.SKIP:
        return None
    recovered = [
        NewMessage(
            Role.TOOL,
            call.result,
            kind=MessageKind.TOOL_RECOVERED,
            tool_call_id=call.call_id,
            tool_name=call.tool_name,
            generation=call.generation,
        )
        for call in decision.settled
        if call.result is not None
    ]
    if recovered:
        append_rows(db, session_id, recovered, now)
    if decision.action is RecoveryAction.CLEAR:
        clear_row(db, session_id, now)
    held = decision.action is RecoveryAction.HOLD
    db.execute(
        "UPDATE recovery SET last_verdict = ?, last_explanation = ?, updated_at = ?,"
        " state = CASE WHEN ? = 1 THEN 'held' ELSE state END"
        " WHERE session_id = ? AND state != 'suspended'",
        (str(decision.verdict), decision.explanation, now, int(held), session_id),
    )
    if decision.user_notice is None or decision.told is None:
        return None
    return tell_user_row(db, session_id, decision.user_notice, decision.told, now)


def tell_user_row(db: Transaction, session_id: int, text: str, told: Told, now: float) -> int:
    """Queue the user's one notice about an interrupted request, and remember it was told.
    The notice is a reply to that request (the newest turn's that names one)."""
    told_row(db, session_id, told, now)
    generation = generation_row(db, session_id)
    reply_to = reply_to_row(db, session_id)
    return enqueue_row(db, session_id, generation, "notice", text, now, reply_to=reply_to)

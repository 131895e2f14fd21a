"""The durable transcript: messages appended per session with a contiguous sequence."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Sequence
from functools import cache
from typing import Any, overload

from gateway_core.clock import Clock
from gateway_core.model import Message, MessageKind, NewMessage, Role
from gateway_core.store.codec import MESSAGE_COLUMNS, decode_message, message_params
from gateway_core.store.job import job
from gateway_core.store.transaction import RowReader, Transaction, TransactionQueue


def tails_sql(count: int) -> str:
    """Tails of `count` sessions: for each wanted session its last seq (one step down the
    unique index), then a range scan of (session_id, seq) from there. Both steps use the
    unique index, so other sessions' rows are never read (a test checks the query plan). The
    rows come back in no particular order; `Transcript.tails` sorts them."""
    wanted = ", ".join("(?)" for _ in range(count))
    return (
        f"WITH wanted(sid) AS (VALUES {wanted})"
        f" SELECT m.{MESSAGE_COLUMNS.replace(', ', ', m.')} FROM wanted"
        " JOIN messages AS m ON m.session_id = wanted.sid AND m.seq > ("
        "SELECT seq FROM messages WHERE session_id = wanted.sid ORDER BY seq DESC LIMIT 1) - ?"
    )


def from_request_sql(count: int) -> str:
    """Of `count` sessions, the rows from the newest one that looks like the user's request
    (a user row that is neither bookkeeping nor our recovery note) to the end; every row when
    none does. The probe walks the unique index back from the end and stops at the first such
    row, so only the rows returned (and none before them) are read. The caller confirms the
    request on the decoded rows (recovery/tails.py): this only says where to start reading."""
    wanted = ", ".join("(?)" for _ in range(count))
    return (
        f"WITH wanted(sid) AS (VALUES {wanted})"
        f" SELECT m.{MESSAGE_COLUMNS.replace(', ', ', m.')} FROM wanted"
        " JOIN messages AS m ON m.session_id = wanted.sid AND m.seq >= coalesce(("
        "SELECT seq FROM messages WHERE session_id = wanted.sid"
        f" AND role = '{Role.USER}' AND kind NOT IN ('{MessageKind.META}',"
        f" '{MessageKind.RECOVERY_NOTE}') ORDER BY seq DESC LIMIT 1), 0)"
    )


class StoredTail(Sequence[Message]):
    """One session's last rows as read, oldest first, each decoded on first access: the
    recovery scan reads a few rows of every candidate and usually looks at one or two."""

    __slots__ = ("_decoded", "_rows")

    def __init__(self, rows: list[tuple[Any, ...]]) -> None:
        self._rows = rows
        self._decoded: list[Message | None] = [None] * len(rows)

    def __len__(self) -> int:
        return len(self._rows)

    @overload
    def __getitem__(self, index: int) -> Message: ...

    @overload
    def __getitem__(self, index: slice) -> list[Message]: ...

    def __getitem__(self, index: int | slice) -> Message | list[Message]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self._rows)))]
        message = self._decoded[index]
        if message is None:
            message = self._decoded[index] = decode_message(self._rows[index])
        return message


_MARKS = ", ".join("?" * len(MESSAGE_COLUMNS.split(",")))
_INSERT = f"INSERT INTO messages ({MESSAGE_COLUMNS}) VALUES ({_MARKS})"
# A row appended after the session's last one in one statement: the insert computes its seq
# from the same index range a separate max(seq) read would scan. No RETURNING: SQLite
# buffers a RETURNING statement's rows, which costs more than the read it would save.
_INSERT_NEXT_HEAD = (
    f"INSERT INTO messages ({MESSAGE_COLUMNS}) VALUES (?,"
    " (SELECT coalesce(max(seq), 0) + 1 FROM messages WHERE session_id = ?), "
)


@cache
def _insert_next_sql(nulls: tuple[bool, ...]) -> str:
    """The append-after-the-last-row INSERT with the columns that are NULL in this row written
    as NULL in the statement. A None bound as a parameter costs sqlite3 a lookup for an
    adapter (about 0.4 us each here) and a message row carries four to six of them; one
    statement per pattern of NULL columns (a handful: requests, answers, tool calls, tool
    results, notes) is cached instead."""
    return _INSERT_NEXT_HEAD + ", ".join("NULL" if null else "?" for null in nulls) + ")"


def append_rows(
    db: Transaction, session_id: int, messages: Sequence[NewMessage], now: float
) -> list[Message]:
    """Append inside an open transaction (usable by other jobs that write more than messages);
    returns the rows as stored."""
    last = db.execute(
        "SELECT coalesce(max(seq), 0) FROM messages WHERE session_id = ?", (session_id,)
    ).fetchone()[0]
    params = [message_params(session_id, last + i + 1, m, now) for i, m in enumerate(messages)]
    db.executemany(_INSERT, params)
    db.execute("UPDATE sessions SET updated_at = ? WHERE id = ?", (now, session_id))
    return [decode_message(p) for p in params]


def insert_rows(
    db: Transaction,
    session_id: int,
    messages: Sequence[NewMessage],
    now: float,
    *,
    touch_session: bool = True,
) -> None:
    """append_rows for a caller that has no use for the rows (the turn's hot path): one
    statement per row, none to read the last seq; touch_session=False when the same
    transaction already set the session's updated_at."""
    for message in messages:
        values = message_params(session_id, 0, message, now)[2:]
        nulls = tuple([value is None for value in values])
        given = [value for value in values if value is not None]
        db.execute(_insert_next_sql(nulls), (session_id, session_id, *given))
    if touch_session:
        db.execute("UPDATE sessions SET updated_at = ? WHERE id = ?", (now, session_id))


class Transcript:
    def __init__(self, writer: TransactionQueue, reader: RowReader, clock: Clock) -> None:
        self._writer, self._reader, self._clock = writer, reader, clock

    async def append(self, session_id: int, messages: Sequence[NewMessage]) -> list[Message]:
        """Append rows durably; returns them with their sequence numbers once committed."""
        now = self._clock.now()
        return await self._writer.submit(job(append_rows, session_id, messages, now))

    async def tail(self, session_id: int, limit: int) -> list[Message]:
        """The last `limit` rows, oldest first. Reads only this session's index range."""
        rows = await self._reader.all(
            f"SELECT {MESSAGE_COLUMNS} FROM messages WHERE session_id = ?"
            " ORDER BY seq DESC LIMIT ?",
            (session_id, limit),
        )
        return [decode_message(row) for row in reversed(rows)]

    async def tails(self, session_ids: Iterable[int], limit: int) -> dict[int, StoredTail]:
        """The last `limit` rows of many sessions in one query per 500 (the startup scan's
        read); a session without rows gets an empty tail."""
        grouped = await self._grouped(session_ids, tails_sql, (limit,))
        return {session_id: StoredTail(rows) for session_id, rows in grouped.items()}

    async def from_request(self, session_ids: Iterable[int]) -> dict[int, list[Message]]:
        """Each session's rows from the newest row that looks like its user's request on (all
        its rows when none does), oldest first, in one query per 500: the startup scan's read
        (`from_request_sql` says what "looks like" means; the caller decides). Decoded at
        once: the caller needs every row of these."""
        grouped = await self._grouped(session_ids, from_request_sql, ())
        return {sid: [decode_message(row) for row in rows] for sid, rows in grouped.items()}

    async def _grouped(
        self, session_ids: Iterable[int], sql: Callable[[int], str], extra: tuple[Any, ...]
    ) -> dict[int, list[tuple[Any, ...]]]:
        ids = list(dict.fromkeys(session_ids))  # once each: a repeated id would repeat rows
        grouped: dict[int, list[tuple[Any, ...]]] = {i: [] for i in ids}
        # Chunked to stay under SQLite's bound-parameter limit, and all asked for at once: the
        # reader's thread runs them back to back instead of waiting on this one between.
        chunks = [ids[start : start + 500] for start in range(0, len(ids), 500)]
        for rows in await asyncio.gather(
            *(self._reader.all(sql(len(chunk)), (*chunk, *extra)) for chunk in chunks)
        ):
            # (session_id, seq) is unique and leads every row: plain tuple order sorts by it
            # without a key function's tuple per row.
            rows.sort()
            for row in rows:
                grouped[row[0]].append(row)
        return grouped

    async def all(self, session_id: int) -> list[Message]:
        rows = await self._reader.all(
            f"SELECT {MESSAGE_COLUMNS} FROM messages WHERE session_id = ? ORDER BY seq",
            (session_id,),
        )
        return [decode_message(row) for row in rows]

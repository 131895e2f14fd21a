"""The durable transcript: messages appended per session with a contiguous sequence."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from gateway_core.clock import Clock
from gateway_core.model import Message, NewMessage
from gateway_core.store.codec import MESSAGE_COLUMNS, decode_message, message_params
from gateway_core.store.transaction import RowReader, Transaction, TransactionQueue


def tails_sql(count: int) -> str:
    """Tails of `count` sessions: each session's last seq, then a range scan of
    (session_id, seq) from there. Both steps use the unique index, so other sessions' rows
    are never read (a test checks the query plan)."""
    marks = ",".join("?" * count)
    return (
        "WITH last(sid, hi) AS (SELECT session_id, max(seq) FROM messages"
        f"  WHERE session_id IN ({marks}) GROUP BY session_id)"
        f" SELECT m.{MESSAGE_COLUMNS.replace(', ', ', m.')} FROM last"
        " JOIN messages AS m ON m.session_id = last.sid AND m.seq > last.hi - ?"
        " ORDER BY m.session_id, m.seq"
    )


_MARKS = ", ".join("?" * len(MESSAGE_COLUMNS.split(",")))
_INSERT = f"INSERT INTO messages ({MESSAGE_COLUMNS}) VALUES ({_MARKS})"
# A row appended after the session's last one in one statement: the insert computes its seq
# from the same index range a separate max(seq) read would scan. No RETURNING: SQLite
# buffers a RETURNING statement's rows, which costs more than the read it would save.
_NEXT_MARKS = ", ".join("?" * (len(MESSAGE_COLUMNS.split(",")) - 2))
_INSERT_NEXT = (
    f"INSERT INTO messages ({MESSAGE_COLUMNS}) VALUES (?,"
    " (SELECT coalesce(max(seq), 0) + 1 FROM messages WHERE session_id = ?),"
    f" {_NEXT_MARKS})"
)


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
    db.executemany(
        _INSERT_NEXT,
        [(session_id, session_id, *message_params(session_id, 0, m, now)[2:]) for m in messages],
    )
    if touch_session:
        db.execute("UPDATE sessions SET updated_at = ? WHERE id = ?", (now, session_id))


class Transcript:
    def __init__(self, writer: TransactionQueue, reader: RowReader, clock: Clock) -> None:
        self._writer, self._reader, self._clock = writer, reader, clock

    async def append(self, session_id: int, messages: Sequence[NewMessage]) -> list[Message]:
        """Append rows durably; returns them with their sequence numbers once committed."""
        now = self._clock.now()
        return await self._writer.submit(lambda db: append_rows(db, session_id, messages, now))

    async def tail(self, session_id: int, limit: int) -> list[Message]:
        """The last `limit` rows, oldest first. Reads only this session's index range."""
        rows = await self._reader.all(
            f"SELECT {MESSAGE_COLUMNS} FROM messages WHERE session_id = ?"
            " ORDER BY seq DESC LIMIT ?",
            (session_id, limit),
        )
        return [decode_message(row) for row in reversed(rows)]

    async def tails(self, session_ids: Iterable[int], limit: int) -> dict[int, list[Message]]:
        """Tails of many sessions in one query (the startup scan's read)."""
        ids = list(session_ids)
        result: dict[int, list[Message]] = {i: [] for i in ids}
        # Chunked to stay under SQLite's bound-parameter limit.
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            rows = await self._reader.all(tails_sql(len(chunk)), (*chunk, limit))
            for row in rows:
                result[int(row[0])].append(decode_message(row))
        return result

    async def all(self, session_id: int) -> list[Message]:
        rows = await self._reader.all(
            f"SELECT {MESSAGE_COLUMNS} FROM messages WHERE session_id = ? ORDER BY seq",
            (session_id,),
        )
        return [decode_message(row) for row in rows]

"""Outgoing deliveries. A row marked sent is never sent again, whatever restarts follow.

pending -> sending -> sent
              |-> pending (retryable failure) | failed (final failure)
sending at boot -> unknown

Policy for a send whose outcome is unknown (the process died between the platform accepting
the message and our commit of "sent"): it is NOT sent again, because platforms such as
Telegram have no idempotency key and a blind retry doubles the reply. It is marked 'unknown'
and shown to the operator, who can resend it. Losing a reply silently is prevented by the
transcript (the answer row exists); doubling it could not be undone.
"""

from __future__ import annotations

import sqlite3
from typing import Any

from gateway_core.clock import Clock
from gateway_core.model import OutboxItem
from gateway_core.store.reader import Reader
from gateway_core.store.writer import Writer

_COLUMNS = (
    "id, session_id, generation, kind, content, status, attempts, last_error,"
    " platform_message_id, created_at, sent_at"
)


def decode_outbox(row: tuple[Any, ...]) -> OutboxItem:
    return OutboxItem(
        id=int(row[0]),
        session_id=int(row[1]),
        generation=int(row[2]),
        kind=row[3],
        content=row[4],
        status=row[5],
        attempts=int(row[6]),
        last_error=row[7],
        platform_message_id=row[8],
        created_at=float(row[9]),
        sent_at=None if row[10] is None else float(row[10]),
    )


def enqueue_row(
    db: sqlite3.Connection, session_id: int, generation: int, kind: str, content: str, now: float
) -> int:
    row = db.execute(
        "INSERT INTO outbox (session_id, generation, kind, content, created_at)"
        " VALUES (?, ?, ?, ?, ?) RETURNING id",
        (session_id, generation, kind, content, now),
    ).fetchone()
    return int(row[0])


class Outbox:
    def __init__(self, writer: Writer, reader: Reader, clock: Clock) -> None:
        self._writer, self._reader, self._clock = writer, reader, clock

    async def enqueue(self, session_id: int, generation: int, kind: str, content: str) -> int:
        now = self._clock.now()
        return await self._writer.submit(
            lambda db: enqueue_row(db, session_id, generation, kind, content, now)
        )

    async def pending(self, limit: int = 1000) -> list[OutboxItem]:
        rows = await self._reader.all(
            f"SELECT {_COLUMNS} FROM outbox INDEXED BY outbox_pending WHERE status = 'pending'"
            " ORDER BY id LIMIT ?",
            (limit,),
        )
        return [decode_outbox(row) for row in rows]

    async def get(self, item_id: int) -> OutboxItem | None:
        row = await self._reader.one(f"SELECT {_COLUMNS} FROM outbox WHERE id = ?", (item_id,))
        return None if row is None else decode_outbox(row)

    async def claim(self, item_id: int) -> OutboxItem | None:
        """Durably note that a send is about to happen. None if the item is not pending."""

        def job(db: sqlite3.Connection) -> OutboxItem | None:
            row = db.execute(
                "UPDATE outbox SET status = 'sending', attempts = attempts + 1"
                f" WHERE id = ? AND status = 'pending' RETURNING {_COLUMNS}",
                (item_id,),
            ).fetchone()
            return None if row is None else decode_outbox(row)

        return await self._writer.submit(job)

    async def mark_sent(self, item_id: int, platform_message_id: str | None) -> bool:
        """Record delivery; False if it was already recorded (never send it again)."""
        now = self._clock.now()

        def job(db: sqlite3.Connection) -> bool:
            cursor = db.execute(
                "UPDATE outbox SET status = 'sent', platform_message_id = ?, sent_at = ?"
                " WHERE id = ? AND status IN ('pending', 'sending')",
                (platform_message_id, now, item_id),
            )
            return cursor.rowcount == 1

        return await self._writer.submit(job)

    async def mark_attempt_failed(self, item_id: int, error: str, final: bool) -> None:
        """A send that surely did not land: back to pending, or failed for good."""
        await self._writer.submit(
            lambda db: db.execute(
                "UPDATE outbox SET last_error = ?,"
                " status = CASE WHEN ? THEN 'failed' ELSE 'pending' END"
                " WHERE id = ? AND status IN ('pending', 'sending')",
                (error, int(final), item_id),
            )
        )

    async def mark_unknown(self, item_id: int, error: str) -> None:
        """A send that may or may not have landed: never sent again automatically."""
        await self._writer.submit(
            lambda db: db.execute(
                "UPDATE outbox SET status = 'unknown', last_error = ?"
                " WHERE id = ? AND status IN ('pending', 'sending')",
                (error, item_id),
            )
        )

    async def mark_unknown_at_boot(self) -> list[OutboxItem]:
        """Sends the previous run started but never confirmed: outcome unknown (see top)."""

        def job(db: sqlite3.Connection) -> list[OutboxItem]:
            rows = db.execute(
                "UPDATE outbox SET status = 'unknown' WHERE status = 'sending'"
                f" RETURNING {_COLUMNS}"
            ).fetchall()
            return [decode_outbox(row) for row in rows]

        return await self._writer.submit(job)

    async def requeue_unknown(self, item_id: int) -> OutboxItem | None:
        """An operator's resend of a send whose outcome is unknown (they checked the chat):
        back to pending. None if the item is not 'unknown'."""

        def txn(db: sqlite3.Connection) -> OutboxItem | None:
            row = db.execute(
                "UPDATE outbox SET status = 'pending', last_error = NULL"
                f" WHERE id = ? AND status = 'unknown' RETURNING {_COLUMNS}",
                (item_id,),
            ).fetchone()
            return None if row is None else decode_outbox(row)

        return await self._writer.submit(txn)

    async def by_status(self, status: str, limit: int = 100) -> list[OutboxItem]:
        rows = await self._reader.all(
            f"SELECT {_COLUMNS} FROM outbox WHERE status = ? ORDER BY id DESC LIMIT ?",
            (status, limit),
        )
        return [decode_outbox(row) for row in rows]

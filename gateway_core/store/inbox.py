"""Inbound platform updates, persisted before the platform is told they were received.

The (platform, update_id) pair is unique, so an update delivered twice (after a crash, before
the offset was confirmed) is stored once and processed once.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Collection, Sequence
from typing import Any

from gateway_core.clock import Clock
from gateway_core.model import InboxItem, InboxStatus, Session
from gateway_core.store.codec import SESSION_COLUMNS, decode_session
from gateway_core.store.job import job
from gateway_core.store.transaction import RowReader, Transaction, TransactionQueue

_COLUMNS = (
    "id, platform, update_id, session_key, payload, status, error, received_at, processed_at,"
    " message_id"
)


_ITEM_COLUMNS = ", ".join(f"inbox.{name.strip()}" for name in _COLUMNS.split(","))
_SESSION_COLUMNS = ", ".join(f"sessions.{name.strip()}" for name in SESSION_COLUMNS.split(","))
_ITEM_WIDTH = len(_COLUMNS.split(","))
# A row's status as its member, by a dict lookup (cheaper than calling the enum per row). A
# status this version does not know reads as skipped: it is never taken as new work.
_INBOX_STATUS = {status.value: status for status in InboxStatus}


def _decode(row: tuple[Any, ...]) -> InboxItem:
    return InboxItem(
        id=int(row[0]),
        platform=row[1],
        update_id=row[2],
        session_key=row[3],
        payload=row[4],
        status=_INBOX_STATUS.get(row[5], InboxStatus.SKIPPED),
        error=row[6],
        received_at=float(row[7]),
        processed_at=None if row[8] is None else float(row[8]),
        message_id=None if row[9] is None else str(row[9]),
    )


def insert_row(
    db: Transaction,
    platform: str,
    update_id: str,
    session_key: str | None,
    payload: str,
    now: float,
    message_id: str | None = None,
) -> int | None:
    """Insert inside an open transaction; None when the update was already stored.
    message_id: the message's own id on its platform (what an answer replies to)."""
    values = (platform, update_id, session_key, payload, now, message_id)
    if isinstance(db, sqlite3.Connection):
        # SQLite says the new row's id without RETURNING, which costs it a buffered result
        # (this runs for every message).
        cursor = db.execute(_INSERT, values)
        return cursor.lastrowid if cursor.rowcount == 1 else None
    row = db.execute(f"{_INSERT} RETURNING id", values).fetchone()
    return None if row is None else int(row[0])


_INSERT = (
    "INSERT INTO inbox (platform, update_id, session_key, payload, received_at, message_id)"
    " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(platform, update_id) DO NOTHING"
)


def finish_row(
    db: Transaction, item_id: int, status: InboxStatus, error: str | None, now: float
) -> None:
    db.execute(
        "UPDATE inbox SET status = ?, error = ?, processed_at = ? WHERE id = ?",
        (status, error, now, item_id),
    )


class Inbox:
    def __init__(self, writer: TransactionQueue, reader: RowReader, clock: Clock) -> None:
        self._writer, self._reader, self._clock = writer, reader, clock

    async def add_batch(
        self, platform: str, updates: Sequence[tuple[str, str | None, str]]
    ) -> list[int]:
        """Persist (update_id, session_key, payload) rows in one commit.

        Returns the inbox ids of the rows that were new; duplicates are ignored.
        """
        now = self._clock.now()

        def txn(db: Transaction) -> list[int]:
            inserted = (
                insert_row(db, platform, update_id, session_key, payload, now)
                for update_id, session_key, payload in updates
            )
            return [inbox_id for inbox_id in inserted if inbox_id is not None]

        return await self._writer.submit(txn)

    async def open_items(self, limit: int = 1000) -> list[InboxItem]:
        """Items not yet processed, oldest first."""
        rows = await self._reader.all(
            f"SELECT {_COLUMNS} FROM inbox INDEXED BY inbox_open WHERE status = 'new'"
            " ORDER BY id LIMIT ?",
            (limit,),
        )
        return [_decode(row) for row in rows]

    async def open_for_node(
        self, node_id: str, only: Collection[int] | None = None, limit: int = 10_000
    ) -> list[tuple[InboxItem, Session]]:
        """On a node: open items of the sessions it may own (its own, released, lapsed or
        never leased), each with its session, oldest first, in one statement. `only`: just
        those items (the ones a wake-up named)."""
        where, params = "", [node_id, self._clock.now()]
        if only is not None:
            if not only:
                return []
            where = f" AND inbox.id IN ({','.join('?' * len(only))})"
            params.extend(only)
        rows = await self._reader.all(
            f"SELECT {_ITEM_COLUMNS}, {_SESSION_COLUMNS} FROM inbox"
            " JOIN sessions ON sessions.key = inbox.session_key"
            " LEFT JOIN session_leases ON session_leases.session_id = sessions.id"
            " WHERE inbox.status = 'new' AND (session_leases.owner IS NULL"
            " OR session_leases.owner = ? OR session_leases.expires_at < ?)"
            f"{where} ORDER BY inbox.id LIMIT ?",
            (*params, limit),
        )
        return [(_decode(row), decode_session(row[_ITEM_WIDTH:])) for row in rows]

    async def finish(self, item_id: int, status: InboxStatus, error: str | None = None) -> None:
        now = self._clock.now()
        await self._writer.submit(job(finish_row, item_id, status, error, now))

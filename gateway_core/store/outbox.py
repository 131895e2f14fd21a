"""Outgoing deliveries. A row marked sent is never sent again, whatever restarts follow.

pending -> sending -> sent
              |-> pending (retryable failure) | failed (final failure)
sending at boot -> unknown

A reply its session's deliverer can send at once, in one message, is written already claimed
(`enqueue_row(..., claimed=True)`: 'sending', one attempt) by the transaction that ends its
turn, so the reply and its claim are one commit instead of two. Its send starts as soon as that
commit is handed over, so the time it spends 'sending' before the send is what a separate
claim's commit would leave; a claimed reply that cannot be sent at once after all (its
session's queue got busy meanwhile, or a stop began) is released back to pending
(`release_claim`) before it is queued, never left waiting as 'sending'.

Policy for a send whose outcome is unknown (the process died between the platform accepting
the message and our commit of "sent"): it is NOT sent again, because platforms such as
Telegram have no idempotency key and a blind retry doubles the reply. It is marked 'unknown'
and shown to the operator, who can resend it once they checked the chat (requeue_unknown, the
`resend` action). Losing a reply silently is prevented by the transcript (the answer row
exists) and the operator's count of unknown deliveries; doubling it could not be undone.

A reply too long for one message is sent piece by piece (store/outbox_pieces.py): each piece
is confirmed with its platform message id before the next is sent, and a retry or a restart
sends only the pieces not confirmed, in order. When one piece's outcome is unknown the row
becomes 'unknown' as above, and the pieces after it are not sent either: they stay 'pending'
under the unknown row, because sending them without the piece before them would show the user
an answer with a hole in it. Its last_error names the piece and the ones held after it.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Collection
from dataclasses import replace
from typing import Any

from gateway_core.clock import Clock
from gateway_core.model import ClaimedReply, OutboxItem, OutboxStatus, PieceStatus, ReplyPiece
from gateway_core.store.errors import LeaseLost
from gateway_core.store.id_sets import IN_IDS, ids_param
from gateway_core.store.job import job
from gateway_core.store.leases import NOT_OWNED_ELSEWHERE, delivery_fence_row
from gateway_core.store.outbox_pieces import (
    decode_piece,
    mark_sending_row,
    mark_sent_row,
    piece_rows,
    settle_sending_row,
    store_piece_rows,
)
from gateway_core.store.transaction import RowReader, Transaction, TransactionQueue

_COLUMNS = (
    "id, session_id, generation, kind, content, status, attempts, last_error,"
    " platform_message_id, created_at, sent_at, reply_to, direct"
)


# In a RETURNING of an UPDATE of one outbox row: how many stored pieces it has.
_PIECE_COUNT = "SELECT count(*) FROM outbox_pieces WHERE outbox_pieces.outbox_id = outbox.id"

# The sends in doubt, each found through its partial index (schema version 10: outbox_sending,
# outbox_unknown), never by reading every reply ever sent. The status is written in the SQL,
# not bound: SQLite picks a partial index only for a WHERE it can see implies the index's.
MARK_UNKNOWN_SQL = (
    f"UPDATE outbox SET status = 'unknown' WHERE status = 'sending' RETURNING {_COLUMNS}"
)
_MARK_UNKNOWN_OF_SQL = MARK_UNKNOWN_SQL.replace(" RETURNING", f" AND session_id {IN_IDS} RETURNING")
COUNT_UNKNOWN_SQL = "SELECT count(*) FROM outbox WHERE status = 'unknown'"
# A row's status as its member, by a dict lookup (cheaper than calling the enum per row). A
# status this version does not know reads as unknown: such a reply is never sent on a guess.
_OUTBOX_STATUS = {status.value: status for status in OutboxStatus}


def decode_outbox(row: tuple[Any, ...]) -> OutboxItem:
    return OutboxItem(
        id=int(row[0]),
        session_id=int(row[1]),
        generation=int(row[2]),
        kind=row[3],
        content=row[4],
        status=_OUTBOX_STATUS.get(row[5], OutboxStatus.UNKNOWN),
        attempts=int(row[6]),
        last_error=row[7],
        platform_message_id=row[8],
        created_at=float(row[9]),
        sent_at=None if row[10] is None else float(row[10]),
        reply_to=None if row[11] is None else str(row[11]),
        direct=bool(row[12]),
    )


def enqueue_row(
    db: Transaction,
    session_id: int,
    generation: int,
    kind: str,
    content: str,
    now: float,
    *,
    reply_to: str | None = None,
    direct: bool = False,
    claimed: bool = False,
) -> int:
    """The new row's id. reply_to: the platform id of the message this answers; direct: it
    is the answer of the turn that message started (see OutboxItem); claimed: written
    already claimed, 'sending' with one attempt, for a reply that fits in one message and
    whose send starts once this commits (see the top; it has no piece rows: the row is its
    only piece). The transaction that ends a turn returns only the id from the writer's
    process, and the loop builds the claim itself with `claimed_reply`, from what it
    already has."""
    values = (session_id, generation, kind, content, now, reply_to, int(direct))
    return _inserted_id(db, _ENQUEUE_CLAIMED if claimed else _ENQUEUE, values)


def _inserted_id(db: Transaction, insert: str, values: tuple[Any, ...]) -> int:
    """The id of the row `insert` adds."""
    if isinstance(db, sqlite3.Connection):  # the id without RETURNING's buffered result
        rowid = db.execute(insert, values).lastrowid
        assert rowid is not None
        return rowid
    return int(db.execute(f"{insert} RETURNING id", values).fetchone()[0])


_ENQUEUE = (
    "INSERT INTO outbox (session_id, generation, kind, content, created_at, reply_to, direct)"
    " VALUES (?, ?, ?, ?, ?, ?, ?)"
)


def claimed_reply(
    rowid: int,
    session_id: int,
    generation: int,
    kind: str,
    content: str,
    now: float,
    *,
    reply_to: str | None = None,
    direct: bool = False,
) -> ClaimedReply:
    """The claim of the row enqueue_row(..., claimed=True) wrote with these values."""
    item = OutboxItem(
        id=rowid,
        session_id=session_id,
        generation=generation,
        kind=kind,
        content=content,
        status=OutboxStatus.SENDING,
        attempts=1,
        last_error=None,
        platform_message_id=None,
        created_at=now,
        sent_at=None,
        reply_to=reply_to,
        direct=direct,
    )
    return ClaimedReply(item, (ReplyPiece(0, content, PieceStatus.SENDING),), stored=False)


_ENQUEUE_CLAIMED = (
    "INSERT INTO outbox (session_id, generation, kind, content, created_at, reply_to, direct,"
    " status, attempts) VALUES (?, ?, ?, ?, ?, ?, ?, 'sending', 1)"
)


class Outbox:
    def __init__(self, writer: TransactionQueue, reader: RowReader, clock: Clock) -> None:
        self._writer, self._reader, self._clock = writer, reader, clock

    async def enqueue(
        self,
        session_id: int,
        generation: int,
        kind: str,
        content: str,
        *,
        reply_to: str | None = None,
    ) -> int:
        now = self._clock.now()
        return await self._writer.submit(
            lambda db: enqueue_row(
                db, session_id, generation, kind, content, now, reply_to=reply_to
            )
        )

    async def pending(self, limit: int = 1000) -> list[OutboxItem]:
        rows = await self._reader.all(
            f"SELECT {_COLUMNS} FROM outbox INDEXED BY outbox_pending WHERE status = 'pending'"
            " ORDER BY id LIMIT ?",
            (limit,),
        )
        return [decode_outbox(row) for row in rows]

    async def pending_of(self, session_ids: Collection[int]) -> list[OutboxItem]:
        """The replies still owed to a set of sessions (those a node took over), in order."""
        if not session_ids:
            return []
        rows = await self._reader.all(
            f"SELECT {_COLUMNS} FROM outbox INDEXED BY outbox_pending WHERE status = 'pending'"
            f" AND session_id {IN_IDS} ORDER BY id",
            (ids_param(session_ids),),
        )
        return [decode_outbox(row) for row in rows]

    async def get(self, item_id: int) -> OutboxItem | None:
        row = await self._reader.one(f"SELECT {_COLUMNS} FROM outbox WHERE id = ?", (item_id,))
        return None if row is None else decode_outbox(row)

    async def pieces(self, item_id: int) -> list[ReplyPiece]:
        """The stored pieces of a split reply, in order; empty for a reply never split."""
        rows = await self._reader.all(
            "SELECT piece, content, status, platform_message_id FROM outbox_pieces"
            " WHERE outbox_id = ? ORDER BY piece",
            (item_id,),
        )
        return [decode_piece(row) for row in rows]

    async def claim(self, item_id: int) -> OutboxItem | None:
        """Durably note that a send is about to happen. None if the item is not pending."""

        def txn(db: Transaction) -> OutboxItem | None:
            row = db.execute(
                "UPDATE outbox SET status = 'sending', attempts = attempts + 1"
                f" WHERE id = ? AND status = 'pending' RETURNING {_COLUMNS}",
                (item_id,),
            ).fetchone()
            return None if row is None else decode_outbox(row)

        return await self._writer.submit(txn)

    async def claim_pieces(
        self,
        item_id: int,
        split: Callable[[str], list[str]],
        fence: tuple[int, str] | None = None,
    ) -> ClaimedReply | None:
        """Claim a reply and the first of its pieces not yet sent. None if it is not pending.

        At the first claim the content is cut with `split` and, if that gives more than one
        piece, the pieces are stored: every later claim uses the stored pieces, never `split`
        again (which runs on the writer thread, so it must be pure and quick).

        `fence` (session id, node id), on a node: LeaseLost instead of a claim when another
        node owns the session (store/leases.py)."""
        return await self._writer.submit(
            job(claim_pieces_row, item_id, split, fence, self._clock.now())
        )

    async def piece_sent(
        self,
        item_id: int,
        index: int,
        platform_message_id: str | None,
        fence: tuple[int, str] | None = None,
        *,
        stored: bool = True,
    ) -> bool:
        """Confirm one piece and claim the next in the same commit; after the last piece the
        reply is sent. True when the reply is now sent. stored=False: the claim found the
        reply unsplit (ClaimedReply.stored), so it has no piece rows to look at (none can be
        added while it is 'sending': only a claim of a pending row stores pieces).

        Recorded only while the reply is still 'sending' (this attempt's claim) and, with
        `fence` (session id, node id), while no other node owns the session: otherwise
        LeaseLost and nothing is recorded. A node that lost the session meanwhile (its new
        owner settled the send as unknown) must not record a piece, nor claim the next."""
        return await self._writer.submit(
            job(
                piece_sent_row,
                item_id,
                index,
                platform_message_id,
                self._clock.now(),
                fence,
                stored=stored,
            )
        )

    async def mark_sent(self, item_id: int, platform_message_id: str | None) -> bool:
        """Record delivery; False if it was already recorded (never send it again)."""
        now = self._clock.now()

        return await self._writer.submit(
            lambda db: _mark_row_sent(db, item_id, platform_message_id, now)
        )

    async def release_claim(self, item_id: int) -> bool:
        """A reply claimed at its turn's end whose send did not start: pending again, the
        attempt it never made uncounted. False if it is no longer 'sending'."""

        def txn(db: Transaction) -> bool:
            cursor = db.execute(
                "UPDATE outbox SET status = 'pending', attempts = attempts - 1"
                " WHERE id = ? AND status = 'sending'",
                (item_id,),
            )
            return cursor.rowcount == 1

        return await self._writer.submit(txn)

    async def mark_attempt_failed(self, item_id: int, error: str, final: bool) -> None:
        """A send that surely did not land: back to pending, or failed for good. A piece being
        sent goes back to pending (a failed row's later pieces are never sent)."""

        def txn(db: Transaction) -> None:
            note = settle_sending_row(db, item_id, PieceStatus.PENDING)
            db.execute(
                "UPDATE outbox SET last_error = ?,"
                " status = CASE WHEN ? = 1 THEN 'failed' ELSE 'pending' END"
                " WHERE id = ? AND status IN ('pending', 'sending')",
                (_with_note(error, note), int(final), item_id),
            )

        await self._writer.submit(txn)

    async def mark_unknown(self, item_id: int, error: str) -> None:
        """A send that may or may not have landed: never sent again automatically, and
        neither are the pieces after it (see the top)."""

        def txn(db: Transaction) -> None:
            note = settle_sending_row(db, item_id, PieceStatus.UNKNOWN)
            db.execute(
                "UPDATE outbox SET status = 'unknown', last_error = ?"
                " WHERE id = ? AND status IN ('pending', 'sending')",
                (_with_note(error, note), item_id),
            )

        await self._writer.submit(txn)

    async def mark_unknown_at_boot(self, only: Collection[int] | None = None) -> list[OutboxItem]:
        """Sends the previous run started but never confirmed: outcome unknown (see top). On a
        node, `only` those of the sessions it took over (others may be sending right now)."""

        def txn(db: Transaction) -> list[OutboxItem]:
            if only is None:
                rows = db.execute(MARK_UNKNOWN_SQL).fetchall()
            else:
                rows = db.execute(_MARK_UNKNOWN_OF_SQL, (ids_param(only),)).fetchall()
            items = []
            for item in map(decode_outbox, rows):
                note = settle_sending_row(db, item.id, PieceStatus.UNKNOWN)
                if note is not None:
                    error = f"the gateway stopped while sending {note}"
                    db.execute("UPDATE outbox SET last_error = ? WHERE id = ?", (error, item.id))
                    item = replace(item, last_error=error)
                items.append(item)
            return items

        return await self._writer.submit(txn)

    async def requeue_unknown(self, item_id: int) -> OutboxItem | None:
        """An operator's resend of a send whose outcome is unknown (they checked the chat):
        back to pending, and of a split reply the piece of unknown outcome with it (the
        pieces confirmed sent stay sent). None if the item is not 'unknown'."""

        def txn(db: Transaction) -> OutboxItem | None:
            row = db.execute(
                "UPDATE outbox SET status = 'pending', last_error = NULL"
                f" WHERE id = ? AND status = 'unknown' RETURNING {_COLUMNS}",
                (item_id,),
            ).fetchone()
            if row is None:
                return None
            db.execute(
                "UPDATE outbox_pieces SET status = 'pending'"
                " WHERE outbox_id = ? AND status = 'unknown'",
                (item_id,),
            )
            return decode_outbox(row)

        return await self._writer.submit(txn)

    async def count_unknown(self) -> int:
        """How many sends may or may not have reached their user (from their index)."""
        row = await self._reader.one(COUNT_UNKNOWN_SQL)
        return 0 if row is None else int(row[0])

    async def by_status(self, status: OutboxStatus, limit: int = 100) -> list[OutboxItem]:
        rows = await self._reader.all(
            f"SELECT {_COLUMNS} FROM outbox WHERE status = ? ORDER BY id DESC LIMIT ?",
            (status, limit),
        )
        return [decode_outbox(row) for row in rows]


def _mark_row_sent(
    db: Transaction, item_id: int, platform_message_id: str | None, now: float
) -> bool:
    cursor = db.execute(
        "UPDATE outbox SET status = 'sent', platform_message_id = ?, sent_at = ?"
        " WHERE id = ? AND status IN ('pending', 'sending')",
        (platform_message_id, now, item_id),
    )
    return cursor.rowcount == 1


def claim_pieces_row(
    db: Transaction,
    item_id: int,
    split: Callable[[str], list[str]],
    fence: tuple[int, str] | None,
    now: float,
) -> ClaimedReply | None:
    """Outbox.claim_pieces's transaction (a job: store/job.py; `split` must be picklable,
    a module-level function or a partial of one)."""
    fenced, fence_params = _fenced(fence)
    # The claim also counts the stored pieces (a reply never split, nearly all of
    # them, then costs this one statement) and carries the fence as a condition.
    row = db.execute(
        "UPDATE outbox SET status = 'sending', attempts = attempts + 1"
        f" WHERE id = ? AND status = 'pending'{fenced} RETURNING {_COLUMNS},"
        f" ({_PIECE_COUNT})",
        (item_id, *fence_params),
    ).fetchone()
    if row is None:
        if fence is not None:  # refused for the lease, or simply not pending?
            delivery_fence_row(db, *fence)
        return None
    item = decode_outbox(row)
    pieces = piece_rows(db, item_id) if int(row[-1]) else []
    if not pieces:
        contents = split(item.content)
        if len(contents) <= 1:  # fits in one message: the row is its only piece
            only = (ReplyPiece(0, item.content, PieceStatus.SENDING),)
            return ClaimedReply(item, only, stored=False)
        store_piece_rows(db, item_id, contents)
        pieces = piece_rows(db, item_id)
    owed = [p for p in pieces if p.status is not PieceStatus.SENT]
    if not owed:  # every piece confirmed: the row only missed its own "sent"
        last = pieces[-1]
        _mark_row_sent(db, item_id, last.platform_message_id, now)
        return None
    mark_sending_row(db, item_id, owed[0].index)
    claimed = tuple(
        replace(p, status=PieceStatus.SENDING) if p.index == owed[0].index else p for p in pieces
    )
    return ClaimedReply(item, claimed)


def piece_sent_row(
    db: Transaction,
    item_id: int,
    index: int,
    platform_message_id: str | None,
    now: float,
    fence: tuple[int, str] | None,
    *,
    stored: bool,
) -> bool:
    """Outbox.piece_sent's transaction (a job: store/job.py)."""
    fenced, fence_params = _fenced(fence)
    if not stored:  # the check and the confirmation in one statement
        cursor = db.execute(
            "UPDATE outbox SET status = 'sent', platform_message_id = ?, sent_at = ?"
            f" WHERE id = ? AND status = 'sending'{fenced}",
            (platform_message_id, now, item_id, *fence_params),
        )
        if cursor.rowcount != 1:
            raise _not_recorded(item_id)
        return True
    # The check and the piece count in one statement; the UPDATE (of nothing) holds
    # the row until the commit, so a takeover's settling of the send waits for it.
    row = db.execute(
        "UPDATE outbox SET attempts = attempts WHERE id = ? AND status = 'sending'"
        f"{fenced} RETURNING ({_PIECE_COUNT})",
        (item_id, *fence_params),
    ).fetchone()
    if row is None:
        raise _not_recorded(item_id)
    count = int(row[0])
    if count:
        mark_sent_row(db, item_id, index, platform_message_id, now)
    if index + 1 >= count:
        db.execute(
            "UPDATE outbox SET status = 'sent', platform_message_id = ?, sent_at = ? WHERE id = ?",
            (platform_message_id, now, item_id),
        )
        return True
    mark_sending_row(db, item_id, index + 1)
    return False


def _not_recorded(item_id: int) -> LeaseLost:
    return LeaseLost(
        f"reply {item_id} is no longer being sent by this attempt"
        " (its session changed hands, or its send was settled); piece not recorded"
    )


def _fenced(fence: tuple[int, str] | None) -> tuple[str, tuple[int | str, ...]]:
    """The delivery fence as a condition of the statement itself (no statement of its own)."""
    if fence is None:
        return "", ()
    return f" AND {NOT_OWNED_ELSEWHERE}", fence


def _with_note(error: str, note: str | None) -> str:
    return error if note is None else f"{note}: {error}"

"""The pieces of a split reply: stored at the reply's first claim, confirmed one by one.

A reply longer than the platform's message limit is split once, when it is first claimed, and
the pieces are stored, so a retry or a restart (perhaps under another limit) sends exactly the
pieces the user is missing and never cuts the text differently. A reply that fits in one
message has no piece rows: its outbox row is its only piece.

At most one piece of a reply is 'sending' at a time, and only while its outbox row is
'sending': the claim marks the first piece not yet sent, and each confirmation marks the next
one in the same transaction (or the whole row sent after the last piece).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from gateway_core.model import PieceStatus, ReplyPiece
from gateway_core.store.transaction import Transaction


def piece_rows(db: Transaction, outbox_id: int) -> list[ReplyPiece]:
    rows = db.execute(
        "SELECT piece, content, status, platform_message_id FROM outbox_pieces"
        " WHERE outbox_id = ? ORDER BY piece",
        (outbox_id,),
    ).fetchall()
    return [decode_piece(row) for row in rows]


def decode_piece(row: tuple[Any, ...]) -> ReplyPiece:
    return ReplyPiece(int(row[0]), row[1], _status(row[2]), row[3])


def store_piece_rows(db: Transaction, outbox_id: int, contents: Sequence[str]) -> None:
    db.executemany(
        "INSERT INTO outbox_pieces (outbox_id, piece, content) VALUES (?, ?, ?)",
        [(outbox_id, index, content) for index, content in enumerate(contents)],
    )


def mark_sending_row(db: Transaction, outbox_id: int, index: int) -> None:
    db.execute(
        "UPDATE outbox_pieces SET status = 'sending' WHERE outbox_id = ? AND piece = ?",
        (outbox_id, index),
    )


def mark_sent_row(
    db: Transaction, outbox_id: int, index: int, message_id: str | None, now: float
) -> None:
    db.execute(
        "UPDATE outbox_pieces SET status = 'sent', platform_message_id = ?, sent_at = ?"
        " WHERE outbox_id = ? AND piece = ?",
        (message_id, now, outbox_id, index),
    )


def piece_count_row(db: Transaction, outbox_id: int) -> int:
    row = db.execute(
        "SELECT count(*) FROM outbox_pieces WHERE outbox_id = ?", (outbox_id,)
    ).fetchone()
    return int(row[0])


def settle_sending_row(db: Transaction, outbox_id: int, status: PieceStatus) -> str | None:
    """The piece being sent ends as `status` (pending: surely not sent; unknown). Returns the
    note for the operator naming that piece and the ones held after it, or None if the reply
    is not split."""
    row = db.execute(
        "UPDATE outbox_pieces SET status = ? WHERE outbox_id = ? AND status = 'sending'"
        " RETURNING piece",
        (str(status), outbox_id),
    ).fetchone()
    if row is None:
        return None
    return piece_note(int(row[0]), piece_count_row(db, outbox_id))


def piece_note(index: int, count: int) -> str:
    """Which piece a failure concerns, and what happens to the pieces after it."""
    note = f"piece {index + 1} of {count}"
    if index + 1 < count:
        later = f"piece {count}" if index + 2 == count else f"pieces {index + 2}-{count}"
        note += f" ({later} not sent yet)"
    return note


def _status(text: str) -> PieceStatus:
    try:
        return PieceStatus(text)
    except ValueError:
        # A status this code does not know: never treat it as sent, never resend it blindly.
        return PieceStatus.UNKNOWN

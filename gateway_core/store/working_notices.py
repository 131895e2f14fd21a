"""The "still working" message of each running turn, recorded while it shows.

A row is written before the message's first send (so a crash mid-send leaves a trace), gets
the platform message id as soon as the platform answers, and goes when the turn removed the
message. So every row found at boot belongs to a turn of a run that died: its message is
still saying "still working" to the user, and the boot removes it (notifiers.py).

Rows are keyed by (session, generation): every turn, a resume included, has a generation of
its own, so a row of a dead turn and the row of the turn that resumes it never collide.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from gateway_core.clock import Clock
from gateway_core.model import Origin, WorkingNotice
from gateway_core.store.codec import decode_origin, encode_origin
from gateway_core.store.id_sets import IN_IDS, ids_param
from gateway_core.store.transaction import RowReader, TransactionQueue


def _decode(row: tuple[Any, ...]) -> WorkingNotice:
    return WorkingNotice(int(row[0]), int(row[1]), decode_origin(row[2]), row[3])


class WorkingNotices:
    def __init__(self, writer: TransactionQueue, reader: RowReader, clock: Clock) -> None:
        self._writer, self._reader, self._clock = writer, reader, clock

    async def begin(self, session_id: int, generation: int, origin: Origin) -> None:
        """The message is about to be sent for the first time."""
        now = self._clock.now()
        await self._writer.submit(
            lambda db: db.execute(
                "INSERT OR IGNORE INTO working_notices"
                " (session_id, generation, origin, created_at) VALUES (?, ?, ?, ?)",
                (session_id, generation, encode_origin(origin), now),
            )
        )

    async def shown(self, session_id: int, generation: int, message_id: str | None) -> None:
        """The platform answered the send with this message id."""
        await self._writer.submit(
            lambda db: db.execute(
                "UPDATE working_notices SET message_id = ? WHERE session_id = ? AND generation = ?",
                (message_id, session_id, generation),
            )
        )

    async def end(self, session_id: int, generation: int) -> None:
        """The message was removed (or nothing more can be done about it)."""
        await self._writer.submit(
            lambda db: db.execute(
                "DELETE FROM working_notices WHERE session_id = ? AND generation = ?",
                (session_id, generation),
            )
        )

    async def all(self) -> list[WorkingNotice]:
        """Every recorded message; read at boot, before any turn runs, these are dead turns'."""
        rows = await self._reader.all(
            "SELECT session_id, generation, origin, message_id FROM working_notices"
            " ORDER BY created_at, session_id, generation"
        )
        return [_decode(row) for row in rows]

    async def of_sessions(self, session_ids: Collection[int]) -> list[WorkingNotice]:
        """The recorded messages of a set of sessions (those a node took over: their turns
        died with the node that ran them)."""
        if not session_ids:
            return []
        rows = await self._reader.all(
            "SELECT session_id, generation, origin, message_id FROM working_notices"
            f" WHERE session_id {IN_IDS} ORDER BY created_at, session_id, generation",
            (ids_param(session_ids),),
        )
        return [_decode(row) for row in rows]

"""Who owns which sessions now, for the operator's views and actions (reads only).

The leases themselves are taken, renewed, fenced and released in leases.py; this module only
answers the console's and the control layer's question "which node holds this session's
lease?", one indexed read for the few hundred sessions a view shows. A lease that has lapsed
is nobody's: any node may take it, so it is not shown as owned.
"""

from __future__ import annotations

from collections.abc import Iterable

from gateway_core.clock import Clock
from gateway_core.store.transaction import RowReader

MAX_IDS = 1000  # a view asks for a few hundred; a longer list is read in pieces


class LeaseOwners:
    def __init__(self, reader: RowReader, clock: Clock) -> None:
        self._reader, self._clock = reader, clock

    async def of_sessions(self, session_ids: Iterable[int]) -> dict[int, str]:
        """{session: node} for the given sessions whose lease is held and not lapsed."""
        wanted = sorted(set(session_ids))
        owners: dict[int, str] = {}
        now = self._clock.now()
        for start in range(0, len(wanted), MAX_IDS):
            chunk = wanted[start : start + MAX_IDS]
            marks = ",".join("?" * len(chunk))
            rows = await self._reader.all(
                f"SELECT session_id, owner FROM session_leases WHERE session_id IN ({marks})"
                " AND owner IS NOT NULL AND expires_at >= ?",
                (*chunk, now),
            )
            owners.update((int(session_id), str(owner)) for session_id, owner in rows)
        return owners

    async def of_session(self, session_id: int) -> str | None:
        return (await self.of_sessions([session_id])).get(session_id)

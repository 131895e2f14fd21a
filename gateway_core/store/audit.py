"""The audit trail of operator actions: who, what, on which targets, why, and the outcome."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from gateway_core.clock import Clock
from gateway_core.model import AuditEntry
from gateway_core.safe_json import parse_json
from gateway_core.store.transaction import RowReader, Transaction, TransactionQueue

_COLUMNS = "id, at, actor, action, targets, reason, outcome, detail"


def _decode(row: tuple[Any, ...]) -> AuditEntry:
    entry_id, at, actor, action, targets, reason, outcome, detail = row
    decoded = parse_json(targets)
    target_list = tuple(str(t) for t in decoded) if isinstance(decoded, list) else ()
    return AuditEntry(int(entry_id), float(at), actor, action, target_list, reason, outcome, detail)


class Audit:
    def __init__(self, writer: TransactionQueue, reader: RowReader, clock: Clock) -> None:
        self._writer, self._reader, self._clock = writer, reader, clock

    async def record(
        self,
        actor: str,
        action: str,
        targets: Sequence[str],
        reason: str | None,
        outcome: str,
        detail: str | None = None,
    ) -> AuditEntry:
        now = self._clock.now()

        def txn(db: Transaction) -> AuditEntry:
            row = db.execute(
                "INSERT INTO audit (at, actor, action, targets, reason, outcome, detail)"
                f" VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING {_COLUMNS}",
                (now, actor, action, json.dumps(list(targets)), reason, outcome, detail),
            ).fetchone()
            return _decode(row)

        return await self._writer.submit(txn)

    async def recent(self, limit: int = 100) -> list[AuditEntry]:
        rows = await self._reader.all(
            f"SELECT {_COLUMNS} FROM audit ORDER BY id DESC LIMIT ?", (limit,)
        )
        return [_decode(row) for row in rows]

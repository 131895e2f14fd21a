"""One row per gateway boot. A boot is clean iff its row says so; there are no marker files."""

from __future__ import annotations

from typing import Any

from gateway_core.clock import Clock
from gateway_core.model import RunRecord
from gateway_core.store.transaction import RowReader, Transaction, TransactionQueue

_COLUMNS = "id, started_at, stopped_at, clean, pid, candidates"


def _decode(row: tuple[Any, ...]) -> RunRecord:
    run_id, started, stopped, clean, pid, candidates = row
    return RunRecord(
        id=int(run_id),
        started_at=float(started),
        stopped_at=None if stopped is None else float(stopped),
        clean=None if clean is None else bool(clean),
        pid=int(pid),
        candidates=int(candidates or 0),
    )


class Runs:
    def __init__(self, writer: TransactionQueue, reader: RowReader, clock: Clock) -> None:
        self._writer, self._reader, self._clock = writer, reader, clock

    async def begin(self, pid: int) -> RunRecord:
        now = self._clock.now()

        def txn(db: Transaction) -> RunRecord:
            row = db.execute(
                f"INSERT INTO runs (started_at, pid) VALUES (?, ?) RETURNING {_COLUMNS}",
                (now, pid),
            ).fetchone()
            return _decode(row)

        return await self._writer.submit(txn)

    async def finish(self, run_id: int, clean: bool) -> None:
        now = self._clock.now()
        await self._writer.submit(
            lambda db: db.execute(
                "UPDATE runs SET stopped_at = ?, clean = ? WHERE id = ?", (now, int(clean), run_id)
            )
        )

    async def probe_write(self, run_id: int) -> None:
        """A real write that changes nothing: the run's row rewritten as it is. It takes the
        write lock and puts a page in the WAL, so it fails as real writes would (locked by
        another process, disk full, I/O error); readiness asks it."""
        await self._writer.submit(
            lambda db: db.execute("UPDATE runs SET pid = pid WHERE id = ?", (run_id,))
        )

    async def set_candidates(self, run_id: int, count: int) -> None:
        await self._writer.submit(
            lambda db: db.execute("UPDATE runs SET candidates = ? WHERE id = ?", (count, run_id))
        )

    async def previous(self, run_id: int) -> RunRecord | None:
        """The boot before run_id; its clean flag says whether that boot stopped cleanly."""
        row = await self._reader.one(
            f"SELECT {_COLUMNS} FROM runs WHERE id < ? ORDER BY id DESC LIMIT 1", (run_id,)
        )
        return None if row is None else _decode(row)

    async def candidate_boot_times(self, since: float, exclude_run: int) -> list[float]:
        """Start times of earlier boots that found recovery candidates, oldest first."""
        rows = await self._reader.all(
            "SELECT started_at FROM runs INDEXED BY runs_with_candidates"
            " WHERE candidates > 0 AND started_at >= ? AND id != ? ORDER BY started_at",
            (since, exclude_run),
        )
        return [float(row[0]) for row in rows]

    async def recent(self, limit: int = 20) -> list[RunRecord]:
        rows = await self._reader.all(
            f"SELECT {_COLUMNS} FROM runs ORDER BY id DESC LIMIT ?", (limit,)
        )
        return [_decode(row) for row in rows]

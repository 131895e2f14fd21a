"""Read-only access through aiosqlite, separate from the writer.

WAL lets these reads run while the writer commits. The connection is opened read-only, so a
bug in a query can never write.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from pathlib import Path
from typing import Any, cast

import aiosqlite

from gateway_core.store.group_commit import translate_error

Row = tuple[Any, ...]


class Reader:
    def __init__(self, path: Path, connection: aiosqlite.Connection) -> None:
        self._path = path
        self._db = connection
        self.size = 1  # one connection: its reads run one after another

    @classmethod
    async def connect(cls, path: Path, busy_timeout: float) -> Reader:
        """path must be absolute (the store resolves it before any await)."""
        uri = f"{path.as_uri()}?mode=ro"
        connection = await aiosqlite.connect(uri, uri=True, timeout=busy_timeout)
        try:
            await connection.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")
            await connection.execute("PRAGMA query_only = 1")
        except BaseException:
            await connection.close()
            raise
        return cls(path, connection)

    async def all(self, sql: str, params: Iterable[Any] = ()) -> list[Row]:
        # Executed and fetched in one step of the connection's thread: a query whose rows
        # are still unfetched keeps its read transaction open, and another query run in
        # between would read that old snapshot (missing what was committed meanwhile).
        try:
            rows = await self._db.execute_fetchall(sql, tuple(params))
        except sqlite3.Error as error:
            raise translate_error(self._path, error) from None
        # The connection has no row factory: fetchall's list of plain tuples is already what
        # a caller gets (copying it cost the recovery scan a pass over thousands of rows).
        return cast(list[Row], rows)

    async def one(self, sql: str, params: Iterable[Any] = ()) -> Row | None:
        rows = await self.all(sql, params)
        return rows[0] if rows else None

    async def close(self) -> None:
        await self._db.close()

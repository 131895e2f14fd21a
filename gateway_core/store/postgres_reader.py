"""Reads on PostgreSQL: a small pool of autocommit connections, separate from the writer.

Each read is one statement in its own snapshot, so it sees every commit made before it (the
same guarantee the SQLite reader gives, reader.py). The connections are set read-only, so a
bug in a query can never write.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import psycopg
from psycopg import AsyncClientCursor, AsyncConnection
from psycopg_pool import AsyncConnectionPool

from gateway_core.store.dialect import postgres_sql
from gateway_core.store.errors import ServerUnreachable
from gateway_core.store.postgres_connect import BoolAsInteger, describe, masked, translate_error
from gateway_core.store.transaction import Row


async def _configure(connection: AsyncConnection[Any]) -> None:
    await connection.set_autocommit(True)
    await connection.set_read_only(True)
    connection.adapters.register_dumper(bool, BoolAsInteger)


class PostgresReader:
    def __init__(self, dsn: str, pool: AsyncConnectionPool[AsyncConnection[Any]]) -> None:
        self._dsn = dsn
        self._pool = pool
        self.size = pool.max_size  # how many reads run at once

    @classmethod
    async def connect(cls, dsn: str, size: int = 4, timeout: float = 10.0) -> PostgresReader:
        pool: AsyncConnectionPool[AsyncConnection[Any]] = AsyncConnectionPool(
            dsn,
            min_size=1,
            max_size=size,
            kwargs={"cursor_factory": AsyncClientCursor, "application_name": "switchboard"},
            configure=_configure,
            timeout=timeout,
            open=False,
            name="switchboard-reads",
        )
        try:
            await pool.open(wait=True, timeout=timeout)
        except Exception as error:
            await pool.close()
            where, text = describe(dsn), masked(dsn, str(error))
            raise ServerUnreachable(f"{where}: read connections failed: {text}") from None
        return cls(dsn, pool)

    async def all(self, sql: str, params: Iterable[Any] = ()) -> list[Row]:
        try:
            async with self._pool.connection() as connection:
                cursor = await connection.execute(postgres_sql(sql), tuple(params))
                return [tuple(row) for row in await cursor.fetchall()]
        except psycopg.Error as error:
            raise translate_error(self._dsn, error) from None

    async def one(self, sql: str, params: Iterable[Any] = ()) -> Row | None:
        rows = await self.all(sql, params)
        return rows[0] if rows else None

    async def close(self) -> None:
        await self._pool.close()

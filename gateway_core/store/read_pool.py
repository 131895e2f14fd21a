"""Several read-only SQLite connections at once, for one large scan (the boot's recovery pass).

The store's reader (reader.py) is one connection on one thread: its queries run one after
another. A scan of many candidates is mostly random page reads from a cold file, and the disk
serves several of those at once; sqlite3 releases the GIL while a statement steps, so queries
on several threads overlap their reads. This pool runs each query on one of `size` threads,
each with its own read-only connection, opened on first use.

It lives for one scan (`Store.bulk_reads`): its threads end and its connections (and their
page caches) are freed when the scan is done, so an idle gateway holds none of them.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from gateway_core.store.errors import StoreClosed
from gateway_core.store.group_commit import translate_error
from gateway_core.store.transaction import Row


class ReadPool:
    def __init__(self, path: Path, size: int, busy_timeout: float) -> None:
        """path must be absolute (as the store's)."""
        self._path = path
        self._uri = f"{path.as_uri()}?mode=ro"
        self._busy_timeout = busy_timeout
        self._executor = ThreadPoolExecutor(max_workers=size, thread_name_prefix="store-read")
        self._local = threading.local()
        self._lock = threading.Lock()
        self._connections: list[sqlite3.Connection] = []
        self._closed = False

    def _connection(self) -> sqlite3.Connection:
        connection: sqlite3.Connection | None = getattr(self._local, "connection", None)
        if connection is None:
            # check_same_thread=False only so close() can close it from the event loop's
            # thread once this thread has ended; it is used by this thread alone.
            connection = sqlite3.connect(
                self._uri, uri=True, timeout=self._busy_timeout, check_same_thread=False
            )
            with self._lock:
                if self._closed:
                    connection.close()
                    raise self._refused()
                self._connections.append(connection)
            connection.execute("PRAGMA query_only = 1")
            # close() interrupts the statements running then; this stops one that started
            # just after (every so many of SQLite's steps: rare enough to cost nothing).
            connection.set_progress_handler(self._is_closed, 100_000)
            self._local.connection = connection
        return connection

    def _run(self, sql: str, params: tuple[Any, ...]) -> list[Row]:
        if self._closed:  # asked for before the store closed, reached after
            raise self._refused()
        try:
            # Executed and fetched in one step, as the reader does (a statement left unfetched
            # would keep its old snapshot open).
            return self._connection().execute(sql, params).fetchall()
        except sqlite3.Error as error:
            if self._closed:  # interrupted by close(): say so, not "interrupted"
                raise self._refused() from None
            raise translate_error(self._path, error) from None

    def _is_closed(self) -> bool:
        return self._closed

    def _refused(self) -> StoreClosed:
        return StoreClosed(f"{self._path}: the store is closed; read refused")

    async def all(self, sql: str, params: Iterable[Any] = ()) -> list[Row]:
        if self._closed:
            raise self._refused()
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._run, sql, tuple(params))

    async def one(self, sql: str, params: Iterable[Any] = ()) -> Row | None:
        rows = await self.all(sql, params)
        return rows[0] if rows else None

    def close(self) -> None:
        """Refuse new reads, stop any still running (the store closing under a scan: each of
        its reads, running or queued, fails with StoreClosed), end the threads and close the
        connections. Safe to call twice."""
        with self._lock:
            self._closed = True
            connections, self._connections = self._connections, []
        for connection in connections:
            connection.interrupt()
        self._executor.shutdown(wait=True)  # the queued reads run at once and refuse
        for connection in connections:
            connection.close()

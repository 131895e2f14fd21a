"""The PostgreSQL writer: one connection, one thread, group commit, as on SQLite.

It keeps the SQLite writer's contract (writer.py): bodies are plain functions of a
`Transaction`, the waiting ones run together in ONE transaction on the writer's own thread,
a body that raises is rolled back alone and its caller gets the exception, and every
caller's future resolves once that transaction is committed. The
bodies therefore stay synchronous, the same code on both backends; this is why the driver is
psycopg 3, which has a synchronous API for this thread and an asynchronous one for reads.

What differs from SQLite: the server is across a socket, so a lost connection fails the
batch it hit (every caller hears `ServerUnreachable`) and the next batch connects again;
and the statements are translated (`dialect.py`).

A batch first runs as SQLite's does, without a savepoint per body (two round trips less per
body). When anything in that run fails (a body raises, a statement fails) the transaction is
rolled back and the batch runs again, each body in its own savepoint, so each caller gets
exactly its own outcome. So a body may run twice, as on SQLite. Callers still hear of their
commit only once COMMIT has been answered. (psycopg's pipeline mode was tried for the
statements whose results no body reads: on the intake bench it cost more client and server
CPU than the round trips it saved, most statements of a body being waited on anyway.)
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

import psycopg
from psycopg.pq import TransactionStatus

from gateway_core.store.dialect import postgres_sql
from gateway_core.store.errors import StoreClosed, StoreError
from gateway_core.store.postgres_connect import describe, translate_error
from gateway_core.store.transaction import Transaction
from gateway_core.store.writer import WriterStats, timed

T = TypeVar("T")
Connection = psycopg.Connection[tuple[Any, ...]]


class PostgresTransaction:
    """A body's handle on PostgreSQL: the store's SQL translated, run in the open
    transaction of the writer's connection."""

    __slots__ = ("_connection",)

    def __init__(self, connection: Connection) -> None:
        self._connection = connection

    def execute(self, sql: str, parameters: Sequence[Any] = (), /) -> psycopg.Cursor[Any]:
        # Always a sequence, even empty: the driver then reads `%%` as a literal `%`.
        return self._connection.execute(postgres_sql(sql), tuple(parameters))

    def executemany(self, sql: str, parameters: Iterable[Sequence[Any]], /) -> psycopg.Cursor[Any]:
        cursor = self._connection.cursor()
        cursor.executemany(postgres_sql(sql), [tuple(row) for row in parameters])
        return cursor


def _binding_on_the_server(connection: Connection) -> Connection:
    """The writer's statements bind their parameters on the server, so the driver prepares
    each one that keeps coming back (psycopg's prepare threshold) and the server parses and
    plans it once, not at every message: that was most of the server's time per message
    (about 3.5 ms of server CPU per message with parameters inlined, 1.1 ms prepared, on the
    bench of docs/cluster.md). Text still goes to the server untyped, so it takes the type
    of its column as inlined text did. The reads keep client-side parameters."""
    connection.cursor_factory = psycopg.Cursor
    return connection


class _RunAgain(Exception):
    """Something failed in a batch run without savepoints: roll it back and run the batch
    again, each body in its own savepoint."""


@dataclass
class _Pending:
    txn: Callable[[Transaction], Any]
    future: asyncio.Future[Any]


class PostgresWriter:
    def __init__(
        self,
        dsn: str,
        opener: Callable[[], Connection],
        connection: Connection,
        executor: ThreadPoolExecutor,
        max_batch: int = 1000,
    ) -> None:
        self._dsn = dsn
        self._where = describe(dsn)
        self._opener = opener
        self._connection: Connection | None = connection
        self._executor = executor
        self._max_batch = max_batch
        self._queue: asyncio.Queue[_Pending | None] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self.stats = WriterStats()
        self.runs_again = 0  # batches run a second time, isolated (a body or statement failed)

    @classmethod
    async def connect(
        cls, dsn: str, opener: Callable[[], Connection], max_batch: int = 1000
    ) -> PostgresWriter:
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sb-pg-writer")
        try:
            connection = await asyncio.get_running_loop().run_in_executor(executor, opener)
        except BaseException:
            executor.shutdown(wait=False)
            raise
        writer = cls(dsn, opener, _binding_on_the_server(connection), executor, max_batch)
        writer._task = asyncio.get_running_loop().create_task(writer._run(), name="store-writer")
        return writer

    async def submit(self, txn: Callable[[Transaction], T]) -> T:
        return await self.enqueue(txn)

    def enqueue(self, txn: Callable[[Transaction], T]) -> asyncio.Future[T]:
        """Queue txn for the next transaction; the future resolves once that is committed."""
        if self._closing:
            raise StoreClosed(f"{self._where}: the store is closing; write refused")
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(_Pending(txn, future))
        return future

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        stopping = False
        while not stopping:
            first = await self._queue.get()
            if first is None:
                break
            batch = [first]
            while len(batch) < self._max_batch and not self._queue.empty():
                item = self._queue.get_nowait()
                if item is None:
                    stopping = True
                    break
                batch.append(item)
            outcomes, busy = await loop.run_in_executor(self._executor, timed, self._commit, batch)
            self.stats.counted(len(batch), busy)
            for pending, (ok, value) in zip(batch, outcomes, strict=True):
                if pending.future.done():
                    continue
                if ok:
                    pending.future.set_result(value)
                else:
                    pending.future.set_exception(value)

    def _usable_connection(self) -> Connection:
        if self._connection is not None and not self._connection.broken:
            return self._connection
        if self._connection is not None:
            self._connection.close()
            self._connection = None
        self._connection = _binding_on_the_server(self._opener())
        return self._connection

    def _commit(self, batch: list[_Pending]) -> list[tuple[bool, Any]]:
        """Runs on the writer thread: one transaction for the whole batch."""
        try:
            connection = self._usable_connection()
        except StoreError as error:
            return [(False, error)] * len(batch)
        except psycopg.Error as error:
            return [(False, translate_error(self._dsn, error))] * len(batch)
        try:
            return self._commit_together(connection, batch)
        except _RunAgain:
            pass
        except Exception as error:  # the COMMIT itself failed: nothing of the batch is kept
            return self._lost(connection, batch, error)
        if connection.broken:
            return self._lost(connection, batch, psycopg.OperationalError("connection lost"))
        return self._commit_isolated(connection, batch)

    def _commit_together(
        self, connection: Connection, batch: list[_Pending]
    ) -> list[tuple[bool, Any]]:
        """The whole batch in one transaction with no savepoints; _RunAgain (the transaction
        rolled back) if a body or a statement before the COMMIT failed."""
        outcomes: list[tuple[bool, Any]] = []
        try:
            connection.execute("BEGIN")
            handle = PostgresTransaction(connection)
            for pending in batch:
                outcomes.append((True, pending.txn(handle)))
            if connection.info.transaction_status == TransactionStatus.INERROR:
                # A statement failed and its body went on: a COMMIT now would be a silent
                # rollback, so the batch runs again, isolated.
                raise _RunAgain
        except Exception:
            self.runs_again += 1
            if not connection.broken:
                with contextlib.suppress(psycopg.Error):
                    connection.execute("ROLLBACK")
            raise _RunAgain from None
        connection.execute("COMMIT")  # if it fails, the batch is lost (the caller's except)
        return outcomes

    def _commit_isolated(
        self, connection: Connection, batch: list[_Pending]
    ) -> list[tuple[bool, Any]]:
        """Statement by statement, each body in its own savepoint: one that raises is rolled
        back alone and its caller gets the exception."""
        try:
            connection.execute("BEGIN")
        except psycopg.Error as error:
            return [(False, translate_error(self._dsn, error))] * len(batch)
        handle = PostgresTransaction(connection)
        outcomes: list[tuple[bool, Any]] = []
        try:
            for pending in batch:
                connection.execute("SAVEPOINT txn")
                try:
                    value = pending.txn(handle)
                    if connection.info.transaction_status == TransactionStatus.INERROR:
                        raise StoreError(
                            f"{self._where}: a statement of this write failed and the write"
                            " went on regardless; rolled back"
                        )
                    connection.execute("RELEASE SAVEPOINT txn")
                    outcomes.append((True, value))
                except Exception as error:  # the body's own failure goes back to its caller
                    if connection.broken:
                        raise
                    connection.execute("ROLLBACK TO SAVEPOINT txn")
                    connection.execute("RELEASE SAVEPOINT txn")
                    outcomes.append((False, self._as_store_error(error)))
            connection.execute("COMMIT")
        except Exception as error:
            return self._lost(connection, batch, error)
        return outcomes

    def _lost(
        self, connection: Connection, batch: list[_Pending], error: Exception
    ) -> list[tuple[bool, Any]]:
        """The connection went, or the transaction could not be kept: the whole batch is
        lost, so every caller must hear about it."""
        lost = self._as_store_error(error)
        if not connection.broken and (connection.info.transaction_status != TransactionStatus.IDLE):
            with contextlib.suppress(psycopg.Error):
                connection.execute("ROLLBACK")
        return [(False, lost)] * len(batch)

    def _as_store_error(self, error: Exception) -> Exception:
        if isinstance(error, psycopg.Error):
            return translate_error(self._dsn, error)
        return error

    async def close(self) -> None:
        """Stop taking jobs, commit what is queued, close the connection."""
        if self._closing:
            return
        self._closing = True
        self._queue.put_nowait(None)
        if self._task is not None:
            await self._task
        connection = self._connection
        if connection is not None:
            await asyncio.get_running_loop().run_in_executor(self._executor, connection.close)
        self._executor.shutdown(wait=True)

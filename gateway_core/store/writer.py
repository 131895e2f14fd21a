"""The single writer: one connection, one thread, group commit.

Callers submit a transaction body (`txn`, a function of the connection) and await its result.
The writer task takes every body that is waiting, runs them all in ONE transaction on its own
thread and resolves each caller's future once that transaction is committed. Under load many
callers share a commit; when idle a body commits alone, with no added delay.

Why a raw sqlite3 connection on a dedicated thread rather than aiosqlite for writes: aiosqlite
pays a thread hand-off (~85 µs here) for every statement, so a turn that writes six rows costs
six hand-offs. Here a whole batch of jobs costs one. Reads still go through aiosqlite.

A body that raises is rolled back alone and its caller gets the exception; the other bodies
of the batch still commit. A batch first runs without savepoints (two statements per body,
a fifth of a message's statements at saturation); only when one of its bodies raises is the
whole transaction rolled back and the batch run again with each body in its own SAVEPOINT.
So a body may run twice: its only effects must be its statements and its return value (no
counters or lists outside it changed as it runs).
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from gateway_core.store.errors import DatabaseLocked, StoreClosed, StoreError

T = TypeVar("T")
Txn = Callable[[sqlite3.Connection], Any]


@dataclass
class WriterStats:
    batches: int = 0
    jobs: int = 0
    largest_batch: int = 0
    # Wall seconds the writer's thread spent in its transactions (waits for the interpreter
    # included): its share of the time is how near the writer is to saturation.
    busy_seconds: float = 0.0

    def counted(self, jobs: int, busy_seconds: float) -> None:
        """One group commit of `jobs` jobs, done."""
        self.batches += 1
        self.jobs += jobs
        self.largest_batch = max(self.largest_batch, jobs)
        self.busy_seconds += busy_seconds


B = TypeVar("B")
R = TypeVar("R")


def timed(commit: Callable[[B], R], batch: B) -> tuple[R, float]:
    """commit(batch) and the wall seconds it took: run on the writer's thread."""
    started = time.perf_counter()
    outcomes = commit(batch)
    return outcomes, time.perf_counter() - started


# A job waiting for the next transaction: its body and the future its caller awaits. A plain
# tuple, not a class: every write of every message is one, and a class's __init__ cost more
# than the tuple.
_Pending = tuple[Txn, "asyncio.Future[Any]"]


class _BodyFailed(Exception):
    """A body raised in a batch run without savepoints: run the batch again with them."""


def translate_error(path: Path, error: sqlite3.Error) -> StoreError:
    """Turn a sqlite3 error into one line an operator can act on."""
    text = str(error)
    if isinstance(error, sqlite3.OperationalError) and "locked" in text:
        return DatabaseLocked(f"{path}: database is locked by another process ({text})")
    return StoreError(f"{path}: {type(error).__name__}: {text}")


class Writer:
    def __init__(
        self,
        path: Path,
        connection: sqlite3.Connection,
        executor: ThreadPoolExecutor,
        max_batch: int = 1000,
    ) -> None:
        """Made by connect(), on the event loop the writer serves (its futures are that
        loop's)."""
        self._loop = asyncio.get_running_loop()
        self._path = path
        self._db = connection
        self._max_batch = max_batch
        # One thread, so the connection is only ever touched by the thread that opened it.
        self._executor = executor
        # A plain deque and one wake-up future instead of an asyncio.Queue: every write of
        # every message passes here, and the queue's getter bookkeeping cost more than the
        # append.
        self._pending: deque[_Pending] = deque()
        self._wake: asyncio.Future[None] | None = None
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self.stats = WriterStats()

    @classmethod
    async def connect(
        cls, path: Path, opener: Callable[[], sqlite3.Connection], max_batch: int = 1000
    ) -> Writer:
        """Open the connection on the writer's own thread; it is only ever used there."""
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sb-writer")
        try:
            connection = await asyncio.get_running_loop().run_in_executor(executor, opener)
        except BaseException:
            executor.shutdown(wait=False)
            raise
        writer = cls(path, connection, executor, max_batch)
        writer._task = asyncio.get_running_loop().create_task(writer._run(), name="store-writer")
        return writer

    def submit(self, txn: Callable[[sqlite3.Connection], T]) -> asyncio.Future[T]:
        """Run txn in the next transaction; the future gives its result once that is
        committed. Not a coroutine: every write of every message passes here, and a
        coroutine wrapping the future cost a frame and a resumption each time."""
        return self.enqueue(txn)

    def enqueue(self, txn: Callable[[sqlite3.Connection], T]) -> asyncio.Future[T]:
        """Queue txn for the next transaction; the future resolves once that is committed
        (for a caller that hands the commit on without a task of its own to await it)."""
        if self._closing:
            raise StoreClosed(f"{self._path}: the store is closing; write refused")
        future: asyncio.Future[T] = self._loop.create_future()
        self._pending.append((txn, future))
        self._wake_up()
        return future

    def _wake_up(self) -> None:
        if self._wake is not None and not self._wake.done():
            self._wake.set_result(None)

    async def run_now(self, txn: Callable[[sqlite3.Connection], T]) -> T:
        """Run txn on the writer thread outside any batch (for PRAGMAs and checkpoints)."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, txn, self._db)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        pending = self._pending
        while True:
            if not pending:
                if self._closing:
                    break
                self._wake = loop.create_future()
                await self._wake
                self._wake = None
                continue
            batch = [pending.popleft() for _ in range(min(len(pending), self._max_batch))]
            outcomes, busy = await loop.run_in_executor(self._executor, timed, self._commit, batch)
            self.stats.counted(len(batch), busy)
            for (_, future), (ok, value) in zip(batch, outcomes, strict=True):
                if future.done():  # the caller was cancelled; the write still happened
                    continue
                if ok:
                    future.set_result(value)
                else:
                    future.set_exception(value)

    def _commit(self, batch: list[_Pending]) -> list[tuple[bool, Any]]:
        """Runs on the writer thread: one transaction for the whole batch."""
        try:
            return self._commit_once(batch, isolated=False)
        except _BodyFailed:
            return self._commit_once(batch, isolated=True)

    def _commit_once(self, batch: list[_Pending], isolated: bool) -> list[tuple[bool, Any]]:
        """One transaction. isolated: each body in its own savepoint, so one that raises is
        rolled back alone; otherwise a body that raises rolls the transaction back and
        raises _BodyFailed (the batch is then run again, isolated)."""
        db = self._db
        try:
            db.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as error:
            failure = translate_error(self._path, error)
            return [(False, failure)] * len(batch)
        outcomes: list[tuple[bool, Any]] = []
        for txn, _ in batch:
            if isolated:
                db.execute("SAVEPOINT txn")
            try:
                outcomes.append((True, txn(db)))
                if isolated:
                    db.execute("RELEASE txn")
            except Exception as error:  # the body's own failure goes back to its caller
                if not db.in_transaction:
                    # SQLite rolled back the whole transaction (disk full, I/O error): every
                    # body of this batch is lost, so every caller must hear about it.
                    lost = _as_store_error(self._path, error)
                    return [(False, lost)] * len(batch)
                if not isolated:
                    db.execute("ROLLBACK")
                    raise _BodyFailed from error
                db.execute("ROLLBACK TO txn")
                db.execute("RELEASE txn")
                outcomes.append((False, _as_store_error(self._path, error)))
        try:
            db.execute("COMMIT")
        except sqlite3.Error as error:
            if db.in_transaction:
                db.execute("ROLLBACK")
            failure = translate_error(self._path, error)
            return [(False, failure)] * len(batch)
        return outcomes

    async def close(self) -> None:
        """Stop taking jobs, commit what is queued, close the connection."""
        if self._closing:
            return
        self._closing = True
        self._wake_up()
        if self._task is not None:
            await self._task
        await asyncio.get_running_loop().run_in_executor(self._executor, self._db.close)
        self._executor.shutdown(wait=True)


def _as_store_error(path: Path, error: Exception) -> Exception:
    if isinstance(error, sqlite3.Error):
        return translate_error(path, error)
    return error

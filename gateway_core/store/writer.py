"""The single writer: one queue of write jobs, group commit, in order.

Callers submit a transaction body (`txn`, a function of the connection) and await its result.
The writer task takes every body that is waiting, runs them all in ONE transaction and
resolves each caller's future once that transaction is committed. Under load many callers
share a commit; when idle a body commits alone, with no added delay.

Where a batch runs: bodies that are jobs (store/job.py: a function by name and its
arguments, which the hot path's writes are) go to the writer's own process when the store
has one (store/write_process.py: SQLite's work off the event loop's core); every other body
runs on the writer's thread, on its own connection. A batch that mixes the two is cut where
the kind changes and its parts committed one after another, each only once the one before
it is, so the writes keep the order they were submitted in. Without a process (or once it
has ended) everything runs on the thread. If the process dies with batches unanswered, the
ones it had not committed (each batch commits its number with it: store/write_marks.py) run
again on the thread before anything else, so their callers get real outcomes; only a batch
committed in the moment before its answer went out is reported with its outcome unknown.

Why a raw sqlite3 connection on a dedicated thread rather than aiosqlite for writes: aiosqlite
pays a thread hand-off (~85 µs here) for every statement, so a turn that writes six rows costs
six hand-offs. Here a whole batch of jobs costs one. Reads still go through aiosqlite.

A body that raises is rolled back alone and its caller gets the exception; the other bodies
of the batch still commit (store/group_commit.py). So a body may run twice: its only effects
must be its statements and its return value (no counters or lists outside it changed as it
runs).
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from collections import deque
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from gateway_core.store.errors import StoreClosed
from gateway_core.store.group_commit import Outcome, commit_batch
from gateway_core.store.job import Job, job
from gateway_core.store.write_marks import last_marked, mark_batch
from gateway_core.store.write_process import IN_FLIGHT, WriteProcess, WriteProcessGone

T = TypeVar("T")
log = logging.getLogger(__name__)
# With a batch out to the process, what waits is sent once it is this fraction of that batch
# (1/4), or when that batch is answered (see _run).
HOLD_FRACTION = 4
Txn = Callable[[sqlite3.Connection], Any]


@dataclass
class WriterStats:
    batches: int = 0
    jobs: int = 0
    largest_batch: int = 0
    # Wall seconds the writer spent in its transactions, on its thread (waits for the
    # interpreter included) or in its process: its share of the time is how near the writer
    # is to saturation.
    busy_seconds: float = 0.0
    # Writes the writer's process left unanswered when it died: run again on the thread
    # (it had not committed them), or reported with their outcome unknown (it had, or the
    # marks could not tell).
    rerun_after_process_died: int = 0
    unknown_after_process_died: int = 0

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
# The process's answer to a batch: each job's outcome, and the transaction's seconds.
_Answer = asyncio.Future[tuple[list[Outcome], float]]


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
        self._wake_at = 1  # jobs waiting that wake the writer task (see _woken)
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._process: WriteProcess | None = None
        # How to start the writer's process, and its start once begun (at the first job).
        self._start_process: Callable[[], Awaitable[WriteProcess]] | None = None
        self._starting: asyncio.Task[WriteProcess | None] | None = None
        # Each batch sent to the process is committed with its number (store/write_marks.py),
        # so that if the process dies with batches unanswered the writer can tell which it
        # had committed. None: not read from the store yet, or the store has no marks.
        self._next_mark: int | None = None
        # The batches out to the process, in the order sent (and answered), with their
        # numbers, until their answers are handed to their callers (_settle_answers).
        self._out: deque[tuple[int | None, list[_Pending], _Answer]] = deque()
        # Batches the process ended without answering, in the order they were sent, with
        # their numbers and the process's error: handled before anything else commits.
        self._unanswered: list[tuple[int | None, list[_Pending], BaseException]] = []
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

    def allow_process(self, start: Callable[[], Awaitable[WriteProcess]]) -> None:
        """Jobs may go to a writer process of their own (store/write_process.py), which
        `start` starts: at the first job, not at the store's open, so a store that never
        writes one (a one-shot command's, a test's look at a file) starts none. Until it
        is ready, jobs run on the thread."""
        self._start_process = start

    @property
    def process(self) -> WriteProcess | None:
        return self._process

    async def process_started(self) -> bool:
        """Start the writer's process now if it may have one and has not; until it is ready
        (or failed to start), whether it takes jobs."""
        starting = self._begin_process()
        if starting is None:
            return False
        process = await asyncio.shield(starting)
        return process is not None and await process.started()

    def _begin_process(self) -> asyncio.Task[WriteProcess | None] | None:
        if self._starting is None and self._start_process is not None and not self._closing:
            self._starting = self._loop.create_task(self._started_process())
        return self._starting

    async def _started_process(self) -> WriteProcess | None:
        assert self._start_process is not None
        last = await self._loop.run_in_executor(self._executor, last_marked, self._db)
        self._next_mark = None if last is None else last + 1
        if last is None:
            log.warning(
                "%s: the store's batch marks cannot be read: a batch the writer's process "
                "leaves unanswered will be reported with its outcome unknown",
                self._path,
            )
        try:
            self._process = await self._start_process()
        except OSError as error:
            log.warning("no writer process (%s): every write on the writer's thread", error)
        return self._process

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
        pending = self._pending
        pending.append((txn, future))
        if len(pending) >= self._wake_at:
            self._wake_up()
        return future

    def _wake_up(self) -> None:
        if self._wake is not None and not self._wake.done():
            self._wake.set_result(None)

    async def run_now(self, txn: Callable[[sqlite3.Connection], T]) -> T:
        """Run txn on the writer thread outside any batch (for PRAGMAs and checkpoints)."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, txn, self._db)

    async def _run(self) -> None:
        pending = self._pending
        while True:
            if self._unanswered:
                await self._run_unanswered()
                continue
            if not pending:
                if self._closing:
                    break
                await self._woken()
                continue
            process = self._process
            if process is None or not process.ready:
                if self._starting is None and any(isinstance(txn, Job) for txn, _ in pending):
                    self._begin_process()  # the first job: from now on the process starts
                await self._on_thread(self._take(len(pending)))
                continue
            if process.in_flight >= IN_FLIGHT:
                await process.slot()
                continue
            committing = process.committing
            enough = 0 if committing is None else committing // HOLD_FRACTION
            if len(pending) < enough and not self._closing:
                # A batch is being committed and what waits is a few jobs: a batch of them
                # would only sit behind it and hold the other slot while more arrive, so
                # wait for a quarter of its size or for its answer, whichever comes first.
                await self._woken(enough, process.answered())
                continue
            size = len(pending)
            if committing is None:
                # Nothing out: send half now and the rest right behind it, so the process
                # commits one while the loop handles the answers of the other (else every
                # caller waits on one batch, then the process on the loop, in turn).
                size = (size + 1) // 2
            for part, is_jobs in _parts(self._take(size)):
                if is_jobs:
                    await self._to_process(process, part)
                else:
                    await self._on_thread(part)
        if self._process is not None:
            await self._process.idle()
        await self._run_unanswered()

    def _take(self, count: int) -> list[_Pending]:
        pending = self._pending
        return [pending.popleft() for _ in range(min(count, len(pending), self._max_batch))]

    async def _woken(self, jobs: int = 1, or_when: asyncio.Future[Any] | None = None) -> None:
        """Until `jobs` jobs are waiting (or a stop begins), or `or_when` is done."""
        self._wake = self._loop.create_future()
        self._wake_at = jobs
        if or_when is not None:
            or_when.add_done_callback(self._woken_by)
        try:
            await self._wake
        finally:
            self._wake = None
            self._wake_at = 1
            if or_when is not None:
                or_when.remove_done_callback(self._woken_by)

    def _woken_by(self, _: object) -> None:
        self._wake_up()

    async def _on_thread(self, batch: list[_Pending]) -> None:
        """Commit on the writer's thread, once every batch handed to the process is."""
        if self._process is not None:
            await self._process.idle()
        await self._run_unanswered()
        outcomes, busy = await self._loop.run_in_executor(
            self._executor, timed, self._commit, batch
        )
        self.stats.counted(len(batch), busy)
        _resolve(batch, outcomes)

    async def _to_process(self, process: WriteProcess, batch: list[_Pending]) -> None:
        """Hand a batch of jobs to the process (once it has a slot); its callers' futures
        resolve when it answers. On the thread instead if the process is gone meanwhile or
        a job cannot be pickled (a bug: a job's arguments must be plain values)."""
        await process.slot()
        if not process.ready:
            await self._on_thread(batch)
            return
        number = self._next_mark
        header = None
        if number is not None:
            self._next_mark = number + 1
            header = job(mark_batch, number)
        try:
            answer = process.send([txn for txn, _ in batch], header)
        except Exception:
            log.exception("a batch of jobs could not be sent to the writer's process")
            await self._on_thread(batch)
            return
        self._out.append((number, batch, answer))
        answer.add_done_callback(self._settle_answers)

    def _settle_answers(self, _: object = None) -> None:
        """Hand the answers the process has given (or the error it ended with) to their
        batches' callers, oldest first. Run from each answer's done callback, and again,
        synchronously, before anything commits on the thread: when the process ends, every
        batch it left is failed at once, and those callbacks run a step of the loop later,
        so a write that woke the writer in that step would otherwise commit ahead of them."""
        out = self._out
        while out and out[0][2].done():
            number, batch, answer = out.popleft()
            error = answer.exception()
            if isinstance(error, WriteProcessGone):  # it ended before it answered
                self._unanswered.append((number, batch, error))
                self._wake_up()
            elif error is not None:  # it could not read the batch: nothing of it was written
                _resolve(batch, [(False, error)] * len(batch))
            else:
                outcomes, busy = answer.result()
                self.stats.counted(len(batch), busy)
                _resolve(batch, outcomes)

    async def _run_unanswered(self) -> None:
        """The batches the process ended without answering, before anything else commits.
        One numbered after the last mark the store holds was rolled back with the process:
        it runs again on the thread, and its callers get its real outcome. One at or before
        it was committed and only its answer was lost, so its callers hear the process's
        error (its outcome is unknown), as they do when the marks cannot tell."""
        self._settle_answers()
        if not self._unanswered:
            return
        unanswered, self._unanswered = self._unanswered, []
        again = unknown = 0
        try:
            last = await self._loop.run_in_executor(self._executor, last_marked, self._db)
            if last is None:
                log.error(
                    "%s: the batch marks cannot be read after the writer's process died", self._path
                )
            while unanswered:
                number, batch, error = unanswered[0]
                if last is None or number is None or number <= last:
                    unknown += len(batch)
                    _resolve(batch, [(False, error)] * len(batch))
                else:
                    outcomes, busy = await self._loop.run_in_executor(
                        self._executor, timed, self._commit, batch
                    )
                    again += len(batch)
                    self.stats.counted(len(batch), busy)
                    _resolve(batch, outcomes)
                unanswered.pop(0)
        finally:
            # Stopped on the way (the thread's connection failed, a cancelled stop): the
            # rest still hear that their outcome is unknown, never nothing at all.
            for _, batch, error in unanswered:
                unknown += len(batch)
                _resolve(batch, [(False, error)] * len(batch))
            self.stats.rerun_after_process_died += again
            self.stats.unknown_after_process_died += unknown
            log.warning(
                "the writer's process left %d write(s) unanswered: %d it had not committed "
                "ran again on the writer's thread, %d have their outcome unknown",
                again + unknown,
                again,
                unknown,
            )

    def _commit(self, batch: list[_Pending]) -> list[Outcome]:
        """Runs on the writer thread: one transaction for the whole batch."""
        return commit_batch(self._db, self._path, [txn for txn, _ in batch])

    async def close(self) -> None:
        """Stop taking jobs, commit what is queued, stop the process, close the connection."""
        if self._closing:
            return
        self._closing = True
        self._wake_up()
        if self._task is not None:
            await self._task
        if self._starting is not None:
            await self._starting
        if self._process is not None:
            await self._process.close()
            await self._run_unanswered()  # none, unless the writer's task ended on a bug
        await asyncio.get_running_loop().run_in_executor(self._executor, self._db.close)
        self._executor.shutdown(wait=True)


def _parts(batch: list[_Pending]) -> list[tuple[list[_Pending], bool]]:
    """The batch cut where it changes between jobs and other bodies, in order; each part
    with whether it is jobs."""
    parts: list[tuple[list[_Pending], bool]] = []
    for pending in batch:
        is_job = isinstance(pending[0], Job)
        if parts and parts[-1][1] == is_job:
            parts[-1][0].append(pending)
        else:
            parts.append(([pending], is_job))
    return parts


def _resolve(batch: list[_Pending], outcomes: list[Outcome]) -> None:
    for (_, future), (ok, value) in zip(batch, outcomes, strict=True):
        if future.done():  # the caller was cancelled; the write still happened
            continue
        if ok:
            future.set_result(value)
        else:
            future.set_exception(value)

"""The store: the only code that speaks SQL. One writer, read connections, on one of two
backends: one SQLite file (the embedded default) or a PostgreSQL database (several nodes).

    store = await Store.open(state_dir / "switchboard.db")
    session = await store.sessions.ensure(key, origin)
    await store.transcript.append(session.id, [NewMessage(Role.USER, "hi")])
    await store.close()   # always: an unclosed aiosqlite connection hangs interpreter exit

    store = await Store.open_postgresql(dsn)   # the same tables, transactions and API

Writes that must land together (an answer, its outbox row and the marker clear) go through
``store.write(txn)`` with the row helpers of the table modules, in one transaction.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, TypeVar

from gateway_core.clock import Clock, SystemClock
from gateway_core.private_files import private_dir, private_file
from gateway_core.store.audit import Audit
from gateway_core.store.bulk_reads import BulkReads
from gateway_core.store.database import open_write_connection
from gateway_core.store.errors import StoreClosed, StoreError
from gateway_core.store.inbox import Inbox
from gateway_core.store.inbox_wakeups import InboxWakeups
from gateway_core.store.lease_owners import LeaseOwners
from gateway_core.store.leases import Leases
from gateway_core.store.outbox import Outbox
from gateway_core.store.processes import Processes
from gateway_core.store.read_pool import ReadPool
from gateway_core.store.reader import Reader
from gateway_core.store.recovery_records import RecoveryRecords
from gateway_core.store.runs import Runs
from gateway_core.store.sessions import Sessions
from gateway_core.store.transaction import Transaction
from gateway_core.store.transcript import Transcript
from gateway_core.store.turns import Turns
from gateway_core.store.working_notices import WorkingNotices
from gateway_core.store.write_process import WriteProcess
from gateway_core.store.writer import Writer, WriterStats

if TYPE_CHECKING:
    from gateway_core.store.postgres_listen import Wakeups
    from gateway_core.store.postgres_reader import PostgresReader
    from gateway_core.store.postgres_writer import PostgresWriter

T = TypeVar("T")
DATABASE_NAME = "switchboard.db"
# Read connections a bulk scan uses at once on SQLite (measured on the recovery scan's
# benchmark, bench/recovery_scan.py: cold, the disk serves this many random reads at once).
BULK_READ_CONNECTIONS = 4


def _prepare_path(path: Path) -> Path:
    """Absolute path, parent directory created, file (if any) usable: checked before opening.

    A new database file is created here, empty and 0600, so that SQLite (which gives its WAL
    and shared-memory files the database file's mode) never makes any of them readable by
    others, whatever the umask."""
    path = path.expanduser().absolute()
    try:
        private_dir(path.parent)
    except OSError as error:
        message = f"{path.parent}: cannot create state directory: {error.strerror}"
        raise StoreError(message) from None
    if path.exists() and not os.access(path, os.R_OK | os.W_OK):
        raise StoreError(f"{path}: database file is not readable and writable by this user")
    try:
        private_file(path)
    except OSError as error:
        raise StoreError(f"{path}: cannot create database file: {error.strerror}") from None
    return path


class Store:
    def __init__(
        self,
        where: str,
        writer: Writer | PostgresWriter,
        reader: Reader | PostgresReader,
        clock: Clock,
        path: Path | None = None,
        busy_timeout: float = 5.0,
    ) -> None:
        self.where = where  # for messages: the file, or the server without its password
        self._dsn: str | None = None  # PostgreSQL's, for the listeners
        self._listeners: list[Wakeups] = []
        self.path = path  # the SQLite file; None on PostgreSQL
        self.clock = clock
        self._writer = writer
        self._reader = reader
        self._busy_timeout = busy_timeout
        self._read_pools: set[ReadPool] = set()  # the bulk scans' pools now open
        self.sessions = Sessions(writer, reader, clock)
        self.transcript = Transcript(writer, reader, clock)
        self.recovery = RecoveryRecords(writer, reader, clock)
        self.inbox = Inbox(writer, reader, clock)
        self.outbox = Outbox(writer, reader, clock)
        self.processes = Processes(writer, reader)
        self.runs = Runs(writer, reader, clock)
        self.audit = Audit(writer, reader, clock)
        self.turns = Turns(reader)
        self.working_notices = WorkingNotices(writer, reader, clock)
        self.leases = Leases(writer, reader, clock)
        self.owners = LeaseOwners(reader, clock)
        self._closed = False

    @classmethod
    async def open(
        cls,
        path: Path,
        *,
        synchronous: str = "NORMAL",
        busy_timeout: float = 5.0,
        clock: Clock | None = None,
        max_batch: int = 1000,
        write_process: bool = True,
    ) -> Store:
        """Open (creating if absent) and migrate. Raises StoreError subclasses, one line each.

        write_process: the hot path's writes (jobs) are committed by a process of the
        store's own (store/write_process.py), started at the first job and used once it is
        ready; False: every write on the writer's thread, in this process."""
        path = _prepare_path(path)
        writer = await Writer.connect(
            path, lambda: open_write_connection(path, synchronous, busy_timeout), max_batch
        )
        try:
            reader = await Reader.connect(path, busy_timeout)
            if write_process:  # started once a job comes, after this open migrated the file
                writer.allow_process(partial(WriteProcess.start, path, synchronous, busy_timeout))
        except BaseException:
            await writer.close()
            raise
        return cls(str(path), writer, reader, clock or SystemClock(), path, busy_timeout)

    @classmethod
    async def open_postgresql(
        cls,
        dsn: str,
        *,
        clock: Clock | None = None,
        max_batch: int = 1000,
        read_connections: int = 4,
    ) -> Store:
        """Connect to a PostgreSQL database and migrate it. Raises StoreError subclasses, one
        line each, none repeating the DSN's password (ServerUnreachable, AccessDenied,
        SchemaTooNew)."""
        try:
            from gateway_core.store.postgres_connect import describe, open_write_connection
            from gateway_core.store.postgres_reader import PostgresReader
            from gateway_core.store.postgres_writer import PostgresWriter
        except ImportError as error:  # psycopg is an optional extra
            raise StoreError(
                f"the PostgreSQL backend needs psycopg ({error.name} is missing):"
                " pip install 'switchboard[postgresql]'"
            ) from None
        writer = await PostgresWriter.connect(dsn, lambda: open_write_connection(dsn), max_batch)
        try:
            reader = await PostgresReader.connect(dsn, read_connections)
        except BaseException:
            await writer.close()
            raise
        store = cls(describe(dsn), writer, reader, clock or SystemClock())
        store._dsn = dsn
        return store

    async def inbox_wakeups(self) -> InboxWakeups | None:
        """What the nodes' inbox commits named (PostgreSQL's NOTIFY), its event set at each;
        None on SQLite, where this process is the only writer."""
        if self._dsn is None:
            return None
        from gateway_core.store.leases import INBOX_CHANNEL
        from gateway_core.store.postgres_listen import Wakeups

        wakeups = InboxWakeups()
        listener = Wakeups(self._dsn, INBOX_CHANNEL, wakeups.note)
        await listener.start()
        self._listeners.append(listener)
        return wakeups

    @staticmethod
    def dsn_passwords(dsn: str) -> list[str]:
        """The password a DSN carries (for redaction), if psycopg can read the DSN."""
        try:
            from psycopg.conninfo import conninfo_to_dict
        except ImportError:
            return []
        try:
            password = conninfo_to_dict(dsn).get("password")
        except Exception:  # an unreadable DSN: Store.open_postgresql will say so
            return []
        return [str(password)] if password else []

    def write(self, txn: Callable[[Transaction], T]) -> Awaitable[T]:
        """Run txn (given the transaction) in the next group commit; await the commit. A
        closed store refuses at once (StoreClosed)."""
        return self._writer.submit(txn)

    def write_soon(self, txn: Callable[[Transaction], T]) -> asyncio.Future[T]:
        """Like write, without a coroutine: the future resolves once txn is committed."""
        return self._writer.enqueue(txn)

    @asynccontextmanager
    async def bulk_reads(
        self, connections: int = BULK_READ_CONNECTIONS
    ) -> AsyncIterator[BulkReads]:
        """Reads for one large scan, `connections` of them at once (BulkReads.parallel): on
        SQLite a pool of read-only connections made for this scan and closed after it (or
        with the store); on PostgreSQL the store's own read pool. connections=1: the store's
        reader. A closed store refuses (StoreClosed)."""
        if self._closed:
            raise StoreClosed(f"{self.where}: the store is closed; read refused")
        if connections <= 1:
            yield BulkReads(self._writer, self._reader, self.clock, 1)
            return
        if self.path is None:  # PostgreSQL: its read pool already runs reads side by side
            yield BulkReads(self._writer, self._reader, self.clock, self._reader.size)
            return
        pool = ReadPool(self.path, connections, self._busy_timeout)
        self._read_pools.add(pool)
        try:
            yield BulkReads(self._writer, pool, self.clock, connections)
        finally:
            self._read_pools.discard(pool)
            pool.close()

    @property
    def writer_stats(self) -> WriterStats:
        return self._writer.stats

    async def write_process_started(self) -> bool:
        """Start the writer's process now (rather than at the first job); until it is ready
        (or failed to start), whether it takes writes. False at once for a store without
        one (write_process=False, PostgreSQL)."""
        return isinstance(self._writer, Writer) and await self._writer.process_started()

    @property
    def write_process_pid(self) -> int | None:
        """The writer's own process (store/write_process.py) while it takes writes."""
        process = self._writer.process if isinstance(self._writer, Writer) else None
        return process.pid if process is not None and process.ready else None

    async def close(self) -> None:
        """Commit what is queued and close every connection. Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        for pool in list(self._read_pools):  # a scan still running: its reads now fail
            pool.close()
        for listener in self._listeners:
            await listener.close()
        try:
            await self._writer.close()
        finally:
            await self._reader.close()

    async def __aenter__(self) -> Store:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

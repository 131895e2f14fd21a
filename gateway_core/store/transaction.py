"""The handles the store's table modules work with, whatever the backend.

Code outside the store writes a transaction as a function of a `Transaction` and passes it on
to the store's row functions (`append_rows(txn, ...)`, `enqueue_row(txn, ...)`); it never runs
statements on it itself, so the store stays the only code that speaks SQL. A body may be run
twice (store/writer.py: when another body of its batch raised), so it changes nothing outside
the transaction as it runs.

A `Transaction` is what a body's statements run on: SQLite's own connection (nothing in
between on the embedded path) or PostgreSQL's handle (`postgres_writer.PostgresTransaction`),
which takes the same SQL and translates what differs (`dialect.py`). The table modules submit
bodies to a `TransactionQueue` (the group-committing writer of either backend) and read
through a `RowReader`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any, Protocol, TypeVar

T = TypeVar("T")
Row = tuple[Any, ...]


class Cursor(Protocol):
    @property
    def rowcount(self) -> int: ...

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...


class Transaction(Protocol):
    def execute(self, sql: str, parameters: Sequence[Any] = ..., /) -> Cursor: ...

    def executemany(self, sql: str, parameters: Iterable[Sequence[Any]], /) -> Cursor: ...


class TransactionQueue(Protocol):
    def submit(self, txn: Callable[[Transaction], T]) -> Awaitable[T]:
        """Run txn in the next transaction; the awaitable gives its result once that is
        committed (SQLite's writer returns the commit's future itself: no coroutine per
        write)."""
        ...


class RowReader(Protocol):
    async def all(self, sql: str, params: Iterable[Any] = ()) -> list[Row]: ...

    async def one(self, sql: str, params: Iterable[Any] = ()) -> Row | None: ...

"""A transaction body by name: a module-level function and its arguments.

A body is any function of the transaction (store/transaction.py), and a closure is the
easy way to write one. A closure cannot leave the process, though, and on SQLite the store
runs the writes of the hot path in a writer process of its own (store/write_process.py), so
that SQLite's work and the event loop's use both cores instead of taking turns on one. A
`Job` is a body that can be sent there: `job(start_turn_body, session_id, request, now)`
runs `start_turn_body(db, session_id, request, now)` in the next transaction, wherever the
writer runs it. Its function must be importable by name (defined at module level) and its
arguments and result picklable; every other body runs on the writer's own thread, in order
with the jobs (store/writer.py).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Concatenate, Generic, ParamSpec, TypeVar

from gateway_core.store.transaction import Transaction

T = TypeVar("T")
P = ParamSpec("P")


class Job(Generic[T]):
    """fn(db, *args, **kwargs), callable as a body and picklable as (fn, args, kwargs)."""

    __slots__ = ("args", "fn", "kwargs")

    def __init__(self, fn: Callable[..., T], args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        self.fn = fn
        self.args = args
        self.kwargs = kwargs

    def __call__(self, db: Transaction) -> T:
        return self.fn(db, *self.args, **self.kwargs)

    def __reduce__(self) -> tuple[type[Job[T]], tuple[Any, ...]]:
        # The three fields as they are: cheaper than pickle's default for a slotted class.
        return (Job, (self.fn, self.args, self.kwargs))

    def __repr__(self) -> str:
        return f"Job({getattr(self.fn, '__qualname__', self.fn)!s})"


def job(fn: Callable[Concatenate[Transaction, P], T], *args: P.args, **kwargs: P.kwargs) -> Job[T]:
    """The body `fn(db, *args, **kwargs)`, as a job the writer's process can run."""
    return Job(fn, args, kwargs)

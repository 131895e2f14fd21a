"""One group commit on SQLite: a batch of bodies in one transaction, each caller's outcome.

Shared by the two places SQLite's writes run: the writer's thread (store/writer.py) and the
writer's own process (store/write_process.py). A batch first runs without savepoints (two
statements per body, a fifth of a message's statements at saturation); only when one of its
bodies raises is the whole transaction rolled back and the batch run again with each body in
its own SAVEPOINT, so that body is rolled back alone and the others still commit. So a body
may run twice: its only effects must be its statements and its return value.

A batch may have a header: a body run first, outside the savepoints, that commits only with
the whole batch. If it raises, no body is committed and every caller hears why (the writer's
process's batch mark is one: store/write_marks.py; a batch committed without its mark would
look uncommitted to the writer, and could be written twice).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from gateway_core.store.errors import DatabaseLocked, StoreError

Body = Callable[[sqlite3.Connection], Any]
# (True, the body's result) or (False, the exception its caller gets).
Outcome = tuple[bool, Any]


class _BodyFailed(Exception):
    """A body raised in a batch run without savepoints: run the batch again with them."""


def translate_error(path: Path, error: sqlite3.Error) -> StoreError:
    """Turn a sqlite3 error into one line an operator can act on."""
    text = str(error)
    if isinstance(error, sqlite3.OperationalError) and "locked" in text:
        return DatabaseLocked(f"{path}: database is locked by another process ({text})")
    return StoreError(f"{path}: {type(error).__name__}: {text}")


def commit_batch(
    db: sqlite3.Connection, path: Path, bodies: Sequence[Body], header: Body | None = None
) -> list[Outcome]:
    """Every body in one transaction on db, after the header if there is one; one outcome
    per body, in order."""
    try:
        return _commit_once(db, path, bodies, header, isolated=False)
    except _BodyFailed:
        return _commit_once(db, path, bodies, header, isolated=True)


def _commit_once(
    db: sqlite3.Connection,
    path: Path,
    bodies: Sequence[Body],
    header: Body | None,
    isolated: bool,
) -> list[Outcome]:
    """One transaction. isolated: each body in its own savepoint, so one that raises is
    rolled back alone; otherwise a body that raises rolls the transaction back and raises
    _BodyFailed (the batch is then run again, isolated)."""
    try:
        db.execute("BEGIN IMMEDIATE")
    except sqlite3.Error as error:
        failure = translate_error(path, error)
        return [(False, failure)] * len(bodies)
    if header is not None:
        try:
            header(db)
        except Exception as error:  # the batch commits with its header or not at all
            if db.in_transaction:
                db.execute("ROLLBACK")
            return [(False, as_store_error(path, error))] * len(bodies)
    outcomes: list[Outcome] = []
    for body in bodies:
        if isolated:
            db.execute("SAVEPOINT txn")
        try:
            outcomes.append((True, body(db)))
            if isolated:
                db.execute("RELEASE txn")
        except Exception as error:  # the body's own failure goes back to its caller
            if not db.in_transaction:
                # SQLite rolled back the whole transaction (disk full, I/O error): every
                # body of this batch is lost, so every caller must hear about it.
                lost = as_store_error(path, error)
                return [(False, lost)] * len(bodies)
            if not isolated:
                db.execute("ROLLBACK")
                raise _BodyFailed from error
            db.execute("ROLLBACK TO txn")
            db.execute("RELEASE txn")
            outcomes.append((False, as_store_error(path, error)))
    try:
        db.execute("COMMIT")
    except sqlite3.Error as error:
        if db.in_transaction:
            db.execute("ROLLBACK")
        failure = translate_error(path, error)
        return [(False, failure)] * len(bodies)
    return outcomes


def as_store_error(path: Path, error: Exception) -> Exception:
    """A sqlite3 error as the store's own (one line); any other exception as it is."""
    if isinstance(error, sqlite3.Error):
        return translate_error(path, error)
    return error

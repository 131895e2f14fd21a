"""Which batch the SQLite writer's process committed last (schema version 11).

Every batch the writer hands its process (store/write_process.py) begins with
`mark_batch(number)`, in the batch's own transaction, so the mark is committed exactly when
the batch is. If the process dies with batches unanswered, the writer reads `last_marked`:
those numbered after it were rolled back with the process and can run again; one at or
before it was committed, and only its answer was lost. The mark is the batch's header
(store/group_commit.py): if it fails, the batch fails whole, so no batch commits unmarked.

The numbers assume one writer process per database file at a time: the state directory's
lock (one gateway per state directory) is what keeps a second gateway from moving the mark.
"""

from __future__ import annotations

import sqlite3

from gateway_core.store.transaction import Transaction

_MARK_SQL = "UPDATE write_marks SET batch = ? WHERE id = 1"
_LAST_SQL = "SELECT batch FROM write_marks WHERE id = 1"


def mark_batch(db: Transaction, number: int) -> None:
    """A job: the first body of every batch sent to the writer's process."""
    db.execute(_MARK_SQL, (number,))


def last_marked(db: sqlite3.Connection) -> int | None:
    """The number of the last batch committed with a mark; None if the store has no marks
    (a database this code did not migrate), and then no batch is ever run again."""
    try:
        row = db.execute(_LAST_SQL).fetchone()
    except sqlite3.Error:
        return None
    return None if row is None else int(row[0])

"""Errors the store raises instead of raw sqlite3 tracebacks.

Each carries one line an operator can act on. None of them is raised after anything was
written to a file the store did not create or recognise.
"""

from __future__ import annotations


class StoreError(Exception):
    """Base of every store error; str(error) is one line naming the database path."""


class NotADatabase(StoreError):
    """The file at the database path is not SQLite, or is corrupted."""


class SchemaTooNew(StoreError):
    """The database was written by a newer Switchboard with a schema this one cannot read."""


class DatabaseLocked(StoreError):
    """Another process holds the database lock longer than the busy timeout."""


class StoreClosed(StoreError):
    """A write (or a scan's bulk read) was asked for after the store started closing."""


class LeaseHeld(StoreError):
    """Another live node holds the session's lease: this node may not start a turn for it."""


class LeaseLost(StoreError):
    """This node's lease on the session was taken over: the write was refused (fencing)."""


class ServerUnreachable(StoreError):
    """The PostgreSQL server did not answer (down, wrong host or port, or the network)."""


class AccessDenied(StoreError):
    """The PostgreSQL server refused the credentials, or the user may not use the database."""

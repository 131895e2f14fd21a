"""Opening the database file safely: recognise it, refuse what we cannot read, migrate.

Nothing is written to the file until it is known to be a SQLite database whose schema
version this code understands, so a wrong path or a newer database is never damaged.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from gateway_core.store.errors import NotADatabase, SchemaTooNew, StoreError
from gateway_core.store.group_commit import translate_error
from gateway_core.store.schema import LATEST_VERSION, MIGRATIONS

SQLITE_HEADER = b"SQLite format 3\x00"
SYNCHRONOUS_MODES = ("NORMAL", "FULL")


def check_file_header(path: Path) -> None:
    """Refuse a non-empty file that is not SQLite before SQLite itself touches it."""
    try:
        with path.open("rb") as handle:
            header = handle.read(len(SQLITE_HEADER))
    except FileNotFoundError:
        return
    except OSError as error:
        raise StoreError(f"{path}: cannot open database file: {error.strerror}") from None
    if header and header != SQLITE_HEADER:
        raise NotADatabase(
            f"{path}: not a SQLite database (or corrupted); refusing to open or overwrite it"
        )


def open_write_connection(path: Path, synchronous: str, busy_timeout: float) -> sqlite3.Connection:
    """Open, validate and migrate; returns the connection the writer thread will own."""
    if synchronous not in SYNCHRONOUS_MODES:
        raise ValueError(f"synchronous must be one of {SYNCHRONOUS_MODES}, not {synchronous!r}")
    check_file_header(path)
    # isolation_level=None: we issue BEGIN IMMEDIATE / COMMIT ourselves (no implicit transactions).
    db = sqlite3.connect(path, timeout=busy_timeout, isolation_level=None, check_same_thread=False)
    try:
        db.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")
        version = _read_version(path, db)
        if version > LATEST_VERSION:
            raise SchemaTooNew(
                f"{path}: database schema version {version} is newer than this Switchboard "
                f"understands (up to {LATEST_VERSION}); upgrade Switchboard. File left unchanged."
            )
        db.execute("PRAGMA journal_mode = WAL")
        db.execute(f"PRAGMA synchronous = {synchronous}")
        db.execute("PRAGMA foreign_keys = ON")
        migrate(db, version)
    except StoreError:
        db.close()
        raise
    except sqlite3.DatabaseError as error:
        db.close()
        if isinstance(error, sqlite3.OperationalError):
            raise translate_error(path, error) from None
        raise NotADatabase(f"{path}: corrupted database ({error}); refusing to modify it") from None
    return db


def _read_version(path: Path, db: sqlite3.Connection) -> int:
    version = int(db.execute("PRAGMA user_version").fetchone()[0])
    # Reading the schema forces SQLite to parse the file header and first page, which is where
    # a corrupted or foreign file is detected.
    db.execute("SELECT count(*) FROM sqlite_master").fetchone()
    return version


def migrate(db: sqlite3.Connection, from_version: int) -> None:
    """Apply every migration after from_version, each in its own transaction."""
    for index in range(from_version, LATEST_VERSION):
        target = index + 1
        try:
            # executescript would COMMIT a transaction opened with execute(), so the BEGIN and
            # the version bump are part of the same script.
            db.executescript(
                f"BEGIN IMMEDIATE;\n{MIGRATIONS[index]}\nPRAGMA user_version = {target};\nCOMMIT;"
            )
        except sqlite3.Error:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise

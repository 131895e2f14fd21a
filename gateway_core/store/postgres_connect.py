"""Connecting to PostgreSQL safely: say which server, never the secret; refuse a newer schema.

The DSN comes from the environment (`store.dsn_env`) and may hold a password, so nothing the
store says about a server repeats it: errors and logs name the server by `describe(dsn)`
(user, host, port, database), and any text from the driver has the password masked.

Migrations run one per transaction under an advisory lock, so two nodes booting at once on
an empty database do not both create the tables; the version is read again once the lock
is held.
"""

from __future__ import annotations

import psycopg
from psycopg import ClientCursor
from psycopg.adapt import Dumper
from psycopg.conninfo import conninfo_to_dict
from psycopg.pq import TransactionStatus

from gateway_core.store.errors import (
    AccessDenied,
    SchemaTooNew,
    ServerUnreachable,
    StoreError,
)
from gateway_core.store.schema import LATEST_VERSION
from gateway_core.store.schema_postgresql import POSTGRES_MIGRATIONS, VERSION_TABLE

# Any constant: the key of the advisory lock that serialises migrations across nodes.
_MIGRATION_LOCK = 0x5357_4254_4348  # "SWBTCH"
# SQLSTATE classes: 28 invalid authorization, 3D invalid catalog (no such database),
# 42501 insufficient privilege.
_ACCESS_STATES = ("28000", "28P01", "3D000", "42501")
# 08 connection exception, 57 operator intervention (the server shutting down, a backend
# terminated): the connection is gone, the next batch connects again.
_CONNECTION_LOST_CLASSES = ("08", "57")


class BoolAsInteger(Dumper):
    """Booleans go in as 0 and 1, as SQLite stores them, so the same columns hold them.

    An untyped '1' literal also reads as true where PostgreSQL wants a boolean."""

    def dump(self, obj: bool) -> bytes:
        return b"1" if obj else b"0"

    def quote(self, obj: bool) -> bytes:
        # Quoted, so the literal has no type of its own: '1' is 1 in an integer column and
        # true in a CASE WHEN, as SQLite reads a bound 1 in both places.
        return b"'1'" if obj else b"'0'"


def describe(dsn: str) -> str:
    """The server and database a DSN names, without its password."""
    try:
        parts = conninfo_to_dict(dsn)
    except psycopg.ProgrammingError:
        return "PostgreSQL (unreadable DSN)"
    user = parts.get("user")
    host = parts.get("host") or parts.get("hostaddr") or "local socket"
    port = parts.get("port")
    database = parts.get("dbname") or user or "default database"
    where = f"{host}:{port}" if port else str(host)
    who = f"{user}@" if user else ""
    return f"postgresql {who}{where}/{database}"


def masked(dsn: str, text: str) -> str:
    """Driver text with the DSN's password (if any) taken out, on one line."""
    try:
        password = conninfo_to_dict(dsn).get("password")
    except psycopg.ProgrammingError:
        password = None
    if password:
        text = text.replace(str(password), "***")
    return " ".join(text.split())


def translate_error(dsn: str, error: psycopg.Error) -> StoreError:
    """One line an operator can act on, naming the server but not the password."""
    where = describe(dsn)
    text = masked(dsn, str(error))
    state = error.sqlstate or ""
    if state in _ACCESS_STATES or "authentication failed" in text or "password" in text:
        return AccessDenied(f"{where}: access denied: {text}")
    if isinstance(error, psycopg.OperationalError) and not state:
        return ServerUnreachable(f"{where}: cannot reach the server: {text}")
    if state.startswith(_CONNECTION_LOST_CLASSES):
        return ServerUnreachable(f"{where}: connection lost: {text}")
    return StoreError(f"{where}: {type(error).__name__}: {text}")


def connect(dsn: str) -> psycopg.Connection[tuple[object, ...]]:
    """A connection for the store: statements as the store writes them (client-side
    parameters, like SQLite's loosely typed ones), transactions issued explicitly."""
    try:
        connection = psycopg.connect(
            dsn, autocommit=True, cursor_factory=ClientCursor, application_name="switchboard"
        )
    except psycopg.ProgrammingError:
        # A DSN that is not even readable: its text may hold the password, so not repeated.
        raise StoreError("the PostgreSQL DSN cannot be parsed (check store.dsn_env)") from None
    except psycopg.Error as error:
        raise translate_error(dsn, error) from None
    connection.adapters.register_dumper(bool, BoolAsInteger)
    return connection


def open_write_connection(dsn: str) -> psycopg.Connection[tuple[object, ...]]:
    """Connect, refuse a newer schema, migrate; the connection the writer thread will own."""
    connection = connect(dsn)
    try:
        version = _read_version(connection)
        _refuse_newer(dsn, version)
        if version < LATEST_VERSION:
            _migrate(dsn, connection)
    except psycopg.Error as error:
        connection.close()
        raise translate_error(dsn, error) from None
    except BaseException:
        connection.close()
        raise
    return connection


def _refuse_newer(dsn: str, version: int) -> None:
    if version > LATEST_VERSION:
        raise SchemaTooNew(
            f"{describe(dsn)}: database schema version {version} is newer than this Switchboard "
            f"understands (up to {LATEST_VERSION}); upgrade Switchboard. Database left unchanged."
        )


def _read_version(connection: psycopg.Connection[tuple[object, ...]]) -> int:
    exists = connection.execute("SELECT to_regclass(%s)", (VERSION_TABLE,)).fetchone()
    if exists is None or exists[0] is None:
        return 0
    row = connection.execute(f"SELECT version FROM {VERSION_TABLE}").fetchone()
    return 0 if row is None else int(str(row[0]))


def _migrate(dsn: str, connection: psycopg.Connection[tuple[object, ...]]) -> None:
    """Apply every migration after the stored version, each in its own transaction."""
    while True:
        connection.execute("BEGIN")
        try:
            connection.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
            connection.execute(
                f"CREATE TABLE IF NOT EXISTS {VERSION_TABLE} (version BIGINT NOT NULL)"
            )
            version = _read_version(connection)
            _refuse_newer(dsn, version)
            if version >= LATEST_VERSION:
                connection.execute("COMMIT")
                return
            connection.execute(POSTGRES_MIGRATIONS[version])
            connection.execute(f"DELETE FROM {VERSION_TABLE}")
            connection.execute(f"INSERT INTO {VERSION_TABLE} VALUES (%s)", (version + 1,))
            connection.execute("COMMIT")
        except BaseException:
            if connection.info.transaction_status != TransactionStatus.IDLE:
                connection.execute("ROLLBACK")
            raise

"""Sessions: one row per conversation, with its origin and turn generation."""

from __future__ import annotations

from collections.abc import Collection

from gateway_core.clock import Clock
from gateway_core.model import Origin, Session, SessionKey
from gateway_core.store.codec import SESSION_COLUMNS, decode_origin, decode_session, encode_origin
from gateway_core.store.id_sets import IN_IDS, ids_param
from gateway_core.store.job import job
from gateway_core.store.transaction import RowReader, Transaction, TransactionQueue
from gateway_core.store.turns import close_crashed_rows

_ENSURE = (
    "INSERT INTO sessions (key, platform, chat_id, thread_id, origin, created_at,"
    " updated_at) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT(key) DO UPDATE SET"
    " origin = coalesce(excluded.origin, sessions.origin)"
    " RETURNING id, origin, generation, created_at, updated_at"
)
# The same upsert also noting the platform id of the user's newest message (a private
# chat's answer to anything older is sent as a reply to what it answers): intake runs it for
# every message, so it is not a statement of its own.
_ENSURE_NOTING = (
    "INSERT INTO sessions (key, platform, chat_id, thread_id, origin, created_at,"
    " updated_at, last_message_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(key) DO UPDATE"
    " SET origin = coalesce(excluded.origin, sessions.origin),"
    " last_message_id = excluded.last_message_id"
    " RETURNING id, origin, generation, created_at, updated_at"
)


def ensure_row(
    db: Transaction,
    key: SessionKey,
    origin: Origin | None,
    now: float,
    newest_message_id: str | None = None,
) -> Session:
    """Upsert a session inside an open transaction (see Sessions.ensure).

    One statement on the hot path (every inbound message): the upsert returns the row, and
    the recovery record is only inserted when the row was just created (its created_at is
    this call's `now`; a false positive in the same batch is harmless, the insert ignores
    an existing record). A given origin is the one now stored, so it is not decoded again.
    newest_message_id: recorded as the platform id of the user's newest message."""
    values = (str(key), key.platform, key.chat_id, key.thread_id, encode_origin(origin), now, now)
    if newest_message_id is None:
        row = db.execute(_ENSURE, values).fetchone()
    else:
        row = db.execute(_ENSURE_NOTING, (*values, newest_message_id)).fetchone()
    session_id, stored_origin, generation, created_at, updated_at = row
    if created_at == now:
        # Every session has exactly one recovery record from the start.
        db.execute(
            "INSERT OR IGNORE INTO recovery (session_id, state, updated_at) VALUES (?, 'none', ?)",
            (session_id, now),
        )
    return Session(
        id=int(session_id),
        key=key,
        origin=origin if origin is not None else decode_origin(stored_origin),
        generation=int(generation),
        created_at=float(created_at),
        updated_at=float(updated_at),
    )


class Sessions:
    def __init__(self, writer: TransactionQueue, reader: RowReader, clock: Clock) -> None:
        self._writer, self._reader, self._clock = writer, reader, clock

    async def ensure(self, key: SessionKey, origin: Origin | None) -> Session:
        """The session for key, created if new; a given origin replaces the stored one."""
        now = self._clock.now()
        return await self._writer.submit(job(ensure_row, key, origin, now))

    async def next_generation(self, session_id: int) -> int:
        """Start a new turn generation; generations only ever grow."""

        return await self._writer.submit(lambda db: next_generation_row(db, session_id))

    async def get(self, session_id: int) -> Session | None:
        row = await self._reader.one(
            f"SELECT {SESSION_COLUMNS} FROM sessions WHERE id = ?", (session_id,)
        )
        return None if row is None else decode_session(row)

    async def last_message_id(self, session_id: int) -> str | None:
        """The platform id of the newest message its user sent (None: none recorded)."""
        row = await self._reader.one(
            "SELECT last_message_id FROM sessions WHERE id = ?", (session_id,)
        )
        return None if row is None or row[0] is None else str(row[0])

    async def by_key(self, key: SessionKey) -> Session | None:
        row = await self._reader.one(
            f"SELECT {SESSION_COLUMNS} FROM sessions WHERE key = ?", (str(key),)
        )
        return None if row is None else decode_session(row)

    async def search(self, text: str, order: str, limit: int | None) -> list[Session]:
        """Sessions whose key or user name contains `text` (case-insensitively for ASCII), in
        `order`: "recent" (last turn first) or by id; at most `limit`."""
        where, params = _matching(text)
        by = "updated_at DESC, id" if order == "recent" else "id"
        # No LIMIT at all for "every row": PostgreSQL refuses SQLite's LIMIT -1.
        bounded = "" if limit is None else " LIMIT ?"
        rows = await self._reader.all(
            f"SELECT {SESSION_COLUMNS} FROM sessions{where} ORDER BY {by}{bounded}",
            params if limit is None else (*params, limit),
        )
        return [decode_session(row) for row in rows]

    async def count_matching(self, text: str) -> int:
        where, params = _matching(text)
        row = await self._reader.one(f"SELECT count(*) FROM sessions{where}", params)
        return int(row[0]) if row else 0

    async def list(self, limit: int = 1000, offset: int = 0) -> list[Session]:
        rows = await self._reader.all(
            f"SELECT {SESSION_COLUMNS} FROM sessions ORDER BY id LIMIT ? OFFSET ?", (limit, offset)
        )
        return [decode_session(row) for row in rows]

    async def count(self) -> int:
        row = await self._reader.one("SELECT count(*) FROM sessions")
        return int(row[0]) if row else 0


def _matching(text: str) -> tuple[str, tuple[str, ...]]:
    """A WHERE clause for a substring of the key (platform, chat, topic) or of the stored
    user name; LIKE's own wildcards in `text` match themselves."""
    if not text:
        return "", ()
    pattern = "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
    where = (
        " WHERE key LIKE ? ESCAPE '\\' OR json_extract(origin, '$.user_name') LIKE ? ESCAPE '\\'"
    )
    return where, (pattern, pattern)


def next_generation_row(db: Transaction, session_id: int) -> int:
    """Start a new generation inside an open transaction; generations only ever grow."""
    row = db.execute(
        "UPDATE sessions SET generation = generation + 1 WHERE id = ? RETURNING generation",
        (session_id,),
    ).fetchone()
    if row is None:
        raise KeyError(f"no session {session_id}")
    return int(row[0])


def start_turn_row(db: Transaction, session_id: int, now: float) -> int:
    """A turn's start in one statement (the hot path): a new generation, recorded as the
    running turn, and the session touched. Returns the generation; generations only grow."""
    row = db.execute(
        "UPDATE sessions SET generation = generation + 1, active_turn = generation + 1,"
        " turn_started_at = ?, updated_at = ? WHERE id = ? RETURNING generation",
        (now, now, session_id),
    ).fetchone()
    if row is None:
        raise KeyError(f"no session {session_id}")
    return int(row[0])


def end_turn_row(db: Transaction, session_id: int, generation: int) -> bool:
    """Clear the running-turn marker, only if it still names this generation (compare-and-set:
    a late unwind of an old turn never clears a newer turn's marker)."""
    cursor = db.execute(
        "UPDATE sessions SET active_turn = NULL, turn_started_at = NULL"
        " WHERE id = ? AND active_turn = ?",
        (session_id, generation),
    )
    return cursor.rowcount == 1


def generation_row(db: Transaction, session_id: int) -> int:
    """The session's newest generation, inside an open transaction."""
    row = db.execute("SELECT generation FROM sessions WHERE id = ?", (session_id,)).fetchone()
    if row is None:
        raise KeyError(f"no session {session_id}")
    return int(row[0])


def promote_crashed_turns(
    db: Transaction, now: float, only: Collection[int] | None = None
) -> list[int]:
    """At boot: every turn still marked running died with the previous run. Mark its session
    for recovery (reason 'crash', unless a drain already gave a more specific reason), close
    its turn row as crashed and clear the turn marker. Returns the session ids. On a node,
    `only` the sessions it took over (another node's turns may be running).

    Three statements whatever the number of sessions (the set is one bound parameter on a
    node, the partial index of running turns otherwise)."""
    if only is None:
        running = (
            "SELECT id FROM sessions INDEXED BY sessions_active_turn WHERE active_turn IS NOT NULL"
        )
        params: tuple[str, ...] = ()
    else:
        running = f"SELECT id FROM sessions WHERE id {IN_IDS} AND active_turn IS NOT NULL"
        params = (ids_param(only),)
    # A new episode starts from 'none': nothing has been told about it yet.
    db.execute(
        "UPDATE recovery SET state = 'pending', reason = 'crash', marked_at = ?,"
        f" updated_at = ?, told = NULL WHERE state = 'none' AND session_id IN ({running})",
        (now, now, *params),
    )
    close_crashed_rows(db, now, only)
    rows = db.execute(
        f"UPDATE sessions SET active_turn = NULL, turn_started_at = NULL WHERE id IN ({running})"
        " RETURNING id",
        params,
    ).fetchall()
    return sorted(int(row[0]) for row in rows)

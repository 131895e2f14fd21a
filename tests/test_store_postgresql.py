"""The PostgreSQL backend's own cases: what a server can answer that a file cannot, the
schema both backends end up with, and several stores (nodes) on one database."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path

import psycopg
import pytest

from gateway_core.clock import ManualClock
from gateway_core.model import Origin, SessionKey
from gateway_core.store import (
    AccessDenied,
    LeaseLost,
    SchemaTooNew,
    ServerUnreachable,
    Store,
    StoreError,
)
from gateway_core.store.dialect import postgres_sql
from gateway_core.store.leases import claim_left_over_row, fence_row
from gateway_core.store.schema import LATEST_VERSION
from gateway_core.store.schema_postgresql import VERSION_TABLE
from gateway_core.store.transaction import Transaction
from gateway_core.store.transcript import append_rows
from tests.support.postgres_server import PASSWORD, PostgresServer
from tests.support.transcripts import answer

KEY = SessionKey("telegram", "42")
ORIGIN = Origin("telegram", "42", user_name="Ada")


@pytest.fixture
def dsn(postgres_server: PostgresServer) -> str:
    return postgres_server.new_database()


async def test_an_unreachable_server_is_one_clear_line_without_the_password(
    postgres_server: PostgresServer,
) -> None:
    closed_port = postgres_server.dsn("nowhere").replace(f"port={postgres_server.port}", "port=1")
    with pytest.raises(ServerUnreachable) as caught:
        await Store.open_postgresql(closed_port)
    message = str(caught.value)
    assert message.startswith("postgresql switchboard@127.0.0.1:1/nowhere: cannot reach")
    assert "\n" not in message and PASSWORD not in message


async def test_wrong_credentials_are_refused_by_name_without_the_password(
    postgres_server: PostgresServer,
) -> None:
    wrong = postgres_server.dsn(password="not-the-password")
    with pytest.raises(AccessDenied, match=r"access denied.*password authentication failed") as e:
        await Store.open_postgresql(wrong)
    assert "not-the-password" not in str(e.value) and PASSWORD not in str(e.value)


async def test_a_newer_schema_is_refused_and_left_alone(dsn: str) -> None:
    async with await Store.open_postgresql(dsn) as store:
        await store.sessions.ensure(KEY, ORIGIN)
    with psycopg.connect(dsn, autocommit=True) as raw:
        raw.execute(f"UPDATE {VERSION_TABLE} SET version = %s", (LATEST_VERSION + 5,))
    with pytest.raises(SchemaTooNew, match=f"version {LATEST_VERSION + 5} is newer") as caught:
        await Store.open_postgresql(dsn)
    assert PASSWORD not in str(caught.value)
    with psycopg.connect(dsn) as raw:
        assert raw.execute(f"SELECT version FROM {VERSION_TABLE}").fetchall() == [
            (LATEST_VERSION + 5,)
        ]
        assert raw.execute("SELECT count(*) FROM sessions").fetchone() == (1,)


def _sqlite_columns(path: Path) -> dict[str, list[str]]:
    raw = sqlite3.connect(path)
    try:
        tables = [
            row[0] for row in raw.execute("SELECT name FROM sqlite_master WHERE type='table'")
        ]
        return {t: [c[1] for c in raw.execute(f"PRAGMA table_info({t})")] for t in tables}
    finally:
        raw.close()


def _postgres_columns(dsn: str) -> dict[str, list[str]]:
    with psycopg.connect(dsn) as raw:
        rows = raw.execute(
            "SELECT table_name, column_name FROM information_schema.columns"
            " WHERE table_schema = current_schema() AND table_name != %s"
            " ORDER BY table_name, ordinal_position",
            (VERSION_TABLE,),
        ).fetchall()
    columns: dict[str, list[str]] = {}
    for table, column in rows:
        columns.setdefault(table, []).append(column)
    return columns


async def test_both_backends_migrate_to_the_same_tables_and_columns(
    dsn: str, db_path: Path
) -> None:
    async with await Store.open(db_path), await Store.open_postgresql(dsn):
        pass
    assert _postgres_columns(dsn) == _sqlite_columns(db_path)


async def test_two_nodes_opening_an_empty_database_at_once_migrate_it_once(dsn: str) -> None:
    first, second = await asyncio.gather(Store.open_postgresql(dsn), Store.open_postgresql(dsn))
    await first.close()
    await second.close()
    with psycopg.connect(dsn) as raw:
        assert raw.execute(f"SELECT version FROM {VERSION_TABLE}").fetchall() == [(LATEST_VERSION,)]


async def test_an_update_seen_by_two_nodes_is_stored_once(dsn: str, clock: ManualClock) -> None:
    async with (
        await Store.open_postgresql(dsn, clock=clock) as one,
        await Store.open_postgresql(dsn, clock=clock) as two,
    ):
        batch = [("100", "telegram:42", "{}")]
        first, second = await asyncio.gather(
            one.inbox.add_batch("telegram", batch), two.inbox.add_batch("telegram", batch)
        )
        assert sorted([len(first), len(second)]) == [0, 1]
        assert len(await two.inbox.open_items()) == 1


async def test_a_lost_connection_fails_the_writes_it_hit_and_the_next_batch_reconnects(
    dsn: str,
) -> None:
    async with await Store.open_postgresql(dsn) as store:
        session = await store.sessions.ensure(KEY, ORIGIN)
        with psycopg.connect(dsn, autocommit=True) as admin:
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid != pg_backend_pid()"
                " AND application_name = 'switchboard'"
            )
        with pytest.raises(ServerUnreachable):
            await store.sessions.next_generation(session.id)
        assert await store.sessions.next_generation(session.id) == 1


def test_the_translation_keeps_literals_and_spells_the_differences() -> None:
    assert postgres_sql("SELECT '?%' FROM t WHERE a = ? AND b LIKE ?") == (
        "SELECT '?%%' FROM t WHERE a = %s AND b ILIKE %s"
    )
    assert postgres_sql("INSERT OR IGNORE INTO t (a) VALUES (?)") == (
        "INSERT INTO t (a) VALUES (%s) ON CONFLICT DO NOTHING"
    )
    assert postgres_sql("INSERT OR IGNORE INTO t (a) VALUES (?) RETURNING id") == (
        "INSERT INTO t (a) VALUES (%s) ON CONFLICT DO NOTHING RETURNING id"
    )
    assert postgres_sql("SELECT a FROM t INDEXED BY t_open WHERE MAX(t.x, excluded.x)") == (
        "SELECT a FROM t WHERE GREATEST(t.x, excluded.x)"
    )
    assert postgres_sql("json_extract(origin, '$.user_name')") == "(origin::json ->> 'user_name')"
    assert postgres_sql("UPDATE t SET a = 1 WHERE id IN (SELECT value FROM json_each(?))") == (
        "UPDATE t SET a = 1 WHERE id IN"
        " (SELECT value::bigint FROM json_array_elements_text(%s::json))"
    )


async def test_two_nodes_on_one_database_fence_each_other(dsn: str, clock: ManualClock) -> None:
    async with (
        await Store.open_postgresql(dsn, clock=clock) as node_a,
        await Store.open_postgresql(dsn, clock=clock) as node_b,
    ):
        session = await node_a.sessions.ensure(KEY, Origin("telegram", "42"))
        epoch_a = await node_a.leases.acquire(session.id, "a", 15.0)
        clock.advance(15.0 + 1)  # a paused past its lease
        epoch_b = await node_b.leases.acquire(session.id, "b", 15.0)

        def answer_as(node: str, epoch: int, text: str) -> Callable[[Transaction], None]:
            def txn(db: Transaction) -> None:
                fence_row(db, session.id, node, epoch)
                append_rows(db, session.id, [answer(text)], clock.now())

            return txn

        late_a, on_time_b = await asyncio.gather(
            node_a.write(answer_as("a", epoch_a, "stale answer")),
            node_b.write(answer_as("b", epoch_b, "answer")),
            return_exceptions=True,
        )
        assert isinstance(late_a, LeaseLost) and on_time_b is None
        assert [m.content for m in await node_a.transcript.all(session.id)] == ["answer"]


def _append_row(session_id: int, text: str) -> Callable[[Transaction], int]:
    def txn(db: Transaction) -> int:
        return append_rows(db, session_id, [answer(text)], 1.0)[0].seq

    return txn


def _failing_statement(db: Transaction) -> None:
    # NOT NULL violated; its result is never looked at, so in a pipelined batch the error
    # surfaces at a later body's statement.
    db.execute("INSERT INTO sessions (key) VALUES (NULL)")


def _swallowing(db: Transaction) -> None:
    try:
        db.execute("INSERT INTO sessions (key) VALUES (NULL)")
        db.execute("SELECT 1").fetchone()
    except psycopg.Error:
        pass  # a body that goes on: what it wrote must not be reported committed


async def test_in_one_batch_a_failing_statement_fails_its_own_write_only(dsn: str) -> None:
    async with await Store.open_postgresql(dsn) as store:
        session = await store.sessions.ensure(KEY, ORIGIN)
        before = store.writer_stats.batches
        results = await asyncio.gather(
            store.write_soon(_append_row(session.id, "first")),
            store.write_soon(_failing_statement),
            store.write_soon(_swallowing),
            store.write_soon(_append_row(session.id, "last")),
            return_exceptions=True,
        )
        assert store.writer_stats.batches - before == 1
        assert results[0] == 1 and results[3] == 2
        assert isinstance(results[1], StoreError) and "NotNullViolation" in str(results[1])
        assert isinstance(results[2], StoreError) and "went on regardless" in str(results[2])
        rows = await store.transcript.all(session.id)
        assert [(m.seq, m.content) for m in rows] == [(1, "first"), (2, "last")]


async def test_a_batch_whose_last_write_swallowed_a_failure_is_not_reported_committed(
    dsn: str,
) -> None:
    async with await Store.open_postgresql(dsn) as store:
        session = await store.sessions.ensure(KEY, ORIGIN)
        results = await asyncio.gather(
            store.write_soon(_append_row(session.id, "kept")),
            store.write_soon(_swallowing),
            return_exceptions=True,
        )
        assert results[0] == 1
        assert isinstance(results[1], StoreError)
        rows = await store.transcript.all(session.id)
        assert [m.content for m in rows] == ["kept"]


async def test_a_sweep_does_not_hold_up_the_live_owner_of_a_session(
    dsn: str, clock: ManualClock
) -> None:
    """Node a's take-over sweep meets a session node b holds and is using: b's fence must not
    wait for a's sweep to commit (a row lock there would stall b, or deadlock two sweeps)."""
    async with (
        await Store.open_postgresql(dsn, clock=clock) as a,
        await Store.open_postgresql(dsn, clock=clock) as b,
    ):
        session = await b.sessions.ensure(KEY, ORIGIN)
        epoch = await b.leases.acquire(session.id, "b", 15.0)
        await b.outbox.enqueue(session.id, 1, "reply", "owed")  # something left over
        inside, release = threading.Event(), threading.Event()

        def sweep_held_open(db: Transaction) -> list[int]:
            taken = claim_left_over_row(db, "a", clock.now(), 15.0, include_own=False)
            inside.set()
            release.wait(10)  # a's transaction stays open while b writes
            return taken

        sweeping = a.write_soon(sweep_held_open)
        assert await asyncio.get_running_loop().run_in_executor(None, inside.wait, 10)
        try:
            async with asyncio.timeout(3):
                await b.write(lambda db: fence_row(db, session.id, "b", epoch))
        finally:
            release.set()
        assert await sweeping == []

"""Bad database files, locks, migrations and shutdown: clear errors, files never damaged."""

from __future__ import annotations

import asyncio
import hashlib
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from gateway_core.store import DatabaseLocked, NotADatabase, SchemaTooNew, Store, StoreClosed
from gateway_core.store.outbox import COUNT_UNKNOWN_SQL, MARK_UNKNOWN_SQL
from gateway_core.store.recovery_records import CANDIDATES_SQL
from gateway_core.store.schema import LATEST_VERSION, MIGRATIONS


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


async def test_a_text_file_is_refused_and_left_alone(db_path: Path) -> None:
    db_path.parent.mkdir(parents=True)
    db_path.write_text("these are my notes, not a database\n")
    before = _digest(db_path)
    with pytest.raises(NotADatabase, match="not a SQLite database"):
        await Store.open(db_path)
    assert _digest(db_path) == before
    assert not db_path.with_name(db_path.name + "-wal").exists()


async def test_a_corrupted_database_is_refused_and_left_alone(db_path: Path) -> None:
    async with await Store.open(db_path):
        pass
    data = bytearray(db_path.read_bytes())
    data[100:4096] = b"\xde\xad\xbe\xef" * ((4096 - 100) // 4)  # header intact, pages garbage
    db_path.write_bytes(bytes(data))
    before = _digest(db_path)
    with pytest.raises(NotADatabase) as caught:
        await Store.open(db_path)
    assert str(db_path) in str(caught.value)
    assert "\n" not in str(caught.value)
    assert _digest(db_path) == before


async def test_a_newer_schema_is_refused_and_left_alone(db_path: Path) -> None:
    async with await Store.open(db_path):
        pass
    raw = sqlite3.connect(db_path)
    raw.execute(f"PRAGMA user_version = {LATEST_VERSION + 5}")
    raw.close()
    before = _digest(db_path)
    with pytest.raises(SchemaTooNew, match=f"version {LATEST_VERSION + 5} is newer"):
        await Store.open(db_path)
    assert _digest(db_path) == before


async def test_an_older_schema_is_migrated_forward_keeping_its_rows(db_path: Path) -> None:
    db_path.parent.mkdir(parents=True)
    raw = sqlite3.connect(db_path, isolation_level=None)
    raw.executescript(MIGRATIONS[0])  # what version 1 of Switchboard created
    raw.execute("PRAGMA user_version = 1")
    raw.execute(
        "INSERT INTO sessions (key, platform, chat_id, created_at, updated_at)"
        " VALUES ('loopback:c1:-', 'loopback', 'c1', 1, 1)"
    )
    raw.execute("INSERT INTO recovery (session_id, state, reason) VALUES (1, 'pending', 'drain')")
    raw.execute("INSERT INTO runs (started_at, pid) VALUES (1, 99)")
    raw.close()

    async with await Store.open(db_path) as store:
        (record, session), *_ = await store.recovery.candidates()
        assert (record.state, record.reason, session.key.chat_id) == ("pending", "drain", "c1")
        assert record.last_explanation is None  # the column version 2 added
        run = (await store.runs.recent())[0]
        assert (run.pid, run.candidates) == (99, 0)
        entry = await store.audit.record("ops", "clear", ["1"], None, "ok")  # a v2 table
        assert entry.action == "clear"
    raw = sqlite3.connect(db_path)
    assert raw.execute("PRAGMA user_version").fetchone()[0] == LATEST_VERSION
    raw.close()


async def test_a_version_8_database_gets_the_covering_candidates_index(db_path: Path) -> None:
    """Version 9 rebuilds the candidates' partial index to cover the records: a store made
    by version 8, with candidates in it, comes out with the same records, read from the
    index alone."""
    db_path.parent.mkdir(parents=True)
    raw = sqlite3.connect(db_path, isolation_level=None)
    for migration in MIGRATIONS[:8]:
        raw.executescript(migration)
    raw.execute("PRAGMA user_version = 8")
    for sid in (1, 2, 3):
        raw.execute(
            "INSERT INTO sessions (id, key, platform, chat_id, created_at, updated_at)"
            " VALUES (?, ?, 'loopback', ?, 1, 1)",
            (sid, f"loopback:c{sid}:-", f"c{sid}"),
        )
    raw.execute(
        "INSERT INTO recovery (session_id, state, reason, marked_at, last_verdict,"
        " last_explanation, attempts, last_attempt_at, updated_at, told)"
        " VALUES (1, 'held', 'crash', 10, 'ambiguous-tool', ?, 2, 11, 12, 'held'),"
        " (2, 'none', NULL, NULL, NULL, NULL, 0, NULL, NULL, NULL),"
        " (3, 'pending', 'drain', 20, NULL, NULL, 0, NULL, 20, NULL)",
        ("interrupted during terminal " * 300,),
    )
    raw.close()

    async with await Store.open(db_path) as store:
        records = [record for record, _ in await store.recovery.candidates()]
    assert [(r.session_id, r.state, r.reason, r.attempts, r.told) for r in records] == [
        (1, "held", "crash", 2, "held"),
        (3, "pending", "drain", 0, None),
    ]
    assert records[0].last_explanation == "interrupted during terminal " * 300
    assert (records[0].marked_at, records[0].last_attempt_at, records[0].updated_at) == (10, 11, 12)
    raw = sqlite3.connect(db_path)
    try:
        assert raw.execute("PRAGMA user_version").fetchone()[0] == LATEST_VERSION
        plan = " ".join(row[3] for row in raw.execute(f"EXPLAIN QUERY PLAN {CANDIDATES_SQL}"))
        assert "COVERING INDEX recovery_candidates" in plan
    finally:
        raw.close()


async def test_a_version_9_database_gets_the_sends_in_doubt_indexed(db_path: Path) -> None:
    """Version 10 indexes the sends in doubt: a boot marks every 'sending' reply 'unknown' and
    counts the 'unknown' ones, and neither may read every reply ever sent to find them (a
    store with millions of sent replies spent ~0.5 s of each boot on the two). A version-9
    store with such rows keeps them and finds them through the new indexes."""
    db_path.parent.mkdir(parents=True)
    raw = sqlite3.connect(db_path, isolation_level=None)
    for migration in MIGRATIONS[:9]:
        raw.executescript(migration)
    raw.execute("PRAGMA user_version = 9")
    raw.execute(
        "INSERT INTO sessions (id, key, platform, chat_id, created_at, updated_at)"
        " VALUES (1, 'loopback:c1:-', 'loopback', 'c1', 1, 1)"
    )
    raw.executemany(
        "INSERT INTO outbox (session_id, generation, content, status, created_at)"
        " VALUES (1, 1, ?, ?, 1)",
        [("sent", "sent")] * 50 + [("in flight", "sending"), ("in doubt", "unknown")],
    )
    raw.close()

    async with await Store.open(db_path) as store:
        (marked,) = await store.outbox.mark_unknown_at_boot()
        assert marked.content == "in flight"
        assert await store.outbox.count_unknown() == 2
    raw = sqlite3.connect(db_path)
    try:
        assert raw.execute("PRAGMA user_version").fetchone()[0] == LATEST_VERSION
        for sql, index in (
            (MARK_UNKNOWN_SQL, "outbox_sending"),
            (COUNT_UNKNOWN_SQL, "outbox_unknown"),
        ):
            plan = " ".join(row[3] for row in raw.execute(f"EXPLAIN QUERY PLAN {sql}"))
            assert f"INDEX {index}" in plan, plan
    finally:
        raw.close()


async def test_a_database_locked_by_another_process_is_a_clear_error(db_path: Path) -> None:
    db_path.parent.mkdir(parents=True)
    holder = sqlite3.connect(db_path, isolation_level=None)
    holder.execute("CREATE TABLE t (x)")  # rollback-journal mode: EXCLUSIVE blocks readers too
    holder.execute("BEGIN EXCLUSIVE")
    try:
        with pytest.raises(DatabaseLocked, match="locked"):
            await Store.open(db_path, busy_timeout=0.2)
    finally:
        holder.execute("ROLLBACK")
        holder.close()


async def test_a_write_lock_held_elsewhere_fails_writes_clearly_then_recovers(
    db_path: Path,
) -> None:
    async with await Store.open(db_path, busy_timeout=0.2) as store:
        holder = sqlite3.connect(db_path, isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")
        try:
            with pytest.raises(DatabaseLocked):
                await store.runs.begin(pid=1)
        finally:
            holder.execute("ROLLBACK")
            holder.close()
        run = await store.runs.begin(pid=2)  # the store is still usable afterwards
        assert run.pid == 2


async def test_writes_after_close_are_refused(db_path: Path) -> None:
    store = await Store.open(db_path)
    await store.close()
    await store.close()  # twice is fine
    with pytest.raises(StoreClosed):
        await store.runs.begin(pid=1)


async def test_close_commits_queued_writes(db_path: Path) -> None:
    store = await Store.open(db_path)
    pending = [asyncio.ensure_future(store.runs.begin(pid=n)) for n in range(20)]
    await asyncio.sleep(0)  # let every submit enqueue before close starts
    await store.close()
    assert sorted(run.pid for run in await asyncio.gather(*pending)) == list(range(20))
    async with await Store.open(db_path) as reopened:
        assert len(await reopened.runs.recent(100)) == 20


def test_a_process_that_used_the_store_exits_promptly(tmp_path: Path) -> None:
    """An aiosqlite connection left open hangs interpreter exit; close() must close them all."""
    script = textwrap.dedent(
        f"""
        import asyncio
        from pathlib import Path
        from gateway_core.model import SessionKey
        from gateway_core.store import Store

        async def main():
            store = await Store.open(Path({str(tmp_path / "db.sqlite")!r}))
            session = await store.sessions.ensure(SessionKey("loopback", "c"), None)
            await store.transcript.tail(session.id, 5)
            await store.close()
            print("closed")

        asyncio.run(main())
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "closed"

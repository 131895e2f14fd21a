"""The store's file settings, sessions, transcript and group commit, on a real SQLite file."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from gateway_core.clock import ManualClock
from gateway_core.model import MessageKind, NewMessage, Origin, Role, SessionKey
from gateway_core.store import Store
from gateway_core.store.recovery_records import (
    CANDIDATE_STATES_SQL,
    CANDIDATES_OF_SQL,
    CANDIDATES_SQL,
)
from gateway_core.store.schema import LATEST_VERSION
from gateway_core.store.transaction import Transaction
from gateway_core.store.transcript import from_request_sql, tails_sql
from tests.support.backends import StoreOpener
from tests.support.transcripts import answer, asks, call, result, user

pytestmark = pytest.mark.both_backends

KEY = SessionKey("loopback", "chat-1", "topic-7")
ORIGIN = Origin("loopback", "chat-1", "topic-7", user_id="u1", user_name="Ada")


async def test_file_is_wal_with_normal_sync_by_default(db_path: Path) -> None:
    async with await Store.open(db_path) as store:
        await store.sessions.ensure(KEY, ORIGIN)
        raw = sqlite3.connect(db_path)
        assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert raw.execute("PRAGMA user_version").fetchone()[0] == LATEST_VERSION
        raw.close()
        assert await store.write(lambda db: db.execute("PRAGMA synchronous").fetchone()[0]) == 1


async def test_synchronous_full_is_configurable(db_path: Path) -> None:
    async with await Store.open(db_path, synchronous="FULL") as full:
        assert await full.write(lambda db: db.execute("PRAGMA synchronous").fetchone()[0]) == 2


async def test_session_is_created_once_and_keeps_its_origin(store: Store) -> None:
    first = await store.sessions.ensure(KEY, ORIGIN)
    again = await store.sessions.ensure(KEY, None)  # no origin given: the stored one stays
    assert again.id == first.id
    assert again.origin == ORIGIN
    assert again.key == KEY
    assert (await store.sessions.by_key(KEY)) == again
    assert await store.sessions.count() == 1


async def test_generation_only_grows(store: Store) -> None:
    session = await store.sessions.ensure(KEY, ORIGIN)
    assert session.generation == 0
    assert [await store.sessions.next_generation(session.id) for _ in range(3)] == [1, 2, 3]
    with pytest.raises(KeyError):
        await store.sessions.next_generation(9999)


async def test_append_numbers_rows_per_session_and_stamps_time(
    store: Store, clock: ManualClock
) -> None:
    a = await store.sessions.ensure(KEY, ORIGIN)
    b = await store.sessions.ensure(SessionKey("loopback", "chat-2"), None)
    await store.transcript.append(a.id, [user("one")])
    await store.transcript.append(b.id, [user("other")])
    clock.advance(5)
    rows = await store.transcript.append(a.id, [asks(call("terminal", "c1", command="ls"))])
    assert [r.seq for r in rows] == [2]
    assert rows[0].created_at == clock.now()
    stored = await store.transcript.all(a.id)
    assert [(m.seq, m.role, m.content) for m in stored] == [
        (1, "user", "one"),
        (2, "assistant", ""),
    ]
    assert stored[1].tool_calls[0].name == "terminal"
    assert stored[1].tool_calls[0].arguments == '{"command": "ls"}'
    assert [m.seq for m in await store.transcript.all(b.id)] == [1]


async def test_tail_returns_the_last_rows_oldest_first(store: Store) -> None:
    session = await store.sessions.ensure(KEY, ORIGIN)
    await store.transcript.append(session.id, [user(f"m{i}") for i in range(10)])
    tail = await store.transcript.tail(session.id, 3)
    assert [m.content for m in tail] == ["m7", "m8", "m9"]


async def test_tails_of_many_sessions_in_one_read(store: Store) -> None:
    ids = []
    for n in range(5):
        s = await store.sessions.ensure(SessionKey("loopback", f"c{n}"), None)
        await store.transcript.append(s.id, [user(f"{n}-{i}") for i in range(n + 1)])
        ids.append(s.id)
    tails = await store.transcript.tails([*ids, 4242, ids[4]], 2)
    assert [m.content for m in tails[ids[0]]] == ["0-0"]
    assert [m.content for m in tails[ids[4]]] == ["4-3", "4-4"]  # asked twice, read once
    assert len(tails[4242]) == 0


async def test_rows_from_the_request_on_in_one_read(store: Store) -> None:
    """From the newest user row that is neither bookkeeping nor our recovery note; all rows
    of a transcript without one; nothing for a session without rows."""
    asked = await store.sessions.ensure(SessionKey("loopback", "asked"), None)
    await store.transcript.append(
        asked.id,
        [
            user("first"),
            answer("done"),
            user("second"),
            asks(call("terminal", "t1", command="ls")),
            result("t1"),
            NewMessage(Role.USER, "note", kind=MessageKind.RECOVERY_NOTE),
            NewMessage(Role.USER, "bookkeeping", kind=MessageKind.META),
            NewMessage(Role.SYSTEM, "system"),
        ],
    )
    bare = await store.sessions.ensure(SessionKey("loopback", "bare"), None)
    await store.transcript.append(bare.id, [answer("a0"), answer("a1")])
    rows = await store.transcript.from_request([asked.id, bare.id, 4242, asked.id])
    assert [m.content for m in rows[asked.id]][:2] == ["second", ""]
    assert [m.seq for m in rows[asked.id]] == [3, 4, 5, 6, 7, 8]
    assert [m.content for m in rows[bare.id]] == ["a0", "a1"]
    assert rows[4242] == []


def _plan(db_path: Path, sql: str, params: tuple[object, ...]) -> str:
    raw = sqlite3.connect(db_path)
    try:
        return "\n".join(row[3] for row in raw.execute(f"EXPLAIN QUERY PLAN {sql}", params))
    finally:
        raw.close()


async def test_scan_queries_use_indexes_and_never_scan_transcripts(db_path: Path) -> None:
    async with await Store.open(db_path) as store:
        await store.sessions.ensure(KEY, ORIGIN)
    tails_plan = _plan(db_path, tails_sql(2), (1, 2, 50))
    assert "SEARCH m USING INDEX sqlite_autoindex_messages_1 (session_id=? AND seq>?)" in tails_plan
    assert "SCAN messages" not in tails_plan and "SCAN m " not in tails_plan
    request_plan = _plan(db_path, from_request_sql(2), (1, 2))
    assert "SEARCH m USING INDEX sqlite_autoindex_messages_1 (session_id=? AND seq>?)" in (
        request_plan
    )
    assert "SEARCH messages USING INDEX sqlite_autoindex_messages_1 (session_id=?)" in request_plan
    assert "SCAN messages" not in request_plan and "SCAN m " not in request_plan
    candidates_plan = _plan(db_path, CANDIDATES_SQL, ())
    # The records come from the candidates' index alone (schema version 9: it covers them),
    # never from the recovery table's pages; the sessions by their ids.
    assert "SCAN r USING COVERING INDEX recovery_candidates" in candidates_plan
    assert "SCAN s" not in candidates_plan
    chunk_plan = _plan(db_path, CANDIDATES_OF_SQL, ("[1, 2]",))
    assert "SCAN r USING COVERING INDEX recovery_candidates" in chunk_plan
    states_plan = _plan(db_path, CANDIDATE_STATES_SQL, ())
    assert "SCAN recovery USING COVERING INDEX recovery_candidates" in states_plan


async def test_concurrent_writers_share_commits(store: Store) -> None:
    sessions = [
        await store.sessions.ensure(SessionKey("loopback", f"c{n}"), None) for n in range(50)
    ]
    before = store.writer_stats.batches, store.writer_stats.jobs

    async def chat(session_id: int) -> None:
        for i in range(10):
            await store.transcript.append(session_id, [user(f"m{i}")])

    await asyncio.gather(*(chat(s.id) for s in sessions))
    batches = store.writer_stats.batches - before[0]
    jobs = store.writer_stats.jobs - before[1]
    assert jobs == 500
    # Fifty callers each waiting on their commit: far fewer transactions than rows.
    assert batches < jobs / 5
    assert store.writer_stats.largest_batch > 1
    for s in sessions:
        assert [m.seq for m in await store.transcript.all(s.id)] == list(range(1, 11))


async def test_a_failing_job_rolls_back_alone(store: Store) -> None:
    session = await store.sessions.ensure(KEY, ORIGIN)

    def broken(db: Transaction) -> None:
        db.execute(
            "INSERT INTO messages (session_id, seq, role) VALUES (?, 99, 'user')", (session.id,)
        )
        raise ValueError("job failed half-way")

    good = asyncio.ensure_future(store.transcript.append(session.id, [user("kept")]))
    bad = asyncio.ensure_future(store.write(broken))
    done = await asyncio.gather(good, bad, return_exceptions=True)
    assert isinstance(done[1], ValueError)
    assert [m.content for m in await store.transcript.all(session.id)] == ["kept"]


async def test_rows_survive_reopen(store_opener: StoreOpener, clock: ManualClock) -> None:
    async with await store_opener(clock) as first:
        session = await first.sessions.ensure(KEY, ORIGIN)
        await first.transcript.append(session.id, [user("hello"), answer("hi!")])
    async with await store_opener(clock) as second:
        rows = await second.transcript.all(session.id)
        assert [(m.role, m.content, m.finish_reason) for m in rows] == [
            ("user", "hello", None),
            ("assistant", "hi!", "stop"),
        ]


@pytest.mark.sqlite_only  # a PostgreSQL column of times cannot hold words
async def test_malformed_rows_come_back_flagged_not_raised(store: Store) -> None:
    session = await store.sessions.ensure(KEY, ORIGIN)
    await store.transcript.append(session.id, [user("ok"), result("c1", "x")])

    def damage(db: Transaction) -> None:
        db.execute(
            "INSERT INTO messages (session_id, seq, role, tool_calls, created_at)"
            " VALUES (?, 3, 'assistant', '{not json', 'yesterday')",
            (session.id,),
        )

    await store.write(damage)
    last = (await store.transcript.tail(session.id, 1))[0]
    assert last.malformed is True
    assert last.tool_calls == ()
    assert last.created_at is None  # an unreadable time is "unknown", never a guess


async def test_new_message_kinds_round_trip(store: Store) -> None:
    session = await store.sessions.ensure(KEY, ORIGIN)
    note = NewMessage(Role.USER, "[System note: ...]", kind=MessageKind.RECOVERY_NOTE)
    await store.transcript.append(session.id, [note])
    (row,) = await store.transcript.all(session.id)
    assert row.kind == "recovery_note"

"""Recovery records, inbox, outbox, runs, audit and background-job records on a real file."""

from __future__ import annotations

from dataclasses import replace

import pytest

from gateway_core.clock import ManualClock
from gateway_core.model import (
    Decision,
    InboxStatus,
    JobRecord,
    Origin,
    ProcessState,
    RecoveryAction,
    RecoveryState,
    SessionKey,
    Told,
    Verdict,
)
from gateway_core.store import Store
from tests.support.backends import StoreOpener

pytestmark = pytest.mark.both_backends

KEY = SessionKey("loopback", "chat-1")
ORIGIN = Origin("loopback", "chat-1", user_id="u1")
HOLD = Decision(Verdict.AMBIGUOUS_TOOL, RecoveryAction.HOLD, "interrupted during terminal")


async def test_every_session_starts_with_an_empty_recovery_record(store: Store) -> None:
    session = await store.sessions.ensure(KEY, ORIGIN)
    record = await store.recovery.get(session.id)
    assert record is not None
    assert (record.state, record.reason, record.marked_at, record.attempts) == (
        "none",
        None,
        None,
        0,
    )
    assert await store.recovery.candidates() == []


async def test_mark_persists_reason_and_time(
    store: Store, clock: ManualClock, store_opener: StoreOpener
) -> None:
    session = await store.sessions.ensure(KEY, ORIGIN)
    assert await store.recovery.mark(session.id, "drain-timeout") is True
    await store.close()
    async with await store_opener(clock) as reopened:
        record = await reopened.recovery.get(session.id)
        assert record is not None
        assert (record.state, record.reason, record.marked_at) == (
            "pending",
            "drain-timeout",
            clock.now(),
        )


async def test_mark_and_clear_refuse_unknown_sessions(store: Store) -> None:
    assert await store.recovery.mark(404, "drain") is False
    assert await store.recovery.clear(404) is False


async def test_a_suspended_session_cannot_be_marked(store: Store) -> None:
    session = await store.sessions.ensure(KEY, ORIGIN)
    assert await store.recovery.suspend(session.id, "operator") is True
    assert await store.recovery.mark(session.id, "crash") is False
    record = await store.recovery.get(session.id)
    assert record is not None and (record.state, record.reason) == ("suspended", "operator")
    assert await store.recovery.clear(session.id) is False  # clear is not unsuspend
    assert await store.recovery.unsuspend(session.id) is True
    assert await store.recovery.mark(session.id, "crash") is True


async def test_clear_resets_the_record_and_reports_whether_there_was_one(store: Store) -> None:
    session = await store.sessions.ensure(KEY, ORIGIN)
    await store.recovery.mark(session.id, "drain")
    await store.recovery.begin_attempt(session.id)
    assert await store.recovery.clear(session.id) is True
    record = await store.recovery.get(session.id)
    assert record is not None
    assert (record.state, record.reason, record.marked_at, record.attempts) == (
        "none",
        None,
        None,
        0,
    )
    assert await store.recovery.clear(session.id) is False


async def test_re_marking_keeps_an_operator_hold(store: Store, clock: ManualClock) -> None:
    session = await store.sessions.ensure(KEY, ORIGIN)
    await store.recovery.mark(session.id, "crash")
    assert await store.recovery.hold(session.id, HOLD) is True
    clock.advance(60)
    await store.recovery.mark(session.id, "drain")
    record = await store.recovery.get(session.id)
    assert record is not None
    assert (record.state, record.reason, record.marked_at) == ("held", "drain", clock.now())
    assert (record.last_verdict, record.last_explanation) == (
        "ambiguous-tool",
        "interrupted during terminal",
    )


async def test_a_long_explanation_and_suspension_reason_are_kept_and_listed(
    store: Store,
) -> None:
    """The candidates' index covers every column of a record on SQLite; PostgreSQL refuses a
    btree entry over ~2.7 KB, so a long explanation (or reason) must never land in one there."""
    held, suspended = [
        await store.sessions.ensure(SessionKey("loopback", f"long-{n}"), ORIGIN) for n in (1, 2)
    ]
    # Words that do not compress (PostgreSQL would compress a repeated text under the limit).
    words = " ".join(f"{(n * 7919) % 100_003:05x}" for n in range(2_000))
    await store.recovery.mark(held.id, "crash")
    decision = Decision(Verdict.AMBIGUOUS_TOOL, RecoveryAction.HOLD, words)
    assert await store.recovery.hold(held.id, decision) is True
    assert await store.recovery.suspend(suspended.id, words) is True
    listed = {record.session_id: record for record, _ in await store.recovery.candidates()}
    assert listed[held.id].last_explanation == words
    assert listed[suspended.id].reason == words
    assert await store.recovery.candidate_states() == [
        (held.id, RecoveryState.HELD),
        (suspended.id, RecoveryState.SUSPENDED),
    ]


async def test_attempts_count_resume_starts(store: Store, clock: ManualClock) -> None:
    session = await store.sessions.ensure(KEY, ORIGIN)
    assert await store.recovery.begin_attempt(session.id) is None  # not a candidate
    await store.recovery.mark(session.id, "crash")
    first = await store.recovery.begin_attempt(session.id)
    clock.advance(10)
    second = await store.recovery.begin_attempt(session.id)
    assert first is not None and second is not None
    assert (first.state, first.attempts) == ("resuming", 1)
    assert (second.attempts, second.last_attempt_at) == (2, clock.now())


async def test_candidates_lists_only_marked_records(store: Store) -> None:
    sessions = [
        await store.sessions.ensure(SessionKey("loopback", f"c{n}"), None) for n in range(6)
    ]
    await store.recovery.mark_many([sessions[1].id, sessions[3].id], "drain")
    await store.recovery.suspend(sessions[5].id, "operator")
    found = [(record.session_id, record.state) for record, _ in await store.recovery.candidates()]
    assert found == [
        (sessions[1].id, "pending"),
        (sessions[3].id, "pending"),
        (sessions[5].id, "suspended"),
    ]


async def test_an_update_delivered_twice_is_stored_once(store: Store) -> None:
    first = await store.inbox.add_batch(
        "telegram", [("100", "telegram:1:-", "{}"), ("101", "telegram:1:-", "{}")]
    )
    again = await store.inbox.add_batch(
        "telegram", [("101", "telegram:1:-", "{}"), ("102", None, "{}")]
    )
    assert len(first) == 2 and len(again) == 1
    assert [i.update_id for i in await store.inbox.open_items()] == ["100", "101", "102"]
    await store.inbox.finish(first[0], InboxStatus.DONE)
    await store.inbox.finish(again[0], InboxStatus.SKIPPED, "malformed update")
    assert [i.update_id for i in await store.inbox.open_items()] == ["101"]
    # The same id on another platform is a different update.
    assert len(await store.inbox.add_batch("loopback", [("100", None, "{}")])) == 1


async def test_a_sent_reply_is_never_marked_sent_twice(store: Store) -> None:
    session = await store.sessions.ensure(KEY, ORIGIN)
    item_id = await store.outbox.enqueue(session.id, 3, "reply", "the answer")
    assert [i.content for i in await store.outbox.pending()] == ["the answer"]
    assert await store.outbox.mark_sent(item_id, "tg-555") is True
    assert await store.outbox.mark_sent(item_id, "tg-556") is False
    item = await store.outbox.get(item_id)
    assert item is not None
    assert (item.status, item.platform_message_id, item.generation) == ("sent", "tg-555", 3)
    assert await store.outbox.pending() == []


async def test_failed_delivery_attempts_are_counted(store: Store) -> None:
    session = await store.sessions.ensure(KEY, ORIGIN)
    item_id = await store.outbox.enqueue(session.id, 1, "reply", "x")
    assert await store.outbox.claim(item_id) is not None
    await store.outbox.mark_attempt_failed(item_id, "HTTP 502", final=False)
    assert [i.id for i in await store.outbox.pending()] == [item_id]  # retryable: pending again
    assert await store.outbox.claim(item_id) is not None
    await store.outbox.mark_attempt_failed(item_id, "HTTP 403 blocked", final=True)
    assert await store.outbox.claim(item_id) is None  # failed for good: never claimed again
    item = await store.outbox.get(item_id)
    assert item is not None
    assert (item.status, item.attempts, item.last_error) == ("failed", 2, "HTTP 403 blocked")


async def test_a_boot_without_a_clean_stop_reads_as_a_crash(
    store: Store, clock: ManualClock
) -> None:
    first = await store.runs.begin(pid=100)
    clock.advance(30)
    await store.runs.finish(first.id, clean=True)
    second = await store.runs.begin(pid=101)  # this one is SIGKILLed: never finishes
    clock.advance(5)
    third = await store.runs.begin(pid=102)
    previous = await store.runs.previous(third.id)
    assert previous is not None
    assert (previous.id, previous.stopped_at, previous.clean) == (second.id, None, None)
    before_that = await store.runs.previous(second.id)
    assert before_that is not None and before_that.clean is True


async def test_boot_times_with_candidates(store: Store, clock: ManualClock) -> None:
    runs = []
    for count in (2, 0, 1):
        run = await store.runs.begin(pid=1)
        await store.runs.set_candidates(run.id, count)
        runs.append(run)
        clock.advance(10)
    times = await store.runs.candidate_boot_times(since=0, exclude_run=runs[2].id)
    assert times == [runs[0].started_at]


async def test_audit_rows_keep_who_what_why_and_outcome(store: Store) -> None:
    await store.audit.record("alice", "force-resume", ["7"], "customer asked", "ok")
    await store.audit.record("bob", "approve", ["8", "9"], None, "refused: not held", "gone")
    latest, earlier = await store.audit.recent(2)
    assert (latest.actor, latest.action, latest.targets, latest.outcome, latest.detail) == (
        "bob",
        "approve",
        ("8", "9"),
        "refused: not held",
        "gone",
    )
    assert (earlier.reason, earlier.targets) == ("customer asked", ("7",))


async def test_process_checkpoints_round_trip(store: Store) -> None:
    session = await store.sessions.ensure(KEY, ORIGIN)
    job_record = JobRecord(
        id="proc_abc123",
        session_id=session.id,
        generation=4,
        command="make build",
        cwd="/tmp",
        pid=4242,
        pid_started_at=1_700_000_000.5,
        notify_on_complete=True,
        watch_patterns=("ERROR", "done"),
        log_path="/tmp/proc_abc123.log",
        state=ProcessState.RUNNING,
        exit_code=None,
        end_reason=None,
        consumed=False,
        started_at=1_700_000_001.0,
    )
    await store.processes.save(job_record)
    assert await store.processes.live() == [job_record]
    finished = replace(job_record, state=ProcessState.EXITED, exit_code=0, end_reason="exited")
    await store.processes.save(finished)
    assert await store.processes.live() == []
    assert await store.processes.get("proc_abc123") == finished


@pytest.mark.sqlite_only  # a PostgreSQL column of times cannot hold words
async def test_unreadable_marker_times_keep_the_marker(store: Store) -> None:
    """Prior art A6: a malformed mark time is 'unknown', the flag and reason are kept."""
    session = await store.sessions.ensure(KEY, ORIGIN)
    await store.recovery.mark(session.id, "drain-timeout")
    await store.write(
        lambda db: db.execute(
            "UPDATE recovery SET marked_at = 'last tuesday' WHERE session_id = ?", (session.id,)
        )
    )
    record = await store.recovery.get(session.id)
    assert record is not None
    assert (record.state, record.reason, record.marked_at) == ("pending", "drain-timeout", None)


async def test_a_recovery_state_this_version_does_not_know_is_held_not_guessed(
    store: Store,
) -> None:
    # A newer version may have written a state (or a "told") we do not know: the candidate
    # waits for an operator, and the user is not told again.
    session = await store.sessions.ensure(KEY, ORIGIN)
    await store.write(
        lambda db: db.execute(
            "UPDATE recovery SET state = 'parked', told = 'nudged' WHERE session_id = ?",
            (session.id,),
        )
    )
    record = await store.recovery.get(session.id)
    assert record is not None
    assert (record.state, record.told) == (RecoveryState.HELD, Told.HELD)
    (candidate, _), = await store.recovery.candidates()  # fmt: skip
    assert candidate.state is RecoveryState.HELD


async def test_millisecond_timestamps_are_read_as_seconds(store: Store) -> None:
    session = await store.sessions.ensure(KEY, ORIGIN)
    await store.write(
        lambda db: db.execute(
            "INSERT INTO messages (session_id, seq, role, content, created_at)"
            " VALUES (?, 1, 'user', 'imported', 1700000000123)",
            (session.id,),
        )
    )
    (row,) = await store.transcript.all(session.id)
    assert row.created_at == 1_700_000_000.123


async def test_a_send_interrupted_by_a_crash_becomes_unknown_not_resent(
    store: Store, store_opener: StoreOpener, clock: ManualClock
) -> None:
    session = await store.sessions.ensure(KEY, ORIGIN)
    in_flight = await store.outbox.enqueue(session.id, 1, "reply", "maybe delivered")
    waiting = await store.outbox.enqueue(session.id, 1, "reply", "never tried")
    assert await store.outbox.claim(in_flight) is not None
    await store.close()  # the process dies here, between the send and its confirmation
    async with await store_opener(clock) as rebooted:
        unknown = await rebooted.outbox.mark_unknown_at_boot()
        assert [i.id for i in unknown] == [in_flight]
        assert [i.id for i in await rebooted.outbox.pending()] == [waiting]
        assert await rebooted.outbox.claim(in_flight) is None

"""What one message costs the SQLite writer: statements per message on the whole path.

Every user message runs through the intake, the turn's start and end and the delivery's claim
and confirmation; each statement there is paid for at every message (bench/intake.py). This
counts them on a real gateway and store file, as SQLite itself reports what it runs."""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from gateway_core.clock import ManualClock
from gateway_core.events import ReplySent
from gateway_core.store.writer import Writer
from tests.support.harness import Running, next_event, start_gateway

# The intake (inbox row, session upsert), the turn's start (turn started with its recovery
# record read, turn row, user row, inbox item done), its end (turn finished, answer row, turn
# row closed, outbox row written already claimed, since the reply is sent at once; the
# recovery record only read, by the turn-finished statement, since it holds no marker to
# clear) and the delivery's confirmation (sent).
STATEMENTS_PER_MESSAGE = 11
# Transactions of the writer, each a job of its own: intake, turn start, turn end (with the
# reply's claim), the reply sent.
JOBS_PER_MESSAGE = 4
_TRANSACTION_CONTROL = ("BEGIN", "COMMIT", "ROLLBACK", "SAVEPOINT", "RELEASE")


@pytest.fixture
async def running(tmp_path: Path, clock: ManualClock) -> AsyncIterator[Running]:
    # Every write on the writer's thread, where the trace below sees its statements: the
    # writer's process runs the very same jobs (store/write_process.py).
    gateway = await start_gateway(
        tmp_path / "state", clock, notifier={"interval": 60}, store={"write_process": False}
    )
    try:
        yield gateway
    finally:
        await gateway.stop()


async def test_a_message_costs_the_writer_at_most_eleven_statements_in_four_jobs(
    running: Running, clock: ManualClock
) -> None:
    store = running.gateway.store
    writer = store._writer
    if not isinstance(writer, Writer):
        pytest.skip("counts the SQLite writer's statements")
    ada = running.adapter.user("ada")
    sent = running.gateway.events.subscribe()
    await ada.say("first")  # creates the session and its recovery record: not counted
    await next_event(sent, ReplySent)

    statements: list[str] = []
    lock = threading.Lock()

    def traced(sql: str) -> None:
        if not sql.lstrip().upper().startswith(_TRANSACTION_CONTROL):
            with lock:
                statements.append(sql)

    await writer.run_now(lambda db: db.set_trace_callback(traced))
    jobs_before = store.writer_stats.jobs
    try:
        messages = 5
        for n in range(messages):
            clock.advance(1)  # as on a real clock: the session is not new at this time
            await ada.say(f"m{n}")
            await next_event(sent, ReplySent)  # published once the reply's "sent" committed
    finally:
        await writer.run_now(lambda db: db.set_trace_callback(None))

    jobs = store.writer_stats.jobs - jobs_before
    per_message = len(statements) / messages
    assert per_message <= STATEMENTS_PER_MESSAGE, "\n".join(statements)
    assert jobs / messages <= JOBS_PER_MESSAGE

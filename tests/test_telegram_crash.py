"""SIGKILL a real gateway process on the real Telegram adapter (aiogram over HTTP), against the
fake Bot API server running in this test process, and start it again on the same state:

* killed after the update was persisted (the confirming offset reached the fake, the turn is
  marked running) but before the reply: after the restart the user gets exactly one reply;
* killed after the reply was sent: no second reply, even though the update the gateway never
  confirmed is handed over again after the restart (the inbox dedupes it);
* killed with turns running in two forum topics and a private chat (and a second user's
  request queued in one topic): every answer after the restart is a reply to its own request,
  in its topic (the message ids survived the kill in the store).

The gateway is tests/support/telegram_gateway.py in a subprocess; its stderr goes to a log
file that is attached to any failure.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from gateway_core.store import DATABASE_NAME
from tests.support.fake_bot_api import FakeBotAPI

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
USER = 7  # a private chat: chat id == user id
POLL_TIMEOUT = 2  # seconds per long poll in the gateway process
READY_WITHIN = 20.0
STEP_WITHIN = 10.0
EXIT_WITHIN = 15.0
# Enough failing confirmations to outlast every backoff retry (2 s, 4 s, 8 s, ...) until the
# kill; cleared before the restart.
LOST_CONFIRMATIONS = 20


class Gateways:
    """Starts gateway processes on one state dir against one fake; kills what is left."""

    def __init__(self, fake: FakeBotAPI, tmp_path: Path) -> None:
        self.fake = fake
        self.state_dir = tmp_path / "state"
        self.log = tmp_path / "gateway.log"
        self.processes: list[asyncio.subprocess.Process] = []

    @property
    def db(self) -> Path:
        return self.state_dir / DATABASE_NAME

    async def start(self, *options: str) -> asyncio.subprocess.Process:
        """A gateway process, once it printed READY (bounded)."""
        with self.log.open("a", encoding="utf-8") as log:
            log.write(f"===== start #{len(self.processes) + 1} =====\n")
            log.flush()
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "tests.support.telegram_gateway",
                *("--state-dir", str(self.state_dir)),
                *("--api-base", self.fake.base_url),
                *("--allowed", str(USER)),
                *("--poll-timeout", str(POLL_TIMEOUT)),
                *options,
                cwd=REPO,
                env={
                    **os.environ,
                    "PYTHONPATH": str(REPO),
                    "SWITCHBOARD_TELEGRAM_TOKEN": self.fake.token,
                },
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=log,
            )
        self.processes.append(process)
        assert process.stdout is not None
        try:
            line = await asyncio.wait_for(process.stdout.readline(), READY_WITHIN)
        except TimeoutError:
            line = b"(nothing within the bound)"
        assert line == b"READY\n", f"no READY from the gateway: {line!r}"
        return process

    async def sigkill(self, process: asyncio.subprocess.Process) -> None:
        assert process.returncode is None, "the gateway exited before the kill"
        os.kill(process.pid, signal.SIGKILL)
        code = await asyncio.wait_for(process.wait(), EXIT_WITHIN)
        assert code == -signal.SIGKILL, f"exit code {code} after SIGKILL"

    async def sigterm(self, process: asyncio.subprocess.Process) -> None:
        assert process.returncode is None, "the gateway exited before SIGTERM"
        os.kill(process.pid, signal.SIGTERM)
        code = await asyncio.wait_for(process.wait(), EXIT_WITHIN)
        assert code == 0, f"exit code {code} after SIGTERM"

    async def reap(self) -> None:
        for process in self.processes:
            if process.returncode is None:
                process.kill()
                await asyncio.wait_for(process.wait(), EXIT_WITHIN)

    def tail(self, lines: int = 60) -> str:
        if not self.log.exists():
            return "(no gateway log)"
        text = self.log.read_text(encoding="utf-8", errors="replace")
        return "\n".join(text.splitlines()[-lines:])

    def query(self, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        """A read-only look at the store (the gateway may be writing meanwhile: WAL)."""
        if not self.db.exists():
            return []
        connection = sqlite3.connect(f"file:{self.db}?mode=ro", uri=True, timeout=5.0)
        try:
            return connection.execute(sql, params).fetchall()
        finally:
            connection.close()

    def inbox(self, update_id: int) -> list[tuple[Any, ...]]:
        return self.query(
            "SELECT status FROM inbox WHERE platform = 'telegram' AND update_id = ?",
            str(update_id),
        )

    def turns_running(self) -> int:
        rows = self.query("SELECT count(*) FROM sessions WHERE active_turn IS NOT NULL")
        return int(rows[0][0]) if rows else 0

    def user_texts(self) -> list[str]:
        """What users said, as the transcript holds it (each accepted message once)."""
        rows = self.query(
            "SELECT content FROM messages WHERE role = 'user' AND kind = 'text' ORDER BY id"
        )
        return [str(row[0]) for row in rows]

    def outbox(self) -> list[tuple[Any, ...]]:
        return self.query("SELECT status, content FROM outbox ORDER BY id")

    def runs(self) -> list[tuple[Any, ...]]:
        return self.query("SELECT clean, stopped_at IS NOT NULL FROM runs ORDER BY id")


@pytest.fixture
async def fake() -> AsyncIterator[FakeBotAPI]:
    async with FakeBotAPI() as server:
        yield server


@asynccontextmanager
async def gateways(fake: FakeBotAPI, tmp_path: Path) -> AsyncIterator[Gateways]:
    """The launcher; every process is killed at the end, and a failure shows the log."""
    launcher = Gateways(fake, tmp_path)
    try:
        yield launcher
    except BaseException as error:
        error.add_note(
            f"fake: sent={fake.sent(USER)} confirmed_offset={fake.confirmed_offset} "
            f"pending={[u['update_id'] for u in fake.pending_updates()]} "
            f"getUpdates offsets={[c.params.get('offset') for c in fake.calls('getUpdates')]}"
        )
        error.add_note(f"store outbox: {launcher.outbox()}")
        error.add_note(f"gateway log ({launcher.log}):\n{launcher.tail()}")
        raise
    finally:
        await launcher.reap()


async def poll(condition: Callable[[], bool], within: float, every: float = 0.02) -> None:
    """Until condition() holds (a store read, so no event to wait on); TimeoutError after
    `within` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not condition():
        if loop.time() >= deadline:
            raise TimeoutError(f"not within {within} s: {condition}")
        await asyncio.sleep(every)


def polls(fake: FakeBotAPI) -> int:
    return len(fake.calls("getUpdates"))


async def test_killed_after_persisting_before_the_reply_answers_once_after_restart(
    fake: FakeBotAPI, tmp_path: Path
) -> None:
    async with gateways(fake, tmp_path) as gw:
        first = await gw.start()
        update_id = fake.push_text(USER, "think 30", user_id=USER)

        # Persisted: the gateway's next getUpdates confirms it (it only moves the offset after
        # the inbox commit), and the turn that took it from the inbox is marked running.
        async with asyncio.timeout(STEP_WITHIN):
            await fake.wait_until(
                lambda: (fake.confirmed_offset or 0) > update_id, timeout=STEP_WITHIN
            )
            await poll(
                lambda: gw.inbox(update_id) == [("done",)] and gw.turns_running() == 1,
                within=STEP_WITHIN,
            )
        assert fake.sent(USER) == [], "a reply went out before the kill"
        await gw.sigkill(first)
        assert fake.pending_updates() == []

        second = await gw.start()
        async with asyncio.timeout(STEP_WITHIN):
            await fake.wait_for_sent(USER, 1, timeout=STEP_WITHIN)
        assert fake.sent(USER) == ["Back after a restart. You had asked: 'think 30'"]

        # Two more polls of the restarted gateway (a full long poll at least): still one reply.
        seen = polls(fake)
        async with asyncio.timeout(2 * POLL_TIMEOUT + STEP_WITHIN):
            await fake.wait_for_calls("getUpdates", seen + 2, timeout=2 * POLL_TIMEOUT + 5)
        assert fake.sent(USER) == ["Back after a restart. You had asked: 'think 30'"]
        # A second answer could also be 30 s away (the message replayed as a new turn): none
        # is running, and the transcript holds the message once.
        assert gw.turns_running() == 0
        assert gw.user_texts() == ["think 30"]

        await gw.sigterm(second)
        assert fake.sent(USER) == ["Back after a restart. You had asked: 'think 30'"]
        assert gw.inbox(update_id) == [("done",)]
        assert gw.outbox() == [("sent", "Back after a restart. You had asked: 'think 30'")]
        assert gw.runs() == [(None, False), (1, True)]


@pytest.mark.parametrize(
    "confirmation_lost",
    [True, False],
    ids=["confirmation-lost", "as-it-happens"],
)
async def test_killed_after_the_reply_was_sent_never_replies_twice(
    fake: FakeBotAPI, tmp_path: Path, confirmation_lost: bool
) -> None:
    """confirmation-lost: the getUpdates calls that would confirm the update fail (502) until
    the kill, so the fake surely hands the update over again after the restart.
    as-it-happens: the kill lands wherever it lands; the update is redelivered only when the
    confirming poll had not reached the fake yet."""
    async with gateways(fake, tmp_path) as gw:
        first = await gw.start()
        if confirmation_lost:
            # The poll already parked takes the update; every later one fails before the fake
            # looks at its offset.
            async with asyncio.timeout(STEP_WITHIN):
                await fake.wait_for_parked_poll(timeout=STEP_WITHIN)
            fake.fail("getUpdates", 502, times=LOST_CONFIRMATIONS)
        update_id = fake.push_text(USER, "hello", user_id=USER)

        async with asyncio.timeout(STEP_WITHIN):
            await fake.wait_until(lambda: fake.sent(USER) != [], timeout=STEP_WITHIN)
        await gw.sigkill(first)
        assert fake.sent(USER) == ["You said: hello"]
        redelivered = any(u["update_id"] == update_id for u in fake.pending_updates())
        if confirmation_lost:
            tried = [c.params.get("offset") for c in fake.calls("getUpdates")]
            assert update_id + 1 in tried, f"no confirmation was attempted: offsets {tried}"
            assert redelivered, "the update was confirmed despite the failing polls"
            assert (fake.confirmed_offset or 0) <= update_id
            fake.clear_faults("getUpdates")

        seen = polls(fake)
        second = await gw.start()
        # The restarted gateway gets the update again (when it was not confirmed), stores
        # nothing new, confirms it, and keeps polling: one poll that returns it, one that
        # confirms it, and one more after a full long poll.
        async with asyncio.timeout(2 * POLL_TIMEOUT + STEP_WITHIN):
            await fake.wait_until(
                lambda: (
                    polls(fake) >= seen + 3
                    and (fake.confirmed_offset or 0) > update_id
                    and fake.pending_updates() == []
                ),
                timeout=2 * POLL_TIMEOUT + STEP_WITHIN,
            )
        assert fake.sent(USER) == ["You said: hello"]
        assert gw.turns_running() == 0
        assert gw.user_texts() == ["hello"]

        await gw.sigterm(second)
        assert fake.sent(USER) == ["You said: hello"]
        assert gw.inbox(update_id) == [("done",)]
        # Killed right after the fake took the reply, the outbox row may still say 'sending':
        # the restart marks it 'unknown' (never resent).
        assert gw.outbox() in (
            [("sent", "You said: hello")],
            [("unknown", "You said: hello")],
        )
        assert gw.runs() == [(None, False), (1, True)]
        print(f"\n[{'lost' if confirmation_lost else 'natural'}] redelivered={redelivered}")


async def test_the_still_working_message_of_a_killed_turn_is_removed_once_at_the_next_boot(
    fake: FakeBotAPI, tmp_path: Path
) -> None:
    async with gateways(fake, tmp_path) as gw:
        notifying = ("--notifier-interval", "1")
        first = await gw.start(*notifying)
        fake.push_text(USER, "think 60", user_id=USER)
        # The message shows and its id is on disk: then the process dies mid-turn.
        async with asyncio.timeout(STEP_WITHIN):
            await fake.wait_until(
                lambda: any("Still working" in text for text in fake.sent(USER)),
                timeout=STEP_WITHIN,
            )
            await poll(
                lambda: (
                    gw.query("SELECT message_id FROM working_notices") != [(None,)]
                    and gw.query("SELECT count(*) FROM working_notices") == [(1,)]
                ),
                within=STEP_WITHIN,
            )
        ((message_id,),) = gw.query("SELECT message_id FROM working_notices")
        await gw.sigkill(first)
        assert fake.messages[(USER, int(message_id))]["text"].startswith("⏳ Still working")

        def removals() -> list[Any]:
            return [
                c
                for c in fake.calls("deleteMessage")
                if c.params.get("message_id") == int(message_id)
            ]

        second = await gw.start(*notifying)
        async with asyncio.timeout(STEP_WITHIN):
            await fake.wait_until(lambda: len(removals()) == 1, timeout=STEP_WITHIN)
            await poll(
                lambda: gw.query("SELECT count(*) FROM working_notices") == [(0,)],
                within=STEP_WITHIN,
            )
        assert fake.messages[(USER, int(message_id))]["deleted"]
        await gw.sigterm(second)

        third = await gw.start(*notifying)  # nothing is left to remove: no second try
        seen = polls(fake)
        async with asyncio.timeout(2 * POLL_TIMEOUT + STEP_WITHIN):
            await fake.wait_for_calls("getUpdates", seen + 2, timeout=2 * POLL_TIMEOUT + 5)
        await gw.sigterm(third)
        assert len(removals()) == 1
        assert not any("Still working" in text for text in fake.sent(USER))


async def test_turns_killed_in_a_forum_topic_are_resumed_as_replies_to_their_own_requests(
    fake: FakeBotAPI, tmp_path: Path
) -> None:
    """Two users in one forum topic (Ada's request running, Bob's queued behind it), Bob in a
    second topic and Ada in her private chat, each with a turn running: SIGKILL. After the
    restart every answer is a reply to the request it answers, in that request's topic; the
    private chat's resumed answer is a reply too (it is not the immediate answer)."""
    bob, group = 8, -1001

    def say(chat: int, text: str, user: int, thread: int | None = None) -> tuple[int, int]:
        kind = "private" if chat > 0 else "supergroup"
        update_id = fake.push_text(chat, text, user_id=user, thread_id=thread, chat_type=kind)
        return update_id, fake.message_id_of(update_id)

    async with gateways(fake, tmp_path) as gw:
        first = await gw.start("--allowed", str(bob))
        _, ada_asked = say(group, "think 30", USER, thread=42)
        _, elsewhere = say(group, "think 30", bob, thread=7)
        _, private = say(USER, "think 30", USER)
        async with asyncio.timeout(STEP_WITHIN):
            await poll(lambda: gw.turns_running() == 3, within=STEP_WITHIN)
        queued, bob_asked = say(group, "hello", bob, thread=42)
        async with asyncio.timeout(STEP_WITHIN):
            await poll(lambda: gw.inbox(queued) == [("new",)], within=STEP_WITHIN)
        assert fake.sent() == [], "an answer went out before the kill"
        await gw.sigkill(first)

        second = await gw.start("--allowed", str(bob))
        async with asyncio.timeout(STEP_WITHIN):
            await fake.wait_for_sent(count=4, timeout=STEP_WITHIN)
        resumed = "Back after a restart. You had asked: 'think 30'"
        assert fake.reply_anchors(group, thread_id=42) == [
            (resumed, ada_asked),
            ("You said: hello", bob_asked),
        ]
        assert fake.reply_anchors(group, thread_id=7) == [(resumed, elsewhere)]
        assert fake.reply_anchors(USER) == [(resumed, private)]
        await gw.sigterm(second)

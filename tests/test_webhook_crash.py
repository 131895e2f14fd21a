"""A real `switchboard run` in webhook mode, SIGKILLed while the fake Bot API keeps POSTing
updates to it (and retrying every one it got no 2xx for), then started again on the same
state and port: every update is answered exactly once.

To be sure the kill catches updates between "received" and "committed", the test holds the
store's write lock from another connection just before the kill: the updates being POSTed at
that moment are in the gateway's hands, not committed, and never answered. Others are pushed
while the gateway is down (refused connections, retried) and after it is back.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
import sqlite3
import sys
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from gateway_core.store import DATABASE_NAME
from tests.support.fake_bot_api import FakeBotAPI
from tests.support.service_config import CHAT, environment, write_config

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parent.parent
SECRET = "crash-test-secret"
UPDATES = 60
PUSH_EVERY = 0.025  # seconds between updates: about 1.5 s of traffic
LOCK_AT = 20  # the write lock is taken once this many were pushed
CHATS = [CHAT + n for n in range(6)]  # private chats: chat id == user id
REPLY = re.compile(r"^(?:You said: |Back after a restart\. You had asked: ')(m\d+)'?$")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
async def fake() -> AsyncIterator[FakeBotAPI]:
    async with FakeBotAPI(webhook_retry_delay=0.1, webhook_timeout=5) as server:
        yield server


async def run(config: Path, env: dict[str, str], log: Path) -> asyncio.subprocess.Process:
    """`switchboard run`, once its JSON log says ready (its log lines go to `log`)."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "console.cli", "run", "-c", str(config),
        cwd=REPO, env=env, stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    assert process.stdout is not None
    async with asyncio.timeout(30):
        while True:
            line = await process.stdout.readline()
            assert line, f"the gateway exited before it was ready:\n{log.read_text()}"
            with log.open("ab") as out:
                out.write(line)
            if json.loads(line).get("event") == "ready":
                break
    asyncio.get_running_loop().create_task(_drain_output(process, log))
    return process


async def _drain_output(process: asyncio.subprocess.Process, log: Path) -> None:
    assert process.stdout is not None
    while line := await process.stdout.readline():
        with log.open("ab") as out:
            out.write(line)


async def test_sigkilled_while_updates_arrive_every_update_is_answered_once(
    tmp_path: Path, fake: FakeBotAPI
) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}/telegram"
    config = write_config(
        tmp_path,
        fake,
        telegram={
            "allowed_users": CHATS,
            "mode": "webhook",
            "webhook_url": url,
            "webhook_max_connections": 8,
        },
        sections={"http": {"listen": f"127.0.0.1:{port}"}, "store": {"busy_timeout": 30}},
    )
    env = environment(tmp_path, SWITCHBOARD_TELEGRAM_WEBHOOK_SECRET=SECRET)
    log = tmp_path / "gateway.log"
    first = await run(config, env, log)
    second: asyncio.subprocess.Process | None = None
    database = tmp_path / "state" / DATABASE_NAME
    locked = asyncio.Event()
    pushed: dict[str, int] = {}

    async def keep_pushing() -> None:
        for n in range(UPDATES):
            if n == LOCK_AT:
                locked.set()
            chat = CHATS[n % len(CHATS)]
            pushed[f"m{n}"] = fake.push_text(chat, f"m{n}", user_id=chat)
            await asyncio.sleep(PUSH_EVERY)  # a steady stream, on Telegram's side

    try:
        await fake.wait_until(lambda: fake.webhook_url == url, timeout=20)
        pusher = asyncio.ensure_future(keep_pushing())
        await locked.wait()
        holder = sqlite3.connect(database, isolation_level=None)
        try:
            holder.execute("BEGIN IMMEDIATE")
            # Updates reach the gateway and wait for the lock: received, not committed.
            await fake.wait_until(lambda: fake.webhook_in_flight >= 3, timeout=20)
            caught = fake.webhook_in_flight
            os.kill(first.pid, signal.SIGKILL)
            assert await asyncio.wait_for(first.wait(), 20) == -signal.SIGKILL
        finally:
            holder.execute("ROLLBACK")
            holder.close()
        # Down: the fake's posts are refused and retried.
        refused_before = sum(1 for a in fake.webhook_attempts if a.status is None)
        await fake.wait_until(
            lambda: sum(1 for a in fake.webhook_attempts if a.status is None) >= refused_before + 3,
            timeout=20,
        )
        second = await run(config, env, log)
        await asyncio.wait_for(pusher, 30)
        await fake.wait_until(lambda: fake.pending_updates() == [], timeout=60)
        await fake.wait_until(lambda: len(replies(fake)) >= UPDATES - unknown(database), 60)
        second.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(second.wait(), 30) == 0
    except BaseException as error:
        error.add_note(f"gateway log:\n{log.read_text() if log.exists() else '(none)'}")
        raise
    finally:
        for process in (first, second):
            if process is not None and process.returncode is None:
                process.kill()
                await process.wait()

    assert caught >= 3
    # Every update got a 2xx in the end: none is still waiting on Telegram's side.
    assert fake.pending_updates() == []
    assert all(fake.answered(update_id) for update_id in pushed.values())
    # Answered exactly once: one reply per update. The only exception the gateway allows is a
    # reply whose send the kill cut off (recorded 'unknown', never repeated): at most one.
    counts = Counter(replies(fake))
    assert max(counts.values()) == 1, f"answered twice: {[t for t, c in counts.items() if c > 1]}"
    missing = sorted(set(pushed) - set(counts))
    with sqlite3.connect(database) as db:
        statuses = Counter(status for (status,) in db.execute("SELECT status FROM outbox"))
        inbox = db.execute("SELECT update_id, status FROM inbox").fetchall()
        said = [text for (text,) in db.execute("SELECT content FROM messages WHERE role='user'")]
    assert len(missing) == statuses["unknown"] <= 1, (missing, statuses)
    # Each update stored once and done; each message once in the transcript.
    assert sorted(int(update_id) for update_id, _ in inbox) == sorted(pushed.values())
    assert {status for _, status in inbox} == {"done"}
    assert sorted(said) == sorted(pushed)
    print(
        f"\n{caught} updates caught uncommitted by the kill; "
        f"{sum(1 for a in fake.webhook_attempts if not a.ok)} attempts retried; "
        f"outbox {dict(statuses)}"
    )


def replies(fake: FakeBotAPI) -> list[str]:
    """The update token each reply the chat got answers (a resumed turn's reply included)."""
    found = []
    for text in fake.sent():
        match = REPLY.match(text)
        assert match is not None, f"a reply that answers no update: {text!r}"
        found.append(match.group(1))
    return found


def unknown(database: Path) -> int:
    with sqlite3.connect(database) as db:
        return int(db.execute("SELECT count(*) FROM outbox WHERE status = 'unknown'").fetchone()[0])

"""Answers point at what they answer (reply anchors), on a real gateway with loopback users.

The loopback platform shows what a platform would: each message the gateway sent carries the
platform id of the message it was sent as a reply to (None: a loose message). A loopback
message's platform id is the update id `say()` returns. Under `auto` (the default) a private
chat's immediate answer is loose; anything else is anchored to the request it belongs to.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from pathlib import Path
from typing import Any

from gateway_core.adapters.base import Capabilities
from gateway_core.adapters.loopback import LoopbackAdapter
from gateway_core.clock import ManualClock
from gateway_core.control import Control
from gateway_core.events import DeliveryFailed
from gateway_core.model import RecoveryAction, ReplyAnchorMode
from gateway_core.store import DATABASE_NAME, Store
from gateway_core.store.schema import MIGRATIONS
from tests.support.harness import Running, make_gateway, next_event, start_gateway, track


def rows(running: Running, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    db = running.gateway.config.gateway.state_dir / DATABASE_NAME
    connection = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return connection.execute(sql, params).fetchall()
    finally:
        connection.close()


def anchors(running: Running, chat: str, thread: str | None = None) -> list[tuple[str, Any]]:
    """(text, reply_to) of every message the gateway sent to a chat (or topic)."""
    return [(m.text, m.reply_to) for m in running.adapter.user(chat, thread).received()]


async def test_the_message_id_is_stored_with_the_inbox_transcript_turn_and_outbox_rows(
    tmp_path: Path, clock: ManualClock
) -> None:
    running = await start_gateway(tmp_path / "state", clock, notifier={"interval": 0})
    ada = running.adapter.user("ada")
    said = await ada.say("hello")
    await ada.wait_for(1)
    assert rows(running, "SELECT message_id FROM inbox") == [(said,)]
    assert rows(
        running, "SELECT role, platform_message_id, reply_to FROM messages ORDER BY seq"
    ) == [("user", said, None), ("assistant", None, said)]
    assert rows(running, "SELECT reply_to FROM turns") == [(said,)]
    assert rows(running, "SELECT reply_to, direct FROM outbox") == [(said, 1)]


async def test_a_private_chats_immediate_answer_is_loose_under_auto(
    tmp_path: Path, clock: ManualClock
) -> None:
    running = await start_gateway(tmp_path / "state", clock, notifier={"interval": 0})
    ada = running.adapter.user("ada")
    await ada.say("hello")
    await ada.wait_for(1)
    assert anchors(running, "ada") == [("You said: hello", None)]


async def test_an_answer_that_arrives_after_the_user_wrote_again_is_anchored(
    tmp_path: Path, clock: ManualClock
) -> None:
    running = await start_gateway(tmp_path / "state", clock, notifier={"interval": 0})
    ada = running.adapter.user("ada")
    first = await ada.say("think 10")
    await clock.wait_for_sleepers(1)
    await ada.say("and then?")  # queued behind the running turn
    clock.advance(10)
    await ada.wait_for(2)
    assert anchors(running, "ada") == [
        ("Thought for 10 s about it. Done.", first),  # the user wrote again meanwhile
        ("You said: and then?", None),  # the immediate answer to the newest message
    ]


async def test_every_answer_in_a_group_is_anchored_under_auto(
    tmp_path: Path, clock: ManualClock
) -> None:
    running = await start_gateway(tmp_path / "state", clock, notifier={"interval": 0})
    ada = running.adapter.user("team", "42", name="Ada", group=True)
    bob = running.adapter.user("team", "42", name="Bob", group=True)
    asked = await ada.say("hello")
    await ada.wait_for(1)
    answered = await bob.say("hi")
    await bob.wait_for(2)
    assert anchors(running, "team", "42") == [
        ("You said: hello", asked),
        ("You said: hi", answered),
    ]


async def test_always_anchors_even_the_immediate_answer_and_never_anchors_nothing(
    tmp_path: Path, clock: ManualClock
) -> None:
    always = LoopbackAdapter(reply_anchor=ReplyAnchorMode.ALWAYS)
    running = await start_gateway(tmp_path / "a", clock, always, notifier={"interval": 0})
    said = await always.user("ada").say("hello")
    await always.user("ada").wait_for(1)
    assert anchors(running, "ada") == [("You said: hello", said)]

    never = LoopbackAdapter(reply_anchor=ReplyAnchorMode.NEVER)
    running = await start_gateway(tmp_path / "n", clock, never, notifier={"interval": 0})
    await never.user("team", group=True).say("hello")
    await never.user("team").wait_for(1)
    assert anchors(running, "team") == [("You said: hello", None)]


async def test_a_split_answer_anchors_its_first_piece_only(
    tmp_path: Path, clock: ManualClock
) -> None:
    adapter = LoopbackAdapter(capabilities=Capabilities(max_length=20))
    await start_gateway(tmp_path / "state", clock, adapter, notifier={"interval": 0})
    team = adapter.user("team", group=True)
    said = await team.say("hello\nthis line is long\nand so is this one")
    sent = await team.wait_for(3)
    assert len(sent) == 3
    assert [m.reply_to for m in sent] == [said, None, None]


async def test_a_resumed_answer_and_the_recovery_notices_anchor_to_the_interrupted_request(
    tmp_path: Path, clock: ManualClock
) -> None:
    state = tmp_path / "state"
    running = await start_gateway(
        state, clock, notifier={"interval": 0}, recovery={"gate": "operator"}
    )
    ada = running.adapter.user("ada")
    asked = await ada.say("think 1000")
    await clock.wait_for_sleepers(1)
    boot = await running.gateway.restart(0)
    (candidate,) = boot.candidates
    assert candidate.decision.action is RecoveryAction.HOLD
    await ada.wait_for(1)
    later = await ada.say("hello?")  # newer than the request the notice is about
    await ada.wait_for(2)
    assert anchors(running, "ada") == [
        ("⚠️ Your request “think 1000” was interrupted by a restart. An operator will review "
         "it before I continue.", asked),
        ("You said: hello?", None),
    ]  # fmt: skip
    assert later != asked

    # Resumed (approved by the operator) in a chat where the user wrote since: anchored.
    second = await start_gateway(
        tmp_path / "second", clock, notifier={"interval": 0}, recovery={"gate": "operator"}
    )
    fay = second.adapter.user("fay")
    requested = await fay.say("think 1000")
    await clock.wait_for_sleepers(1)
    boot = await second.gateway.restart(0)
    (candidate,) = boot.candidates
    await fay.wait_for(1)  # held: told
    result = await Control(second.gateway).approve(candidate.session.id, actor="ops")
    assert result.ok, result.message
    await fay.wait_for(2)
    assert [reply_to for _, reply_to in anchors(second, "fay")] == [requested, requested]


async def test_an_operators_clear_tells_the_user_anchored_to_the_request(
    tmp_path: Path, clock: ManualClock
) -> None:
    running = await start_gateway(
        tmp_path / "state", clock, notifier={"interval": 0}, recovery={"gate": "operator"}
    )
    ada = running.adapter.user("ada")
    asked = await ada.say("think 1000")
    await clock.wait_for_sleepers(1)
    boot = await running.gateway.restart(0)
    (candidate,) = boot.candidates
    await ada.wait_for(1)
    result = await Control(running.gateway).clear(candidate.session.id, actor="ops")
    assert result.ok, result.message
    sent = await ada.wait_for(2)
    assert "an operator decided not to resume it" in sent[1].text
    assert [m.reply_to for m in sent] == [asked, asked]


async def test_a_jobs_notices_anchor_to_the_request_of_the_turn_that_started_the_job(
    tmp_path: Path, clock: ManualClock
) -> None:
    running = await start_gateway(tmp_path / "state", clock, notifier={"interval": 0})
    ada = running.adapter.user("ada")
    go = tmp_path / "go"
    wait = f"for i in $(seq 400); do [ -e {go} ] && break; sleep 0.025; done; echo built"
    arguments = json.dumps({"command": wait, "background": True, "notify_on_complete": True})
    started = await ada.say(f"tool terminal {arguments}")
    await ada.wait_for(1)
    go.touch()
    sent = await ada.wait_for(2)
    assert sent[1].text.startswith("Background update")
    assert [m.reply_to for m in sent] == [None, started]  # the immediate answer is loose


async def test_a_completion_told_after_the_conversation_moved_on_anchors_to_its_request(
    tmp_path: Path, clock: ManualClock
) -> None:
    running = await start_gateway(tmp_path / "state", clock, notifier={"interval": 0})
    ada = running.adapter.user("ada")
    go = tmp_path / "go"
    wait = f"for i in $(seq 400); do [ -e {go} ] && break; sleep 0.025; done; exit 2"
    arguments = json.dumps({"command": wait, "background": True, "notify_on_complete": True})
    started = await ada.say(f"tool terminal {arguments}")
    await ada.wait_for(1)
    await ada.say("something else")
    await ada.wait_for(2)
    go.touch()
    sent = await ada.wait_for(3)
    assert sent[2].text.startswith("❌ A background job hit a problem")
    assert sent[2].reply_to == started


async def test_a_refused_message_is_told_anchored_to_it(tmp_path: Path, clock: ManualClock) -> None:
    running = await start_gateway(
        tmp_path / "state", clock, notifier={"interval": 0}, lanes={"max_queue": 1}
    )
    ada = running.adapter.user("ada")
    await ada.say("think 10")
    await clock.wait_for_sleepers(1)
    await ada.say("queued")
    refused = await ada.say("one too many")
    sent = await ada.wait_for(1)
    assert sent[0].text.startswith("⚠️ 1 messages are already waiting")
    assert sent[0].reply_to == refused


async def test_a_late_answer_owed_across_a_restart_is_anchored_from_the_stored_newest_message(
    tmp_path: Path, clock: ManualClock
) -> None:
    """The next run has not heard from the user: whether its owed answer is still the
    immediate one is read from the store."""
    running = await start_gateway(tmp_path / "state", clock, notifier={"interval": 0})
    ada = running.adapter.user("ada")
    running.adapter.fail_next(1000, reason="HTTP 502 Bad Gateway")  # nothing gets through
    failures = running.gateway.events.subscribe()
    first = await ada.say("hello")
    await ada.say("again")
    async with asyncio.timeout(10):
        while len(rows(running, "SELECT id FROM outbox WHERE status = 'pending'")) < 2:
            # An attempt failed; the delivery now backs off on the manual clock. Stopping
            # only then (never while a send is in flight: that reply's fate would be
            # unknown, and the next run would rightly not resend it).
            await next_event(failures, DeliveryFailed)
            clock.advance(30)  # past the backoff: the next attempt
        await next_event(failures, DeliveryFailed)
    await running.stop()

    adapter = LoopbackAdapter()
    again = track(Running(make_gateway(running.gateway.config, clock, adapter), adapter))
    await again.gateway.start()
    sent = await adapter.user("ada").wait_for(2)
    assert [(m.text, m.reply_to) for m in sent] == [
        ("You said: hello", first),  # the user wrote again before it arrived
        ("You said: again", None),
    ]


async def test_a_version_5_database_is_migrated_and_its_rows_answer_nothing(
    tmp_path: Path,
) -> None:
    db_path = tmp_path / "state" / DATABASE_NAME
    db_path.parent.mkdir(parents=True)
    raw = sqlite3.connect(db_path, isolation_level=None)
    for migration in MIGRATIONS[:5]:
        raw.executescript(migration)
    raw.execute("PRAGMA user_version = 5")
    raw.execute(
        "INSERT INTO sessions (key, platform, chat_id, created_at, updated_at, origin)"
        " VALUES ('loopback:c1:-', 'loopback', 'c1', 1, 1,"
        ' \'{"platform": "loopback", "chat_id": "c1"}\')'
    )
    raw.execute(
        "INSERT INTO outbox (session_id, generation, content, created_at) VALUES (1, 1, 'x', 1)"
    )
    raw.execute(
        "INSERT INTO inbox (platform, update_id, session_key, payload, received_at)"
        " VALUES ('loopback', 'u1', 'loopback:c1:-', '{\"text\": \"hi\"}', 1)"
    )
    raw.close()
    async with await Store.open(db_path) as store:
        (owed,) = await store.outbox.pending()
        assert (owed.reply_to, owed.direct) == (None, False)
        (item,) = await store.inbox.open_items()
        assert item.message_id is None
        session = await store.sessions.get(1)
        assert session is not None and session.origin is not None
        assert session.origin.chat_kind is None  # not known: answers there are anchored
        assert await store.sessions.last_message_id(1) is None

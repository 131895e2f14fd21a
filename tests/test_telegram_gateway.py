"""The Telegram adapter in a real gateway: real aiogram over HTTP to the loopback fake Bot API.

Backoff and retry_after waits run on a ManualClock, so fault tests move time instead of
sleeping; the fake's long polls are real HTTP (1 s) and wake as soon as an update is pushed.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from gateway_core.adapters.telegram import MAX_MESSAGE, TelegramAdapter
from gateway_core.agents.scripted import ScriptedAgent
from gateway_core.clock import ManualClock
from gateway_core.delivery import split_text
from gateway_core.events import DeliveryFailed
from gateway_core.gateway import Gateway
from gateway_core.model import OutboxStatus, ReplyAnchorMode
from tests.support.fake_bot_api import FakeBotAPI
from tests.support.harness import Stops, make_config, next_event, track

ADA, BOB, INTRUDER = 7, 8, 9


@pytest.fixture
async def fake() -> AsyncIterator[FakeBotAPI]:
    async with FakeBotAPI() as server:
        yield server


async def start(
    tmp_path: Path,
    clock: ManualClock,
    fake: FakeBotAPI,
    *,
    reply_anchor: ReplyAnchorMode = ReplyAnchorMode.AUTO,
    **sections: dict[str, Any],
) -> Gateway:
    """A started gateway on a real aiogram adapter against `fake` (ADA and BOB allowed)."""
    adapter = TelegramAdapter(
        fake.token,
        api_base=fake.base_url,
        allowed_users=[ADA, BOB],
        clock=clock,
        poll_timeout=1,
        reply_anchor=reply_anchor,
    )
    sections.setdefault("notifier", {"interval": 0})
    gateway = Gateway(
        make_config(tmp_path / "state", **sections),
        agent=ScriptedAgent(),
        adapters=[adapter],
        clock=clock,
    )
    await gateway.start()
    track(Stops(gateway))
    return gateway


async def pump_until(clock: ManualClock, fake: FakeBotAPI, predicate: Any, step: float) -> None:
    """Advance the clock in steps until the fake shows what the test waits for (bounded)."""
    for _ in range(60):
        try:
            await fake.wait_until(predicate, timeout=0.2)
            return
        except TimeoutError:
            clock.advance(step)
    raise AssertionError("the fake never reached the expected state")


async def test_replies_land_in_the_chat_and_topic_they_belong_to(
    tmp_path: Path, clock: ManualClock, fake: FakeBotAPI
) -> None:
    await start(tmp_path, clock, fake)
    fake.push_text(ADA, "hello", user_id=ADA)
    fake.push_text(-100, "in topic", user_id=BOB, thread_id=77, chat_type="supergroup")
    fake.push_text(-100, "in general", user_id=BOB, chat_type="supergroup")
    await fake.wait_for_sent(count=3, timeout=10)
    assert fake.sent(ADA) == ["You said: hello"]
    assert fake.sent(-100, thread_id=77) == ["You said: in topic"]
    assert fake.sent(-100, thread_id=None) == ["You said: in general"]
    assert fake.calls("sendChatAction") == []  # instant answers never show "typing…"


async def test_unallowed_and_malformed_updates_are_recorded_skipped_and_never_stall(
    tmp_path: Path, clock: ManualClock, fake: FakeBotAPI, caplog: pytest.LogCaptureFixture
) -> None:
    gateway = await start(tmp_path, clock, fake)
    caplog.set_level(logging.WARNING)
    fake.push_text(INTRUDER, "let me in", user_id=INTRUDER)
    fake.push_raw({"message": {"this is": "not a message"}})
    fake.push_text(ADA, "still there?", user_id=ADA)
    await fake.wait_for_sent(count=1, timeout=10)
    assert fake.sent() == ["You said: still there?"]
    skipped = await gateway.store.write(
        lambda db: db.execute(
            "SELECT error FROM inbox WHERE status = 'skipped' ORDER BY id"
        ).fetchall()
    )
    assert [row[0] for row in skipped] == ["user 9 not allowed", "malformed update"]
    logged = caplog.text
    assert "user 9 who is not allowed" in logged and "malformed update" in logged
    assert "let me in" not in logged  # user id only, never the content


async def test_an_update_delivered_twice_is_processed_once(
    tmp_path: Path, clock: ManualClock, fake: FakeBotAPI
) -> None:
    await start(tmp_path, clock, fake)
    update = {
        "update_id": 4242,
        "message": {
            "message_id": 1,
            "date": 0,
            "chat": {"id": ADA, "type": "private"},
            "from": {"id": ADA, "is_bot": False, "first_name": "Ada"},
            "text": "only once",
        },
    }
    fake.push_raw(update)
    fake.push_raw(update)  # a redelivery after a crash looks exactly like this
    fake.push_text(ADA, "next", user_id=ADA)
    await fake.wait_for_sent(count=2, timeout=10)
    assert fake.sent(ADA) == ["You said: only once", "You said: next"]


async def test_429_is_honoured_then_the_reply_goes_out_once(
    tmp_path: Path, clock: ManualClock, fake: FakeBotAPI
) -> None:
    await start(tmp_path, clock, fake)
    fake.fail("sendMessage", 429, retry_after=3)
    fake.push_text(ADA, "hi", user_id=ADA)
    await fake.wait_for_calls("sendMessage", count=1, timeout=10)
    assert fake.sent() == []
    await pump_until(clock, fake, lambda: fake.sent(ADA) == ["You said: hi"], step=1)
    assert len(fake.calls("sendMessage")) == 2


@pytest.mark.parametrize("html", [False, True], ids=["json-502", "html-502"])
async def test_a_5xx_storm_then_recovery_delivers_exactly_once_in_order(
    tmp_path: Path, clock: ManualClock, fake: FakeBotAPI, html: bool
) -> None:
    await start(tmp_path, clock, fake)
    fake.fail("sendMessage", 502, html=html, times=4)
    fake.push_text(ADA, "one", user_id=ADA)
    fake.push_text(ADA, "two", user_id=ADA)
    await pump_until(clock, fake, lambda: len(fake.sent(ADA)) == 2, step=5)
    assert fake.sent(ADA) == ["You said: one", "You said: two"]


async def test_network_down_for_a_while_then_up_delivers_once(
    tmp_path: Path, clock: ManualClock, fake: FakeBotAPI
) -> None:
    await start(tmp_path, clock, fake)
    fake.push_text(ADA, "think 10", user_id=ADA)
    await clock.wait_for_sleepers(1)  # the turn is thinking
    await fake.go_down()
    clock.advance(10)  # the answer is ready while Telegram is unreachable
    for _ in range(3):
        clock.advance(30)  # retries hit "connection refused" and back off
    await fake.come_up()
    await pump_until(clock, fake, lambda: len(fake.sent(ADA)) == 1, step=30)
    assert fake.sent(ADA) == ["Thought for 10 s about it. Done."]


async def test_a_send_whose_outcome_is_unknown_is_never_resent(
    tmp_path: Path, clock: ManualClock, fake: FakeBotAPI
) -> None:
    gateway = await start(tmp_path, clock, fake)
    fake.drop_connection("sendMessage")
    fake.push_text(ADA, "hi", user_id=ADA)
    await fake.wait_for_calls("sendMessage", count=1, timeout=10)
    fake.push_text(ADA, "and this?", user_id=ADA)
    await fake.wait_for_sent(ADA, count=1, timeout=10)
    for _ in range(5):
        clock.advance(30)
    assert fake.sent(ADA) == ["You said: and this?"]
    assert len(fake.calls("sendMessage")) == 2
    (unknown,) = await gateway.store.outbox.by_status(OutboxStatus.UNKNOWN)
    assert unknown.content == "You said: hi"


async def test_a_blocked_chat_is_not_retried(
    tmp_path: Path, clock: ManualClock, fake: FakeBotAPI
) -> None:
    gateway = await start(tmp_path, clock, fake)
    failures = gateway.events.subscribe()
    fake.blocked_chats.add(ADA)
    fake.push_text(ADA, "hi", user_id=ADA)
    fake.push_text(BOB, "hi", user_id=BOB)
    first = await next_event(failures, DeliveryFailed)
    fake.push_text(ADA, "again", user_id=ADA)
    fake.push_text(BOB, "again", user_id=BOB)
    second = await next_event(failures, DeliveryFailed)
    await fake.wait_for_sent(BOB, count=2, timeout=10)
    assert first.final and second.final  # failed for good at once: no backoff, no retries
    to_ada = [c for c in fake.calls("sendMessage") if c.params.get("chat_id") == ADA]
    assert len(to_ada) == 1  # one 403, then the chat is known blocked
    assert len(await gateway.store.outbox.by_status(OutboxStatus.FAILED)) == 2


async def test_a_long_reply_is_split_on_line_boundaries(
    tmp_path: Path, clock: ManualClock, fake: FakeBotAPI
) -> None:
    await start(tmp_path, clock, fake)
    text = "\n".join(f"line {i:04d} " + "x" * 40 for i in range(100))  # ~5,000 characters
    fake.push_text(ADA, text, user_id=ADA)
    await fake.wait_for_sent(ADA, count=2, timeout=10)
    pieces = fake.sent(ADA)
    assert all(len(piece) <= MAX_MESSAGE for piece in pieces)
    assert "\n".join(pieces) == f"You said: {text}"
    assert pieces[1].startswith("line ")  # cut at a line break, not inside a line


def long_text() -> str:
    """About 9,000 characters in lines: its answer is three Telegram messages."""
    return "\n".join(f"line {i:04d} " + "y" * 48 for i in range(153))


async def test_a_502_on_the_second_piece_of_a_long_answer_sends_each_piece_once(
    tmp_path: Path, clock: ManualClock, fake: FakeBotAPI
) -> None:
    await start(tmp_path, clock, fake)
    text = long_text()
    expected = split_text(f"You said: {text}", MAX_MESSAGE)
    assert len(text) >= 9000 and len(expected) == 3
    fake.fail("sendMessage", 502, html=True, after=1)
    fake.push_text(ADA, text, user_id=ADA)
    await pump_until(clock, fake, lambda: len(fake.sent(ADA)) == len(expected), step=5)
    for _ in range(5):
        clock.advance(30)  # any further retry would have happened by now
    assert fake.sent(ADA) == expected
    assert len(fake.calls("sendMessage")) == len(expected) + 1  # only the 502'd piece again


async def test_a_dropped_piece_of_a_long_answer_is_never_resent_nor_what_follows(
    tmp_path: Path, clock: ManualClock, fake: FakeBotAPI
) -> None:
    gateway = await start(tmp_path, clock, fake)
    text = long_text()
    expected = split_text(f"You said: {text}", MAX_MESSAGE)
    fake.drop_connection("sendMessage", after=1)
    fake.push_text(ADA, text, user_id=ADA)
    await fake.wait_for_calls("sendMessage", count=2, timeout=10)
    fake.push_text(ADA, "and this?", user_id=ADA)
    await fake.wait_for_sent(ADA, count=2, timeout=10)
    for _ in range(5):
        clock.advance(30)
    assert fake.sent(ADA) == [expected[0], "You said: and this?"]
    (unknown,) = await gateway.store.outbox.by_status(OutboxStatus.UNKNOWN)
    assert unknown.last_error is not None
    assert unknown.last_error.startswith("piece 2 of 3 (piece 3 not sent yet): ")


async def test_hostile_text_goes_through_as_plain_text(
    tmp_path: Path, clock: ManualClock, fake: FakeBotAPI
) -> None:
    gateway = await start(tmp_path, clock, fake)
    hostile = "[/x] [@click=app.quit]x[/] <b>bold</b> \x1b]0;title\x07 \x1b[5m *_`"
    fake.push_text(ADA, hostile, user_id=ADA)
    await fake.wait_for_sent(ADA, count=1, timeout=10)
    assert fake.sent(ADA) == [f"You said: {hostile}"]
    assert "parse_mode" not in fake.calls("sendMessage")[0].params
    session = (await gateway.store.sessions.list())[0]
    assert (await gateway.store.transcript.all(session.id))[0].content == hostile


async def test_getme_failures_at_startup_are_retried(
    tmp_path: Path, clock: ManualClock, fake: FakeBotAPI
) -> None:
    fake.fail("getMe", 502, times=2)
    await start(tmp_path, clock, fake)
    fake.push_text(ADA, "hi", user_id=ADA)
    await pump_until(clock, fake, lambda: fake.sent(ADA) == ["You said: hi"], step=5)
    assert len(fake.calls("getMe")) == 3


async def test_two_instances_on_one_token_are_reported_clearly(
    tmp_path: Path, clock: ManualClock, fake: FakeBotAPI, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR)
    fake.fail("getUpdates", 409)
    await start(tmp_path, clock, fake)
    await fake.wait_for_calls("getUpdates", count=1, timeout=10)
    await pump_until(clock, fake, lambda: len(fake.calls("getUpdates")) >= 2, step=5)
    assert "another instance is polling this bot token" in caplog.text
    assert fake.token not in caplog.text


async def test_drain_stops_polling_and_confirms_the_offset(
    tmp_path: Path, clock: ManualClock, fake: FakeBotAPI
) -> None:
    gateway = await start(tmp_path, clock, fake)
    last = fake.push_text(ADA, "hi", user_id=ADA)
    await fake.wait_for_sent(ADA, count=1, timeout=10)
    report = await gateway.stop(5)
    assert report.clean
    assert fake.confirmed_offset == last + 1
    assert fake.pending_updates() == []
    polls = len(fake.calls("getUpdates"))
    fake.push_text(ADA, "after stop", user_id=ADA)  # waits on the server for the next run
    assert len(fake.calls("getUpdates")) == polls
    assert [u["update_id"] for u in fake.pending_updates()] == [last + 1]


async def test_still_working_notice_and_typing_go_through_telegram(
    tmp_path: Path, clock: ManualClock, fake: FakeBotAPI
) -> None:
    await start(tmp_path, clock, fake, notifier={"interval": 60})
    fake.push_text(ADA, "think 130", user_id=ADA)
    await clock.wait_for_sleepers(3)  # the think, the notifier, the typing delay
    assert fake.calls("sendChatAction") == []  # not yet: most turns end before it matters
    clock.advance(1)
    await fake.wait_for_calls("sendChatAction", count=1, timeout=10)
    clock.advance(59)
    await fake.wait_for_sent(ADA, count=1, timeout=10)
    clock.advance(60)
    await fake.wait_for_calls("editMessageText", count=1, timeout=10)
    clock.advance(10)
    await fake.wait_for_calls("deleteMessage", count=1, timeout=10)
    await fake.wait_until(lambda: fake.sent(ADA) == ["Thought for 130 s about it. Done."])
    assert fake.calls("sendChatAction")[0].params["action"] == "typing"


async def test_a_notice_for_a_topic_session_lands_in_that_topic(
    tmp_path: Path, clock: ManualClock, fake: FakeBotAPI
) -> None:
    gateway = await start(tmp_path, clock, fake)
    group = -100
    fake.push_text(group, "start the build", user_id=ADA, thread_id=42, chat_type="supergroup")
    await fake.wait_for_sent(group, count=1, thread_id=42, timeout=10)
    fake.push_text(group, "think 100", user_id=BOB, thread_id=7, chat_type="supergroup")
    await clock.wait_for_sleepers(1)  # topic 7's turn is in the foreground
    by_topic = {s.key.thread_id: s.id for s in await gateway.store.sessions.list()}
    await gateway.post_notice(by_topic["42"], "✅ Done. The build finished.")
    await fake.wait_for_sent(group, count=2, thread_id=42, timeout=10)
    assert fake.sent(group, thread_id=42) == [
        "You said: start the build",
        "✅ Done. The build finished.",
    ]
    assert fake.sent(group, thread_id=7) == []

"""Reply anchors through real aiogram over HTTP to the loopback fake Bot API.

An anchored answer is a sendMessage with reply_parameters (allow_sending_without_reply, so a
deleted original never blocks it) and the topic's message_thread_id; the fake records what
each message replies to, as the chat would show it. Time runs on a ManualClock.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from gateway_core.adapters.telegram import MAX_MESSAGE
from gateway_core.clock import ManualClock
from gateway_core.delivery import split_text
from gateway_core.events import MessageReceived
from gateway_core.model import ReplyAnchorMode
from tests.support.fake_bot_api import FakeBotAPI
from tests.support.harness import next_event
from tests.test_telegram_gateway import pump_until, start

ADA, BOB = 7, 8
GROUP = -1001


@pytest.fixture
async def fake() -> AsyncIterator[FakeBotAPI]:
    async with FakeBotAPI() as server:
        yield server


def say(fake: FakeBotAPI, chat: int, text: str, user: int, thread: int | None = None) -> int:
    """A user's message; returns its message_id (what an answer replies to)."""
    kind = "private" if chat > 0 else "supergroup"
    update_id = fake.push_text(chat, text, user_id=user, thread_id=thread, chat_type=kind)
    return fake.message_id_of(update_id)


def reply_parameters(fake: FakeBotAPI) -> list[Any]:
    return [call.params.get("reply_parameters") for call in fake.calls("sendMessage")]


async def test_two_users_in_a_forum_topic_each_get_an_answer_anchored_to_their_message(
    tmp_path: Path, clock: ManualClock, fake: FakeBotAPI
) -> None:
    await start(tmp_path, clock, fake)
    ada_asked = say(fake, GROUP, "think 10", ADA, thread=42)
    await clock.wait_for_sleepers(1)
    bob_asked = say(fake, GROUP, "hello", BOB, thread=42)  # the same topic: queued behind Ada
    elsewhere = say(fake, GROUP, "hi", BOB, thread=7)
    await fake.wait_for_sent(GROUP, count=1, thread_id=7, timeout=10)
    clock.advance(10)
    await fake.wait_for_sent(GROUP, count=3, timeout=10)
    assert fake.reply_anchors(GROUP, thread_id=42) == [
        ("Thought for 10 s about it. Done.", ada_asked),
        ("You said: hello", bob_asked),
    ]
    assert fake.reply_anchors(GROUP, thread_id=7) == [("You said: hi", elsewhere)]
    assert all(p["allow_sending_without_reply"] is True for p in reply_parameters(fake))


async def test_an_original_deleted_before_the_answer_still_gets_the_answer_loose(
    tmp_path: Path, clock: ManualClock, fake: FakeBotAPI
) -> None:
    await start(tmp_path, clock, fake)
    asked = say(fake, GROUP, "think 10", ADA, thread=42)
    await clock.wait_for_sleepers(1)
    fake.delete_inbound(GROUP, asked)
    clock.advance(10)
    await fake.wait_for_sent(GROUP, count=1, timeout=10)
    assert fake.reply_anchors(GROUP, thread_id=42) == [("Thought for 10 s about it. Done.", None)]
    assert reply_parameters(fake) == [{"message_id": asked, "allow_sending_without_reply": True}]


async def test_a_private_chats_immediate_answer_is_not_a_reply_under_auto(
    tmp_path: Path, clock: ManualClock, fake: FakeBotAPI
) -> None:
    await start(tmp_path, clock, fake)
    say(fake, ADA, "hello", ADA)
    await fake.wait_for_sent(ADA, count=1, timeout=10)
    assert fake.reply_anchors(ADA) == [("You said: hello", None)]
    assert reply_parameters(fake) == [None]


async def test_a_private_answer_after_the_user_wrote_again_is_a_reply_under_auto(
    tmp_path: Path, clock: ManualClock, fake: FakeBotAPI
) -> None:
    gateway = await start(tmp_path, clock, fake)
    received = gateway.events.subscribe()
    asked = say(fake, ADA, "think 10", ADA)
    await clock.wait_for_sleepers(1)
    say(fake, ADA, "still there?", ADA)
    # Wait until the gateway has the second message (the answer is sent the moment the
    # first turn ends, and only a message the gateway has is one it can know of).
    await next_event(received, MessageReceived)
    await next_event(received, MessageReceived)
    clock.advance(10)
    await fake.wait_for_sent(ADA, count=2, timeout=10)
    assert fake.reply_anchors(ADA) == [
        ("Thought for 10 s about it. Done.", asked),
        ("You said: still there?", None),
    ]


async def test_always_anchors_the_private_immediate_answer_too(
    tmp_path: Path, clock: ManualClock, fake: FakeBotAPI
) -> None:
    await start(tmp_path, clock, fake, reply_anchor=ReplyAnchorMode.ALWAYS)
    asked = say(fake, ADA, "hello", ADA)
    await fake.wait_for_sent(ADA, count=1, timeout=10)
    assert fake.reply_anchors(ADA) == [("You said: hello", asked)]


async def test_never_anchors_nothing_even_in_a_forum_topic(
    tmp_path: Path, clock: ManualClock, fake: FakeBotAPI
) -> None:
    await start(tmp_path, clock, fake, reply_anchor=ReplyAnchorMode.NEVER)
    say(fake, GROUP, "hello", ADA, thread=42)
    await fake.wait_for_sent(GROUP, count=1, thread_id=42, timeout=10)
    assert fake.reply_anchors(GROUP, thread_id=42) == [("You said: hello", None)]
    assert reply_parameters(fake) == [None]


async def test_a_split_answer_anchors_its_first_piece_only_even_across_a_retry(
    tmp_path: Path, clock: ManualClock, fake: FakeBotAPI
) -> None:
    await start(tmp_path, clock, fake)
    text = "\n".join(f"line {i:04d} " + "y" * 48 for i in range(153))
    expected = split_text(f"You said: {text}", MAX_MESSAGE)
    assert len(expected) == 3
    fake.fail("sendMessage", 502, html=True, after=1)  # the second piece: sent again later
    asked = say(fake, GROUP, text, ADA, thread=42)
    await pump_until(clock, fake, lambda: len(fake.sent(GROUP)) == 3, step=5)
    assert fake.reply_anchors(GROUP, thread_id=42) == [
        (expected[0], asked),
        (expected[1], None),
        (expected[2], None),
    ]


async def test_the_still_working_message_is_anchored_and_keeps_its_anchor_when_edited(
    tmp_path: Path, clock: ManualClock, fake: FakeBotAPI
) -> None:
    await start(tmp_path, clock, fake, notifier={"interval": 60})
    asked = say(fake, GROUP, "think 130", ADA, thread=42)
    await clock.wait_for_sleepers(3)  # the think, the notifier, the typing delay
    clock.advance(60)
    await fake.wait_for_sent(GROUP, count=1, timeout=10)
    clock.advance(60)
    await fake.wait_for_calls("editMessageText", count=1, timeout=10)
    (working,) = fake.reply_anchors(GROUP, thread_id=42)
    assert working == ("⏳ Still working — 2 min so far", asked)
    clock.advance(10)
    await fake.wait_for_calls("deleteMessage", count=1, timeout=10)
    await fake.wait_until(
        lambda: fake.reply_anchors(GROUP) == [("Thought for 130 s about it. Done.", asked)]
    )

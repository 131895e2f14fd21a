"""The fake Bot API server, driven by a real aiogram Bot over loopback HTTP."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiogram import Bot, Dispatcher
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiogram.exceptions import (
    ClientDecodeError,
    TelegramAPIError,
    TelegramBadRequest,
    TelegramConflictError,
    TelegramForbiddenError,
    TelegramMigrateToChat,
    TelegramNetworkError,
    TelegramRetryAfter,
    TelegramServerError,
    TelegramUnauthorizedError,
)
from aiogram.types import (
    BotCommand,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    Message,
    ReplyParameters,
)

from tests.support.fake_bot_api import (
    DEFAULT_TOKEN,
    NOT_MODIFIED,
    FakeBotAPI,
)

CHAT = 7
GROUP = -1001234


def make_bot(fake: FakeBotAPI, token: str = DEFAULT_TOKEN) -> Bot:
    api = TelegramAPIServer.from_base(fake.base_url)
    return Bot(token, session=AiohttpSession(api=api, timeout=10))


@pytest.fixture
async def fake() -> AsyncIterator[FakeBotAPI]:
    async with FakeBotAPI(bot_username="switchboard_test_bot") as server:
        yield server


@pytest.fixture
async def bot(fake: FakeBotAPI) -> AsyncIterator[Bot]:
    client = make_bot(fake)
    try:
        yield client
    finally:
        await client.session.close()


async def test_get_me_reports_the_token_id(fake: FakeBotAPI, bot: Bot) -> None:
    async with asyncio.timeout(5):
        me = await bot.get_me()
    assert me.id == 42 == bot.id
    assert me.is_bot
    assert me.username == "switchboard_test_bot"
    assert me.first_name
    assert [call.method for call in fake.calls()] == ["getMe"]


async def test_call_log_decodes_form_values(fake: FakeBotAPI, bot: Bot) -> None:
    markup = InlineKeyboardMarkup(
        inline_keyboard=[[InlineKeyboardButton(text="ok", callback_data="yes")]]
    )
    async with asyncio.timeout(5):
        message = await bot.send_message(
            CHAT, "123", disable_notification=True, reply_markup=markup
        )
        await bot.set_my_commands([BotCommand(command="start", description="begin")])
    assert message.reply_markup is not None
    assert message.reply_markup.model_dump() == markup.model_dump()
    (send,) = fake.calls("sendMessage")
    assert send.params == {
        "chat_id": CHAT,
        "text": "123",  # free text is never turned into a number
        "disable_notification": True,
        "reply_markup": {"inline_keyboard": [[{"text": "ok", "callback_data": "yes"}]]},
    }
    assert fake.calls("setMyCommands")[0].params["commands"] == [
        {"command": "start", "description": "begin"}
    ]
    assert send.at <= fake.calls("setMyCommands")[0].at <= time.monotonic()


async def test_send_edit_delete_round_trip(fake: FakeBotAPI, bot: Bot) -> None:
    async with asyncio.timeout(5):
        first = await bot.send_message(CHAT, "hello")
        second = await bot.send_message(CHAT, "world")
        assert (first.message_id, second.message_id) == (1, 2)
        assert first.chat.id == CHAT and first.chat.type == "private"
        assert first.from_user is not None and first.from_user.id == 42
        assert first.text == "hello" and first.message_thread_id is None
        assert fake.sent(CHAT) == ["hello", "world"]

        edited = await bot.edit_message_text("hello again", chat_id=CHAT, message_id=1)
        assert isinstance(edited, Message)
        assert edited.text == "hello again" and edited.edit_date is not None
        assert fake.sent(CHAT) == ["hello again", "world"]

        with pytest.raises(TelegramBadRequest, match="message is not modified") as unchanged:
            await bot.edit_message_text("hello again", chat_id=CHAT, message_id=1)
        assert unchanged.value.message == NOT_MODIFIED
        with pytest.raises(TelegramBadRequest, match="message to edit not found"):
            await bot.edit_message_text("x", chat_id=CHAT, message_id=99)

        assert await bot.delete_message(CHAT, 2) is True
        assert fake.sent(CHAT) == ["hello again"]
        assert fake.messages[(CHAT, 2)]["deleted"] is True
        with pytest.raises(TelegramBadRequest, match="message to delete not found"):
            await bot.delete_message(CHAT, 2)
        with pytest.raises(TelegramBadRequest, match="message to edit not found"):
            await bot.edit_message_text("gone", chat_id=CHAT, message_id=2)
        with pytest.raises(TelegramBadRequest, match="message text is empty"):
            await bot.send_message(CHAT, " ")
        assert await bot.send_chat_action(CHAT, "typing") is True
        assert await bot.delete_webhook() is True
    assert fake.sent(CHAT + 1) == []


async def test_topics_echo_the_thread(fake: FakeBotAPI, bot: Bot) -> None:
    async with asyncio.timeout(5):
        topic = await bot.create_forum_topic(GROUP, "Support")
        assert topic.name == "Support" and topic.icon_color
        in_topic = await bot.send_message(
            GROUP, "in topic", message_thread_id=topic.message_thread_id
        )
        general = await bot.send_message(GROUP, "in general")
    assert in_topic.message_thread_id == topic.message_thread_id
    assert in_topic.is_topic_message is True
    assert general.message_thread_id is None and not general.is_topic_message
    assert fake.sent(GROUP) == ["in topic", "in general"]
    assert fake.sent(GROUP, thread_id=topic.message_thread_id) == ["in topic"]
    assert fake.sent(GROUP, thread_id=None) == ["in general"]
    assert fake.sent() == ["in topic", "in general"]


async def test_inbound_topic_message_answer_lands_in_the_topic(fake: FakeBotAPI, bot: Bot) -> None:
    update_id = fake.push_text(GROUP, "help", thread_id=77, chat_type="supergroup", user_id=5)
    async with asyncio.timeout(5):
        (update,) = await bot.get_updates()
        assert update.update_id == update_id
        message = update.message
        assert message is not None
        assert message.message_thread_id == 77 and message.is_topic_message is True
        assert message.chat.is_forum is True and message.chat.type == "supergroup"
        assert message.from_user is not None and message.from_user.id == 5
        reply = await message.answer("on it")
    assert reply.message_thread_id == 77
    assert fake.calls("sendMessage")[0].params["message_thread_id"] == 77
    assert fake.sent(GROUP, thread_id=77) == ["on it"]


async def test_returned_updates_stay_pending_until_a_higher_offset(
    fake: FakeBotAPI, bot: Bot
) -> None:
    first = fake.push_text(CHAT, "one")
    second = fake.push_text(CHAT, "two")
    assert (first, second) == (1000, 1001)
    async with asyncio.timeout(5):
        batch = await bot.get_updates()
        assert [u.update_id for u in batch] == [first, second]
        # Returning is not consuming: the same batch comes back.
        again = await bot.get_updates()
        assert [u.update_id for u in again] == [first, second]
        assert fake.confirmed_offset is None

        rest = await bot.get_updates(offset=first + 1)
        assert [u.update_id for u in rest] == [second]
        assert fake.confirmed_offset == first + 1
        assert [u["update_id"] for u in fake.pending_updates()] == [second]

        assert await bot.get_updates(offset=second + 1) == []
    assert fake.pending_updates() == []
    assert [call.params.get("offset") for call in fake.calls("getUpdates")] == [
        None,
        None,
        first + 1,
        second + 1,
    ]


async def test_limit_and_negative_offset(fake: FakeBotAPI, bot: Bot) -> None:
    ids = [fake.push_text(CHAT, f"m{i}") for i in range(5)]
    async with asyncio.timeout(5):
        assert [u.update_id for u in await bot.get_updates(limit=2)] == ids[:2]
        assert [u.update_id for u in await bot.get_updates(offset=-2)] == ids[-2:]
    assert [u["update_id"] for u in fake.pending_updates()] == ids[-2:]


async def test_long_poll_wakes_on_push(fake: FakeBotAPI, bot: Bot) -> None:
    async with asyncio.timeout(5):
        poll = asyncio.create_task(bot.get_updates(timeout=30))
        await fake.wait_for_parked_poll()
        assert not poll.done()
        pushed_at = time.monotonic()
        update_id = fake.push_text(CHAT, "wake up")
        (update,) = await poll
    assert update.update_id == update_id
    assert time.monotonic() - pushed_at < 1.0
    assert fake.parked_polls == 0


async def test_long_poll_times_out_empty(fake: FakeBotAPI, bot: Bot) -> None:
    started = time.monotonic()
    async with asyncio.timeout(5):
        assert await bot.get_updates(timeout=1) == []
    assert 0.9 <= time.monotonic() - started < 3.0


async def test_push_raw_keeps_odd_updates(fake: FakeBotAPI, bot: Bot) -> None:
    odd = fake.push_raw({"some_future_kind": {"x": 1}})
    explicit = fake.push_raw({"update_id": 5000, "message": None})
    after = fake.push_text(CHAT, "next")
    assert (odd, explicit, after) == (1000, 5000, 5001)
    async with asyncio.timeout(5):
        updates = await bot.get_updates()
    assert [u.update_id for u in updates] == [1000, 5000, 5001]
    assert updates[0].model_extra == {"some_future_kind": {"x": 1}}


@pytest.mark.parametrize(
    ("status", "options", "expected"),
    [
        (429, {"retry_after": 3}, TelegramRetryAfter),
        (429, {}, TelegramAPIError),
        (400, {"description": "Bad Request: can't parse entities"}, TelegramBadRequest),
        (403, {"description": "Forbidden: bot was blocked by the user"}, TelegramForbiddenError),
        (409, {}, TelegramConflictError),
        (502, {}, TelegramServerError),
        (502, {"html": True}, ClientDecodeError),
        (400, {"parameters": {"migrate_to_chat_id": -100999}}, TelegramMigrateToChat),
    ],
)
async def test_injected_faults_map_to_aiogram_exceptions(
    fake: FakeBotAPI, bot: Bot, status: int, options: dict[str, Any], expected: type[Exception]
) -> None:
    fake.fail("sendMessage", status, **options)
    async with asyncio.timeout(5):
        with pytest.raises(expected) as raised:
            await bot.send_message(CHAT, "hi")
        # Queued once: the next call gets the real behaviour.
        assert (await bot.send_message(CHAT, "hi again")).text == "hi again"
    assert type(raised.value) is expected
    if isinstance(raised.value, TelegramRetryAfter):
        assert raised.value.retry_after == 3
    assert fake.sent(CHAT) == ["hi again"]
    assert len(fake.calls("sendMessage")) == 2


async def test_fault_bodies_are_what_telegram_sends(fake: FakeBotAPI) -> None:
    fake.fail("getMe", 429, retry_after=2)
    fake.fail("getMe", 502, html=True)
    url = f"{fake.base_url}/bot{DEFAULT_TOKEN}/getMe"
    async with asyncio.timeout(5), aiohttp.ClientSession() as http:
        async with http.post(url) as response:
            assert response.status == 429
            assert await response.json() == {
                "ok": False,
                "error_code": 429,
                "description": "Too Many Requests: retry after 2",
                "parameters": {"retry_after": 2},
            }
        async with http.post(url) as response:
            assert response.status == 502
            assert response.content_type == "text/html"
            assert "<h1>502 Bad Gateway</h1>" in await response.text()
        async with http.post(url) as response:
            assert response.status == 200
            assert (await response.json())["result"]["id"] == 42


async def test_faults_queue_in_order_and_times(fake: FakeBotAPI, bot: Bot) -> None:
    fake.fail("getUpdates", 502, times=2)
    fake.drop_connection("getUpdates")
    fake.push_text(CHAT, "waiting")
    async with asyncio.timeout(5):
        for _ in range(2):
            with pytest.raises(TelegramServerError):
                await bot.get_updates()
        with pytest.raises(TelegramNetworkError):
            await bot.get_updates()
        assert len(await bot.get_updates()) == 1
    assert len(fake.calls("getUpdates")) == 4


async def test_a_fault_can_wait_for_the_nth_call(fake: FakeBotAPI, bot: Bot) -> None:
    fake.fail("sendMessage", 502, html=True, after=1)
    fake.drop_connection("sendMessage", after=1)
    async with asyncio.timeout(5):
        assert (await bot.send_message(CHAT, "first")).text == "first"
        with pytest.raises(ClientDecodeError):
            await bot.send_message(CHAT, "second")
        assert (await bot.send_message(CHAT, "third")).text == "third"
        with pytest.raises(TelegramNetworkError):
            await bot.send_message(CHAT, "fourth")
        assert (await bot.send_message(CHAT, "fifth")).text == "fifth"
    assert fake.sent(CHAT) == ["first", "third", "fifth"]


async def test_blocked_chat_is_forbidden(fake: FakeBotAPI, bot: Bot) -> None:
    fake.blocked_chats.add(CHAT)
    async with asyncio.timeout(5):
        with pytest.raises(TelegramForbiddenError, match="bot was blocked by the user"):
            await bot.send_message(CHAT, "hi")
        assert (await bot.send_message(CHAT + 1, "other")).text == "other"
    assert fake.sent(CHAT) == []


async def test_dropped_connection_is_a_network_error(fake: FakeBotAPI, bot: Bot) -> None:
    async with asyncio.timeout(5):
        await bot.get_me()  # leaves a pooled keep-alive connection behind
        fake.drop_connection("sendMessage")
        with pytest.raises(TelegramNetworkError, match="ServerDisconnectedError"):
            await bot.send_message(CHAT, "lost")
        assert (await bot.send_message(CHAT, "kept")).text == "kept"
    # The dropped request reached the server but nothing was stored or answered.
    assert len(fake.calls("sendMessage")) == 2
    assert fake.sent(CHAT) == ["kept"]


async def test_go_down_refuses_then_come_up_on_the_same_port(fake: FakeBotAPI, bot: Bot) -> None:
    base_url = fake.base_url
    async with asyncio.timeout(5):
        await bot.get_me()  # a pooled keep-alive connection must not survive go_down
        await fake.go_down()
        assert fake.is_down
        for _ in range(2):
            with pytest.raises(TelegramNetworkError):
                await bot.get_me()
        fake.push_text(CHAT, "queued while down")
        await fake.come_up()
        assert fake.base_url == base_url and not fake.is_down
        assert (await bot.get_me()).id == 42
        assert len(await bot.get_updates()) == 1
    assert [call.method for call in fake.calls()] == ["getMe", "getMe", "getUpdates"]


async def test_go_down_breaks_a_parked_long_poll(fake: FakeBotAPI, bot: Bot) -> None:
    async with asyncio.timeout(5):
        poll = asyncio.create_task(bot.get_updates(timeout=30))
        await fake.wait_for_parked_poll()
        await fake.go_down()
        with pytest.raises(TelegramNetworkError):
            await poll
        await fake.wait_until(lambda: fake.parked_polls == 0)
        await fake.come_up()
        assert await bot.get_updates() == []


async def test_wrong_token_is_unauthorized(fake: FakeBotAPI) -> None:
    stranger = make_bot(fake, token="43:WRONG")
    try:
        async with asyncio.timeout(5):
            with pytest.raises(TelegramUnauthorizedError, match="Unauthorized"):
                await stranger.get_me()
    finally:
        await stranger.session.close()
    assert fake.calls() == []


async def test_unknown_method_and_path_are_json_404(fake: FakeBotAPI) -> None:
    async with asyncio.timeout(5), aiohttp.ClientSession() as http:
        for path in (f"/bot{DEFAULT_TOKEN}/noSuchMethod", "/elsewhere"):
            async with http.post(fake.base_url + path, data={"a": "1"}) as response:
                assert response.status == 404
                assert await response.json() == {
                    "ok": False,
                    "error_code": 404,
                    "description": "Not Found",
                }
        async with http.post(f"{fake.base_url}/bot1:nope/getMe") as response:
            assert response.status == 401
            assert (await response.json())["error_code"] == 401
    assert [call.method for call in fake.calls()] == ["noSuchMethod"]
    assert fake.calls()[0].params == {"a": 1}


async def test_concurrent_polls_conflict_when_enabled() -> None:
    async with FakeBotAPI(conflict_on_concurrent_polls=True) as fake:
        other = make_bot(fake)
        try:
            async with asyncio.timeout(5):
                first = asyncio.create_task(other.get_updates(timeout=30))
                await fake.wait_for_parked_poll()
                with pytest.raises(TelegramConflictError, match="terminated by other getUpdates"):
                    await other.get_updates(timeout=30)
                fake.push_text(CHAT, "for the first poller")
                assert len(await first) == 1
        finally:
            await other.session.close()


async def test_stop_with_a_parked_long_poll_is_fast() -> None:
    fake = FakeBotAPI()
    await fake.start()
    bot = make_bot(fake)
    try:
        async with asyncio.timeout(5):
            poll = asyncio.create_task(bot.get_updates(timeout=60))
            await fake.wait_for_parked_poll()
            started = time.monotonic()
            await fake.stop()
            elapsed = time.monotonic() - started
            # The parked poll was woken and answered, empty, before cleanup.
            assert await poll == []
    finally:
        await bot.session.close()
    assert elapsed < 0.5


async def test_stop_after_the_poller_went_away_is_fast() -> None:
    fake = FakeBotAPI(shutdown_timeout=30.0)
    await fake.start()
    bot = make_bot(fake)
    try:
        async with asyncio.timeout(5):
            poll = asyncio.create_task(bot.get_updates(timeout=60))
            await fake.wait_for_parked_poll()
            poll.cancel()
            with pytest.raises(asyncio.CancelledError):
                await poll
            started = time.monotonic()
            await fake.stop()
            elapsed = time.monotonic() - started
    finally:
        await bot.session.close()
    assert elapsed < 0.5


async def test_real_dispatcher_polling_round_trip(fake: FakeBotAPI, bot: Bot) -> None:
    dispatcher = Dispatcher()

    async def echo(message: Message) -> None:
        await message.answer(f"echo: {message.text}")

    dispatcher.message.register(echo)
    polling = asyncio.create_task(
        dispatcher.start_polling(bot, handle_signals=False, close_bot_session=False)
    )
    try:
        async with asyncio.timeout(5):
            first = fake.push_text(CHAT, "one")
            assert await fake.wait_for_sent(CHAT, 1) == ["echo: one"]
            fake.push_text(CHAT, "two", thread_id=9)
            assert await fake.wait_for_sent(CHAT, 2) == ["echo: one", "echo: two"]
            # The offset of the first batch reached the server with a later getUpdates.
            await fake.wait_until(lambda: (fake.confirmed_offset or 0) > first)
    finally:
        async with asyncio.timeout(5):
            await dispatcher.stop_polling()
            await polling
    assert fake.sent(CHAT, thread_id=9) == ["echo: two"]


async def test_replies_are_recorded_and_a_deleted_original_is_refused_unless_allowed(
    fake: FakeBotAPI, bot: Bot
) -> None:
    update_id = fake.push_text(GROUP, "help", thread_id=77, chat_type="supergroup", user_id=5)
    asked = fake.message_id_of(update_id)
    async with asyncio.timeout(5):
        reply = await bot.send_message(
            GROUP,
            "on it",
            message_thread_id=77,
            reply_parameters=ReplyParameters(message_id=asked),
        )
        assert reply.reply_to_message is not None
        assert reply.reply_to_message.message_id == asked
        fake.delete_inbound(GROUP, asked)  # the user deleted their message
        with pytest.raises(TelegramBadRequest, match="message to be replied not found"):
            await bot.send_message(GROUP, "x", reply_parameters=ReplyParameters(message_id=asked))
        loose = await bot.send_message(
            GROUP,
            "done",
            message_thread_id=77,
            reply_parameters=ReplyParameters(message_id=asked, allow_sending_without_reply=True),
        )
        assert loose.reply_to_message is None
        await bot.send_message(GROUP, "plain", message_thread_id=77)
    assert fake.reply_anchors(GROUP, thread_id=77) == [
        ("on it", asked),
        ("done", None),
        ("plain", None),
    ]
    sent = fake.calls("sendMessage")
    assert sent[0].params["reply_parameters"] == {"message_id": asked}
    assert sent[2].params["reply_parameters"] == {
        "message_id": asked,
        "allow_sending_without_reply": True,
    }
    assert fake.messages[(GROUP, reply.message_id)]["reply_parameters"] == {"message_id": asked}

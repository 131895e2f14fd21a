"""Telegram, on aiogram's real Bot and HTTP session.

Intake is our own polling loop, not aiogram's dispatcher (which confirms updates before their
handlers finish, and stalls forever on one malformed update):

    getUpdates(offset) -> validate each update on its own -> hand the batch to the sink, which
    commits it to the inbox -> only then move the offset. The offset reaches Telegram with the
    next getUpdates, and on stop with one last confirming call.

So an update is confirmed only after it is durable; a crash before that gets it redelivered,
and the inbox's unique (platform, update_id) makes the redelivery a no-op. A malformed update is
recorded as skipped with a log line and never stalls polling. A store that fails does not stop
polling either: the offset stays, and the same updates are fetched again after a backoff.

With a webhook registration (telegram.mode = "webhook") there is no polling: Telegram POSTs
each update, see telegram_webhook.py; everything else here is the same.

Sending policy (the Bot API has no idempotency key, so a blind retry can double a message):
- 429: wait retry_after and try again here; the request was refused, nothing was sent.
- 5xx (JSON or an HTML error page) and "connection refused": surely not delivered, so the
  outbox retries with backoff. (A 5xx after Telegram already accepted the message would double
  it; Telegram answers 5xx from its front end when the backend did not take the request, and
  losing a reply silently is worse than that rare risk.)
- a timeout or a connection dropped after the request went out: the outcome is unknown. It is
  reported as such and the outbox marks the reply 'unknown' for the operator: never resent.
- 403 (blocked by the user): the chat is marked and nothing more is tried there.
- other 4xx: final. "message is not modified" on an edit and "not found" on a delete are success.

Reply anchors: an answer sent as a reply to the message it answers carries reply_parameters
with allow_sending_without_reply, so an original the user deleted meanwhile never blocks the
answer (Telegram then sends it loose); message_thread_id keeps it in its forum topic either way.

The token is only ever in the URL aiogram builds; every error text is scrubbed of it.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Sequence
from typing import Any

import aiohttp
from aiogram import Bot
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiogram.exceptions import (
    ClientDecodeError,
    TelegramAPIError,
    TelegramBadRequest,
    TelegramForbiddenError,
    TelegramNetworkError,
    TelegramRetryAfter,
    TelegramServerError,
)
from aiogram.types import ReplyParameters, Update
from pydantic import ValidationError

from gateway_core.adapters.base import (
    Capabilities,
    DeliveryError,
    InboundMessage,
    IntakeHealth,
    IntakeSink,
)
from gateway_core.adapters.telegram_webhook import WebhookIntake, WebhookRegistration
from gateway_core.backoff import Backoff
from gateway_core.clock import Clock
from gateway_core.model import ChatKind, Origin, ReplyAnchorMode
from gateway_core.safe_json import parse_json

log = logging.getLogger(__name__)

PLATFORM = "telegram"
MAX_MESSAGE = 4096
RETRY_AFTER_LIMIT = 10  # 429s tolerated for one request before it is handed back as retryable
# Failed polls in a row that make Telegram "unreachable" for readiness: one is a blip (the next
# try is 2 s later), two mean it stayed down.
UNREACHABLE_AFTER = 2


class TelegramAdapter:
    platform = PLATFORM
    capabilities = Capabilities(edit=True, delete=True, max_length=MAX_MESSAGE, typing=True)

    def __init__(
        self,
        token: str,
        *,
        api_base: str,
        allowed_users: Sequence[int],
        clock: Clock,
        poll_timeout: int = 25,
        backoff_cap: float = 30.0,
        webhook: WebhookRegistration | None = None,
        reply_anchor: ReplyAnchorMode = ReplyAnchorMode.AUTO,
    ) -> None:
        self._token = token
        self.reply_anchor = reply_anchor
        self._allowed = frozenset(allowed_users)
        self._clock = clock
        self._poll_timeout = poll_timeout
        self._backoff = Backoff(cap=backoff_cap)
        self._session = AiohttpSession(api=TelegramAPIServer.from_base(api_base))
        self.bot = Bot(token, session=self._session)
        self._sink: IntakeSink | None = None
        self._stop = asyncio.Event()
        self._poller: asyncio.Task[None] | None = None
        self._offset: int | None = None
        self.blocked_chats: set[str] = set()
        self.username: str | None = None
        self._health = IntakeHealth(False, "intake not started")
        # Webhook mode: Telegram pushes updates (served by gateway_core/service/webhook.py).
        self.webhook = (
            None
            if webhook is None
            else WebhookIntake(
                self.bot,
                webhook,
                clock=clock,
                to_inbound=self._inbound,
                scrub=self._scrub,
                backoff=self._backoff.delay,
            )
        )

    # -- intake ---------------------------------------------------------------------------

    async def start_intake(self, sink: IntakeSink) -> None:
        """Start polling in the background (getMe is retried there until it succeeds), or
        take pushed updates and register the webhook."""
        if self.webhook is not None:
            await self.webhook.start(sink)
            return
        self._sink = sink
        self._stop.clear()
        self._health = IntakeHealth(False, "connecting to the Bot API")
        self._poller = asyncio.get_running_loop().create_task(self._poll(), name="telegram-poll")

    def intake_health(self) -> IntakeHealth:
        return self._health if self.webhook is None else self.webhook.health()

    def _reached(self) -> None:
        if not self._health.reachable:
            self._health = IntakeHealth(True, f"polling as @{self.username}")

    def _failed_to_reach(self, failures: int, reason: str) -> None:
        if failures >= UNREACHABLE_AFTER or not self._health.reachable:
            self._health = IntakeHealth(False, f"{failures} poll(s) failed in a row: {reason}")

    async def stop_intake(self) -> None:
        """Stop polling at once and confirm what was persisted (or stop taking pushes)."""
        if self.webhook is not None:
            await self.webhook.stop()
            return
        self._stop.set()
        if self._poller is not None:
            await asyncio.gather(self._poller, return_exceptions=True)
            self._poller = None
            await self._confirm_offset()

    async def _poll(self) -> None:
        failures = store_failures = 0
        while not self._stop.is_set():
            try:
                if self.username is None:
                    me = await self.bot.get_me()
                    self.username = me.username
                    log.info("telegram: polling as @%s", me.username)
                    self._reached()
                raw = await self._until_stopped(self._get_updates(self._poll_timeout))
                if raw is None:
                    return  # stopped while waiting
                failures = 0
                self._reached()
            except (TelegramRetryAfter, _PollRetryAfter) as error:
                await self._until_stopped(self._clock.sleep(error.retry_after))
                continue
            except _PollConflict as conflict:
                failures += 1
                if conflict.webhook:
                    log.error(
                        "telegram: a webhook is set for this bot, so getUpdates is refused "
                        '(409); use telegram.mode = "webhook", or delete the webhook'
                    )
                else:
                    log.error(
                        "telegram: another instance is polling this bot token (409 Conflict); "
                        "only one gateway may run per bot"
                    )
                self._failed_to_reach(failures, "409 Conflict")
                await self._until_stopped(self._clock.sleep(self._backoff.delay(failures)))
                continue
            except (
                TelegramAPIError,
                ClientDecodeError,
                aiohttp.ClientError,
                TimeoutError,
                _PollFailed,
            ) as e:
                failures += 1
                reason = self._scrub(str(e))
                log.warning("telegram: polling failed (%s); retrying", reason)
                self._failed_to_reach(failures, reason)
                await self._until_stopped(self._clock.sleep(self._backoff.delay(failures)))
                continue
            try:
                await self._accept(raw)
                store_failures = 0
            except Exception as error:
                # Not stored, so the offset did not move: the same updates come again with the
                # next poll. Polling must outlive a store that fails for a while.
                store_failures += 1
                log.error(
                    "telegram: %d update(s) could not be stored (%s); fetching them again",
                    len(raw),
                    error,
                )
                await self._until_stopped(self._clock.sleep(self._backoff.delay(store_failures)))

    async def _accept(self, raw: list[Any]) -> None:
        if not raw:
            return
        batch = [self._inbound(item) for item in raw]
        assert self._sink is not None
        await self._sink(batch)  # committed to the inbox: now the offset may move
        ids = [int(item["update_id"]) for item in raw if _has_int_id(item)]
        if ids:
            self._offset = max(ids) + 1

    def _inbound(self, raw: Any) -> InboundMessage:
        update_id = str(raw.get("update_id")) if isinstance(raw, dict) else "?"
        try:
            update = Update.model_validate(raw, context={"bot": self.bot})
        except ValidationError as error:
            log.warning(
                "telegram: malformed update %s skipped (%d errors)", update_id, error.error_count()
            )
            return InboundMessage(PLATFORM, update_id, None, "", skip_reason="malformed update")
        message = update.message
        if message is None or message.text is None:
            return InboundMessage(PLATFORM, update_id, None, "", skip_reason="not a text message")
        user = message.from_user
        if user is None or user.id not in self._allowed:
            who = "unknown" if user is None else str(user.id)
            log.warning("telegram: message from user %s who is not allowed; no reply", who)
            return InboundMessage(
                PLATFORM, update_id, None, "", skip_reason=f"user {who} not allowed"
            )
        thread = message.message_thread_id if message.is_topic_message else None
        origin = Origin(
            PLATFORM,
            str(message.chat.id),
            None if thread is None else str(thread),
            user_id=str(user.id),
            user_name=user.first_name,
            chat_kind=ChatKind.PRIVATE if message.chat.type == "private" else ChatKind.GROUP,
        )
        return InboundMessage(
            PLATFORM, update_id, origin, message.text, message_id=str(message.message_id)
        )

    async def _get_updates(self, timeout: int, limit: int = 100) -> list[Any]:
        """getUpdates over aiogram's own HTTP session, parsed per update by _inbound (one bad
        update must not make the whole batch unreadable)."""
        session = await self._session.create_session()
        url = self._session.api.api_url(token=self._token, method="getUpdates")
        form: dict[str, str] = {"timeout": str(timeout), "limit": str(limit)}
        form["allowed_updates"] = json.dumps(["message"])
        if self._offset is not None:
            form["offset"] = str(self._offset)
        client_timeout = aiohttp.ClientTimeout(total=timeout + 15)
        async with session.post(url, data=form, timeout=client_timeout) as response:
            text = await response.text()
        if response.status == 409:
            raise _PollConflict(webhook="webhook" in text.lower())
        body = parse_json(text)
        if not isinstance(body, dict):
            raise _PollFailed(f"HTTP {response.status}, not a JSON answer")
        if not body.get("ok"):
            parameters = body.get("parameters")
            retry_after = parameters.get("retry_after") if isinstance(parameters, dict) else None
            if isinstance(retry_after, int) and retry_after > 0:
                raise _PollRetryAfter(retry_after)
            raise _PollFailed(f"HTTP {response.status}: {body.get('description')}")
        result = body.get("result")
        return result if isinstance(result, list) else []

    async def _confirm_offset(self) -> None:
        if self._offset is None:
            return
        try:
            await self._get_updates(timeout=0, limit=1)
        except Exception as error:  # best effort: an unconfirmed update is redelivered, deduped
            log.warning("telegram: could not confirm offset on stop: %s", self._scrub(str(error)))

    async def _until_stopped(self, awaitable: Any) -> Any:
        """Await something, but give up (returning None) the moment intake is stopped."""
        work = asyncio.ensure_future(awaitable)
        stopper = asyncio.ensure_future(self._stop.wait())
        try:
            done, _ = await asyncio.wait({work, stopper}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopper.cancel()
        if work not in done:
            work.cancel()
            await asyncio.gather(work, return_exceptions=True)
            return None
        return work.result()

    # -- outbound -------------------------------------------------------------------------

    async def send(self, origin: Origin, text: str, reply_to: str | None = None) -> str | None:
        if origin.chat_id in self.blocked_chats:
            raise DeliveryError(f"chat {origin.chat_id} has blocked the bot", final=True)
        thread = None if origin.thread_id is None else int(origin.thread_id)
        anchor = (
            None
            if reply_to is None
            else ReplyParameters(message_id=int(reply_to), allow_sending_without_reply=True)
        )
        message = await self._call(
            lambda: self.bot.send_message(
                int(origin.chat_id), text, message_thread_id=thread, reply_parameters=anchor
            ),
            origin,
        )
        return str(message.message_id)

    async def edit(self, origin: Origin, message_id: str, text: str) -> None:
        try:
            await self._call(
                lambda: self.bot.edit_message_text(
                    text, chat_id=int(origin.chat_id), message_id=int(message_id)
                ),
                origin,
            )
        except DeliveryError as error:
            if "message is not modified" not in str(error).lower():
                raise

    async def delete(self, origin: Origin, message_id: str) -> None:
        try:
            await self._call(
                lambda: self.bot.delete_message(int(origin.chat_id), int(message_id)), origin
            )
        except DeliveryError as error:
            if "not found" not in str(error).lower():
                raise

    async def typing(self, origin: Origin) -> None:
        thread = None if origin.thread_id is None else int(origin.thread_id)
        await self._call(
            lambda: self.bot.send_chat_action(
                int(origin.chat_id), "typing", message_thread_id=thread
            ),
            origin,
        )

    async def _call(self, request: Any, origin: Origin) -> Any:
        """One Bot API request under the sending policy in the module docstring."""
        for _ in range(RETRY_AFTER_LIMIT):
            try:
                return await request()
            except TelegramRetryAfter as error:
                await self._clock.sleep(error.retry_after)
            except TelegramForbiddenError as error:
                self.blocked_chats.add(origin.chat_id)
                raise DeliveryError(self._scrub(error.message), final=True) from None
            except TelegramBadRequest as error:
                raise DeliveryError(self._scrub(error.message), final=True) from None
            except (TelegramServerError, ClientDecodeError) as error:
                raise DeliveryError(self._scrub(str(error))) from None
            except TelegramNetworkError as error:
                if isinstance(error.__cause__, aiohttp.ClientConnectorError):
                    raise DeliveryError(self._scrub(error.message)) from None  # never sent
                raise DeliveryError(self._scrub(error.message), outcome_unknown=True) from None
            except TelegramAPIError as error:
                raise DeliveryError(self._scrub(error.message), final=True) from None
        raise DeliveryError("Telegram kept asking to retry later")

    async def close(self) -> None:
        if self.webhook is not None:
            await self.webhook.stop()
        self._stop.set()
        if self._poller is not None:
            await asyncio.gather(self._poller, return_exceptions=True)
        await self._session.close()

    def _scrub(self, text: str) -> str:
        return text.replace(self._token, "<token>")


class _PollConflict(Exception):
    """409: another getUpdates consumer is using this token, or a webhook is set."""

    def __init__(self, *, webhook: bool) -> None:
        super().__init__("409 Conflict")
        self.webhook = webhook


class _PollFailed(Exception):
    """getUpdates answered with an error or something that is not JSON."""


class _PollRetryAfter(Exception):
    def __init__(self, retry_after: int) -> None:
        super().__init__(f"retry after {retry_after} s")
        self.retry_after = retry_after


def _has_int_id(item: Any) -> bool:
    return isinstance(item, dict) and isinstance(item.get("update_id"), int)

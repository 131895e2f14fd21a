"""A fake Telegram Bot API server on loopback, for driving a real aiogram ``Bot`` in tests.

Point aiogram at it with::

    session = AiohttpSession(api=TelegramAPIServer.from_base(fake.base_url))
    bot = Bot("42:TEST-TOKEN", session=session)

What it imitates (the Bot API as aiogram 3.31 talks to it):

* one route ``/bot{token}/{method}``, any HTTP verb; the body is form-urlencoded or multipart
  (complex values are JSON strings), a JSON body or a query string also works;
* ``getUpdates`` with Telegram's confirmation rule: an update is dropped only when a later call
  sends an ``offset`` greater than its ``update_id``; returning it confirms nothing. Long polls
  park until an update arrives, the timeout passes or the server stops;
* the HTTP status always equals ``error_code``, because aiogram maps errors by HTTP status;
* fault injection (JSON or nginx-style HTML errors, dropped connections, blocked chats) and a
  "network down" switch that keeps the port;
* webhooks: ``setWebhook`` / ``deleteWebhook`` / ``getWebhookInfo``. While a webhook is set,
  getUpdates answers 409 and the fake POSTs each pending update to the URL as Telegram does
  (JSON body, ``X-Telegram-Bot-Api-Secret-Token``, at most ``max_connections`` at once); an
  update is dropped only after a 2xx answer, anything else (an error status, a refused or cut
  connection, a timeout) is retried after ``webhook_retry_delay``. Every attempt is logged in
  ``webhook_attempts``.

By hand (the rehearsal in the README)::

    python -m tests.support.fake_bot_api --port 8081          # serves; prints the token
    python -m tests.support.fake_bot_api send --port 8081 hello  # and shows the answer
    curl -s -d '{"chat_id": 7001, "text": "hello"}' http://127.0.0.1:8081/fake/send
    curl -s http://127.0.0.1:8081/fake/messages                # what the bot sent

Run by hand, the fake prints every message the bot sends (control characters escaped).

Limitations, on purpose:

* Message text is stored and echoed as sent: ``parse_mode`` markup is not parsed and no
  entities are returned for bot messages; "not modified" compares the raw text and the inline
  keyboard.
* Only messages sent by the bot are kept in ``messages``; inbound messages take a message_id
  from the same per-chat counter and are kept in ``inbound`` (``message_id_of`` maps an
  update to its message); they cannot be edited or deleted through the Bot API, only by the
  test (``delete_inbound``: the user deleted it).
* Replies: ``reply_parameters`` (and the older ``reply_to_message_id``) are recorded with the
  message; a reply to a message that is not in its chat (never sent, or deleted) answers
  "message to be replied not found" unless ``allow_sending_without_reply``, which sends it
  loose, as Telegram does. ``reply_anchors()`` lists (text, replied-to id) per message.
* ``allowed_updates`` is recorded in the call log but not applied.
* ``go_down()`` closes the listening socket and aborts open connections, so clients see
  "connection refused" (or a disconnect for requests in flight), never a hang or a timeout.
  ``come_up()`` binds the same port again; should another process grab that port in between,
  ``come_up()`` raises ``OSError``.
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import json
import re
import signal
import sys
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from types import EllipsisType, TracebackType
from typing import Any, Literal, Self

import aiohttp
from aiohttp import web
from aiohttp.web_request import FileField

__all__ = ["DEFAULT_TOKEN", "Call", "FakeBotAPI", "WebhookAttempt"]

DEFAULT_TOKEN = "42:TEST-TOKEN"
# The user (and private chat) a message sent by hand comes from.
DEFAULT_HAND_USER = 7001
DEFAULT_ICON_COLOR = 7322096
DEFAULT_USER_ID = 1001
MAX_TEXT_LENGTH = 4096

NOT_MODIFIED = (
    "Bad Request: message is not modified: specified new message content and reply markup are "
    "exactly the same as a current content and reply markup of the message"
)
EDIT_NOT_FOUND = "Bad Request: message to edit not found"
REPLY_NOT_FOUND = "Bad Request: message to be replied not found"
DELETE_NOT_FOUND = "Bad Request: message to delete not found"
BLOCKED = "Forbidden: bot was blocked by the user"
CONFLICT = (
    "Conflict: terminated by other getUpdates request; "
    "make sure that only one bot instance is running"
)

_DESCRIPTIONS = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    409: CONFLICT,
    413: "Request Entity Too Large",
    429: "Too Many Requests",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}

# Values of these keys are free text and are never turned into numbers or JSON.
_TEXT_KEYS = frozenset(
    {
        "text",
        "caption",
        "name",
        "title",
        "description",
        "short_description",
        "query",
        "emoji",
        "question",
        "explanation",
        "address",
        "first_name",
        "last_name",
        "username",
        "url",
        "switch_pm_text",
        "switch_pm_parameter",
    }
)
_INT_RE = re.compile(r"-?\d+")
_TOKEN_RE = re.compile(r"(\d+):\S+")
# Telegram's rule for setWebhook's secret_token.
_SECRET_RE = re.compile(r"[A-Za-z0-9_-]{1,256}")
WEBHOOK_CONFLICT = (
    "Conflict: can't use getUpdates method while webhook is active; "
    "use deleteWebhook to delete the webhook first"
)


@dataclass(frozen=True, slots=True)
class Call:
    """One authorised request: when it arrived (time.monotonic), the method, decoded params."""

    at: float
    method: str
    params: dict[str, Any]


@dataclass(frozen=True, slots=True)
class WebhookAttempt:
    """One POST of an update to the webhook: when it was answered (time.monotonic), the
    update, and the HTTP status (None: no answer, with the error instead)."""

    at: float
    update_id: int
    status: int | None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


@dataclass(slots=True)
class _Webhook:
    url: str
    secret_token: str | None
    max_connections: int
    allowed_updates: list[str] | None
    last_error_date: int | None = None
    last_error_message: str | None = None


@dataclass(slots=True)
class _Fault:
    kind: Literal["fail", "drop", "pass"]  # pass: answered normally (a fault comes later)
    status: int = 0
    description: str = ""
    retry_after: int | None = None
    html: bool = False
    parameters: dict[str, Any] = field(default_factory=dict)


class _Reject(Exception):
    """Raised inside a method implementation to answer with a Bot API error."""

    def __init__(self, status: int, description: str) -> None:
        super().__init__(description)
        self.status = status
        self.description = description


def decode_value(key: str, value: str) -> Any:
    """A form value as aiogram encoded it: decimal text -> int, "true"/"false" -> bool,
    JSON text of a list or dict -> the decoded object; free-text keys stay strings."""
    if key in _TEXT_KEYS:
        return value
    if _INT_RE.fullmatch(value):
        return int(value)
    if value in ("true", "false"):
        return value == "true"
    if value[:1] in ("[", "{"):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def _error_body(
    status: int, description: str, parameters: Mapping[str, Any] | None
) -> dict[str, Any]:
    body: dict[str, Any] = {"ok": False, "error_code": status, "description": description}
    if parameters:
        body["parameters"] = dict(parameters)
    return body


def _error(
    status: int, description: str, parameters: Mapping[str, Any] | None = None
) -> web.Response:
    # The HTTP status MUST equal error_code: aiogram picks the exception by HTTP status.
    return web.json_response(_error_body(status, description, parameters), status=status)


def _html_page(status: int) -> str:
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = "Error"
    title = f"{status} {phrase}"
    return (
        f"<html>\r\n<head><title>{title}</title></head>\r\n<body>\r\n"
        f"<center><h1>{title}</h1></center>\r\n<hr><center>nginx</center>\r\n"
        "</body>\r\n</html>\r\n"
    )


def _utf16_len(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def _as_int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and _INT_RE.fullmatch(value):
        return int(value)
    return None


def _as_seconds(value: Any) -> float:
    if isinstance(value, bool):
        return 0.0
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return 0.0
    return 0.0


class FakeBotAPI:
    """An aiohttp.web server on 127.0.0.1 (free port) speaking enough of the Bot API for aiogram.

    State is public for assertions: ``messages`` maps ``(chat_id, message_id)`` to
    ``{"text", "thread_id", "deleted", ...}`` for every message the bot sent, ``blocked_chats``
    is a set of chat ids whose sendMessage answers 403, ``confirmed_offset`` is the last
    getUpdates offset received.
    """

    def __init__(
        self,
        token: str = DEFAULT_TOKEN,
        bot_username: str = "test_bot",
        *,
        bot_first_name: str = "Test Bot",
        conflict_on_concurrent_polls: bool = False,
        shutdown_timeout: float = 1.0,
        port: int = 0,
        webhook_retry_delay: float = 0.05,
        webhook_timeout: float = 10.0,
        on_bot_message: Callable[[int, str], None] | None = None,
    ) -> None:
        match = _TOKEN_RE.fullmatch(token)
        if match is None:
            raise ValueError(f"not a bot token: {token!r}")
        self.token = token
        self.bot_id = int(match.group(1))
        self.bot_username = bot_username
        self.bot_first_name = bot_first_name
        self.conflict_on_concurrent_polls = conflict_on_concurrent_polls
        self.blocked_chats: set[int] = set()
        self.messages: dict[tuple[int, int], dict[str, Any]] = {}
        # Messages users sent: {"text", "thread_id", "user_id", "deleted", "date"}.
        self.inbound: dict[tuple[int, int], dict[str, Any]] = {}
        self._message_of_update: dict[int, tuple[int, int]] = {}
        self.topics: dict[tuple[int, int], dict[str, Any]] = {}
        self.confirmed_offset: int | None = None
        self._shutdown_timeout = shutdown_timeout
        self._updates: list[dict[str, Any]] = []
        self._next_update_id = 1000
        self._next_message_id: dict[int, int] = {}
        self._chats: dict[int, dict[str, Any]] = {}
        self._calls: list[Call] = []
        self._faults: dict[str, deque[_Fault]] = {}
        self._waiters: set[asyncio.Future[None]] = set()
        self._parked = 0
        self._closing = False
        self._runner: web.AppRunner | None = None
        self._site: web.TCPSite | None = None
        self._port: int | None = None
        self._wanted_port = port
        self._on_bot_message = on_bot_message
        # Webhook delivery: the registration, the pusher task, updates being POSTed right now,
        # and when a failed update may be tried again.
        self.webhook_retry_delay = webhook_retry_delay
        self.webhook_timeout = webhook_timeout
        self.webhook_attempts: list[WebhookAttempt] = []
        self._webhook: _Webhook | None = None
        self._pusher: asyncio.Task[None] | None = None
        self._pushing: dict[int, asyncio.Task[None]] = {}
        self._retry_at: dict[int, float] = {}
        self._client: aiohttp.ClientSession | None = None

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        if self._runner is not None:
            raise RuntimeError("FakeBotAPI already started")
        app = web.Application()
        app.router.add_route("*", "/bot{token}/{method}", self._handle)
        app.router.add_post("/fake/send", self._hand_send)
        app.router.add_get("/fake/messages", self._hand_messages)
        app.router.add_route("*", "/{tail:.*}", self._not_found)
        # handler_cancellation: a parked long poll whose client went away is cancelled at once
        # instead of lingering until its timeout (it would also count as a concurrent poll).
        runner = web.AppRunner(
            app,
            access_log=None,
            handler_cancellation=True,
            shutdown_timeout=self._shutdown_timeout,
        )
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", self._wanted_port)
        try:
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        self._site = site
        self._port = int(runner.addresses[0][1])
        self._closing = False

    async def stop(self) -> None:
        """Wake parked long polls first, then clean up: no wait for the shutdown_timeout."""
        runner = self._runner
        if runner is None:
            return
        self._closing = True
        await self._stop_pushing()
        if self._client is not None:
            await self._client.close()
            self._client = None
        self._notify()
        # Let the woken getUpdates handlers write their (empty) answers before cleanup.
        await asyncio.sleep(0)
        self._runner = None
        self._site = None
        await runner.cleanup()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("FakeBotAPI not started")
        return self._port

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT``, for ``TelegramAPIServer.from_base``."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def is_down(self) -> bool:
        return self._runner is not None and self._site is None

    async def go_down(self) -> None:
        """Simulate the network being down: stop listening (new connections are refused) and
        abort every open connection, idle keep-alive ones and requests in flight included.
        State (pending updates, messages, faults) is kept."""
        runner = self._require_runner()
        site = self._site
        if site is None:
            return
        self._site = None
        await site.stop()
        server = runner.server
        if server is not None:
            for connection in server.connections:
                if connection.transport is not None:
                    connection.transport.abort()
        await asyncio.sleep(0)

    async def come_up(self) -> None:
        """Listen again on the same port after ``go_down()``."""
        runner = self._require_runner()
        if self._site is not None:
            return
        site = web.TCPSite(runner, "127.0.0.1", self.port)
        await site.start()
        self._site = site

    def _require_runner(self) -> web.AppRunner:
        if self._runner is None:
            raise RuntimeError("FakeBotAPI not started")
        return self._runner

    # ------------------------------------------------------------------ fault injection

    def fail(
        self,
        method: str,
        status: int,
        description: str | None = None,
        retry_after: int | None = None,
        html: bool = False,
        times: int = 1,
        *,
        parameters: Mapping[str, Any] | None = None,
        after: int = 0,
    ) -> None:
        """Queue ``times`` failures for ``method``, answered before its real behaviour (once
        ``after`` more calls of it were answered normally: ``after=1`` fails the second call).

        JSON envelope ``{"ok": false, "error_code": status, "description": ...}`` with HTTP
        status == status, plus ``parameters.retry_after`` when given (and any extra
        ``parameters``, e.g. ``migrate_to_chat_id``). ``html=True`` answers a text/html
        nginx-style page instead (aiogram raises ClientDecodeError for it).
        """
        if description is None:
            description = _DESCRIPTIONS.get(status, "Error")
            if status == 429 and retry_after is not None:
                description = f"Too Many Requests: retry after {retry_after}"
        extra = dict(parameters or {})
        if retry_after is not None:
            extra["retry_after"] = retry_after
        self._let_through(method, after)
        for _ in range(times):
            fault = _Fault("fail", status, description, retry_after, html, dict(extra))
            self._faults.setdefault(method, deque()).append(fault)

    def drop_connection(self, method: str, times: int = 1, *, after: int = 0) -> None:
        """Queue ``times`` requests of ``method`` whose connection is aborted without an answer
        (the client sees ServerDisconnectedError, aiogram raises TelegramNetworkError), once
        ``after`` more calls of it were answered normally."""
        self._let_through(method, after)
        for _ in range(times):
            self._faults.setdefault(method, deque()).append(_Fault("drop"))

    def _let_through(self, method: str, calls: int) -> None:
        for _ in range(calls):
            self._faults.setdefault(method, deque()).append(_Fault("pass"))

    def clear_faults(self, method: str | None = None) -> None:
        if method is None:
            self._faults.clear()
        else:
            self._faults.pop(method, None)

    # ------------------------------------------------------------------ test helpers

    def push_text(
        self,
        chat_id: int,
        text: str,
        *,
        user_id: int | None = None,
        first_name: str = "Alice",
        thread_id: int | None = None,
        chat_type: str = "private",
    ) -> int:
        """Queue an inbound text message and wake long polls; returns its update_id.

        ``user_id`` defaults to ``chat_id`` for private chats, else to 1001. With ``thread_id``
        the message carries ``message_thread_id``, ``is_topic_message: true`` and the chat has
        ``is_forum: true`` (aiogram's ``Message.answer`` replies into the topic only then).
        """
        if user_id is None:
            user_id = chat_id if chat_type == "private" else DEFAULT_USER_ID
        chat: dict[str, Any] = {"id": chat_id, "type": chat_type}
        if chat_type == "private":
            chat["first_name"] = first_name
        else:
            chat["title"] = f"Chat {chat_id}"
        if thread_id is not None:
            chat["is_forum"] = True
        known = self._chats.setdefault(chat_id, {})
        known.update(chat)
        message_id = self._take_message_id(chat_id)
        message: dict[str, Any] = {
            "message_id": message_id,
            "date": int(time.time()),
            "chat": dict(known),
            "from": {"id": user_id, "is_bot": False, "first_name": first_name},
            "text": text,
        }
        self.inbound[(chat_id, message_id)] = {
            "text": text,
            "thread_id": thread_id,
            "user_id": user_id,
            "first_name": first_name,
            "deleted": False,
            "date": message["date"],
        }
        if thread_id is not None:
            message["message_thread_id"] = thread_id
            message["is_topic_message"] = True
        if text.startswith("/"):
            command = text.split(maxsplit=1)[0]
            message["entities"] = [
                {"type": "bot_command", "offset": 0, "length": _utf16_len(command)}
            ]
        update_id = self.push_raw({"message": message})
        self._message_of_update[update_id] = (chat_id, message_id)
        return update_id

    def message_id_of(self, update_id: int) -> int:
        """The message_id of the message a ``push_text`` update carried."""
        return self._message_of_update[update_id][1]

    def delete_inbound(self, chat_id: int, message_id: int) -> None:
        """The user deleted a message they sent (a reply to it then needs
        ``allow_sending_without_reply``)."""
        self.inbound[(chat_id, message_id)]["deleted"] = True

    def push_raw(self, update: Mapping[str, Any]) -> int:
        """Queue any update dict as is (for malformed or unusual updates); an ``update_id`` is
        assigned when missing. Returns the update_id."""
        queued = copy.deepcopy(dict(update))
        update_id = queued.get("update_id")
        if isinstance(update_id, int) and not isinstance(update_id, bool):
            self._next_update_id = max(self._next_update_id, update_id + 1)
        elif "update_id" not in queued:
            update_id = self._next_update_id
            self._next_update_id += 1
            queued = {"update_id": update_id, **queued}
        else:
            raise ValueError(f"update_id must be an int, got {update_id!r}")
        self._updates.append(queued)
        self._notify()
        return int(update_id)

    def pending_updates(self) -> list[dict[str, Any]]:
        """Updates not yet confirmed by an offset (copies)."""
        return copy.deepcopy(self._updates)

    def sent(
        self, chat_id: int | None = None, thread_id: int | EllipsisType | None = ...
    ) -> list[str]:
        """Texts of the bot's messages as they are now (after edits, deleted ones left out), in
        sending order. ``thread_id=...`` (default) means any thread, ``None`` only messages
        outside topics."""
        return [
            record["text"]
            for (chat, _), record in self.messages.items()
            if not record["deleted"]
            and (chat_id is None or chat == chat_id)
            and (thread_id is ... or record["thread_id"] == thread_id)
        ]

    def reply_anchors(
        self, chat_id: int, thread_id: int | EllipsisType | None = ...
    ) -> list[tuple[str, int | None]]:
        """(text, the message_id it is a reply to, or None) of the bot's messages as they are
        now, in sending order; ``thread_id`` as for ``sent``."""
        return [
            (record["text"], record["reply_to"])
            for (chat, _), record in self.messages.items()
            if not record["deleted"]
            and chat == chat_id
            and (thread_id is ... or record["thread_id"] == thread_id)
        ]

    def calls(self, method: str | None = None) -> list[Call]:
        """The call log (authorised requests only), optionally for one method."""
        if method is None:
            return list(self._calls)
        return [call for call in self._calls if call.method == method]

    @property
    def webhook_url(self) -> str | None:
        """The URL of the webhook that is set, or None."""
        return None if self._webhook is None else self._webhook.url

    @property
    def webhook_in_flight(self) -> int:
        """Updates being POSTed to the webhook right now (not answered yet)."""
        return len(self._pushing)

    def answered(self, update_id: int) -> list[WebhookAttempt]:
        """The webhook attempts of one update that got a 2xx answer."""
        return [a for a in self.webhook_attempts if a.update_id == update_id and a.ok]

    @property
    def parked_polls(self) -> int:
        """How many getUpdates requests are waiting right now."""
        return self._parked

    async def wait_until(self, predicate: Callable[[], bool], timeout: float = 5.0) -> None:
        """Wait until ``predicate()`` holds, re-checked after every request, push and long-poll
        change; TimeoutError after ``timeout`` seconds."""
        await self._wait_until(predicate, timeout)

    async def wait_for_calls(self, method: str, count: int = 1, timeout: float = 5.0) -> list[Call]:
        """Wait until ``count`` calls of ``method`` were logged; TimeoutError otherwise."""
        await self._wait_until(lambda: len(self.calls(method)) >= count, timeout)
        return self.calls(method)

    async def wait_for_sent(
        self,
        chat_id: int | None = None,
        count: int = 1,
        thread_id: int | EllipsisType | None = ...,
        timeout: float = 5.0,
    ) -> list[str]:
        """Wait until ``sent(chat_id, thread_id)`` holds ``count`` texts; TimeoutError otherwise."""
        await self._wait_until(lambda: len(self.sent(chat_id, thread_id)) >= count, timeout)
        return self.sent(chat_id, thread_id)

    async def wait_for_parked_poll(self, timeout: float = 5.0) -> None:
        """Wait until a getUpdates long poll is parked; TimeoutError otherwise."""
        await self._wait_until(lambda: self._parked > 0, timeout)

    # ------------------------------------------------------------------ wake-ups

    def _notify(self) -> None:
        # A Condition without the lock: the push_* helpers are synchronous, and a single-threaded
        # loop needs no lock around the predicate checks.
        waiters, self._waiters = self._waiters, set()
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    async def _wait_until(self, predicate: Callable[[], bool], timeout: float) -> None:
        async with asyncio.timeout(timeout):
            while not predicate():
                waiter = asyncio.get_running_loop().create_future()
                self._waiters.add(waiter)
                try:
                    await waiter
                finally:
                    self._waiters.discard(waiter)

    # ------------------------------------------------------------------ HTTP

    async def _not_found(self, request: web.Request) -> web.StreamResponse:
        return _error(404, "Not Found")

    async def _read_params(self, request: web.Request) -> dict[str, Any]:
        params: dict[str, Any] = {}
        for key, value in request.query.items():
            params[key] = decode_value(key, value)
        if request.content_type == "application/json":
            body = await request.json()
            if isinstance(body, dict):
                params.update(body)
            return params
        if request.can_read_body:
            form = await request.post()
            for key, item in form.items():
                if isinstance(item, FileField):
                    params[key] = {
                        "filename": item.filename,
                        "content_type": item.content_type,
                        "data": item.file.read(),
                    }
                elif isinstance(item, str):
                    params[key] = decode_value(key, item)
                else:
                    params[key] = decode_value(key, bytes(item).decode("utf-8", "replace"))
        return params

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        if request.match_info["token"] != self.token:
            return _error(401, "Unauthorized")
        method = request.match_info["method"]
        params = await self._read_params(request)
        self._calls.append(Call(time.monotonic(), method, params))
        self._notify()
        try:
            queue = self._faults.get(method)
            fault = queue.popleft() if queue else None
            if fault is not None and fault.kind != "pass":
                if fault.kind == "drop":
                    return self._drop(request)
                if fault.html:
                    return web.Response(
                        text=_html_page(fault.status),
                        status=fault.status,
                        content_type="text/html",
                    )
                return _error(fault.status, fault.description, fault.parameters)
            implementation = self._methods().get(method)
            if implementation is None:
                return _error(404, "Not Found")
            try:
                result = await implementation(params)
            except _Reject as rejected:
                return _error(rejected.status, rejected.description)
            return web.json_response({"ok": True, "result": result})
        finally:
            self._notify()

    @staticmethod
    def _drop(request: web.Request) -> web.StreamResponse:
        transport = request.transport
        if transport is not None:
            transport.abort()
        # Never delivered: writing to the aborted transport fails and aiohttp drops it quietly.
        return web.Response(status=500)

    def _methods(self) -> dict[str, Callable[[dict[str, Any]], Awaitable[Any]]]:
        return {
            "getMe": self._get_me,
            "getUpdates": self._get_updates,
            "setWebhook": self._set_webhook,
            "deleteWebhook": self._delete_webhook,
            "getWebhookInfo": self._get_webhook_info,
            "setMyCommands": self._true,
            "sendChatAction": self._true,
            "close": self._true,
            "sendMessage": self._send_message,
            "editMessageText": self._edit_message_text,
            "deleteMessage": self._delete_message,
            "createForumTopic": self._create_forum_topic,
        }

    # ------------------------------------------------------------------ Bot API methods

    def _bot_user(self) -> dict[str, Any]:
        return {
            "id": self.bot_id,
            "is_bot": True,
            "first_name": self.bot_first_name,
            "username": self.bot_username,
        }

    async def _true(self, params: dict[str, Any]) -> bool:
        return True

    async def _get_me(self, params: dict[str, Any]) -> dict[str, Any]:
        return {
            **self._bot_user(),
            "can_join_groups": True,
            "can_read_all_group_messages": False,
            "supports_inline_queries": False,
        }

    async def _get_updates(self, params: dict[str, Any]) -> list[dict[str, Any]]:
        if self._webhook is not None:
            raise _Reject(409, WEBHOOK_CONFLICT)
        if self.conflict_on_concurrent_polls and self._parked > 0:
            raise _Reject(409, CONFLICT)
        offset = _as_int(params.get("offset"))
        if offset is not None:
            self.confirmed_offset = offset
            if offset < 0:
                self._updates = self._updates[offset:]
            else:
                # The only place where updates are confirmed.
                self._updates = [u for u in self._updates if u["update_id"] >= offset]
        limit = _as_int(params.get("limit"))
        limit = 100 if limit is None else max(1, min(limit, 100))
        timeout = _as_seconds(params.get("timeout"))
        if not self._updates and timeout > 0 and not self._closing:
            self._parked += 1
            self._notify()
            try:
                await self._wait_until(lambda: bool(self._updates) or self._closing, timeout)
            except TimeoutError:
                pass
            finally:
                self._parked -= 1
                self._notify()
        return copy.deepcopy(self._updates[:limit])

    def _take_message_id(self, chat_id: int) -> int:
        message_id = self._next_message_id.get(chat_id, 1)
        self._next_message_id[chat_id] = message_id + 1
        return message_id

    def _chat(self, chat_id: int) -> dict[str, Any]:
        known = self._chats.get(chat_id)
        if known is not None:
            return dict(known)
        return {"id": chat_id, "type": "private" if chat_id > 0 else "supergroup"}

    def _message(self, chat_id: int, message_id: int) -> dict[str, Any]:
        record = self.messages[(chat_id, message_id)]
        message: dict[str, Any] = {
            "message_id": message_id,
            "date": record["date"],
            "chat": self._chat(chat_id),
            "from": self._bot_user(),
            "text": record["text"],
        }
        if record["thread_id"] is not None:
            message["message_thread_id"] = record["thread_id"]
            message["is_topic_message"] = True
        if record["reply_markup"] is not None:
            message["reply_markup"] = record["reply_markup"]
        if record["edit_date"] is not None:
            message["edit_date"] = record["edit_date"]
        replied = record.get("reply_to")
        if replied is not None:
            message["reply_to_message"] = self._replied_message(chat_id, replied)
        return message

    def _replied_message(self, chat_id: int, message_id: int) -> dict[str, Any]:
        """The message a reply points at, as Telegram nests it (without its own reply)."""
        if (chat_id, message_id) in self.inbound:
            record = self.inbound[(chat_id, message_id)]
            sender = {"id": record["user_id"], "is_bot": False, "first_name": record["first_name"]}
        else:
            record = self.messages[(chat_id, message_id)]
            sender = self._bot_user()
        message: dict[str, Any] = {
            "message_id": message_id,
            "date": record["date"],
            "chat": self._chat(chat_id),
            "from": sender,
            "text": record["text"],
        }
        if record["thread_id"] is not None:
            message["message_thread_id"] = record["thread_id"]
            message["is_topic_message"] = True
        return message

    def _reply_to(self, chat_id: int, params: dict[str, Any]) -> int | None:
        """The message a send replies to, by Telegram's rule: a missing (or deleted) one is an
        error unless allow_sending_without_reply, which sends the message loose."""
        wanted = params.get("reply_parameters")
        if isinstance(wanted, dict):
            message_id = _as_int(wanted.get("message_id"))
            allowed = wanted.get("allow_sending_without_reply") is True
        else:
            message_id = _as_int(params.get("reply_to_message_id"))
            allowed = params.get("allow_sending_without_reply") is True
        if message_id is None:
            return None
        record = self.inbound.get((chat_id, message_id)) or self.messages.get((chat_id, message_id))
        if record is None or record["deleted"]:
            if allowed:
                return None
            raise _Reject(400, REPLY_NOT_FOUND)
        return message_id

    @staticmethod
    def _text(params: dict[str, Any]) -> str:
        text = params.get("text")
        if not isinstance(text, str) or not text.strip():
            raise _Reject(400, "Bad Request: message text is empty")
        if len(text) > MAX_TEXT_LENGTH:
            raise _Reject(400, "Bad Request: message is too long")
        return text

    @staticmethod
    def _inline_markup(params: dict[str, Any]) -> dict[str, Any] | None:
        # Telegram only echoes inline keyboards in a Message; aiogram would reject others.
        markup = params.get("reply_markup")
        if isinstance(markup, dict) and "inline_keyboard" in markup:
            return markup
        return None

    def _chat_id(self, params: dict[str, Any]) -> int:
        chat_id = _as_int(params.get("chat_id"))
        if chat_id is None:
            raise _Reject(400, "Bad Request: chat not found")
        return chat_id

    async def _send_message(self, params: dict[str, Any]) -> dict[str, Any]:
        chat_id = self._chat_id(params)
        text = self._text(params)
        if chat_id in self.blocked_chats:
            raise _Reject(403, BLOCKED)
        reply_to = self._reply_to(chat_id, params)
        message_id = self._take_message_id(chat_id)
        self.messages[(chat_id, message_id)] = {
            "text": text,
            "thread_id": _as_int(params.get("message_thread_id")),
            "deleted": False,
            "date": int(time.time()),
            "edit_date": None,
            "reply_markup": self._inline_markup(params),
            "reply_to": reply_to,  # what the user sees it reply to (None: a loose message)
            "reply_parameters": params.get("reply_parameters"),  # as sent
        }
        if self._on_bot_message is not None:
            self._on_bot_message(chat_id, text)
        return self._message(chat_id, message_id)

    def _find_message(self, params: dict[str, Any]) -> tuple[int, int, dict[str, Any] | None]:
        """(chat_id, message_id, record); record is None when unknown or deleted."""
        chat_id = _as_int(params.get("chat_id"))
        message_id = _as_int(params.get("message_id"))
        if chat_id is None or message_id is None:
            return 0, 0, None
        record = self.messages.get((chat_id, message_id))
        if record is None or record["deleted"]:
            return chat_id, message_id, None
        return chat_id, message_id, record

    async def _edit_message_text(self, params: dict[str, Any]) -> dict[str, Any]:
        chat_id, message_id, record = self._find_message(params)
        if record is None:
            raise _Reject(400, EDIT_NOT_FOUND)
        text = self._text(params)
        markup = self._inline_markup(params)
        if text == record["text"] and markup == record["reply_markup"]:
            raise _Reject(400, NOT_MODIFIED)
        record["text"] = text
        record["reply_markup"] = markup
        record["edit_date"] = int(time.time())
        return self._message(chat_id, message_id)

    async def _delete_message(self, params: dict[str, Any]) -> bool:
        _, _, record = self._find_message(params)
        if record is None:
            raise _Reject(400, DELETE_NOT_FOUND)
        record["deleted"] = True
        return True

    async def _create_forum_topic(self, params: dict[str, Any]) -> dict[str, Any]:
        chat_id = self._chat_id(params)
        name = params.get("name")
        if not isinstance(name, str) or not name:
            raise _Reject(400, "Bad Request: invalid topic name specified")
        icon_color = _as_int(params.get("icon_color"))
        # Telegram uses the id of the topic's service message as its thread id.
        thread_id = self._take_message_id(chat_id)
        topic = {
            "message_thread_id": thread_id,
            "name": name,
            "icon_color": DEFAULT_ICON_COLOR if icon_color is None else icon_color,
        }
        self.topics[(chat_id, thread_id)] = dict(topic)
        return topic

    # ------------------------------------------------------------------ webhooks

    async def _set_webhook(self, params: dict[str, Any]) -> bool:
        url = params.get("url")
        if not isinstance(url, str):
            raise _Reject(400, "Bad Request: bad webhook: an HTTPS URL must be provided")
        if not url:  # Telegram: an empty URL removes the webhook
            return await self._delete_webhook(params)
        if not url.startswith(("http://", "https://")):
            raise _Reject(400, "Bad Request: bad webhook: an HTTPS URL must be provided")
        secret = params.get("secret_token")
        if secret is not None and (not isinstance(secret, str) or not _SECRET_RE.fullmatch(secret)):
            raise _Reject(400, "Bad Request: secret token contains unallowed characters")
        connections = _as_int(params.get("max_connections"))
        connections = 40 if connections is None else connections
        if not 1 <= connections <= 100:
            raise _Reject(400, "Bad Request: bad webhook: max_connections must be 1-100")
        allowed = params.get("allowed_updates")
        if params.get("drop_pending_updates") is True:
            self._updates.clear()
        await self._stop_pushing()
        self._webhook = _Webhook(
            url, secret, connections, allowed if isinstance(allowed, list) else None
        )
        self._pusher = asyncio.get_running_loop().create_task(
            self._push_forever(self._webhook), name="fake-webhook-pusher"
        )
        return True

    async def _delete_webhook(self, params: dict[str, Any]) -> bool:
        await self._stop_pushing()
        self._webhook = None
        if params.get("drop_pending_updates") is True:
            self._updates.clear()
        return True

    async def _get_webhook_info(self, params: dict[str, Any]) -> dict[str, Any]:
        hook = self._webhook
        info: dict[str, Any] = {
            "url": "" if hook is None else hook.url,
            "has_custom_certificate": False,
            "pending_update_count": len(self._updates),
        }
        if hook is not None:
            info["max_connections"] = hook.max_connections
            if hook.allowed_updates is not None:
                info["allowed_updates"] = hook.allowed_updates
            if hook.last_error_date is not None:
                info["last_error_date"] = hook.last_error_date
                info["last_error_message"] = hook.last_error_message
        return info

    async def _stop_pushing(self) -> None:
        pusher, self._pusher = self._pusher, None
        tasks = [t for t in (pusher, *self._pushing.values()) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._pushing.clear()
        self._retry_at.clear()

    def _due(self, hook: _Webhook) -> list[dict[str, Any]]:
        """Pending updates that may be POSTed now, oldest first, within max_connections."""
        free = hook.max_connections - len(self._pushing)
        now = time.monotonic()
        due: list[dict[str, Any]] = []
        for update in self._updates:  # stops at `free`: a long backlog is not scanned
            if len(due) >= free:
                break
            update_id = update["update_id"]
            if update_id not in self._pushing and self._retry_at.get(update_id, 0.0) <= now:
                due.append(update)
        return due

    async def _push_forever(self, hook: _Webhook) -> None:
        """Telegram's side of a webhook: POST pending updates, drop those answered 2xx."""
        if self._client is None:
            self._client = aiohttp.ClientSession()
        while self._webhook is hook and not self._closing:
            for update in self._due(hook):
                update_id = update["update_id"]
                self._pushing[update_id] = asyncio.get_running_loop().create_task(
                    self._post(hook, update)
                )
                self._notify()
            retries = [at for uid, at in self._retry_at.items() if uid not in self._pushing]
            wait = max(0.001, min(retries) - time.monotonic()) if retries else 3600.0
            # Any change (a push, an answer) or the next retry time: look again.
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.add(waiter)
            try:
                await asyncio.wait({waiter}, timeout=wait)
            finally:
                self._waiters.discard(waiter)

    async def _post(self, hook: _Webhook, update: dict[str, Any]) -> None:
        update_id = int(update["update_id"])
        headers = {"Content-Type": "application/json"}
        if hook.secret_token is not None:
            headers["X-Telegram-Bot-Api-Secret-Token"] = hook.secret_token
        status: int | None = None
        error: str | None = None
        assert self._client is not None
        try:
            async with self._client.post(
                hook.url,
                data=json.dumps(update),
                headers=headers,
                timeout=aiohttp.ClientTimeout(total=self.webhook_timeout),
            ) as response:
                await response.read()
                status = response.status
        except asyncio.CancelledError:
            raise
        except (aiohttp.ClientError, TimeoutError, OSError) as failure:
            error = f"{type(failure).__name__}: {failure}"
        finally:
            self._pushing.pop(update_id, None)
        self.webhook_attempts.append(WebhookAttempt(time.monotonic(), update_id, status, error))
        if status is not None and 200 <= status < 300:
            # Answered updates are near the front (oldest are posted first): no full scan.
            for index, pending in enumerate(self._updates):
                if pending["update_id"] == update_id:
                    del self._updates[index]
                    break
            self._retry_at.pop(update_id, None)
        else:
            hook.last_error_date = int(time.time())
            hook.last_error_message = error or f"Wrong response from the webhook: {status}"
            self._retry_at[update_id] = time.monotonic() + self.webhook_retry_delay
        self._notify()

    # ------------------------------------------------------------------ by hand

    async def _hand_send(self, request: web.Request) -> web.Response:
        """POST /fake/send {"text": ..., "chat_id": 7001, "user_id": ...}: a user's message."""
        try:
            body = await request.json()
        except ValueError:
            body = dict(await request.post())
        text = body.get("text") if isinstance(body, dict) else None
        if not isinstance(text, str) or not text:
            return web.json_response({"ok": False, "error": "text is required"}, status=400)
        chat_id = _as_int(body.get("chat_id", DEFAULT_HAND_USER))
        user_id = _as_int(body.get("user_id", chat_id))
        if chat_id is None or user_id is None:
            return web.json_response(
                {"ok": False, "error": "chat_id must be an integer"}, status=400
            )
        update_id = self.push_text(chat_id, text, user_id=user_id)
        return web.json_response({"ok": True, "update_id": update_id})

    async def _hand_messages(self, request: web.Request) -> web.Response:
        """GET /fake/messages: every message the bot sent, as it is now."""
        listing = [
            {"chat_id": chat, "message_id": message_id, **{k: record[k] for k in _SHOWN}}
            for (chat, message_id), record in self.messages.items()
        ]
        return web.json_response(listing)


_SHOWN = ("text", "thread_id", "deleted")


def printable(text: str) -> str:
    """Chat text for a terminal: control characters (escape sequences) shown as escapes."""
    return "".join(c if c.isprintable() or c == " " else repr(c)[1:-1] for c in text)


def _banner(fake: FakeBotAPI) -> str:
    base = fake.base_url
    return f"""\
Fake Telegram Bot API listening on {base}
  token:   {fake.token}   (export SWITCHBOARD_TELEGRAM_TOKEN={fake.token})
  api:     telegram.api_base = "{base}"
  user:    {DEFAULT_HAND_USER} (put it in telegram.allowed_users)
Send a message as that user (and see the bot's answer):
  python -m tests.support.fake_bot_api send --port {fake.port} hello
  curl -s -d '{{"chat_id": {DEFAULT_HAND_USER}, "text": "hello"}}' {base}/fake/send
What the bot sent is printed here, and listed by:
  curl -s {base}/fake/messages
Ctrl+C stops it."""


async def _serve(port: int, token: str) -> None:
    def show(chat_id: int, text: str) -> None:
        print(f"bot -> chat {chat_id}: {printable(text)}", flush=True)

    fake = FakeBotAPI(token, port=port, webhook_retry_delay=1.0, on_bot_message=show)
    await fake.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    print(_banner(fake), flush=True)
    try:
        await stop.wait()
    finally:
        await fake.stop()


async def _send(port: int, chat_id: int, text: str, wait: float) -> int:
    """Send as the user; then, unless wait is 0, show the bot's answer once it came."""
    base = f"http://127.0.0.1:{port}"
    async with aiohttp.ClientSession() as client:
        before = len(await _bot_messages(client, base, chat_id))
        async with client.post(f"{base}/fake/send", json={"chat_id": chat_id, "text": text}) as r:
            body = await r.json()
        if not body.get("ok"):
            print(f"fake_bot_api: {body.get('error')}", file=sys.stderr)
            return 1
        print(f"sent update {body['update_id']} from user {chat_id}: {printable(text)}")
        if wait <= 0:
            return 0
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            answers = (await _bot_messages(client, base, chat_id))[before:]
            if answers:
                for answer in answers:
                    print(f"bot -> chat {chat_id}: {printable(answer)}")
                return 0
            await asyncio.sleep(0.1)  # another process's server: polling is all there is
    print(f"fake_bot_api: no answer within {wait:g} s (is the gateway running?)", file=sys.stderr)
    return 1


async def _bot_messages(client: aiohttp.ClientSession, base: str, chat_id: int) -> list[str]:
    async with client.get(f"{base}/fake/messages") as response:
        listing = await response.json()
    return [m["text"] for m in listing if m["chat_id"] == chat_id]


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args[:1] == ["send"]:
        sender = argparse.ArgumentParser(
            prog="python -m tests.support.fake_bot_api send",
            description="send a text message to the bot, as a user, through a running fake",
        )
        sender.add_argument("--port", type=int, default=8081)
        sender.add_argument("--chat", type=int, default=DEFAULT_HAND_USER, help="user/chat id")
        sender.add_argument(
            "--wait", type=float, default=10.0, help="seconds to wait for the answer (0: none)"
        )
        sender.add_argument("text", nargs="+")
        parsed = sender.parse_args(args[1:])
        try:
            return asyncio.run(_send(parsed.port, parsed.chat, " ".join(parsed.text), parsed.wait))
        except aiohttp.ClientConnectionError as error:
            print(f"fake_bot_api: no fake on port {parsed.port}: {error}", file=sys.stderr)
            return 1
    server = argparse.ArgumentParser(
        prog="python -m tests.support.fake_bot_api",
        description="a fake Telegram Bot API on 127.0.0.1, for trying the gateway by hand",
    )
    server.add_argument("--port", type=int, default=8081)
    server.add_argument("--token", default=DEFAULT_TOKEN)
    parsed = server.parse_args(args)
    try:
        asyncio.run(_serve(parsed.port, parsed.token))
    except OSError as error:
        print(f"fake_bot_api: cannot listen on port {parsed.port}: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""A fake OpenAI-compatible chat-completions server on loopback, for driving a real HTTP client.

Point a client at ``fake.base_url`` (``http://127.0.0.1:PORT/v1``); it POSTs to
``{base_url}/chat/completions``::

    async with FakeChatAPI(api_key="sk-test") as fake:
        fake.reply_text("hello", usage=(12, 3))
        fake.reply_tool_calls([("call_1", "terminal", {"command": "ls"})])
        ...  # run the code under test
        assert fake.last_messages()[-1]["role"] == "tool"

Replies are scripted per test and served first in, first out, one per chat-completions request,
whatever the request says; ``default(...)`` sets a reply served forever once the queue is empty.
With nothing scripted the fake answers 500 "no scripted reply", so a test fails loudly.

What it imitates:

* ``POST /v1/chat/completions`` with a JSON body. Non-streaming answers are full
  ``chat.completion`` objects (``id``, ``object``, ``created``, ``model``, ``choices`` with
  ``message`` and ``finish_reason``, ``usage``); tool-call arguments are JSON *strings*.
* ``"stream": true`` answers as OpenAI's Server-Sent Events: ``text/event-stream``, one
  ``data: {chunk}\\n\\n`` per ``chat.completion.chunk`` -- a role delta, content pieces, tool-call
  deltas (``index``, ``id``, ``type`` and ``function.name`` first, then ``function.arguments``
  fragments), a chunk with ``finish_reason``, with ``stream_options.include_usage`` a final
  chunk with empty ``choices`` and the usage (the others carry ``"usage": null``), then
  ``data: [DONE]\\n\\n``.
* OpenAI error bodies ``{"error": {"message", "type", "param", "code"}}`` with the matching HTTP
  status, optional extra headers (``Retry-After``); a ``Bearer`` key check when ``api_key`` is
  given (401); 400 for a body that is not a JSON object with a ``messages`` list; 404 for other
  paths. Those answers never consume a scripted reply.
* Slow and broken servers: ``delay`` before answering, ``chunk_delay`` between stream events,
  ``hang_after`` to stall mid-stream, ``reply_raw`` for malformed bodies. A handler whose client
  goes away is cancelled at once and counted in ``disconnects``.

Limitations, on purpose:

* The request is not validated beyond the shape above: ``tools``, ``tool_choice``, ``n``,
  ``max_tokens`` and the like are recorded but not applied; there is always one choice.
* Default token counts are a rough, deterministic estimate (about four characters per token);
  script ``usage=`` when a test asserts on them.
* ``logprobs``, ``refusal``, audio and the Responses API are not imitated; ``/v1/models`` and
  every other path answer 404.
* A reply is taken from the queue when its request arrives, so a request whose client
  disconnects during the delay still uses up its reply.
* ``stop()`` aborts open connections (clients see a disconnect) instead of waiting for slow
  handlers; those aborts are not counted in ``disconnects``.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import re
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Literal, Self

from aiohttp import web

__all__ = [
    "DEFAULT_MODEL",
    "NO_SCRIPTED_REPLY",
    "ChatRequest",
    "FakeChatAPI",
    "Reply",
    "ToolCall",
    "ToolCallSpec",
    "error_body",
    "error_reply",
    "raw_reply",
    "text_reply",
    "tool_calls_reply",
]

DEFAULT_MODEL = "fake-model"
NO_SCRIPTED_REPLY = "FakeChatAPI: no scripted reply for this request"
CHAT_PATH = "/v1/chat/completions"
# Tool-call arguments are streamed in fragments of this many characters.
ARGUMENT_FRAGMENT = 8

# (id or None for a generated one, function name, arguments as a JSON-able mapping or raw text)
ToolCallSpec = tuple[str | None, str, Mapping[str, Any] | str]

_ERROR_TYPES = {
    400: ("invalid_request_error", None),
    401: ("invalid_request_error", "invalid_api_key"),
    403: ("invalid_request_error", None),
    404: ("invalid_request_error", None),
    429: ("requests", "rate_limit_exceeded"),
}
_PIECE_RE = re.compile(r"\S+\s*|\s+")


@dataclass(frozen=True, slots=True)
class ToolCall:
    """One scripted tool call; ``arguments`` is the exact text sent (JSON, or malformed)."""

    id: str | None
    name: str
    arguments: str


@dataclass(frozen=True, slots=True)
class Reply:
    """One scripted answer; build it with ``text_reply``, ``tool_calls_reply``, ``error_reply``
    or ``raw_reply``."""

    kind: Literal["completion", "error", "raw"]
    status: int = 200
    text: str | None = None
    chunks: tuple[str, ...] | None = None
    tool_calls: tuple[ToolCall, ...] = ()
    finish_reason: str = "stop"
    usage: tuple[int, int] | None = None
    body: bytes = b""
    content_type: str = "application/json"
    headers: Mapping[str, str] = field(default_factory=dict)
    delay: float = 0.0
    chunk_delay: float = 0.0
    hang_after: int | None = None


@dataclass(slots=True)
class ChatRequest:
    """One request as received (any path, authorised or not).

    ``headers`` has lower-case names; ``json`` is the parsed body, or None when the body is
    empty or not JSON; ``disconnected`` turns True when the client went away before the answer
    was complete."""

    at: float
    method: str
    path: str
    headers: dict[str, str]
    json: Any
    body: bytes
    disconnected: bool = False

    @property
    def messages(self) -> list[dict[str, Any]]:
        """The request's ``messages`` list ([] when absent)."""
        if isinstance(self.json, dict):
            messages = self.json.get("messages")
            if isinstance(messages, list):
                return messages
        return []

    @property
    def stream(self) -> bool:
        return isinstance(self.json, dict) and self.json.get("stream") is True

    @property
    def include_usage(self) -> bool:
        if not isinstance(self.json, dict):
            return False
        options = self.json.get("stream_options")
        return isinstance(options, dict) and options.get("include_usage") is True

    @property
    def model(self) -> str:
        model = self.json.get("model") if isinstance(self.json, dict) else None
        return model if isinstance(model, str) and model else DEFAULT_MODEL


def _check_timing(delay: float, chunk_delay: float = 0.0, hang_after: int | None = None) -> None:
    if delay < 0 or chunk_delay < 0:
        raise ValueError("delays must not be negative")
    if hang_after is not None and hang_after < 0:
        raise ValueError("hang_after must not be negative")


def text_reply(
    text: str | None = None,
    *,
    chunks: Sequence[str] | None = None,
    finish_reason: str = "stop",
    usage: tuple[int, int] | None = None,
    headers: Mapping[str, str] | None = None,
    delay: float = 0.0,
    chunk_delay: float = 0.0,
    hang_after: int | None = None,
) -> Reply:
    """An assistant text answer. ``chunks`` fixes the streamed content pieces (their
    concatenation is the text); otherwise the text is streamed in word-sized pieces.
    ``usage`` is ``(prompt_tokens, completion_tokens)``."""
    if chunks is not None:
        joined = "".join(chunks)
        if text is not None and text != joined:
            raise ValueError("text and chunks disagree")
        text = joined
    if text is None:
        raise ValueError("give text or chunks")
    _check_timing(delay, chunk_delay, hang_after)
    return Reply(
        kind="completion",
        text=text,
        chunks=None if chunks is None else tuple(chunks),
        finish_reason=finish_reason,
        usage=usage,
        headers=dict(headers or {}),
        delay=delay,
        chunk_delay=chunk_delay,
        hang_after=hang_after,
    )


def tool_calls_reply(
    calls: Sequence[ToolCallSpec],
    *,
    text: str = "",
    finish_reason: str = "tool_calls",
    usage: tuple[int, int] | None = None,
    headers: Mapping[str, str] | None = None,
    delay: float = 0.0,
    chunk_delay: float = 0.0,
    hang_after: int | None = None,
) -> Reply:
    """An assistant message with tool calls ``(id, name, arguments)``: a mapping is sent as its
    JSON text, a string as is (for malformed arguments); an id of None is generated per
    response. ``text`` (may be empty) goes in ``content`` before the calls."""
    if not calls:
        raise ValueError("give at least one tool call")
    _check_timing(delay, chunk_delay, hang_after)
    tool_calls = tuple(
        ToolCall(
            call_id,
            name,
            arguments if isinstance(arguments, str) else json.dumps(dict(arguments)),
        )
        for call_id, name, arguments in calls
    )
    return Reply(
        kind="completion",
        text=text,
        tool_calls=tool_calls,
        finish_reason=finish_reason,
        usage=usage,
        headers=dict(headers or {}),
        delay=delay,
        chunk_delay=chunk_delay,
        hang_after=hang_after,
    )


def error_body(
    message: str, error_type: str | None = None, code: str | None = None, status: int = 500
) -> dict[str, Any]:
    """OpenAI's error JSON; type and code default from the status."""
    default_type, default_code = _ERROR_TYPES.get(status, ("server_error", None))
    return {
        "error": {
            "message": message,
            "type": error_type if error_type is not None else default_type,
            "param": None,
            "code": code if code is not None else default_code,
        }
    }


def error_reply(
    status: int,
    message: str,
    headers: Mapping[str, str] | None = None,
    *,
    error_type: str | None = None,
    code: str | None = None,
    delay: float = 0.0,
) -> Reply:
    """An OpenAI error answer (also for streaming requests, as OpenAI does). Type and code
    default from the status: 429 -> ``requests``/``rate_limit_exceeded``, 401 ->
    ``invalid_request_error``/``invalid_api_key``, 4xx -> ``invalid_request_error``, else
    ``server_error``. Pass ``headers={"Retry-After": "2"}`` for a rate limit."""
    if status < 400:
        raise ValueError("an error status is 400 or more")
    _check_timing(delay)
    body = json.dumps(error_body(message, error_type, code, status)).encode()
    return Reply(
        kind="error",
        status=status,
        body=body,
        content_type="application/json",
        headers=dict(headers or {}),
        delay=delay,
    )


def raw_reply(
    status: int,
    body: bytes,
    content_type: str = "application/json",
    headers: Mapping[str, str] | None = None,
    *,
    delay: float = 0.0,
) -> Reply:
    """Any bytes with any status (for malformed JSON or SSE), streaming or not."""
    _check_timing(delay)
    return Reply(
        kind="raw",
        status=status,
        body=bytes(body),
        content_type=content_type,
        headers=dict(headers or {}),
        delay=delay,
    )


def _estimate_tokens(text: str) -> int:
    return (len(text) + 3) // 4


def _prompt_text(messages: list[dict[str, Any]]) -> str:
    parts: list[str] = []
    for message in messages:
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, str):
            parts.append(content)
        elif content is not None:
            parts.append(json.dumps(content))
    return "".join(parts)


def _json_response(
    status: int, body: Mapping[str, Any], headers: Mapping[str, str]
) -> web.Response:
    return web.Response(
        status=status,
        body=json.dumps(body).encode(),
        content_type="application/json",
        headers=headers,
    )


class FakeChatAPI:
    """An aiohttp.web server on 127.0.0.1 (free port) speaking OpenAI chat completions.

    State is public for assertions: ``requests`` lists every request received, ``disconnects``
    counts requests whose client went away before the answer was complete."""

    def __init__(
        self,
        api_key: str | None = None,
        *,
        shutdown_timeout: float = 0.5,
    ) -> None:
        self.api_key = api_key
        self.requests: list[ChatRequest] = []
        self.disconnects = 0
        self._shutdown_timeout = shutdown_timeout
        self._queue: deque[Reply] = deque()
        self._default: Reply | None = None
        self._ids = itertools.count(1)
        self._waiters: set[asyncio.Future[None]] = set()
        self._closing = False
        self._runner: web.AppRunner | None = None
        self._port: int | None = None

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        if self._runner is not None:
            raise RuntimeError("FakeChatAPI already started")
        app = web.Application()
        app.router.add_post(CHAT_PATH, self._chat)
        app.router.add_route("*", "/{tail:.*}", self._other)
        # handler_cancellation: a delayed or stalled answer whose client went away is cancelled
        # at once, which is how disconnects are noticed.
        runner = web.AppRunner(
            app,
            access_log=None,
            handler_cancellation=True,
            shutdown_timeout=self._shutdown_timeout,
        )
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        try:
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        self._port = int(runner.addresses[0][1])
        self._closing = False

    async def stop(self) -> None:
        """Abort open connections (stalled handlers end at once, uncounted), then clean up."""
        runner = self._runner
        if runner is None:
            return
        self._closing = True
        self._runner = None
        server = runner.server
        if server is not None:
            for connection in server.connections:
                if connection.transport is not None:
                    connection.transport.abort()
        await asyncio.sleep(0)
        await runner.cleanup()
        self._notify()

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
            raise RuntimeError("FakeChatAPI not started")
        return self._port

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT/v1``; clients POST to ``{base_url}/chat/completions``."""
        return f"http://127.0.0.1:{self.port}/v1"

    # ------------------------------------------------------------------ scripting

    def reply(self, reply: Reply) -> None:
        """Queue a reply built with one of the ``*_reply`` functions."""
        self._queue.append(reply)

    def default(self, reply: Reply | None) -> None:
        """Serve ``reply`` for every request once the queue is empty (None: back to 500)."""
        self._default = reply

    def reply_text(
        self,
        text: str | None = None,
        *,
        chunks: Sequence[str] | None = None,
        finish_reason: str = "stop",
        usage: tuple[int, int] | None = None,
        headers: Mapping[str, str] | None = None,
        delay: float = 0.0,
        chunk_delay: float = 0.0,
        hang_after: int | None = None,
    ) -> None:
        """Queue ``text_reply(...)``."""
        self.reply(
            text_reply(
                text,
                chunks=chunks,
                finish_reason=finish_reason,
                usage=usage,
                headers=headers,
                delay=delay,
                chunk_delay=chunk_delay,
                hang_after=hang_after,
            )
        )

    def reply_tool_calls(
        self,
        calls: Sequence[ToolCallSpec],
        *,
        text: str = "",
        finish_reason: str = "tool_calls",
        usage: tuple[int, int] | None = None,
        headers: Mapping[str, str] | None = None,
        delay: float = 0.0,
        chunk_delay: float = 0.0,
        hang_after: int | None = None,
    ) -> None:
        """Queue ``tool_calls_reply(...)``."""
        self.reply(
            tool_calls_reply(
                calls,
                text=text,
                finish_reason=finish_reason,
                usage=usage,
                headers=headers,
                delay=delay,
                chunk_delay=chunk_delay,
                hang_after=hang_after,
            )
        )

    def reply_error(
        self,
        status: int,
        message: str,
        headers: Mapping[str, str] | None = None,
        *,
        error_type: str | None = None,
        code: str | None = None,
        delay: float = 0.0,
    ) -> None:
        """Queue ``error_reply(...)``."""
        self.reply(
            error_reply(status, message, headers, error_type=error_type, code=code, delay=delay)
        )

    def reply_raw(
        self,
        status: int,
        body: bytes,
        content_type: str = "application/json",
        headers: Mapping[str, str] | None = None,
        *,
        delay: float = 0.0,
    ) -> None:
        """Queue ``raw_reply(...)``."""
        self.reply(raw_reply(status, body, content_type, headers, delay=delay))

    @property
    def pending_replies(self) -> int:
        """Scripted replies not served yet (the default not counted)."""
        return len(self._queue)

    # ------------------------------------------------------------------ assertions

    def chat_requests(self) -> list[ChatRequest]:
        """Requests to the chat-completions path, in arrival order."""
        return [request for request in self.requests if request.path == CHAT_PATH]

    def last_messages(self) -> list[dict[str, Any]]:
        """The ``messages`` of the latest chat-completions request; LookupError if none."""
        chats = self.chat_requests()
        if not chats:
            raise LookupError("FakeChatAPI received no chat-completions request")
        return chats[-1].messages

    async def wait_for_requests(self, count: int = 1, timeout: float = 5.0) -> list[ChatRequest]:
        """Wait until ``count`` requests (any path) arrived; TimeoutError otherwise."""
        await self._wait_until(lambda: len(self.requests) >= count, timeout)
        return list(self.requests)

    async def wait_for_disconnect(self, count: int = 1, timeout: float = 5.0) -> None:
        """Wait until ``disconnects`` reaches ``count``; TimeoutError otherwise."""
        await self._wait_until(lambda: self.disconnects >= count, timeout)

    # ------------------------------------------------------------------ wake-ups

    def _notify(self) -> None:
        # A Condition without the lock, as in FakeBotAPI: every change happens on the loop's
        # thread, so predicates need no lock.
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

    async def _record(self, request: web.Request) -> ChatRequest:
        body = await request.read()
        parsed: Any = None
        if body:
            try:
                parsed = json.loads(body)
            except ValueError:
                parsed = None
        recorded = ChatRequest(
            at=time.monotonic(),
            method=request.method,
            path=request.path,
            headers={name.lower(): value for name, value in request.headers.items()},
            json=parsed,
            body=body,
        )
        self.requests.append(recorded)
        self._notify()
        return recorded

    def _auth_error(self, recorded: ChatRequest) -> web.Response | None:
        if self.api_key is None:
            return None
        header = recorded.headers.get("authorization", "")
        scheme, _, key = header.partition(" ")
        if scheme.lower() == "bearer" and key.strip() == self.api_key:
            return None
        if not header:
            message = (
                "You didn't provide an API key. You need to provide your API key in an "
                "Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY)."
            )
        else:
            message = f"Incorrect API key provided: {key.strip() or header}."
        return _json_response(401, error_body(message, status=401), {})

    async def _other(self, request: web.Request) -> web.StreamResponse:
        recorded = await self._record(request)
        denied = self._auth_error(recorded)
        if denied is not None:
            return denied
        message = f"Invalid URL ({request.method} {request.path})"
        return _json_response(404, error_body(message, status=404), {})

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        recorded = await self._record(request)
        denied = self._auth_error(recorded)
        if denied is not None:
            return denied
        if not isinstance(recorded.json, dict):
            message = "We could not parse the JSON body of your request."
            return _json_response(400, error_body(message, status=400), {})
        if not isinstance(recorded.json.get("messages"), list):
            message = "Missing required parameter: 'messages'."
            return _json_response(400, error_body(message, status=400), {})
        if self._queue:
            reply = self._queue.popleft()
        elif self._default is not None:
            reply = self._default
        else:
            return _json_response(500, error_body(NO_SCRIPTED_REPLY, status=500), {})
        try:
            return await self._answer(request, recorded, reply)
        except asyncio.CancelledError:
            # handler_cancellation: the client went away (or stop() aborted the connection).
            self._disconnected(recorded)
            raise

    def _disconnected(self, recorded: ChatRequest) -> None:
        if self._closing or recorded.disconnected:
            return
        recorded.disconnected = True
        self.disconnects += 1
        self._notify()

    async def _answer(
        self, request: web.Request, recorded: ChatRequest, reply: Reply
    ) -> web.StreamResponse:
        if reply.delay:
            await asyncio.sleep(reply.delay)
        if reply.kind != "completion":
            return web.Response(
                status=reply.status,
                body=reply.body,
                headers={"Content-Type": reply.content_type, **reply.headers},
            )
        completion_id = f"chatcmpl-fake{next(self._ids)}"
        tool_calls = [
            ToolCall(call.id or f"call_fake{next(self._ids)}", call.name, call.arguments)
            for call in reply.tool_calls
        ]
        usage = self._usage(recorded, reply, tool_calls)
        if recorded.stream:
            return await self._stream(request, recorded, reply, completion_id, tool_calls, usage)
        if reply.hang_after is not None:
            await self._stall()
        message: dict[str, Any] = {
            "role": "assistant",
            "content": (reply.text or None) if tool_calls else reply.text,
        }
        if tool_calls:
            message["tool_calls"] = [
                {
                    "id": call.id,
                    "type": "function",
                    "function": {"name": call.name, "arguments": call.arguments},
                }
                for call in tool_calls
            ]
        body = {
            "id": completion_id,
            "object": "chat.completion",
            "created": int(time.time()),
            "model": recorded.model,
            "choices": [{"index": 0, "message": message, "finish_reason": reply.finish_reason}],
            "usage": usage,
        }
        return _json_response(200, body, reply.headers)

    @staticmethod
    def _usage(recorded: ChatRequest, reply: Reply, tool_calls: list[ToolCall]) -> dict[str, int]:
        if reply.usage is not None:
            prompt, completion = reply.usage
        else:
            prompt = _estimate_tokens(_prompt_text(recorded.messages))
            generated = (reply.text or "") + "".join(c.name + c.arguments for c in tool_calls)
            completion = _estimate_tokens(generated)
        return {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
        }

    @staticmethod
    async def _stall() -> None:
        """Never returns: only a disconnect (or stop()) ends it, by cancellation."""
        await asyncio.get_running_loop().create_future()

    async def _stream(
        self,
        request: web.Request,
        recorded: ChatRequest,
        reply: Reply,
        completion_id: str,
        tool_calls: list[ToolCall],
        usage: dict[str, int],
    ) -> web.StreamResponse:
        include_usage = recorded.include_usage
        created = int(time.time())

        def chunk(choices: list[dict[str, Any]]) -> dict[str, Any]:
            data: dict[str, Any] = {
                "id": completion_id,
                "object": "chat.completion.chunk",
                "created": created,
                "model": recorded.model,
                "choices": choices,
            }
            if include_usage:
                data["usage"] = None
            return data

        def delta(fields: dict[str, Any]) -> dict[str, Any]:
            return chunk([{"index": 0, "delta": fields, "finish_reason": None}])

        text = reply.text or ""
        events: list[dict[str, Any]] = [
            delta({"role": "assistant", "content": "" if text or not tool_calls else None})
        ]
        pieces = reply.chunks if reply.chunks is not None else _PIECE_RE.findall(text)
        events.extend(delta({"content": piece}) for piece in pieces)
        for index, call in enumerate(tool_calls):
            head = {
                "index": index,
                "id": call.id,
                "type": "function",
                "function": {"name": call.name, "arguments": ""},
            }
            events.append(delta({"tool_calls": [head]}))
            for start in range(0, len(call.arguments), ARGUMENT_FRAGMENT):
                fragment = call.arguments[start : start + ARGUMENT_FRAGMENT]
                events.append(
                    delta({"tool_calls": [{"index": index, "function": {"arguments": fragment}}]})
                )
        events.append(chunk([{"index": 0, "delta": {}, "finish_reason": reply.finish_reason}]))
        if include_usage:
            events.append({**chunk([]), "usage": usage})
        lines = [f"data: {json.dumps(event)}\n\n".encode() for event in events]
        lines.append(b"data: [DONE]\n\n")

        response = web.StreamResponse(
            status=200,
            headers={"Cache-Control": "no-cache", **reply.headers},
        )
        response.content_type = "text/event-stream"
        response.charset = "utf-8"
        try:
            await response.prepare(request)
            for number, line in enumerate(lines):
                if number == reply.hang_after:
                    await self._stall()
                if number and reply.chunk_delay:
                    await asyncio.sleep(reply.chunk_delay)
                await response.write(line)
            if reply.hang_after is not None and reply.hang_after >= len(lines):
                await self._stall()
            await response.write_eof()
        except ConnectionResetError:
            # A write found the connection gone before aiohttp noticed; aiohttp finishes this
            # prepared response quietly.
            self._disconnected(recorded)
        return response

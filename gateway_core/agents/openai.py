"""The openai agent: any OpenAI-compatible chat-completions endpoint, with tool calling.

One turn is a loop: send the conversation and our tools, run the tool calls the model asks
for, send their results, until the model answers or `agent.max_steps` model calls were made.
Every event is yielded to the turn runner, which writes it to the transcript before asking for
the next, so a restart sees exactly where a turn stopped.

Errors: 429 and 5xx (and timeouts, refused connections) are retried with backoff, honouring
Retry-After, up to `agent.max_retries`; 400/401/403/404 fail the turn at once with a plain
message; a malformed answer or tool arguments that are not a JSON object are recorded and fail
the turn. Cancelling the turn (drain, operator interrupt) cancels the HTTP request itself.
The API key is read from the environment variable the config names, sent only in the
Authorization header, and scrubbed from every error message.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import AsyncIterator, Mapping
from typing import Any

import aiohttp

from gateway_core.agents.base import AgentEvent, Answer, AskTools, ToolDone, TurnContext
from gateway_core.agents.openai_wire import (
    Reply,
    StreamAssembler,
    WireError,
    history_messages,
    parse_completion,
)
from gateway_core.backoff import Backoff
from gateway_core.config import AgentSettings
from gateway_core.events import AgentRequestFinished, AgentRequestOutcome, EventBus
from gateway_core.model import FinishReason, ToolCall
from gateway_core.safe_json import parse_json
from gateway_core.tools.registry import ToolContext

log = logging.getLogger(__name__)

# Worth another try: a timeout, a conflict, rate limiting, and any server-side failure
# except "not implemented" / "version not supported", which will not change by waiting.
RETRY_STATUSES = frozenset({408, 409, 429})
NEVER_RETRY_5XX = frozenset({501, 505})
MAX_BACKOFF = 30.0
MAX_RETRY_AFTER = 60.0


class AgentError(Exception):
    """The turn cannot go on; the message is safe to show the user and the operator."""


class OpenAIAgent:
    def __init__(self, settings: AgentSettings, env: Mapping[str, str] | None = None) -> None:
        self._settings = settings
        environ = os.environ if env is None else env
        self._key = environ.get(settings.api_key_env, "")
        self._session: aiohttp.ClientSession | None = None
        self._backoff = Backoff(base=0.5, cap=MAX_BACKOFF)
        self._events: EventBus | None = None

    def bind_events(self, events: EventBus) -> None:
        """Publish every model request's duration, outcome and tokens (metrics read them)."""
        self._events = events

    def _report(
        self,
        context: TurnContext,
        began: float,
        outcome: AgentRequestOutcome,
        reply: Reply | None = None,
    ) -> None:
        if self._events is None:
            return
        self._events.publish(
            AgentRequestFinished(
                context.clock.now(),
                context.clock.monotonic() - began,
                outcome,
                0 if reply is None else reply.prompt_tokens,
                0 if reply is None else reply.completion_tokens,
            )
        )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            # No cap on the whole answer (a healthy stream may run for minutes); a connection
            # that cannot be made, or goes silent for request_timeout, is a failure.
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(
                    total=None,
                    sock_connect=min(30.0, self._settings.request_timeout),
                    sock_read=self._settings.request_timeout,
                )
            )
        return self._session

    async def run_turn(self, context: TurnContext) -> AsyncIterator[AgentEvent]:
        settings = self._settings
        messages = history_messages(await context.load_history(), context.input)
        tools = context.tools.schemas()
        tool_context = ToolContext(context.session.id, context.generation, context.clock)
        prompt_tokens = completion_tokens = 0
        for _ in range(settings.max_steps):
            reply = await self._complete(messages, tools, context)
            prompt_tokens += reply.prompt_tokens
            completion_tokens += reply.completion_tokens
            if not reply.tool_calls:
                yield Answer(
                    reply.content or "(the model sent an empty answer)",
                    reply.finish_reason or FinishReason.STOP,
                    usage=(prompt_tokens, completion_tokens),
                )
                return
            calls = tuple(
                ToolCall(call_id or f"call_{context.generation}_{n}", name, arguments)
                for n, (call_id, name, arguments) in enumerate(reply.tool_calls)
            )
            yield AskTools(calls, reply.content)
            messages.append(_assistant_message(reply.content, calls))
            bad = [c for c in calls if not isinstance(parse_json(c.arguments or "{}"), dict)]
            if bad:
                # Recorded as results (the transcript stays well-formed), then the turn fails:
                # guessing what a garbled call meant could run the wrong thing.
                for call in calls:
                    yield ToolDone(call.id, call.name, _not_run(call in bad))
                names = ", ".join(sorted({c.name for c in bad}))
                raise AgentError(f"the model sent tool arguments that are not JSON ({names})")
            for call in calls:
                outcome = await context.tools.run(call, tool_context)
                yield ToolDone(call.id, call.name, outcome.content, outcome.kind)
                messages.append(
                    {"role": "tool", "tool_call_id": call.id, "content": outcome.content}
                )
        yield Answer(
            f"⚠️ I stopped after {settings.max_steps} model calls without a final answer "
            "(the step limit). Ask me to continue if you want more.",
            FinishReason.LENGTH,
            usage=(prompt_tokens, completion_tokens),
        )

    async def _complete(
        self, messages: list[dict[str, Any]], tools: list[dict[str, Any]], context: TurnContext
    ) -> Reply:
        settings = self._settings
        body: dict[str, Any] = {"model": settings.model, "messages": messages}
        if tools:
            body["tools"] = tools
        if settings.stream:
            body["stream"] = True
            body["stream_options"] = {"include_usage": True}
        attempt = 0
        while True:
            began = context.clock.monotonic()
            try:
                reply = await self._request(body, context)
            except AgentError:
                self._report(context, began, AgentRequestOutcome.FAILED)
                raise
            except _Retryable as retry:
                self._report(context, began, AgentRequestOutcome.RETRYABLE)
                if attempt >= settings.max_retries:
                    raise AgentError(
                        f"the agent server kept failing ({retry.reason}); gave up after "
                        f"{attempt + 1} attempts"
                    ) from None
                delay = retry.after if retry.after is not None else self._backoff.delay(attempt)
                log.warning(
                    "agent server: %s; retry %d of %d in %.1f s",
                    retry.reason,
                    attempt + 1,
                    settings.max_retries,
                    delay,
                )
                attempt += 1
                await context.clock.sleep(delay)
            else:
                self._report(context, began, AgentRequestOutcome.OK, reply)
                return reply

    async def _request(self, body: dict[str, Any], context: TurnContext) -> Reply:
        url = self._settings.base_url.rstrip("/") + "/chat/completions"
        headers = {"Content-Type": "application/json"}
        if self._key:
            headers["Authorization"] = f"Bearer {self._key}"
        try:
            async with self._http().post(url, json=body, headers=headers) as response:
                if response.status in RETRY_STATUSES or (
                    response.status >= 500 and response.status not in NEVER_RETRY_5XX
                ):
                    raise _Retryable(
                        f"HTTP {response.status}", _retry_after(response.headers.get("Retry-After"))
                    )
                if response.status >= 400:
                    # Scrubbed before it is cut short: a key across the cut must not leak.
                    detail = _error_message(self._scrub(await response.read()))
                    hint = (
                        f" (check the key in ${self._settings.api_key_env})"
                        if response.status in (401, 403)
                        else ""
                    )
                    raise AgentError(
                        f"the agent server refused the request: HTTP {response.status}: "
                        f"{detail}{hint}"
                    )
                if body.get("stream") and response.content_type == "text/event-stream":
                    return await self._read_stream(response, context)
                try:
                    payload = json.loads(await response.read())
                except ValueError:
                    raise WireError("the answer is not JSON") from None
                return parse_completion(payload)
        except WireError as error:
            raise AgentError(f"the agent server sent a malformed answer: {error}") from None
        except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError, TimeoutError) as error:
            # Refused, reset, or cut off in the middle of the answer: nothing of it was used.
            raise _Retryable(type(error).__name__, None) from None
        except ValueError as error:  # an SSE line longer than aiohttp's limit (LineTooLong)
            raise AgentError(f"the agent server sent a malformed answer: {error}") from None

    async def _read_stream(self, response: aiohttp.ClientResponse, context: TurnContext) -> Reply:
        assembler = StreamAssembler()
        async for raw in response.content:
            line = raw.decode("utf-8", errors="replace").strip()
            if not line.startswith("data:"):
                continue  # comments, event names, blank separators
            text = assembler.feed(line[5:].strip())
            if text:
                context.progress(assembler.reply.content)
            if assembler.done:
                break
        if not assembler.done and assembler.reply.finish_reason is None:
            raise WireError("the stream ended before the answer was complete")
        return assembler.reply

    def _scrub(self, body: bytes) -> bytes:
        return body.replace(self._key.encode(), b"***") if self._key else body


class _Retryable(Exception):
    def __init__(self, reason: str, after: float | None) -> None:
        super().__init__(reason)
        self.reason, self.after = reason, after


def _retry_after(value: str | None) -> float | None:
    try:
        return None if value is None else min(max(float(value), 0.0), MAX_RETRY_AFTER)
    except ValueError:
        return None


def _error_message(body: bytes) -> str:
    decoded = parse_json(body.decode("utf-8", errors="replace"))
    if isinstance(decoded, dict) and isinstance(decoded.get("error"), dict):
        message = decoded["error"].get("message")
        if isinstance(message, str):
            return message[:300]
    return body[:200].decode("utf-8", errors="replace")


def _assistant_message(content: str, calls: tuple[ToolCall, ...]) -> dict[str, Any]:
    return {
        "role": "assistant",
        "content": content or None,
        "tool_calls": [
            {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
            for c in calls
        ],
    }


def _not_run(bad: bool) -> str:
    reason = "its arguments are not a JSON object" if bad else "another call in its batch was bad"
    return json.dumps({"error": f"not run: {reason}"})

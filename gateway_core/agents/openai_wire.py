"""The chat-completions wire format: our transcript in, the model's reply out. Pure functions.

History: the transcript becomes `messages`. The API rejects an assistant tool call without
a tool result, so a call the transcript has no result for (a crash while it ran) gets a
synthetic "no result recorded; effect unknown" result, and a tool result without its call
(the tail cut a block in half) is dropped. Results already recorded are sent as they are, so
a resumed turn sees what ran and nothing runs twice; where an "interrupted, effect unknown"
row is followed by the call's real result (recovered after a restart from its job's exit
status), the real one is sent in its place.

Replies: a whole `chat.completion` body, or the `chat.completion.chunk` events of a stream
assembled into the same `Reply`. Anything malformed raises `WireError`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from gateway_core.model import Message, MessageKind, Role
from gateway_core.recovery.evidence import is_replayable

SYSTEM_PROMPT = (
    "You are an assistant reached through a chat platform. Use the tools when they help; "
    "background jobs report back by themselves when asked to (notify_on_complete). Messages "
    "that end with '[Internal notification from the gateway ...]' were written by the "
    "gateway, not by the user. A '[System note: ...]' tells you a turn was interrupted: "
    "do not repeat tool calls whose results are already in the conversation."
)
NO_RESULT = json.dumps(
    {"error": "no result was recorded (the turn was interrupted); its effect is unknown"}
)


class WireError(Exception):
    """The agent server's answer is not a usable chat completion."""


@dataclass
class Reply:
    content: str = ""
    tool_calls: list[tuple[str, str, str]] = field(default_factory=list)  # id, name, arguments
    finish_reason: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0


def history_messages(history: Sequence[Message], current_input: str) -> list[dict[str, Any]]:
    """The transcript as chat messages; the last user row carries this turn's input (which
    may hold a recovery note the stored row does not)."""
    # A tail that begins inside a tool-call block keeps what it has: results whose call was
    # cut off are orphans (dropped below); an assistant call block may open the history.
    rows = [m for m in history if is_replayable(m)]
    messages: list[dict[str, Any]] = [{"role": "system", "content": SYSTEM_PROMPT}]
    open_calls: list[str] = []
    # A call answered only by an "interrupted, effect unknown" row, by id: a real result
    # recovered after it (from the job's exit status) takes its place.
    placeholders: dict[str, dict[str, Any]] = {}

    def close_open_calls() -> None:
        for call_id in open_calls:
            messages.append({"role": "tool", "tool_call_id": call_id, "content": NO_RESULT})
        open_calls.clear()

    for row in rows:
        if row.role == Role.TOOL:
            call_id = row.tool_call_id or ""
            if call_id in open_calls:
                open_calls.remove(call_id)
                message = {"role": "tool", "tool_call_id": call_id, "content": row.content}
                messages.append(message)
                if row.kind == MessageKind.TOOL_INTERRUPTED:
                    placeholders[call_id] = message
            elif call_id in placeholders and row.kind != MessageKind.TOOL_INTERRUPTED:
                placeholders.pop(call_id)["content"] = row.content
            continue  # a result without its call: the API would reject it
        placeholders.clear()
        close_open_calls()
        if row.role == Role.ASSISTANT and row.tool_calls:
            messages.append(
                {
                    "role": "assistant",
                    "content": row.content or None,
                    "tool_calls": [
                        {
                            "id": call.id,
                            "type": "function",
                            "function": {"name": call.name, "arguments": call.arguments},
                        }
                        for call in row.tool_calls
                    ],
                }
            )
            open_calls.extend(call.id for call in row.tool_calls)
        elif row.role == Role.ASSISTANT:
            messages.append({"role": "assistant", "content": row.content})
        else:
            messages.append({"role": "user", "content": row.content})
    close_open_calls()
    if current_input:
        last = messages[-1]
        if last["role"] == "user":
            last["content"] = current_input
        else:
            messages.append({"role": "user", "content": current_input})
    return messages


def _usage(reply: Reply, usage: object) -> None:
    if isinstance(usage, dict):
        prompt, completion = usage.get("prompt_tokens"), usage.get("completion_tokens")
        if isinstance(prompt, int) and isinstance(completion, int):
            reply.prompt_tokens, reply.completion_tokens = prompt, completion


def parse_completion(body: object) -> Reply:
    """A whole (non-streamed) chat.completion body."""
    try:
        choice = body["choices"][0]  # type: ignore[index]
        message = choice["message"]
        content = message.get("content") or ""
        calls = message.get("tool_calls") or []
        if not isinstance(content, str) or not isinstance(calls, list):
            raise TypeError("content or tool_calls of the wrong type")
        reply = Reply(content=content, finish_reason=choice.get("finish_reason"))
        for call in calls:
            function = call["function"]
            reply.tool_calls.append(
                (
                    str(call.get("id") or ""),
                    str(function["name"]),
                    str(function.get("arguments") or ""),
                )
            )
    except (KeyError, IndexError, TypeError, AttributeError) as error:
        raise WireError(f"malformed chat completion: {error!s:.200}") from None
    _usage(reply, body.get("usage") if isinstance(body, dict) else None)
    return reply


class StreamAssembler:
    """Feeds on the `data:` payloads of a streamed completion; `reply` is the result so far."""

    def __init__(self) -> None:
        self.reply = Reply()
        self.done = False
        self._calls: dict[int, list[str]] = {}  # index -> [id, name, arguments]

    def feed(self, payload: str) -> str:
        """One event's data; returns the new text it carried (for a live preview)."""
        if payload.strip() == "[DONE]":
            self.done = True
            return ""
        try:
            chunk = json.loads(payload)
        except ValueError:
            raise WireError(f"malformed stream chunk: {payload[:100]!r}") from None
        if not isinstance(chunk, dict):
            raise WireError("a stream chunk is not a JSON object")
        if chunk.get("error"):
            raise WireError(f"the stream reported an error: {str(chunk['error'])[:200]}")
        _usage(self.reply, chunk.get("usage"))
        choices = chunk.get("choices") or []
        if not isinstance(choices, list):
            raise WireError("stream chunk choices is not a list")
        text = ""
        for choice in choices:
            if not isinstance(choice, dict):
                raise WireError("a stream choice is not an object")
            delta = choice.get("delta") or {}
            if not isinstance(delta, dict):
                raise WireError("a stream delta is not an object")
            piece = delta.get("content")
            if isinstance(piece, str):
                text += piece
            calls = delta.get("tool_calls") or []
            if not isinstance(calls, list) or not all(isinstance(c, dict) for c in calls):
                raise WireError("stream tool_calls is not a list of objects")
            for call in calls:
                if not isinstance(call.get("function") or {}, dict):
                    raise WireError("a streamed tool call's function is not an object")
                index = call.get("index", 0)
                slot = self._calls.setdefault(index, ["", "", ""])
                slot[0] = call.get("id") or slot[0]
                function = call.get("function") or {}
                slot[1] += function.get("name") or ""
                slot[2] += function.get("arguments") or ""
            if choice.get("finish_reason"):
                self.reply.finish_reason = choice["finish_reason"]
        self.reply.content += text
        self.reply.tool_calls = [tuple(self._calls[i]) for i in sorted(self._calls)]  # type: ignore[misc]
        return text

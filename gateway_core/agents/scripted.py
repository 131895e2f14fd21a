"""A deterministic agent whose behaviour is chosen by the message text.

    hello                 -> replies at once: "You said: hello"
    think 30              -> thinks for 30 s (on the injected clock), then answers
    work 30               -> like think, but a resumed `work` works its 30 s again before it
                             answers (a long task a restart can interrupt while it resumes)
    tool sleep {"seconds": 5}
                          -> asks for one tool call, runs it, answers with its result
    fail disk on fire     -> raises: the turn fails and the user is told
    steps 3               -> three `clock` calls in a row, then an answer
    ask Which branch?     -> asks the user (clarify) and answers with what they said

A notice turn (a background job finished or matched a watch pattern) answers with the
notice's first line.

A resumed turn (after a restart) answers once, naming what it was asked, and re-runs
nothing: that is what the recovery note asks a real model to do.

A request whose last word is a #tag (`think 2 #u3-7`) gets that tag at the end of its answer,
so a test can tell which request an answer belongs to. Tool call ids carry the turn's
generation, so they stay unique within a session across restarts (like a real model's).
"""

from __future__ import annotations

import itertools
import json
from collections.abc import AsyncIterator

from gateway_core.agents.base import AgentEvent, Answer, AskTools, ToolDone, TurnContext
from gateway_core.model import Message, MessageKind, Role, ToolCall
from gateway_core.safe_json import parse_json
from gateway_core.tools.registry import ToolContext


class ScriptedAgentError(RuntimeError):
    pass


class ScriptedAgent:
    def __init__(self) -> None:
        self._call_ids = itertools.count(1)

    async def run_turn(self, context: TurnContext) -> AsyncIterator[AgentEvent]:
        if context.resume:
            request = _last_request(await context.load_history())
            command, _, rest = request.partition(" ")
            if command.lower() == "work":
                await context.clock.sleep(_number(rest, default=5.0))
            yield Answer(f"Back after a restart. You had asked: {request!r}")
            return
        if context.notice:  # a background job's event: acknowledge it in one line
            first = _strip_note(context.input).strip().splitlines()[0]
            yield Answer(f"Background update: {first.strip('[]')}")
            return
        text = _strip_note(context.input).strip()
        tag = _tag_suffix(text)
        command, _, rest = text.partition(" ")
        command = command.lower()
        if command in ("think", "work"):
            seconds = _number(rest, default=5.0)
            await context.clock.sleep(seconds)
            yield Answer(f"Thought for {seconds:g} s about it. Done.{tag}")
        elif command == "tool":
            name, _, arguments = _untagged(rest).strip().partition(" ")
            call = ToolCall(self._next_id(context), name, arguments.strip() or "{}")
            async for event in self._call_tools(context, (call,)):
                yield event
            yield Answer(f"Tool {name} finished.{tag}")
        elif command == "steps":
            for _ in range(int(_number(rest, default=3))):
                call = ToolCall(self._next_id(context), "clock", "{}")
                async for event in self._call_tools(context, (call,)):
                    yield event
            yield Answer(f"All steps done.{tag}")
        elif command == "ask":
            question = json.dumps({"question": rest.strip() or "Yes or no?"})
            call = ToolCall(self._next_id(context), "clarify", question)
            reply = ""
            async for event in self._call_tools(context, (call,)):
                if isinstance(event, ToolDone):
                    reply = event.content
                yield event
            answered = parse_json(reply)
            if isinstance(answered, dict) and isinstance(answered.get("answer"), str):
                yield Answer(f"Thanks, noted: {answered['answer']}")
            else:
                yield Answer("No answer yet; tell me when you have decided.")
        elif command == "fail":
            raise ScriptedAgentError(rest.strip() or "scripted failure")
        else:
            yield Answer(f"You said: {text}")

    async def _call_tools(
        self, context: TurnContext, calls: tuple[ToolCall, ...]
    ) -> AsyncIterator[AgentEvent]:
        yield AskTools(calls)
        tool_context = ToolContext(context.session.id, context.generation, context.clock)
        for call in calls:
            outcome = await context.tools.run(call, tool_context)
            yield ToolDone(call.id, call.name, outcome.content, outcome.kind)

    def _next_id(self, context: TurnContext) -> str:
        return f"call_{context.generation}_{next(self._call_ids)}"


def _tag_suffix(text: str) -> str:
    """' (#tag)' when the request's last word is a #tag, else ''."""
    words = text.split()
    last = words[-1] if words else ""
    return f" ({last})" if len(last) > 1 and last.startswith("#") else ""


def _untagged(text: str) -> str:
    """The text without a trailing #tag word (so it does not end up in tool arguments)."""
    head, _, last = text.rstrip().rpartition(" ")
    return head if head and last.startswith("#") and len(last) > 1 else text


def _number(text: str, default: float) -> float:
    try:
        value = float(text.split()[0])
    except (ValueError, IndexError):
        return default
    return max(0.0, min(value, 86_400.0))


def _strip_note(text: str) -> str:
    """The user's own words: the recovery note, when present, ends with a blank line."""
    if text.startswith("[System note:"):
        _, _, rest = text.partition("]\n\n")
        return rest
    return text


def _last_request(history: tuple[Message, ...]) -> str:
    for message in reversed(history):
        if message.role == Role.USER and message.kind == MessageKind.TEXT:
            return message.content
    return json.dumps(None)

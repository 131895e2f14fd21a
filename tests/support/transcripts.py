"""Builders that make transcript rows read like a conversation in tests."""

from __future__ import annotations

import json

from gateway_core.model import FinishReason, MessageKind, NewMessage, Role, ToolCall


def user(text: str, at: float | None = None, kind: str = MessageKind.TEXT) -> NewMessage:
    return NewMessage(Role.USER, text, kind=kind, created_at=at)


def answer(text: str, at: float | None = None, finish: str = FinishReason.STOP) -> NewMessage:
    return NewMessage(Role.ASSISTANT, text, finish_reason=finish, created_at=at)


def call(name: str, call_id: str, **arguments: object) -> ToolCall:
    return ToolCall(call_id, name, json.dumps(arguments))


def asks(*calls: ToolCall, at: float | None = None) -> NewMessage:
    """An assistant row asking for tool calls."""
    return NewMessage(
        Role.ASSISTANT, "", tool_calls=calls, finish_reason=FinishReason.TOOL_CALLS, created_at=at
    )


def result(
    call_id: str, text: str = "ok", at: float | None = None, kind: str = MessageKind.TEXT
) -> NewMessage:
    return NewMessage(Role.TOOL, text, kind=kind, tool_call_id=call_id, created_at=at)

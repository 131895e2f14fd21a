"""Converting between table rows and model values.

Decoding is forgiving: a row written by a buggy or older version must still come back as a
value (flagged ``malformed`` where it lost information), because the recovery scan has to
reason about whatever is on disk rather than crash on it.
"""

from __future__ import annotations

import json
import math
from json.encoder import encode_basestring_ascii
from typing import Any

from gateway_core.model import (
    ChatKind,
    Message,
    NewMessage,
    Origin,
    Session,
    SessionKey,
    ToolCall,
)
from gateway_core.quick_init import positional_builder
from gateway_core.safe_json import parse_json

# The scan decodes thousands of rows at boot; these skip the frozen classes' slow __init__.
_message = positional_builder(Message)
_session = positional_builder(Session)
_origin = positional_builder(Origin)
_key = positional_builder(SessionKey)
_CHAT_KINDS = {kind.value: kind for kind in ChatKind}

MESSAGE_COLUMNS = (
    "session_id, seq, role, kind, content, tool_calls, tool_call_id, tool_name, "
    "finish_reason, generation, created_at, platform_message_id, reply_to"
)
SESSION_COLUMNS = "id, key, origin, generation, created_at, updated_at"


def encode_tool_calls(calls: tuple[ToolCall, ...]) -> str | None:
    if not calls:
        return None
    return json.dumps([{"id": c.id, "name": c.name, "arguments": c.arguments} for c in calls])


def decode_tool_calls(text: str | None) -> tuple[tuple[ToolCall, ...], bool]:
    """Returns (calls, malformed)."""
    if text is None or text == "":
        return (), False
    raw = parse_json(text)
    if not isinstance(raw, list):
        return (), True
    calls: list[ToolCall] = []
    malformed = False
    for item in raw:
        if not isinstance(item, dict):
            malformed = True
            continue
        call_id, name, arguments = item.get("id"), item.get("name"), item.get("arguments", "{}")
        if not isinstance(arguments, str):
            arguments = json.dumps(arguments)
        if not isinstance(call_id, str) or not isinstance(name, str):
            malformed = True
        calls.append(ToolCall(str(call_id or ""), str(name or ""), arguments))
    return tuple(calls), malformed


def decode_timestamp(value: Any) -> float | None:
    """A stored time in epoch seconds, or None when it is missing or not a usable number.

    Values above 1e10 are read as milliseconds (no second count reaches that before 2286);
    rows imported from other tools often carry those.
    """
    if type(value) is float and 0.0 < value <= 1e10:
        return value  # the common case: a time in seconds, as the store writes them
    if value is None or isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    if not math.isfinite(number) or number <= 0:
        return None
    return number / 1000 if number > 1e10 else number


def message_params(session_id: int, seq: int, message: NewMessage, now: float) -> tuple[Any, ...]:
    created = message.created_at if message.created_at is not None else now
    return (
        session_id,
        seq,
        str(message.role),
        str(message.kind),
        message.content,
        encode_tool_calls(message.tool_calls),
        message.tool_call_id,
        message.tool_name,
        None if message.finish_reason is None else str(message.finish_reason),
        message.generation,
        created,
        message.platform_message_id,
        message.reply_to,
    )


def decode_message(row: tuple[Any, ...]) -> Message:
    (session_id, seq, role, kind, content, tool_calls, call_id, tool_name, finish, gen, created,
     platform_message_id, reply_to) = row  # fmt: skip
    # A row without tool calls (most rows) skips their decoder.
    calls, malformed = ((), False) if tool_calls is None else decode_tool_calls(tool_calls)
    return _message(
        int(session_id),
        int(seq),
        str(role),
        content if isinstance(content, str) else ("" if content is None else str(content)),
        str(kind) if kind is not None else "text",
        calls,
        call_id,
        tool_name,
        finish,
        int(gen or 0),
        decode_timestamp(created),
        malformed,
        None if platform_message_id is None else str(platform_message_id),
        None if reply_to is None else str(reply_to),
    )


def json_value(value: object) -> str:
    """json.dumps(value), faster for the strings and None of a hot-path row: the C string
    encoder directly, without building a JSONEncoder for every value. Same text."""
    if value is None:
        return "null"
    if type(value) is str:
        return encode_basestring_ascii(value)
    return json.dumps(value)


def encode_text_payload(text: str) -> str:
    """An inbox item's payload, {"text": ...}, as json.dumps writes it (intake runs this
    for every message)."""
    return '{"text": ' + json_value(text) + "}"


def encode_origin(origin: Origin | None) -> str | None:
    """The origin as json.dumps writes its dict (every inbound message stores it)."""
    if origin is None:
        return None
    chat_kind = None if origin.chat_kind is None else str(origin.chat_kind)
    return (
        f'{{"platform": {json_value(origin.platform)}, "chat_id": {json_value(origin.chat_id)},'
        f' "thread_id": {json_value(origin.thread_id)}, "user_id": {json_value(origin.user_id)},'
        f' "user_name": {json_value(origin.user_name)}, "chat_kind": {json_value(chat_kind)}}}'
    )


def decode_origin(text: str | None) -> Origin | None:
    if not text:
        return None
    raw = parse_json(text)
    if not isinstance(raw, dict):
        return None
    try:
        thread_id, user_id = raw.get("thread_id"), raw.get("user_id")
        user_name = raw.get("user_name")
        return _origin(
            str(raw["platform"]),
            str(raw["chat_id"]),
            None if thread_id is None else str(thread_id),
            None if user_id is None else str(user_id),
            None if user_name is None else str(user_name),
            _chat_kind(raw.get("chat_kind")),
        )
    except KeyError:
        # An unreadable origin is treated as no origin: recovery then holds instead of guessing.
        return None


def _chat_kind(raw: object) -> ChatKind | None:
    """A kind this version does not know is not known (answers are then anchored)."""
    return None if raw is None else _CHAT_KINDS.get(str(raw))


def decode_session(row: tuple[Any, ...]) -> Session:
    session_id, key, origin, generation, created_at, updated_at = row
    platform, chat_id, thread = str(key).split(":", 2)  # as SessionKey.parse
    return _session(
        int(session_id),
        _key(platform, chat_id, None if thread == "-" else thread),
        decode_origin(origin),
        int(generation),
        float(created_at),
        float(updated_at),
    )

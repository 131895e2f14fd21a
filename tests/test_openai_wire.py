"""The chat-completions wire format: history in, replies out (pure functions)."""

from __future__ import annotations

import json

import pytest

from gateway_core.agents.openai_wire import (
    NO_RESULT,
    StreamAssembler,
    WireError,
    history_messages,
    parse_completion,
)
from gateway_core.model import Message, MessageKind, Role, ToolCall

CALL_A = ToolCall("a", "terminal", "{}")
CALL_B = ToolCall("b", "terminal", "{}")


def row(seq: int, role: str, content: str = "", **fields: object) -> Message:
    return Message(1, seq, role, content, **fields)  # type: ignore[arg-type]


def test_a_call_without_a_recorded_result_gets_an_effect_unknown_result() -> None:
    history = [
        row(1, Role.USER, "deploy"),
        row(
            2,
            Role.ASSISTANT,
            tool_calls=(ToolCall("a", "terminal", "{}"), ToolCall("b", "terminal", "{}")),
        ),
        row(3, Role.TOOL, "ok", tool_call_id="a", tool_name="terminal"),
        row(4, Role.USER, "[System note: interrupted]", kind=MessageKind.RECOVERY_NOTE),
    ]
    messages = history_messages(history, "[System note: interrupted]")
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "tool", "tool", "user"]
    assert messages[3] == {"role": "tool", "tool_call_id": "a", "content": "ok"}
    assert messages[4] == {"role": "tool", "tool_call_id": "b", "content": NO_RESULT}


def test_orphan_results_and_a_tail_cut_mid_block_are_dropped() -> None:
    history = [
        row(5, Role.TOOL, "late", tool_call_id="zz"),
        row(6, Role.ASSISTANT, "half"),
        row(7, Role.USER, "hi"),
        row(8, Role.TOOL, "orphan", tool_call_id="nope"),
        row(9, Role.SYSTEM, "{}", kind=MessageKind.META),
    ]
    messages = history_messages(history, "hi with a note")
    assert messages[1:] == [
        {"role": "assistant", "content": "half"},
        {"role": "user", "content": "hi with a note"},
    ]


def test_a_tail_that_starts_inside_the_interrupted_turns_tool_loop_keeps_its_results() -> None:
    history = [
        row(1, Role.ASSISTANT, tool_calls=(CALL_A,)),
        row(2, Role.TOOL, "done once", tool_call_id="a"),
        row(3, Role.USER, "[System note: interrupted]", kind=MessageKind.RECOVERY_NOTE),
    ]
    messages = history_messages(history, "[System note: interrupted]")
    assert [m["role"] for m in messages] == ["system", "assistant", "tool", "user"]
    assert messages[2]["content"] == "done once"  # seen, so not run again


def test_a_whole_completion_and_a_streamed_one_give_the_same_reply() -> None:
    body = {
        "choices": [
            {
                "message": {
                    "content": "",
                    "tool_calls": [{"id": "c", "function": {"name": "clock", "arguments": "{}"}}],
                },
                "finish_reason": "tool_calls",
            }
        ],
        "usage": {"prompt_tokens": 5, "completion_tokens": 2},
    }
    whole = parse_completion(body)
    stream = StreamAssembler()
    for chunk in (
        {"choices": [{"delta": {"tool_calls": [{"index": 0, "id": "c",
                                                "function": {"name": "clock"}}]}}]},
        {"choices": [{"delta": {"tool_calls": [{"index": 0, "function": {"arguments": "{}"}}]},
                      "finish_reason": "tool_calls"}]},
        {"choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": 2}},
    ):  # fmt: skip
        stream.feed(json.dumps(chunk))
    stream.feed("[DONE]")
    assert stream.done and stream.reply == whole


@pytest.mark.parametrize("body", [{}, {"choices": []}, {"choices": [{"message": None}]}, "x"])
def test_malformed_completions_raise_wire_errors(body: object) -> None:
    with pytest.raises(WireError):
        parse_completion(body)


@pytest.mark.parametrize(
    "chunk",
    [
        "{not json",
        '{"choices": [{"delta": "oops"}]}',
        '{"choices": [{"delta": {"tool_calls": "x"}}]}',
        '{"error": {"message": "overloaded"}}',
    ],
)
def test_a_malformed_or_failed_stream_chunk_raises(chunk: str) -> None:
    with pytest.raises(WireError):
        StreamAssembler().feed(chunk)


def test_a_result_recovered_after_an_interrupted_one_takes_its_place() -> None:
    # Cancelled in-process ("effect unknown"), then settled at the next boot from the job's
    # exit status: the model must see the real result, once, in the call's place.
    history = [
        row(1, Role.USER, "build"),
        row(2, Role.ASSISTANT, tool_calls=(CALL_A,)),
        row(3, Role.TOOL, '{"error": "interrupted"}', tool_call_id="a",
            kind=MessageKind.TOOL_INTERRUPTED),
        row(4, Role.TOOL, '{"exit_code": 0}', tool_call_id="a", kind=MessageKind.TOOL_RECOVERED),
        row(5, Role.USER, "[System note: interrupted]", kind=MessageKind.RECOVERY_NOTE),
    ]  # fmt: skip
    messages = history_messages(history, "[System note: interrupted]")
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "tool", "user"]
    assert messages[3] == {"role": "tool", "tool_call_id": "a", "content": '{"exit_code": 0}'}


def test_a_second_real_result_for_a_call_is_dropped() -> None:
    history = [
        row(1, Role.ASSISTANT, tool_calls=(CALL_A,)),
        row(2, Role.TOOL, "first", tool_call_id="a"),
        row(3, Role.TOOL, "second", tool_call_id="a", kind=MessageKind.TOOL_RECOVERED),
    ]
    messages = history_messages(history, "")
    assert [m.get("content") for m in messages if m["role"] == "tool"] == ["first"]

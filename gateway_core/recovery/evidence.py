"""Reading evidence out of a transcript tail: which rows count, and what the last tool block says.

Everything here is pure and total: any sequence of Message values, however malformed, gives an
answer and never raises.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache

from gateway_core.model import FinishReason, Message, MessageKind, Role, ToolCall
from gateway_core.recovery.policy import RecoveryPolicy
from gateway_core.safe_json import parse_json

# The members this module compares rows with, looked up once: an attribute of an enum class
# costs a lookup through its metaclass every time, and these checks run for every row of
# every candidate at boot.
_NOTE = MessageKind.RECOVERY_NOTE
_META = MessageKind.META
_INTERRUPTED = MessageKind.TOOL_INTERRUPTED
_USER, _ASSISTANT, _TOOL, _SYSTEM = Role.USER, Role.ASSISTANT, Role.TOOL, Role.SYSTEM
KNOWN_ROLES = frozenset({Role.USER, Role.ASSISTANT, Role.TOOL})
# An answer that ended the turn. "error" counts: the user was told the turn failed, and running
# it again unasked is exactly the surprise recovery must not cause.
FINAL_FINISH_REASONS = frozenset(
    {FinishReason.STOP, FinishReason.LENGTH, FinishReason.ERROR, "end_turn", "end", "completed"}
)


def is_replayable(message: Message) -> bool:
    """Rows a model would see again. System and bookkeeping rows are not evidence."""
    return message.role != _SYSTEM and message.kind != _META


def is_recovery_note(message: Message) -> bool:
    """The system note a resume turn starts with (our own row, not the user's words)."""
    return message.kind == _NOTE and message.role == _USER


def request_index(tail: Sequence[Message]) -> int | None:
    """Where the user's request is in a tail: its newest replayable user row that is not our
    recovery note (a background job's notice counts: it is that turn's request). None when
    the tail holds no such row.

    Why a transcript read from this row on is enough to decide on (recovery/tails.py reads
    no further back): every search the decision makes runs backwards from the end and stops
    at or after this row. The last replayable row, the newest one that is not a recovery
    note (freshness) and the row before the trailing tool results (the block's call) are
    all at or after it, because it is itself replayable, not a note and not a tool row; and
    the request quoted to the user is this row. So the decision on the rows from here to
    the end is the decision on the whole transcript (tests/test_recovery_tails.py checks it
    on generated transcripts).
    """
    for index in range(len(tail) - 1, -1, -1):
        message = tail[index]
        # A user row (so not a system row) that is replayable and not our note, spelled out:
        # this runs for every candidate at boot.
        kind = message.kind
        if message.role == _USER and kind != _META and kind != _NOTE:
            return index
    return None


def is_final_answer(message: Message) -> bool:
    return (
        message.role == _ASSISTANT
        and not message.tool_calls
        and not message.malformed
        and bool(message.content.strip())
        and message.finish_reason in FINAL_FINISH_REASONS
    )


@dataclass(frozen=True, slots=True)
class ToolBlock:
    """The assistant tool-call row the tail ends in, and what became of its calls."""

    call_row: Message | None  # None: tool results whose call is not in the tail
    results: tuple[Message, ...]
    unresolved: tuple[ToolCall, ...]
    problems: tuple[str, ...]  # reasons the block cannot be matched up reliably


def trailing_tool_block(rows: Sequence[Message]) -> ToolBlock | None:
    """The tool block the tail ends in, or None if the tail does not end inside one.

    The tail ends inside a block when its last rows are tool results, or when its last row is
    an assistant row that asked for tools.
    """
    end = len(rows)
    start = end
    while start > 0 and rows[start - 1].role == _TOOL:
        start -= 1
    results = rows[start:end]
    call_row = rows[start - 1] if start > 0 else None
    asked_for_tools = (
        call_row is not None
        and call_row.role == _ASSISTANT
        and (bool(call_row.tool_calls) or call_row.malformed)
    )
    if not asked_for_tools:
        if not results:
            return None
        return ToolBlock(
            None, tuple(results), (), ("tool results without the call that asked for them",)
        )
    assert call_row is not None
    problems: list[str] = []
    if call_row.malformed:
        problems.append(f"the tool calls of row {call_row.seq} could not be read")
    ids = [call.id for call in call_row.tool_calls]
    if any(not call_id for call_id in ids):
        problems.append("a tool call without an id")
    if len(set(ids)) != len(ids):
        problems.append("two tool calls with the same id")
    answered: set[str] = set()
    for result in results:
        if result.tool_call_id not in ids:
            problems.append(f"a tool result (row {result.seq}) that answers no call")
        elif result.kind != _INTERRUPTED:
            answered.add(result.tool_call_id)
    unresolved = tuple(call for call in call_row.tool_calls if call.id not in answered)
    return ToolBlock(call_row, tuple(results), unresolved, tuple(problems))


def call_action(call: ToolCall) -> str | None:
    arguments = parse_json(call.arguments)
    action = arguments.get("action") if isinstance(arguments, dict) else None
    return action if isinstance(action, str) else None


def is_read_only(call: ToolCall, policy: RecoveryPolicy) -> bool:
    name = call.name
    if name in policy.read_only_tools:
        return True
    if name not in _tools_with_read_only_calls(policy.read_only_calls):
        return False  # no action of this tool reads only: its arguments need no parsing
    action = call_action(call)
    return action is not None and f"{name}:{action}" in policy.read_only_calls


@cache
def _tools_with_read_only_calls(calls: frozenset[str]) -> frozenset[str]:
    """The tool names that some "tool:action" pair names (the policy's few, computed once)."""
    return frozenset(call.partition(":")[0] for call in calls)


def format_age(seconds: float) -> str:
    """Short human age: 45 s, 12 min, 3.5 h, 6.0 d."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    if seconds < 48 * 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} d"

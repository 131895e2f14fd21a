"""The recovery decision: what to do with an interrupted session after a restart.

A pure function of (recovery record, origin, transcript tail, now, policy). No I/O, no clock
reads. The rules are DESIGN.md's decision table, evaluated in order; the first that applies
gives the verdict, and the gate turns the verdict into an action.

Freshness is measured on the durable timestamp of the last replayable transcript row, never
on the marker's time: a restart re-stamps the marker, so a marker-based clock would keep a
six-week-old task "fresh" forever (the peer gateway's incident #88942).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from gateway_core.model import (
    Decision,
    Gate,
    Message,
    MessageKind,
    Origin,
    RecoveryAction,
    RecoveryRecord,
    RecoveryState,
    Role,
    ToolCall,
    Verdict,
)
from gateway_core.recovery.evidence import (
    KNOWN_ROLES,
    ToolBlock,
    format_age,
    is_final_answer,
    is_read_only,
    is_replayable,
    trailing_tool_block,
)
from gateway_core.recovery.policy import RecoveryPolicy

V = Verdict
A = RecoveryAction

_SAFE: dict[Verdict, RecoveryAction] = {
    V.SUSPENDED: A.SKIP,
    V.NO_ORIGIN: A.HOLD,
    V.UNDETERMINED: A.HOLD,
    V.COMPLETE: A.CLEAR,
    V.RECOVERY_LOOP: A.CLEAR,
    V.AWAITING_USER: A.WAIT,
    V.STALE: A.CLEAR,
    V.AMBIGUOUS_TOOL: A.HOLD,
    V.RESUMABLE: A.RESUME,
}


def gate_action(verdict: Verdict, gate: Gate) -> RecoveryAction:
    """What a gate does with a verdict, before the loop guard and attempt limit."""
    if verdict is V.SUSPENDED:
        return A.SKIP
    if verdict is V.NO_ORIGIN:
        return A.HOLD  # no gate can deliver a turn that has nowhere to go
    if gate is Gate.SAFE:
        return _SAFE[verdict]
    if gate is Gate.OPERATOR:
        return A.HOLD if verdict is V.RESUMABLE else _SAFE[verdict]
    if gate is Gate.ALL:
        return A.RESUME  # the peer's old behaviour, kept for comparison only
    return A.HOLD  # off: nothing automatic; every candidate waits for the operator


@dataclass(frozen=True, slots=True)
class Classification:
    verdict: Verdict
    explanation: str
    tail_at: float | None = None
    tail_age: float | None = None
    unresolved_tools: tuple[str, ...] = ()


def classify(
    record: RecoveryRecord,
    origin: Origin | None,
    tail: Sequence[Message],
    now: float,
    policy: RecoveryPolicy,
) -> Classification:
    """The verdict on one candidate, with an explanation an operator can read."""
    if record.state == RecoveryState.SUSPENDED:
        why = f" ({record.reason})" if record.reason else ""
        return Classification(V.SUSPENDED, f"suspended{why}; never resumed automatically")
    if origin is None:
        return Classification(V.NO_ORIGIN, "no stored origin: a resumed turn has nowhere to go")

    rows = [m for m in tail if is_replayable(m)]
    if not rows:
        return Classification(V.UNDETERMINED, "no transcript rows to judge from")
    last = rows[-1]
    if last.malformed or last.role not in KNOWN_ROLES:
        return Classification(
            V.UNDETERMINED, f"the last transcript row (#{last.seq}) is malformed ({last.role!r})"
        )
    tail_at = last.created_at
    age = None if tail_at is None else now - tail_at

    def verdict(v: Verdict, text: str, tools: tuple[str, ...] = ()) -> Classification:
        return Classification(v, text, tail_at, None if age is None else max(age, 0.0), tools)

    if is_final_answer(last):
        return verdict(
            V.COMPLETE, f"the turn ended with a final answer (#{last.seq}, {last.finish_reason})"
        )
    if last.role == Role.USER and last.kind == MessageKind.RECOVERY_NOTE:
        return verdict(
            V.RECOVERY_LOOP,
            f"the tail is our own recovery note (#{last.seq}): an earlier resume produced nothing",
        )
    block = trailing_tool_block(rows)
    waiting = _waiting_on_user(block, policy)
    if waiting is not None:
        return verdict(V.AWAITING_USER, waiting)

    if age is None:
        return Classification(
            V.UNDETERMINED, f"the last row (#{last.seq}) has no usable timestamp; age unknown"
        )
    if age < -policy.future_tolerance:
        return verdict(
            V.UNDETERMINED,
            f"the last row is dated {format_age(-age)} in the future (clock change?)",
        )
    if policy.freshness > 0 and age > policy.freshness:
        return verdict(
            V.STALE,
            f"last activity {format_age(age)} ago, older than the freshness window of "
            f"{format_age(policy.freshness)}",
        )

    if block is not None:
        if block.problems:
            names = tuple(sorted({c.name for c in block.unresolved}))
            return verdict(V.AMBIGUOUS_TOOL, "; ".join(block.problems), names)
        risky = tuple(sorted({c.name for c in block.unresolved if _is_risky(c, policy)}))
        if risky:
            return verdict(
                V.AMBIGUOUS_TOOL,
                f"interrupted during {', '.join(risky)}: its effect is unknown, so running the "
                "turn again could repeat it",
                risky,
            )
        if block.unresolved:
            rerun = ", ".join(sorted({c.name for c in block.unresolved}))
            return verdict(V.RESUMABLE, f"interrupted during read-only {rerun}; safe to re-run")
        return verdict(V.RESUMABLE, "tool results are recorded; the agent had not answered yet")
    if last.role == Role.USER:
        what = "notification" if last.kind == MessageKind.NOTICE else "message"
        return verdict(V.RESUMABLE, f"unanswered user {what} from {format_age(max(age, 0))} ago")
    return verdict(V.RESUMABLE, "the answer was interrupted before it finished")


def _is_risky(call: ToolCall, policy: RecoveryPolicy) -> bool:
    """An unanswered call whose effect on the world is unknown."""
    return not is_read_only(call, policy) and call.name not in policy.user_wait_tools


def _waiting_on_user(block: ToolBlock | None, policy: RecoveryPolicy) -> str | None:
    """Why the tail is a user-wait boundary, or None if it is not one.

    It is one when the agent's question timed out, was never delivered, or was still open,
    and nothing else in the same block has an unknown effect: a timed-out question next to
    an interrupted deploy is an ambiguous tool call, not a wait.
    """
    if block is None or block.problems or any(_is_risky(c, policy) for c in block.unresolved):
        return None
    kinds = {result.kind for result in block.results}
    if MessageKind.CLARIFY_UNDELIVERED in kinds:
        return "the agent's question was never delivered to the user; waiting for them to write"
    if MessageKind.CLARIFY_TIMEOUT in kinds:
        return "the agent's question to the user timed out; waiting for them to write"
    if any(call.name in policy.user_wait_tools for call in block.unresolved):
        return "the agent was waiting for the user's answer to a question"
    return None


def decide(
    record: RecoveryRecord,
    origin: Origin | None,
    tail: Sequence[Message],
    now: float,
    policy: RecoveryPolicy,
    *,
    loop_guard_tripped: bool = False,
) -> Decision:
    """Verdict plus the action to take under the policy's gate."""
    found = classify(record, origin, tail, now, policy)
    action = gate_action(found.verdict, policy.gate)
    explanation = found.explanation
    if action is A.RESUME:
        if loop_guard_tripped:
            action = A.HOLD
            explanation += (
                f"; held: restart loop guard tripped ({policy.loop_boots} boots with recovery "
                f"candidates, each within {policy.loop_window:.0f} s of the last)"
            )
        elif record.attempts >= policy.max_attempts:
            action = A.HOLD
            explanation += f"; held: already resumed {record.attempts} times without completing"
        elif record.state == RecoveryState.HELD:
            action = A.HOLD
            explanation += "; held earlier, waits for an operator"
    return Decision(
        verdict=found.verdict,
        action=action,
        explanation=explanation,
        tail_at=found.tail_at,
        tail_age=found.tail_age,
        unresolved_tools=found.unresolved_tools,
    )

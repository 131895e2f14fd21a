"""The recovery decision: what to do with an interrupted session after a restart.

A pure function of durable evidence: the recovery record, the origin, the transcript tail,
the session's last turn row, and the jobs its interrupted tool calls started; plus now and the
policy. No I/O, no clock reads. The rules are the decision table in docs/architecture.md,
evaluated in order; the first that applies gives the verdict, and the gate turns the verdict
into an action. The same call says what the user is told when their request is not resumed
automatically (once per episode: the record remembers it).

Freshness is measured on the durable timestamp of the last replayable transcript row that is
not our own recovery note, never on the marker's time: a restart re-stamps the marker and
every resume writes a new note, so either clock would keep a six-week-old task "fresh"
forever (a peer gateway's incident #88942).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from gateway_core.model import (
    ENDED_OUTCOMES,
    Decision,
    Gate,
    JobEvidence,
    Message,
    MessageKind,
    Origin,
    RecoveryAction,
    RecoveryRecord,
    RecoveryState,
    Role,
    SettledCall,
    Settlement,
    Told,
    ToolCall,
    TurnKind,
    TurnRecord,
    Verdict,
)
from gateway_core.quick_init import positional_builder
from gateway_core.recovery import note
from gateway_core.recovery.evidence import (
    KNOWN_ROLES,
    ToolBlock,
    format_age,
    is_final_answer,
    is_read_only,
    is_recovery_note,
    request_index,
    trailing_tool_block,
)
from gateway_core.recovery.policy import RecoveryPolicy
from gateway_core.recovery.settle import settle_calls

V = Verdict
A = RecoveryAction
# Looked up once (an enum class's attribute costs a metaclass lookup on every use) for the
# checks decide() makes on every candidate at boot.
_SYSTEM, _USER = Role.SYSTEM, Role.USER
_META, _NOTE = MessageKind.META, MessageKind.RECOVERY_NOTE
_HELD, _COMPLETE, _RESUME = RecoveryState.HELD, V.COMPLETE, A.RESUME
_HOLD, _CLEAR, _WAIT, _STALE = A.HOLD, A.CLEAR, A.WAIT, V.STALE
_NOTICE, _UNKNOWN = MessageKind.NOTICE, Settlement.UNKNOWN
# Actions a restart would take on its own that leave an operator's held candidate held.
_KEPT_HELD = frozenset({A.CLEAR, A.WAIT, A.AWAIT_JOB})

_SAFE: dict[Verdict, RecoveryAction] = {
    V.SUSPENDED: A.SKIP,
    V.NO_ORIGIN: A.HOLD,
    V.UNDETERMINED: A.HOLD,
    V.COMPLETE: A.CLEAR,
    V.RECOVERY_LOOP: A.HOLD,
    V.AWAITING_USER: A.WAIT,
    V.STALE: A.CLEAR,
    V.AMBIGUOUS_TOOL: A.HOLD,
    V.TOOL_RUNNING: A.AWAIT_JOB,
    V.RESUMABLE: A.RESUME,
}


def gate_action(verdict: Verdict, gate: Gate) -> RecoveryAction:
    """What a gate does with a verdict, before the loop guard and attempt limit."""
    return _GATE_ACTIONS[gate][verdict]


def _gate_rule(verdict: Verdict, gate: Gate) -> RecoveryAction:
    """The rules behind gate_action (tabulated once: decide() runs per candidate at boot)."""
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


_GATE_ACTIONS = {gate: {verdict: _gate_rule(verdict, gate) for verdict in Verdict} for gate in Gate}


@dataclass(frozen=True, slots=True)
class Classification:
    verdict: Verdict
    explanation: str
    tail_at: float | None = None
    tail_age: float | None = None
    unresolved_tools: tuple[str, ...] = ()
    settled: tuple[SettledCall, ...] = ()
    # The tail is our recovery note of a resume that was interrupted before it wrote anything.
    interrupted_resume: bool = False
    # The agent's question never reached the user (they are waiting for an answer).
    question_undelivered: bool = False


# decide() runs once per candidate at boot; these skip the frozen classes' slow __init__.
_classification = positional_builder(Classification)
_decision = positional_builder(Decision)


def classify(
    record: RecoveryRecord,
    origin: Origin | None,
    tail: Sequence[Message],
    now: float,
    policy: RecoveryPolicy,
    *,
    last_turn: TurnRecord | None = None,
    jobs: Mapping[str, JobEvidence] | None = None,
) -> Classification:
    """The verdict on one candidate, with an explanation an operator can read.

    last_turn: the session's newest turn row (None: no row, e.g. data from before turn rows
    existed). jobs: the job each unresolved tool call of the tail started, by call id."""
    if record.state == RecoveryState.SUSPENDED:
        why = f" ({record.reason})" if record.reason else ""
        return Classification(V.SUSPENDED, f"suspended{why}; never resumed automatically")
    if origin is None:
        return Classification(V.NO_ORIGIN, "no stored origin: a resumed turn has nowhere to go")

    # is_replayable and is_recovery_note, inlined: this runs for every row of every
    # candidate at boot.
    rows = [m for m in tail if m.role != _SYSTEM and m.kind != _META]
    if not rows:
        return Classification(V.UNDETERMINED, "no transcript rows to judge from")
    last = rows[-1]
    if last.malformed or last.role not in KNOWN_ROLES:
        return Classification(
            V.UNDETERMINED, f"the last transcript row (#{last.seq}) is malformed ({last.role!r})"
        )
    activity = last
    for row in reversed(rows):
        if row.kind != _NOTE or row.role != _USER:
            activity = row
            break
    tail_at = activity.created_at
    age = None if tail_at is None else now - tail_at
    shown_age = None if age is None else max(age, 0.0)

    def verdict(
        v: Verdict,
        text: str,
        unresolved_tools: tuple[str, ...] = (),
        settled: tuple[SettledCall, ...] = (),
        interrupted_resume: bool = False,
        question_undelivered: bool = False,
    ) -> Classification:
        return _classification(
            v,
            text,
            tail_at,
            shown_age,
            unresolved_tools,
            settled,
            interrupted_resume,
            question_undelivered,
        )

    if is_final_answer(last):
        return verdict(
            V.COMPLETE, f"the turn ended with a final answer (#{last.seq}, {last.finish_reason})"
        )
    interrupted_resume = False
    if is_recovery_note(last):
        if _ran_to_its_end(last_turn, last):
            return verdict(
                V.RECOVERY_LOOP,
                f"the resume turn ran to its end without writing anything after our recovery "
                f"note (#{last.seq}); resuming again would likely do the same",
            )
        interrupted_resume = True

    block = None if interrupted_resume else trailing_tool_block(rows)
    settled: tuple[SettledCall, ...] = ()
    if block is not None and not block.problems and block.call_row is not None:
        risky = [c for c in block.unresolved if _is_risky(c, policy)]
        settled = settle_calls(
            risky,
            jobs or {},
            generation=block.call_row.generation,
            called_at=block.call_row.created_at,
        )
    unknown = [s for s in settled if s.how is _UNKNOWN] if settled else []
    waiting = _waiting_on_user(block, policy, unknown, settled)
    if waiting is not None:
        return verdict(
            V.AWAITING_USER,
            waiting,
            settled=settled,
            question_undelivered=_question_undelivered(block),
        )

    if age is None:
        return Classification(
            V.UNDETERMINED, f"the last row (#{activity.seq}) has no usable timestamp; age unknown"
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

    if interrupted_resume:
        how = "" if last_turn is None else f" ({_how_it_ended(last_turn)})"
        return verdict(
            V.RESUMABLE,
            f"the resume turn was interrupted{how} before it wrote anything after our "
            f"recovery note (#{last.seq}); it counts as an attempt",
            interrupted_resume=True,
        )
    if block is not None:
        if block.problems:
            names = tuple(sorted({c.name for c in block.unresolved}))
            return verdict(V.AMBIGUOUS_TOOL, "; ".join(block.problems), unresolved_tools=names)
        if unknown:
            names = tuple(sorted({s.tool_name for s in unknown}))
            return verdict(
                V.AMBIGUOUS_TOOL,
                f"interrupted during {', '.join(names)}: "
                + "; ".join(s.explanation for s in unknown)
                + "; its effect is unknown, so running the turn again could repeat it",
                unresolved_tools=names,
                settled=settled,
            )
        running = [s for s in settled if s.how is Settlement.RUNNING]
        if running:
            return verdict(
                V.TOOL_RUNNING,
                "; ".join(s.explanation for s in running),
                unresolved_tools=tuple(sorted({s.tool_name for s in running})),
                settled=settled,
            )
        parts = [s.explanation for s in settled]
        rerun = sorted({c.name for c in block.unresolved if not _is_risky(c, policy)})
        if rerun:
            parts.append(f"interrupted during read-only {', '.join(rerun)}; safe to re-run")
        if parts:
            return verdict(V.RESUMABLE, "; ".join(parts), settled=settled)
        return verdict(V.RESUMABLE, "tool results are recorded; the agent had not answered yet")
    if last.role == _USER:
        what = "notification" if last.kind == _NOTICE else "message"
        return verdict(V.RESUMABLE, f"unanswered user {what} from {format_age(max(age, 0))} ago")
    return verdict(V.RESUMABLE, "the answer was interrupted before it finished")


def _ran_to_its_end(last_turn: TurnRecord | None, note_row: Message) -> bool:
    """The durable turn row says the resume that wrote this note ended by itself (completed,
    failed or superseded): it was not killed or cancelled while it ran."""
    return (
        last_turn is not None
        and last_turn.generation == note_row.generation
        and last_turn.outcome in ENDED_OUTCOMES
    )


def _how_it_ended(turn: TurnRecord) -> str:
    if turn.outcome is None:
        return "still marked running"
    return f"turn {turn.generation} {turn.outcome}"


def _is_risky(call: ToolCall, policy: RecoveryPolicy) -> bool:
    """An unanswered call whose effect on the world is unknown."""
    return not is_read_only(call, policy) and call.name not in policy.user_wait_tools


def _waiting_on_user(
    block: ToolBlock | None,
    policy: RecoveryPolicy,
    unknown: Sequence[SettledCall],
    settled: Sequence[SettledCall],
) -> str | None:
    """Why the tail is a user-wait boundary, or None if it is not one.

    It is one when the agent's question timed out, was never delivered, or was still open,
    and nothing else in the same block has an unknown or still-running effect: a timed-out
    question next to an interrupted deploy is an ambiguous tool call, not a wait.
    """
    if block is None or block.problems or unknown:
        return None
    if any(s.how is Settlement.RUNNING for s in settled):
        return None
    kinds = {result.kind for result in block.results}
    if MessageKind.CLARIFY_UNDELIVERED in kinds:
        return "the agent's question was never delivered to the user; waiting for them to write"
    if MessageKind.CLARIFY_TIMEOUT in kinds:
        return "the agent's question to the user timed out; waiting for them to write"
    if any(call.name in policy.user_wait_tools for call in block.unresolved):
        return "the agent was waiting for the user's answer to a question"
    return None


def _question_undelivered(block: ToolBlock | None) -> bool:
    return block is not None and any(
        r.kind == MessageKind.CLARIFY_UNDELIVERED for r in block.results
    )


def decide(
    record: RecoveryRecord,
    origin: Origin | None,
    tail: Sequence[Message],
    now: float,
    policy: RecoveryPolicy,
    *,
    loop_guard_tripped: bool = False,
    session_loop: bool = False,
    last_turn: TurnRecord | None = None,
    jobs: Mapping[str, JobEvidence] | None = None,
) -> Decision:
    """Verdict plus the action to take under the policy's gate, and what the user is told.

    loop_guard_tripped: this boot is the latest of a chain of quick boots with candidates.
    session_loop: this session's own turns died with their gateway (a crash, or the death of
    the node that ran them) `loop_boots` times in a row, each within `loop_window` of the
    last (recovery/loop_guard.py): the guard per session, which a takeover also answers to."""
    found = classify(record, origin, tail, now, policy, last_turn=last_turn, jobs=jobs)
    action = gate_action(found.verdict, policy.gate)
    explanation = found.explanation
    held_already = record.state == _HELD
    if action is _RESUME:
        if loop_guard_tripped:
            action = A.HOLD
            explanation += (
                f"; held: restart loop guard tripped ({policy.loop_boots} boots with recovery "
                f"candidates, each within {policy.loop_window:.0f} s of the last)"
            )
        elif session_loop:
            action = A.HOLD
            explanation += (
                f"; held: restart loop guard tripped for this session (its turn died with its "
                f"gateway {policy.loop_boots} times in a row, each within "
                f"{policy.loop_window:.0f} s of the last)"
            )
        elif record.attempts >= policy.max_attempts:
            action = A.HOLD
            if found.interrupted_resume or _last_resume_interrupted(last_turn):
                explanation += f"; held: interrupted {record.attempts} times while resuming"
            else:
                explanation += f"; held: already resumed {record.attempts} times without completing"
        elif held_already:
            action = A.HOLD
            explanation += "; held earlier, waits for an operator"
    elif held_already and action in _KEPT_HELD and found.verdict is not _COMPLETE:
        # An operator's queue is not emptied by a restart: what was held stays held until
        # someone decides (approve, clear, force-resume) or the user writes again.
        action = A.HOLD
        explanation += "; held earlier, waits for an operator"
    notice, told = _user_notice(found, action, record, origin, tail, policy)
    return _decision(
        found.verdict,
        action,
        explanation,
        found.tail_at,
        found.tail_age,
        found.unresolved_tools,
        found.settled,
        notice,
        told,
    )


def _last_resume_interrupted(last_turn: TurnRecord | None) -> bool:
    return last_turn is not None and last_turn.kind == TurnKind.RESUME and last_turn.interrupted


def _user_notice(
    found: Classification,
    action: RecoveryAction,
    record: RecoveryRecord,
    origin: Origin | None,
    tail: Sequence[Message],
    policy: RecoveryPolicy,
) -> tuple[str | None, Told | None]:
    """The one message the user gets when their request is not resumed automatically.

    Held: "an operator will review it". Cleared as stale: "send it again". A question that
    never reached them: "reply to continue". Never for a turn that completed, never twice in
    one episode (the record remembers what was told), never for the gateway's own work (a
    background job's notice turn), and not at all with recovery.notify_user = false."""
    if not policy.notify_user or origin is None or found.verdict is _COMPLETE:
        return None, None  # (a completed turn has nothing to tell, whatever the gate did)
    request = last_request(tail)
    if request is None:
        return None, None  # nothing the user asked is waiting: nobody to tell
    if action is _HOLD:
        if record.told == Told.HELD:
            return None, None
        return note.held_for_review(request), Told.HELD
    if action is _CLEAR and found.verdict is _STALE:
        if record.told == Told.CLEARED:
            return None, None
        age = format_age(found.tail_age or 0.0)
        return note.not_resumed_stale(request, age), Told.CLEARED
    if action is _WAIT and found.question_undelivered and record.told is None:
        return note.question_never_asked(request), Told.WAITING
    return None, None


def operator_clear_notice(
    record: RecoveryRecord, origin: Origin | None, tail: Sequence[Message], policy: RecoveryPolicy
) -> tuple[str | None, Told | None]:
    """What the user is told when an operator clears their interrupted request (once)."""
    if not policy.notify_user or origin is None or record.told == Told.CLEARED:
        return None, None
    if record.state not in (RecoveryState.PENDING, RecoveryState.HELD, RecoveryState.RESUMING):
        return None, None
    request = last_request(tail)
    if request is None:
        return None, None
    return note.cleared_by_operator(request), Told.CLEARED


def last_request(tail: Sequence[Message]) -> str | None:
    """The words of the request a tail's turn was working on: its newest user row that is not
    our recovery note. None when that row is a background job's notice (the gateway's own
    work, not something the user asked) or there is none."""
    index = request_index(tail)
    if index is None or tail[index].kind == _NOTICE:
        return None
    return tail[index].content

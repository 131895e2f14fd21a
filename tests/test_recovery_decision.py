"""Example-based tests for the pure recovery decision (gateway_core.recovery).

The decision table in docs/architecture.md, row by row, with the peer incidents each rule
answers. Each test builds a transcript tail with the builders below so it reads like the
conversation that was interrupted, then asserts a concrete verdict and action (and, where it
matters, what the user is told and how interrupted tool calls were settled).
"""

from __future__ import annotations

import dataclasses
import itertools
import json
from collections.abc import Callable, Sequence
from typing import Any

import pytest

from gateway_core.model import (
    Decision,
    FinishReason,
    Gate,
    JobEvidence,
    Message,
    MessageKind,
    Origin,
    ProcessState,
    RecoveryAction,
    RecoveryRecord,
    RecoveryState,
    Role,
    Settlement,
    Told,
    ToolCall,
    TurnKind,
    TurnOutcome,
    TurnRecord,
    Verdict,
)
from gateway_core.recovery import (
    RecoveryPolicy,
    classify,
    decide,
    gate_action,
    loop_guard_tripped,
)

V = Verdict
A = RecoveryAction

# --------------------------------------------------------------------------------------------
# Builders: transcript rows with increasing seq, timestamps given as "seconds ago".

NOW = 1_700_000_000.0
HOUR = 3600.0
DAY = 24 * HOUR
_seq = itertools.count(1)


def ago(seconds: float) -> float:
    return NOW - seconds


def _row(role: str, content: str = "", at: float | None = None, **fields: Any) -> Message:
    return Message(
        session_id=1, seq=next(_seq), role=role, content=content, created_at=at, **fields
    )


def user(text: str, at: float | None, kind: str = MessageKind.TEXT) -> Message:
    return _row(Role.USER, text, at, kind=kind)


def note(at: float | None, generation: int = 0) -> Message:
    """The recovery note the gateway itself wrote when it resumed a turn earlier."""
    return _row(
        Role.USER,
        "[System note: the previous turn was interrupted by a gateway restart]",
        at,
        kind=MessageKind.RECOVERY_NOTE,
        generation=generation,
    )


def resume_turn(generation: int, outcome: TurnOutcome | None) -> TurnRecord:
    """The durable row of the resume turn that wrote the note of `generation`."""
    return TurnRecord(1, generation, TurnKind.RESUME, 1, ago(10), None, outcome)


def job(
    call_id: str,
    state: ProcessState = ProcessState.EXITED,
    exit_code: int | None = 0,
    started: float = ago(9),
    end_reason: str | None = "exited",
    output: str = "step2\n",
) -> dict[str, JobEvidence]:
    """The job a tool call started, as the store's record describes it."""
    return {
        call_id: JobEvidence(
            f"proc_{call_id}", call_id, state, exit_code, end_reason, started, 4242, output
        )
    }


def assistant(
    text: str, at: float | None, finish: str | None = FinishReason.STOP, malformed: bool = False
) -> Message:
    return _row(Role.ASSISTANT, text, at, finish_reason=finish, malformed=malformed)


def call(name: str, call_id: str, **arguments: object) -> ToolCall:
    return ToolCall(call_id, name, json.dumps(arguments))


def calls(at: float | None, *tool_calls: ToolCall, malformed: bool = False) -> Message:
    """An assistant row asking for tools."""
    return _row(
        Role.ASSISTANT,
        "",
        at,
        tool_calls=tuple(tool_calls),
        finish_reason=FinishReason.TOOL_CALLS,
        malformed=malformed,
    )


def result(
    call_id: str | None, at: float | None, text: str = "ok", kind: str = MessageKind.TEXT
) -> Message:
    return _row(Role.TOOL, text, at, kind=kind, tool_call_id=call_id)


def system(text: str, at: float | None) -> Message:
    return _row(Role.SYSTEM, text, at)


def meta(at: float | None, role: str = Role.USER) -> Message:
    return _row(role, "bookkeeping", at, kind=MessageKind.META)


PENDING = RecoveryRecord(session_id=1, state=RecoveryState.PENDING, reason="crash", marked_at=NOW)
ORIGIN = Origin("telegram", "42", user_id="7", user_name="ada")
SAFE = RecoveryPolicy()


def run(
    tail: Sequence[Message],
    *,
    policy: RecoveryPolicy = SAFE,
    record: RecoveryRecord = PENDING,
    origin: Origin | None = ORIGIN,
    now: float = NOW,
    loop_guard: bool = False,
    last_turn: TurnRecord | None = None,
    jobs: dict[str, JobEvidence] | None = None,
) -> Decision:
    return decide(
        record,
        origin,
        tail,
        now,
        policy,
        loop_guard_tripped=loop_guard,
        last_turn=last_turn,
        jobs=jobs,
    )


def expect(decision: Decision, verdict: Verdict, action: RecoveryAction) -> None:
    assert (decision.verdict, decision.action) == (verdict, action), decision.explanation
    assert decision.explanation.strip(), "every decision explains itself"


# A fresh, ordinary interrupted conversation: the user asked, nobody answered yet.
def fresh_question() -> list[Message]:
    return [user("hello", ago(600)), assistant("hi", ago(590)), user("run the report", ago(30))]


# --------------------------------------------------------------------------------------------
# Row 1: suspended


def test_suspended_is_skipped_even_with_a_fresh_resumable_tail() -> None:
    record = RecoveryRecord(1, state=RecoveryState.SUSPENDED, reason="operator said so")
    d = run(fresh_question(), record=record)
    expect(d, V.SUSPENDED, A.SKIP)
    assert "suspended" in d.explanation
    assert "operator said so" in d.explanation


def test_suspended_wins_over_missing_origin_and_empty_tail() -> None:
    record = RecoveryRecord(1, state=RecoveryState.SUSPENDED)
    expect(run([], record=record, origin=None), V.SUSPENDED, A.SKIP)


@pytest.mark.parametrize("gate", list(Gate))
def test_suspended_is_skipped_under_every_gate(gate: Gate) -> None:
    record = RecoveryRecord(1, state=RecoveryState.SUSPENDED)
    expect(
        run(fresh_question(), record=record, policy=RecoveryPolicy(gate=gate)), V.SUSPENDED, A.SKIP
    )


# --------------------------------------------------------------------------------------------
# Row 2: no-origin


@pytest.mark.parametrize("gate", list(Gate))
def test_no_origin_is_held_under_every_gate(gate: Gate) -> None:
    d = run(fresh_question(), origin=None, policy=RecoveryPolicy(gate=gate))
    expect(d, V.NO_ORIGIN, A.HOLD)
    assert "origin" in d.explanation


def test_no_origin_is_checked_before_the_transcript() -> None:
    expect(run([], origin=None), V.NO_ORIGIN, A.HOLD)


# --------------------------------------------------------------------------------------------
# Undetermined: nothing readable to judge from


def test_empty_transcript_is_undetermined_and_held() -> None:
    # C32: empty/unavailable history withholds the resume.
    d = run([])
    expect(d, V.UNDETERMINED, A.HOLD)
    assert "no transcript rows" in d.explanation
    assert d.tail_at is None and d.tail_age is None


def test_only_system_and_meta_rows_is_undetermined() -> None:
    d = run([system("you are helpful", ago(10)), meta(ago(5)), meta(ago(1), role=Role.ASSISTANT)])
    expect(d, V.UNDETERMINED, A.HOLD)


def test_malformed_last_row_is_undetermined_and_named() -> None:
    bad = assistant("half a row", ago(10), malformed=True)
    d = run([user("hi", ago(20)), bad])
    expect(d, V.UNDETERMINED, A.HOLD)
    assert f"#{bad.seq}" in d.explanation
    assert "malformed" in d.explanation


def test_unknown_role_in_last_row_is_undetermined() -> None:
    d = run([user("hi", ago(20)), _row("robot", "beep", ago(10))])
    expect(d, V.UNDETERMINED, A.HOLD)
    assert "robot" in d.explanation


def test_malformed_row_earlier_in_the_tail_does_not_matter() -> None:
    tail = [assistant("garbled", ago(100), malformed=True), user("still there?", ago(10))]
    expect(run(tail), V.RESUMABLE, A.RESUME)


def test_unknown_timestamp_is_undetermined() -> None:
    tail = [user("hello", ago(100)), assistant("hi", ago(90)), user("do it", None)]
    d = run(tail)
    expect(d, V.UNDETERMINED, A.HOLD)
    assert "timestamp" in d.explanation
    assert d.tail_age is None


def test_unknown_timestamp_of_last_row_is_not_rescued_by_earlier_rows() -> None:
    tail = [user("do it", ago(10)), calls(None, call("process", "c1", action="list"))]
    expect(run(tail), V.UNDETERMINED, A.HOLD)


def test_timestamp_slightly_in_the_future_is_tolerated() -> None:
    d = run([user("do it", NOW + 299)])  # default future_tolerance is 300 s
    expect(d, V.RESUMABLE, A.RESUME)
    assert d.tail_at == NOW + 299
    assert d.tail_age == 0.0


def test_timestamp_exactly_at_the_future_tolerance_is_tolerated() -> None:
    expect(run([user("do it", NOW + 300)]), V.RESUMABLE, A.RESUME)


def test_timestamp_far_in_the_future_is_undetermined() -> None:
    d = run([user("do it", NOW + 301)])
    expect(d, V.UNDETERMINED, A.HOLD)
    assert "future" in d.explanation
    assert d.tail_age == 0.0


def test_future_tolerance_comes_from_the_policy() -> None:
    policy = RecoveryPolicy(future_tolerance=0.0)
    expect(run([user("do it", NOW + 1)], policy=policy), V.UNDETERMINED, A.HOLD)
    expect(run([user("do it", NOW)], policy=policy), V.RESUMABLE, A.RESUME)


# --------------------------------------------------------------------------------------------
# Row 3: complete


@pytest.mark.parametrize("finish", ["stop", "length", "error", "end_turn", "end", "completed"])
def test_final_answer_completes_and_clears(finish: str) -> None:
    # C27: a transcript that ends with a final answer gets no synthetic turn; the marker clears.
    d = run([user("what is 2+2?", ago(60)), assistant("4", ago(50), finish=finish)])
    expect(d, V.COMPLETE, A.CLEAR)
    assert finish in d.explanation
    assert d.tail_at == ago(50)
    assert d.tail_age == pytest.approx(50.0)


@pytest.mark.parametrize(
    ("content", "finish"),
    [
        ("", "stop"),  # empty
        ("   \n", "stop"),  # blank
        ("partial answ", None),  # no finish reason: cut off mid-stream
        ("partial answ", "interrupted"),  # F48: interrupted is not final
        ("partial answ", "tool_calls"),
        ("partial answ", "partial"),  # unknown finish reasons are not final
    ],
)
def test_assistant_text_without_a_final_finish_is_resumable(
    content: str, finish: str | None
) -> None:
    d = run([user("write a poem", ago(60)), assistant(content, ago(50), finish=finish)])
    expect(d, V.RESUMABLE, A.RESUME)
    assert "interrupted before it finished" in d.explanation


def test_final_answer_completes_even_when_old() -> None:
    # complete is evaluated before stale: the marker is cleared either way, as "complete".
    expect(run([user("q", ago(40 * DAY)), assistant("a", ago(40 * DAY))]), V.COMPLETE, A.CLEAR)


def test_final_answer_completes_even_without_a_timestamp() -> None:
    d = run([user("q", ago(40)), assistant("a", None)])
    expect(d, V.COMPLETE, A.CLEAR)
    assert d.tail_at is None and d.tail_age is None


def test_final_answer_followed_by_meta_and_system_rows_still_completes() -> None:
    tail = [user("q", ago(60)), assistant("a", ago(50)), meta(ago(5)), system("sys", ago(1))]
    d = run(tail)
    expect(d, V.COMPLETE, A.CLEAR)
    assert d.tail_at == ago(50)  # freshness reads the last *replayable* row


def test_assistant_row_with_tool_calls_is_never_a_final_answer() -> None:
    row = _row(
        Role.ASSISTANT,
        "let me check",
        ago(5),
        tool_calls=(call("terminal", "c1", cmd="ls"),),
        finish_reason="stop",
    )
    d = run([user("list files", ago(10)), row])
    expect(d, V.AMBIGUOUS_TOOL, A.HOLD)


# --------------------------------------------------------------------------------------------
# Row 4: recovery-loop


def test_a_resume_killed_before_it_wrote_anything_is_resumed_again() -> None:
    # The resume turn's row says the gateway died under it: an attempt, not "produced nothing".
    tail = [
        user("deploy", ago(100)),
        calls(ago(90), call("terminal", "c1", cmd="deploy")),
        note(ago(10), generation=3),
    ]
    record = RecoveryRecord(1, state=RecoveryState.RESUMING, reason="crash", attempts=1)
    d = run(tail, record=record, last_turn=resume_turn(3, TurnOutcome.CRASHED))
    expect(d, V.RESUMABLE, A.RESUME)
    assert "interrupted" in d.explanation and "recovery note" in d.explanation
    assert d.user_notice is None  # it will be answered: nothing to tell yet


def test_a_resume_cancelled_by_a_drain_deadline_is_resumed_again() -> None:
    tail = [user("report", ago(100)), note(ago(10), generation=2)]
    record = RecoveryRecord(1, state=RecoveryState.RESUMING, reason="drain-timeout", attempts=1)
    d = run(tail, record=record, last_turn=resume_turn(2, TurnOutcome.INTERRUPTED))
    expect(d, V.RESUMABLE, A.RESUME)


def test_a_note_without_a_turn_row_counts_as_an_interrupted_attempt() -> None:
    # Data from before turn rows existed: the attempt limit still ends the loop.
    expect(run([user("q", ago(60)), note(ago(10))]), V.RESUMABLE, A.RESUME)


def test_interrupted_three_times_while_resuming_is_held_and_the_user_told() -> None:
    tail = [user("fix the build", ago(100)), note(ago(10), generation=5)]
    record = RecoveryRecord(1, state=RecoveryState.RESUMING, reason="crash", attempts=3)
    d = run(tail, record=record, last_turn=resume_turn(5, TurnOutcome.CRASHED))
    expect(d, V.RESUMABLE, A.HOLD)
    assert "interrupted 3 times while resuming" in d.explanation
    assert d.told is Told.HELD
    assert d.user_notice is not None and "“fix the build”" in d.user_notice
    assert "operator will review" in d.user_notice


def test_a_resume_that_ran_to_its_end_and_wrote_nothing_is_a_loop_held_not_cleared() -> None:
    # C29: our own note and nothing after it, and the resume turn ended by itself.
    tail = [
        user("deploy", ago(100)),
        calls(ago(90), call("terminal", "c1", cmd="deploy")),
        note(ago(10), generation=4),
    ]
    d = run(tail, last_turn=resume_turn(4, TurnOutcome.COMPLETED))
    expect(d, V.RECOVERY_LOOP, A.HOLD)
    assert "ran to its end" in d.explanation
    assert d.told is Told.HELD


def test_a_loop_verdict_needs_the_turn_row_of_that_very_note() -> None:
    # An older resume completed; the note at the tail is from a newer one that was killed.
    tail = [user("q", ago(60)), note(ago(10), generation=7)]
    d = run(tail, last_turn=resume_turn(6, TurnOutcome.COMPLETED))
    expect(d, V.RESUMABLE, A.RESUME)


def test_freshness_of_a_note_tail_is_the_request_not_the_note() -> None:
    # Every resume writes a fresh note; a two-hour-old request must not stay "fresh" by it.
    tail = [user("pip install sdk", ago(2 * HOUR)), note(ago(10)), note(ago(5))]
    d = run(tail)
    expect(d, V.STALE, A.CLEAR)
    assert d.tail_at == ago(2 * HOUR)
    assert d.user_notice is not None and "2.0 h old" in d.user_notice
    assert d.told is Told.CLEARED


def test_recovery_note_alone_and_old_is_stale() -> None:
    expect(run([note(ago(30 * DAY))]), V.STALE, A.CLEAR)


def test_a_held_note_tail_stays_held_across_boots() -> None:
    # The earlier boot held it (loop guard); this boot must not drop it silently.
    tail = [user("q", ago(60)), note(ago(30), generation=2)]
    record = RecoveryRecord(1, state=RecoveryState.HELD, attempts=1, told=Told.HELD)
    d = run(tail, record=record, last_turn=resume_turn(2, TurnOutcome.CRASHED))
    expect(d, V.RESUMABLE, A.HOLD)
    assert d.user_notice is None  # told once already in this episode


def test_recovery_note_kind_on_an_assistant_row_is_not_a_loop() -> None:
    row = _row(Role.ASSISTANT, "text", ago(5), kind=MessageKind.RECOVERY_NOTE, finish_reason=None)
    expect(run([user("q", ago(10)), row]), V.RESUMABLE, A.RESUME)


def test_recovery_note_followed_by_a_real_user_message_is_resumable() -> None:
    expect(run([note(ago(100)), user("hello?", ago(10))]), V.RESUMABLE, A.RESUME)


# --------------------------------------------------------------------------------------------
# Row 5: awaiting-user


@pytest.mark.parametrize(
    ("kind", "words"),
    [
        (MessageKind.CLARIFY_TIMEOUT, "timed out"),
        (MessageKind.CLARIFY_UNDELIVERED, "never delivered"),
    ],
)
def test_clarify_that_got_no_answer_waits_for_the_user(kind: str, words: str) -> None:
    # C30: no synthetic turn; the user's next real message continues.
    tail = [
        user("book a table", ago(300)),
        calls(ago(290), call("clarify", "c1", question="for how many?")),
        result("c1", ago(10), text="the user did not respond within 5m", kind=kind),
    ]
    d = run(tail)
    expect(d, V.AWAITING_USER, A.WAIT)
    assert words in d.explanation


def test_unanswered_clarify_call_waits_for_the_user() -> None:
    tail = [
        user("book a table", ago(30)),
        calls(ago(20), call("clarify", "c1", question="how many?")),
    ]
    d = run(tail)
    expect(d, V.AWAITING_USER, A.WAIT)
    assert "waiting" in d.explanation


def test_awaiting_user_is_evaluated_before_staleness() -> None:
    tail = [user("book", ago(50 * DAY)), calls(ago(50 * DAY), call("clarify", "c1", question="?"))]
    expect(run(tail), V.AWAITING_USER, A.WAIT)


def test_clarify_next_to_an_unresolved_read_only_call_waits_for_the_user() -> None:
    # Re-running a read-only call changes nothing; the open question is what matters.
    tail = [
        user("q", ago(30)),
        calls(ago(20), call("clarify", "c1"), call("process", "c2", action="list")),
    ]
    expect(run(tail), V.AWAITING_USER, A.WAIT)


def test_clarify_next_to_an_unresolved_mutating_call_is_ambiguous() -> None:
    tail = [
        user("q", ago(30)),
        calls(ago(20), call("clarify", "c1"), call("terminal", "c2", cmd="rm x")),
    ]
    d = run(tail)
    expect(d, V.AMBIGUOUS_TOOL, A.HOLD)
    assert d.unresolved_tools == ("terminal",)


def test_a_timed_out_question_does_not_hide_an_interrupted_mutating_call() -> None:
    tail = [
        user("deploy, then ask me about the changelog", ago(300)),
        calls(ago(290), call("terminal", "t1", command="./deploy.sh"), call("clarify", "q1")),
        result("q1", ago(10), "[no reply]", kind=MessageKind.CLARIFY_TIMEOUT),
    ]
    d = run(tail)
    expect(d, V.AMBIGUOUS_TOOL, A.HOLD)
    assert d.unresolved_tools == ("terminal",)


@pytest.mark.parametrize("timed_out_first", [True, False])
def test_the_order_of_results_in_a_block_does_not_change_the_verdict(
    timed_out_first: bool,
) -> None:
    timed_out = result("q1", ago(10), "[no reply]", kind=MessageKind.CLARIFY_TIMEOUT)
    listed = result("p1", ago(10), "[]")
    tail = [
        user("q", ago(30)),
        calls(ago(20), call("clarify", "q1"), call("process", "p1", action="list")),
        *((timed_out, listed) if timed_out_first else (listed, timed_out)),
    ]
    expect(run(tail), V.AWAITING_USER, A.WAIT)


def test_clarify_the_user_answered_is_resumable() -> None:
    tail = [
        user("q", ago(30)),
        calls(ago(20), call("clarify", "c1")),
        result("c1", ago(10), "four"),
    ]
    expect(run(tail), V.RESUMABLE, A.RESUME)


def test_clarify_timeout_kind_on_a_user_row_is_not_awaiting_user() -> None:
    tail = [
        assistant("hi", ago(30)),
        user("are you there?", ago(10), kind=MessageKind.CLARIFY_TIMEOUT),
    ]
    expect(run(tail), V.RESUMABLE, A.RESUME)


# --------------------------------------------------------------------------------------------
# Row 6: stale (freshness on the transcript tail, never on the marker)


def test_stale_tail_is_cleared_and_explained() -> None:
    # C20: older than W: not scheduled, marker cleared.
    d = run(
        [user("hello", ago(3 * HOUR)), assistant("hi", ago(3 * HOUR)), user("ping", ago(2 * HOUR))]
    )
    expect(d, V.STALE, A.CLEAR)
    assert "freshness" in d.explanation
    assert "2.0 h" in d.explanation
    assert d.tail_age == pytest.approx(2 * HOUR)


def test_six_week_old_tail_with_a_just_restamped_marker_is_not_resumed() -> None:
    # C31 / the peer's #88942: a restart re-stamps the marker; freshness must not read it.
    record = RecoveryRecord(1, state=RecoveryState.PENDING, reason="crash", marked_at=NOW)
    tail = [
        user("do the thing", ago(42 * DAY)),
        calls(ago(42 * DAY), call("process", "c1", action="poll")),
    ]
    d = run(tail, record=record)
    expect(d, V.STALE, A.CLEAR)


def test_fresh_tail_with_an_ancient_marker_is_still_resumed() -> None:
    record = RecoveryRecord(1, state=RecoveryState.PENDING, reason="crash", marked_at=ago(60 * DAY))
    expect(run(fresh_question(), record=record), V.RESUMABLE, A.RESUME)


def test_freshness_boundary_is_inclusive() -> None:
    expect(run([user("ping", ago(HOUR))]), V.RESUMABLE, A.RESUME)
    expect(run([user("ping", ago(HOUR + 0.5))]), V.STALE, A.CLEAR)


def test_freshness_zero_disables_staleness() -> None:
    policy = RecoveryPolicy(freshness=0)
    d = run([user("ping", ago(365 * DAY))], policy=policy)
    expect(d, V.RESUMABLE, A.RESUME)
    assert d.tail_age == pytest.approx(365 * DAY)


def test_freshness_window_comes_from_the_policy() -> None:
    policy = RecoveryPolicy(freshness=60)
    expect(run([user("ping", ago(61))], policy=policy), V.STALE, A.CLEAR)
    expect(run([user("ping", ago(59))], policy=policy), V.RESUMABLE, A.RESUME)


def test_fresh_meta_rows_after_an_old_tail_do_not_make_it_fresh() -> None:
    tail = [user("ping", ago(5 * HOUR)), meta(ago(1)), system("boot", ago(1))]
    d = run(tail)
    expect(d, V.STALE, A.CLEAR)
    assert d.tail_at == ago(5 * HOUR)


def test_stale_is_evaluated_before_ambiguous_tool() -> None:
    tail = [
        user("deploy", ago(3 * HOUR)),
        calls(ago(3 * HOUR), call("terminal", "c1", cmd="deploy")),
    ]
    expect(run(tail), V.STALE, A.CLEAR)


# --------------------------------------------------------------------------------------------
# Row 7: ambiguous-tool


def test_unresolved_terminal_is_held_naming_terminal() -> None:
    # C32: the resume is withheld and the alert names the tool.
    tail = [
        user("restart nginx", ago(30)),
        calls(ago(20), call("terminal", "c1", cmd="systemctl restart")),
    ]
    d = run(tail)
    expect(d, V.AMBIGUOUS_TOOL, A.HOLD)
    assert d.unresolved_tools == ("terminal",)
    assert "terminal" in d.explanation


def test_process_kill_is_ambiguous_but_process_list_is_not() -> None:
    kill = [user("stop it", ago(30)), calls(ago(20), call("process", "c1", action="kill", id="p1"))]
    d = run(kill)
    expect(d, V.AMBIGUOUS_TOOL, A.HOLD)
    assert d.unresolved_tools == ("process",)
    assert "process" in d.explanation


@pytest.mark.parametrize("action", ["list", "poll", "log", "wait"])
def test_unresolved_read_only_process_calls_are_resumable(action: str) -> None:
    tail = [user("status?", ago(30)), calls(ago(20), call("process", "c1", action=action))]
    d = run(tail)
    expect(d, V.RESUMABLE, A.RESUME)
    assert "read-only process" in d.explanation
    assert d.unresolved_tools == ()


def test_only_the_unresolved_mutating_calls_are_named() -> None:
    tail = [
        user("tidy up", ago(30)),
        calls(
            ago(20),
            call("process", "c1", action="list"),
            call("write_file", "c2", path="a"),
            call("terminal", "c3", cmd="rm b"),
            call("terminal", "c4", cmd="rm c"),
        ),
        result("c2", ago(15)),
    ]
    d = run(tail)
    expect(d, V.AMBIGUOUS_TOOL, A.HOLD)
    assert d.unresolved_tools == ("terminal",)


def test_unknown_tool_is_ambiguous() -> None:
    d = run([user("q", ago(30)), calls(ago(20), call("frobnicate", "c1"))])
    expect(d, V.AMBIGUOUS_TOOL, A.HOLD)
    assert d.unresolved_tools == ("frobnicate",)


def test_read_only_tools_from_the_policy_are_resumable() -> None:
    policy = RecoveryPolicy(read_only_tools=frozenset({"read_file"}))
    tail = [user("q", ago(30)), calls(ago(20), call("read_file", "c1", path="/etc/hosts"))]
    expect(run(tail, policy=policy), V.RESUMABLE, A.RESUME)
    expect(run(tail), V.AMBIGUOUS_TOOL, A.HOLD)  # not read-only by default


def test_read_only_calls_come_from_the_policy() -> None:
    policy = RecoveryPolicy(read_only_calls=frozenset({"browser:snapshot"}))
    snap = [user("q", ago(30)), calls(ago(20), call("browser", "c1", action="snapshot"))]
    lst = [user("q", ago(30)), calls(ago(20), call("process", "c1", action="list"))]
    expect(run(snap, policy=policy), V.RESUMABLE, A.RESUME)
    expect(run(lst, policy=policy), V.AMBIGUOUS_TOOL, A.HOLD)  # the default set was replaced


@pytest.mark.parametrize(
    "arguments",
    ["not json", "", "[]", '"list"', '{"action": 3}', '{"act": "list"}', '{"action": null}'],
)
def test_process_call_whose_action_cannot_be_read_is_ambiguous(arguments: str) -> None:
    tail = [user("q", ago(30)), calls(ago(20), ToolCall("c1", "process", arguments))]
    expect(run(tail), V.AMBIGUOUS_TOOL, A.HOLD)


def test_interrupted_tool_result_does_not_resolve_its_call() -> None:
    tail = [
        user("migrate the db", ago(60)),
        calls(ago(50), call("terminal", "c1", cmd="migrate")),
        result("c1", ago(10), "interrupted", kind=MessageKind.TOOL_INTERRUPTED),
    ]
    d = run(tail)
    expect(d, V.AMBIGUOUS_TOOL, A.HOLD)
    assert d.unresolved_tools == ("terminal",)


def test_interrupted_read_only_call_is_resumable() -> None:
    tail = [
        user("show the log", ago(60)),
        calls(ago(50), call("process", "c1", action="log")),
        result("c1", ago(10), "interrupted", kind=MessageKind.TOOL_INTERRUPTED),
    ]
    expect(run(tail), V.RESUMABLE, A.RESUME)


def test_malformed_call_row_is_ambiguous() -> None:
    bad = calls(ago(20), malformed=True)
    d = run([user("q", ago(30)), bad, result("c1", ago(10))])
    expect(d, V.AMBIGUOUS_TOOL, A.HOLD)
    assert "could not be read" in d.explanation


def test_call_without_an_id_is_ambiguous_even_if_read_only() -> None:
    tail = [user("q", ago(30)), calls(ago(20), call("process", "", action="list"))]
    d = run(tail)
    expect(d, V.AMBIGUOUS_TOOL, A.HOLD)
    assert "without an id" in d.explanation


def test_duplicate_call_ids_are_ambiguous() -> None:
    tail = [
        user("q", ago(30)),
        calls(ago(20), call("process", "c1", action="list"), call("process", "c1", action="poll")),
        result("c1", ago(10)),
    ]
    d = run(tail)
    expect(d, V.AMBIGUOUS_TOOL, A.HOLD)
    assert "same id" in d.explanation


def test_result_answering_no_call_is_ambiguous() -> None:
    orphan = result("zzz", ago(10))
    tail = [
        user("q", ago(30)),
        calls(ago(20), call("process", "c1", action="list")),
        result("c1", ago(15)),
        orphan,
    ]
    d = run(tail)
    expect(d, V.AMBIGUOUS_TOOL, A.HOLD)
    assert "answers no call" in d.explanation
    assert f"row {orphan.seq}" in d.explanation


def test_tool_results_without_their_call_row_are_ambiguous() -> None:
    d = run([user("q", ago(30)), result("c1", ago(20)), result("c2", ago(10))])
    expect(d, V.AMBIGUOUS_TOOL, A.HOLD)
    assert "without the call" in d.explanation


def test_tool_results_at_the_very_start_of_the_tail_are_ambiguous() -> None:
    # the tail was cut inside a long tool block: the call row is not in it
    expect(run([result("c1", ago(20)), result("c2", ago(10))]), V.AMBIGUOUS_TOOL, A.HOLD)


def test_deeply_nested_tool_arguments_do_not_crash_the_decision() -> None:
    tail = [user("q", ago(30)), calls(ago(20), ToolCall("c1", "process", "[" * 100_000))]
    expect(run(tail), V.AMBIGUOUS_TOOL, A.HOLD)


# --------------------------------------------------------------------------------------------
# Row 8: resumable


def test_unanswered_user_message_is_resumable() -> None:
    d = run(fresh_question())
    expect(d, V.RESUMABLE, A.RESUME)
    assert "unanswered user message" in d.explanation
    assert d.tail_at == ago(30)
    assert d.tail_age == pytest.approx(30.0)


def test_unanswered_notice_is_resumable() -> None:
    tail = [
        assistant("started it", ago(100)),
        user("process p1 finished", ago(10), kind=MessageKind.NOTICE),
    ]
    d = run(tail)
    expect(d, V.RESUMABLE, A.RESUME)
    assert "notification" in d.explanation


def test_assistant_tool_call_tail_with_all_results_is_resumable() -> None:
    # C28: the agent had its tool results but had not answered yet.
    tail = [
        user("deploy", ago(60)),
        calls(ago(50), call("terminal", "c1", cmd="deploy"), call("process", "c2", action="list")),
        result("c2", ago(40)),
        result("c1", ago(30)),
    ]
    d = run(tail)
    expect(d, V.RESUMABLE, A.RESUME)
    assert "tool results are recorded" in d.explanation
    assert d.tail_at == ago(30)


def test_fresh_assistant_tool_call_tail_is_resumed() -> None:
    # C28: ends in an assistant tool-call row, fresh: scheduled.
    tail = [user("what runs?", ago(60)), calls(ago(5), call("process", "c1", action="list"))]
    expect(run(tail), V.RESUMABLE, A.RESUME)


def test_system_and_meta_rows_inside_a_tool_block_are_ignored() -> None:
    tail = [
        user("deploy", ago(60)),
        calls(ago(50), call("terminal", "c1", cmd="deploy")),
        system("note", ago(45)),
        meta(ago(44), role=Role.TOOL),
        result("c1", ago(30)),
        meta(ago(1)),
    ]
    expect(run(tail), V.RESUMABLE, A.RESUME)


# --------------------------------------------------------------------------------------------
# gate_action: the full gate x verdict matrix, written out independently of the code


def _matrix() -> dict[tuple[Gate, Verdict], RecoveryAction]:
    safe = {
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
    operator = {**safe, V.RESUMABLE: A.HOLD}
    fixed = {V.SUSPENDED: A.SKIP, V.NO_ORIGIN: A.HOLD}
    everything = {v: fixed.get(v, A.RESUME) for v in Verdict}
    nothing = {v: fixed.get(v, A.HOLD) for v in Verdict}
    by_gate = {Gate.SAFE: safe, Gate.OPERATOR: operator, Gate.ALL: everything, Gate.OFF: nothing}
    return {(g, v): a for g, row in by_gate.items() for v, a in row.items()}


MATRIX = _matrix()


def test_matrix_covers_every_gate_and_verdict() -> None:
    assert set(MATRIX) == {(g, v) for g in Gate for v in Verdict}


@pytest.mark.parametrize(("gate", "verdict"), sorted(MATRIX))
def test_gate_action(gate: Gate, verdict: Verdict) -> None:
    assert gate_action(verdict, gate) is MATRIX[gate, verdict]


# One transcript (and record/origin) per verdict, so decide() is checked over the same matrix.
SCENARIOS: dict[Verdict, Callable[[], dict[str, object]]] = {
    V.SUSPENDED: lambda: {
        "tail": fresh_question(),
        "record": RecoveryRecord(1, state=RecoveryState.SUSPENDED),
    },
    V.NO_ORIGIN: lambda: {"tail": fresh_question(), "origin": None},
    V.UNDETERMINED: lambda: {"tail": [user("q", None)]},
    V.COMPLETE: lambda: {"tail": [user("q", ago(20)), assistant("a", ago(10))]},
    V.RECOVERY_LOOP: lambda: {
        "tail": [user("q", ago(20)), note(ago(10), generation=2)],
        "last_turn": resume_turn(2, TurnOutcome.COMPLETED),
    },
    V.AWAITING_USER: lambda: {
        "tail": [
            calls(ago(20), call("clarify", "c1")),
            result("c1", ago(10), kind=MessageKind.CLARIFY_TIMEOUT),
        ]
    },
    V.STALE: lambda: {"tail": [user("q", ago(2 * HOUR))]},
    V.AMBIGUOUS_TOOL: lambda: {
        "tail": [user("q", ago(20)), calls(ago(10), call("terminal", "c1"))]
    },
    V.TOOL_RUNNING: lambda: {
        "tail": [user("q", ago(20)), calls(ago(10), call("terminal", "c1", command="make"))],
        "jobs": job("c1", ProcessState.RUNNING, None, end_reason=None),
    },
    V.RESUMABLE: lambda: {"tail": fresh_question()},
}


def test_every_verdict_has_a_scenario() -> None:
    assert set(SCENARIOS) == set(Verdict)


@pytest.mark.parametrize(("gate", "verdict"), sorted(MATRIX))
def test_decide_applies_the_gate(gate: Gate, verdict: Verdict) -> None:
    d = run(**SCENARIOS[verdict](), policy=RecoveryPolicy(gate=gate))  # type: ignore[arg-type]
    expect(d, verdict, MATRIX[gate, verdict])


# --------------------------------------------------------------------------------------------
# decide(): loop guard, attempt limit and an earlier hold turn RESUME into HOLD


def test_loop_guard_holds_a_resumable_session() -> None:
    d = run(fresh_question(), loop_guard=True)
    expect(d, V.RESUMABLE, A.HOLD)
    assert "loop guard" in d.explanation
    assert d.explanation.startswith("unanswered user message")  # the verdict's reason is kept


def test_loop_guard_holds_even_under_gate_all() -> None:
    tail = [user("q", ago(20)), assistant("a", ago(10))]
    d = run(tail, policy=RecoveryPolicy(gate=Gate.ALL), loop_guard=True)
    expect(d, V.COMPLETE, A.HOLD)


def test_attempt_limit_holds_a_resumable_session() -> None:
    record = RecoveryRecord(1, state=RecoveryState.RESUMING, attempts=3)
    d = run(fresh_question(), record=record)
    expect(d, V.RESUMABLE, A.HOLD)
    assert "3 times" in d.explanation


def test_below_the_attempt_limit_resumes() -> None:
    record = RecoveryRecord(1, state=RecoveryState.RESUMING, attempts=2)
    expect(run(fresh_question(), record=record), V.RESUMABLE, A.RESUME)


def test_attempt_limit_comes_from_the_policy() -> None:
    record = RecoveryRecord(1, state=RecoveryState.PENDING, attempts=5)
    expect(
        run(fresh_question(), record=record, policy=RecoveryPolicy(max_attempts=6)),
        V.RESUMABLE,
        A.RESUME,
    )
    expect(
        run(fresh_question(), record=record, policy=RecoveryPolicy(max_attempts=5)),
        V.RESUMABLE,
        A.HOLD,
    )


def test_held_record_stays_held() -> None:
    record = RecoveryRecord(1, state=RecoveryState.HELD)
    d = run(fresh_question(), record=record)
    expect(d, V.RESUMABLE, A.HOLD)
    assert "operator" in d.explanation


@pytest.mark.parametrize("verdict", [v for v in Verdict if v is not V.RESUMABLE])
@pytest.mark.parametrize("gate", [Gate.SAFE, Gate.OPERATOR, Gate.OFF])
def test_loop_guard_and_attempts_leave_non_resume_actions_alone(
    verdict: Verdict, gate: Gate
) -> None:
    scenario = SCENARIOS[verdict]()
    policy = RecoveryPolicy(gate=gate)
    plain = run(**scenario, policy=policy)  # type: ignore[arg-type]
    record = scenario.get("record", PENDING)
    assert isinstance(record, RecoveryRecord)
    scenario["record"] = dataclasses.replace(record, attempts=99)
    guarded = run(**scenario, policy=policy, loop_guard=True)  # type: ignore[arg-type]
    assert guarded.action is plain.action is MATRIX[gate, verdict]
    assert guarded.action is not A.RESUME
    assert guarded.explanation == plain.explanation


@pytest.mark.parametrize(
    "verdict", [v for v in Verdict if v not in (V.RESUMABLE, V.SUSPENDED, V.COMPLETE)]
)
def test_what_an_operator_holds_stays_held(verdict: Verdict) -> None:
    # An operator's queue is not emptied by a restart: a held candidate that is now stale,
    # a loop, waiting for the user or for a job stays held until someone decides.
    scenario = SCENARIOS[verdict]()
    scenario["record"] = RecoveryRecord(1, state=RecoveryState.HELD)
    d = run(**scenario)  # type: ignore[arg-type]
    expect(d, verdict, A.HOLD)


def test_a_held_candidate_whose_turn_completed_is_cleared() -> None:
    scenario = SCENARIOS[V.COMPLETE]()
    d = run(**scenario, record=RecoveryRecord(1, state=RecoveryState.HELD))  # type: ignore[arg-type]
    expect(d, V.COMPLETE, A.CLEAR)


# --------------------------------------------------------------------------------------------
# loop_guard_tripped


@pytest.mark.parametrize(
    ("boot_times", "window", "boots", "tripped"),
    [
        ([0, 100, 200], 300, 3, True),
        ([0, 400, 500], 300, 3, False),
        ([0, 250, 500], 300, 3, True),  # chained: each gap within the window
        ([0, 300, 600], 300, 3, True),  # a gap equal to the window still chains
        ([0, 301, 602], 300, 3, False),
        ([], 300, 3, False),
        ([500], 300, 1, True),
        ([500], 300, 2, False),
        ([0, 100, 200, 600, 700], 300, 3, False),  # C26: a quiet gap > 300 s resets the chain
        ([0, 100, 200, 600, 700, 800], 300, 3, True),
        ([0, 200, 100], 300, 3, True),  # wall clock stepped back: still one chain
        ([1000, 100, 200], 300, 3, False),
        ([0, 100, 200], 300, 4, False),
        ([0, 100, 200], 300, 0, False),  # boots <= 0 disables the guard
    ],
)
def test_loop_guard_tripped(
    boot_times: list[float], window: float, boots: int, tripped: bool
) -> None:
    assert loop_guard_tripped(boot_times, window, boots) is tripped


def test_loop_guard_from_the_default_policy() -> None:
    # docs/architecture.md 6.2: three boots with candidates within 300 s trip the guard.
    policy = RecoveryPolicy()
    boots = [NOW - 200, NOW - 100, NOW]
    assert loop_guard_tripped(boots, policy.loop_window, policy.loop_boots) is True
    assert loop_guard_tripped(boots[1:], policy.loop_window, policy.loop_boots) is False


# --------------------------------------------------------------------------------------------
# classify() agrees with decide()


def test_classify_reports_the_same_evidence_as_decide() -> None:
    tail = [user("q", ago(40)), calls(ago(20), call("terminal", "c1"), call("write_file", "c2"))]
    found = classify(PENDING, ORIGIN, tail, NOW, SAFE)
    d = run(tail)
    assert found.verdict is d.verdict is V.AMBIGUOUS_TOOL
    assert found.unresolved_tools == d.unresolved_tools == ("terminal", "write_file")
    assert (found.tail_at, found.tail_age) == (d.tail_at, d.tail_age) == (ago(20), 20.0)
    assert found.explanation == d.explanation


def test_reason_and_marked_at_do_not_change_the_decision() -> None:
    tail = fresh_question()
    a = run(
        tail,
        record=RecoveryRecord(
            1, state=RecoveryState.PENDING, reason="drain", marked_at=ago(90 * DAY)
        ),
    )
    b = run(
        tail, record=RecoveryRecord(1, state=RecoveryState.PENDING, reason="crash", marked_at=NOW)
    )
    c = run(
        tail, record=RecoveryRecord(1, state=RecoveryState.PENDING, reason=None, marked_at=None)
    )
    assert a == b == c


# --------------------------------------------------------------------------------------------
# Interrupted tool calls, settled from the evidence their jobs left (before they count as
# unknown): one row per case.


def _terminal_tail(**arguments: object) -> list[Message]:
    return [
        user("build it", ago(30)),
        calls(ago(10), call("terminal", "c1", command="sleep 1; echo step2", **arguments)),
    ]


def test_a_call_whose_job_finished_while_down_gets_its_real_result() -> None:
    d = run(_terminal_tail(), jobs=job("c1", exit_code=0))
    expect(d, V.RESUMABLE, A.RESUME)
    assert "terminal finished with exit 0 while the gateway was down; result recovered" in (
        d.explanation
    )
    (settled,) = d.settled
    assert (settled.how, settled.call_id, settled.exit_code) == (Settlement.FINISHED, "c1", 0)
    assert settled.result is not None
    result = json.loads(settled.result)
    assert (result["exit_code"], result["state"], result["output"]) == (0, "exited", "step2\n")
    assert "recovered" in result["note"]


def test_a_failed_exit_is_a_known_outcome_too() -> None:
    d = run(_terminal_tail(), jobs=job("c1", exit_code=2))
    expect(d, V.RESUMABLE, A.RESUME)
    assert d.settled[0].exit_code == 2


def test_a_call_whose_job_still_runs_waits_for_it_within_its_timeout() -> None:
    d = run(
        _terminal_tail(timeout=30),
        jobs=job("c1", ProcessState.RUNNING, None, started=ago(9), end_reason=None),
    )
    expect(d, V.TOOL_RUNNING, A.AWAIT_JOB)
    (settled,) = d.settled
    assert settled.how is Settlement.RUNNING and settled.result is None
    assert settled.deadline == ago(9) + 30
    assert "still running" in d.explanation and "30 s timeout" in d.explanation
    assert d.user_notice is None


def test_the_default_timeout_applies_when_the_call_gave_none() -> None:
    d = run(_terminal_tail(), jobs=job("c1", ProcessState.RUNNING, None, started=ago(9)))
    assert d.settled[0].deadline == ago(9) + 180


@pytest.mark.parametrize(
    ("state", "reason", "words"),
    [
        (ProcessState.KILLED, "killed", "ended without an exit status (killed)"),
        (ProcessState.LOST, "gone while the gateway was down", "ended without an exit status"),
    ],
)
def test_a_job_gone_without_an_exit_status_leaves_the_call_unknown(
    state: ProcessState, reason: str, words: str
) -> None:
    d = run(_terminal_tail(), jobs=job("c1", state, None, end_reason=reason))
    expect(d, V.AMBIGUOUS_TOOL, A.HOLD)
    assert words in d.explanation
    assert d.settled[0].how is Settlement.UNKNOWN


def test_a_call_with_no_job_recorded_is_unknown() -> None:
    d = run(_terminal_tail())
    expect(d, V.AMBIGUOUS_TOOL, A.HOLD)
    assert "no job was recorded for this call" in d.explanation


def test_a_job_older_than_its_call_is_not_taken_for_its_evidence() -> None:
    # Tool call ids are only unique within a turn: a job started before this call was made
    # was started by an older call that happened to have the same id.
    d = run(_terminal_tail(), jobs=job("c1", exit_code=0, started=ago(600)))
    expect(d, V.AMBIGUOUS_TOOL, A.HOLD)


def test_a_tool_that_starts_no_job_stays_unknown() -> None:
    tail = [user("write it", ago(30)), calls(ago(10), call("write_file", "c1", path="x"))]
    d = run(tail, jobs=job("c1"))
    expect(d, V.AMBIGUOUS_TOOL, A.HOLD)
    assert "write_file leaves no record of its effect" in d.explanation


def test_a_background_start_is_settled_by_its_job_existing() -> None:
    d = run(_terminal_tail(background=True), jobs=job("c1", ProcessState.RUNNING, None))
    expect(d, V.RESUMABLE, A.RESUME)
    (settled,) = d.settled
    assert settled.how is Settlement.STARTED
    assert settled.result is not None
    assert json.loads(settled.result)["process_id"] == "proc_c1"


def test_an_interrupted_result_is_settled_by_the_exit_status_after_it() -> None:
    # An in-process cancel wrote "effect unknown"; the job then finished before the kill.
    tail = [
        *_terminal_tail(),
        result("c1", ago(5), kind=MessageKind.TOOL_INTERRUPTED),
    ]
    d = run(tail, jobs=job("c1", exit_code=0))
    expect(d, V.RESUMABLE, A.RESUME)
    assert d.settled[0].how is Settlement.FINISHED


def test_a_recovered_result_resolves_the_call_on_the_next_boot() -> None:
    tail = [*_terminal_tail(), result("c1", ago(5), kind=MessageKind.TOOL_RECOVERED)]
    d = run(tail)
    expect(d, V.RESUMABLE, A.RESUME)
    assert d.settled == ()


def test_one_unknown_call_beside_a_finished_one_is_ambiguous_but_both_are_reported() -> None:
    tail = [
        user("deploy", ago(30)),
        calls(ago(10), call("terminal", "c1", command="make"), call("deploy", "c2")),
    ]
    d = run(tail, jobs=job("c1", exit_code=0))
    expect(d, V.AMBIGUOUS_TOOL, A.HOLD)
    assert [(s.call_id, s.how) for s in d.settled] == [
        ("c1", Settlement.FINISHED),
        ("c2", Settlement.UNKNOWN),
    ]
    assert d.unresolved_tools == ("deploy",)


def test_a_running_job_beside_an_open_question_waits_for_the_job() -> None:
    tail = [
        user("deploy", ago(30)),
        calls(ago(10), call("terminal", "c1", command="make"), call("clarify", "c2")),
    ]
    d = run(tail, jobs=job("c1", ProcessState.RUNNING, None))
    expect(d, V.TOOL_RUNNING, A.AWAIT_JOB)


def test_a_finished_job_beside_an_open_question_waits_for_the_user() -> None:
    tail = [
        user("deploy", ago(30)),
        calls(ago(10), call("terminal", "c1", command="make"), call("clarify", "c2")),
    ]
    d = run(tail, jobs=job("c1", exit_code=0))
    expect(d, V.AWAITING_USER, A.WAIT)
    assert d.settled[0].how is Settlement.FINISHED  # its result is still recorded


@pytest.mark.parametrize(
    ("gate", "action"),
    [(Gate.SAFE, A.AWAIT_JOB), (Gate.OPERATOR, A.AWAIT_JOB), (Gate.OFF, A.HOLD)],
)
def test_waiting_for_a_job_under_each_gate(gate: Gate, action: RecoveryAction) -> None:
    d = run(
        _terminal_tail(),
        jobs=job("c1", ProcessState.RUNNING, None),
        policy=RecoveryPolicy(gate=gate),
    )
    expect(d, V.TOOL_RUNNING, action)


# --------------------------------------------------------------------------------------------
# What the user is told when their request is not resumed automatically: once per episode,
# never for a turn that completed.


def test_a_held_request_tells_the_user_once_quoting_it() -> None:
    tail = [user("run the nightly report", ago(30)), calls(ago(10), call("deploy", "c1"))]
    d = run(tail)
    expect(d, V.AMBIGUOUS_TOOL, A.HOLD)
    assert d.told is Told.HELD
    assert d.user_notice == (
        "⚠️ Your request “run the nightly report” was interrupted by a restart. An operator "
        "will review it before I continue."
    )
    again = run(tail, record=dataclasses.replace(PENDING, told=Told.HELD))
    assert (again.user_notice, again.told) == (None, None)


def test_a_stale_request_tells_the_user_to_send_it_again() -> None:
    d = run([user("pip install sdk", ago(3 * HOUR))])
    expect(d, V.STALE, A.CLEAR)
    assert d.user_notice == (
        "⚠️ Your request “pip install sdk” was interrupted by a restart and not resumed "
        "because it was 3.0 h old. Send it again if you still need it."
    )
    assert d.told is Told.CLEARED


@pytest.mark.parametrize(
    "scenario",
    [
        {"tail": [user("q", ago(20)), assistant("a", ago(10))]},  # completed
        {"tail": fresh_question()},  # resumed: the answer will come
        {"tail": fresh_question(), "origin": None},  # nowhere to say it
        {"tail": [user("q", ago(20)), calls(ago(10), call("clarify", "c1"))]},  # asked
    ],
)
def test_no_notice_where_there_is_nothing_to_tell(scenario: dict[str, Any]) -> None:
    d = run(**scenario)
    assert (d.user_notice, d.told) == (None, None)


def test_notices_are_off_with_notify_user_false() -> None:
    tail = [user("q", ago(20)), calls(ago(10), call("deploy", "c1"))]
    d = run(tail, policy=RecoveryPolicy(notify_user=False))
    expect(d, V.AMBIGUOUS_TOOL, A.HOLD)
    assert (d.user_notice, d.told) == (None, None)


def test_a_held_notice_turn_tells_nobody() -> None:
    # The gateway's own work (a background job's notice) is not something the user asked.
    tail = [
        user("build it", ago(300)),
        assistant("started", ago(290)),
        user("[job proc_1 finished]", ago(20), kind=MessageKind.NOTICE),
        calls(ago(10), call("deploy", "c1")),
    ]
    d = run(tail)
    expect(d, V.AMBIGUOUS_TOOL, A.HOLD)
    assert d.user_notice is None


def test_a_question_that_never_reached_the_user_tells_them_to_reply() -> None:
    tail = [
        user("plan the migration", ago(60)),
        calls(ago(20), call("clarify", "c1")),
        result("c1", ago(10), kind=MessageKind.CLARIFY_UNDELIVERED),
    ]
    d = run(tail)
    expect(d, V.AWAITING_USER, A.WAIT)
    assert d.told is Told.WAITING
    assert d.user_notice is not None and "“plan the migration”" in d.user_notice


def test_a_long_request_is_quoted_short_and_first_line_only() -> None:
    text = "please " + "x" * 200 + "\nsecond line"
    d = run([user(text, ago(20)), calls(ago(10), call("deploy", "c1"))])
    assert d.user_notice is not None
    quoted = d.user_notice.split("“")[1].split("”")[0]
    assert len(quoted) == 60 and quoted.endswith("…") and "second" not in quoted


def test_a_completed_turn_held_by_the_attempt_limit_tells_nobody() -> None:
    # Found by the property test: under gate "all" a completed turn is "resumed", and an
    # exhausted attempt limit turns that into a hold; the user must still hear nothing.
    tail = [user("q", ago(20)), assistant("a", ago(10))]
    d = run(tail, policy=RecoveryPolicy(gate=Gate.ALL, max_attempts=0))
    expect(d, V.COMPLETE, A.HOLD)
    assert (d.user_notice, d.told) == (None, None)

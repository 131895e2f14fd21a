"""Property tests for the pure recovery decision: it is total, and its safety rules hold for any
transcript tail, recovery record, clock reading and policy.

Rows are drawn two ways: fully arbitrary (garbage roles, kinds, finish reasons, duplicate or empty
tool-call ids, orphan results, missing or absurd timestamps) and as conversation-shaped pieces
(user turns, answers, tool-call blocks with some of their results), so that both the defensive
paths and the ordinary verdicts are reached often.

Not covered here: tool-call arguments nested deeply enough to make json.loads raise
RecursionError (see the xfail in test_recovery_decision.py).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from typing import Any

from hypothesis import assume, given, settings
from hypothesis import strategies as st

from gateway_core.model import (
    Decision,
    FinishReason,
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
from gateway_core.recovery import RecoveryPolicy, classify, decide, gate_action, loop_guard_tripped
from gateway_core.recovery.policy import DEFAULT_READ_ONLY_CALLS, DEFAULT_USER_WAIT_TOOLS

V = Verdict
A = RecoveryAction
PROPS = settings(max_examples=300, deadline=None)

NOW = 1_700_000_000.0
FINAL_FINISHES = ("stop", "length", "error", "end_turn", "end", "completed")

# --------------------------------------------------------------------------------------------
# Strategies

finite = st.floats(allow_nan=False, allow_infinity=False)
garbage = st.text(max_size=8)

roles = st.one_of(st.sampled_from([r.value for r in Role]), garbage)
kinds = st.one_of(st.sampled_from([k.value for k in MessageKind]), garbage)
finishes = st.one_of(
    st.none(),
    st.sampled_from([f.value for f in FinishReason] + ["end_turn", "end", "completed"]),
    garbage,
)
contents = st.one_of(st.sampled_from(["", " ", "\n", "ok", "the answer"]), st.text(max_size=12))
# Few ids, so that calls and results often match, collide, or are empty.
call_ids = st.sampled_from(["", "a", "b", "c", "d"])
tool_names = st.one_of(
    st.sampled_from(["process", "terminal", "clarify", "read_file", "write_file"]), garbage
)
arguments = st.one_of(
    st.sampled_from(
        [
            "{}",
            '{"action": "list"}',
            '{"action": "poll"}',
            '{"action": "log"}',
            '{"action": "wait"}',
            '{"action": "kill"}',
            '{"action": 3}',
            '{"action": null}',
            "[]",
            "null",
            '"list"',
            "{",
            "",
        ]
    ),
    st.text(max_size=20),
    st.builds(lambda action: json.dumps({"action": action}), garbage),
)
tool_calls = st.lists(st.builds(ToolCall, call_ids, tool_names, arguments), max_size=4).map(tuple)


def timestamps(now: float = NOW) -> st.SearchStrategy[float | None]:
    """None, plausible ages around the defaults' boundaries, and any finite float at all."""
    plausible = st.floats(min_value=-1e3, max_value=1e5).map(lambda age: now - age)
    return st.one_of(
        st.none(),
        st.sampled_from(
            [0.0, 1.0, 299.0, 300.0, 301.0, 3599.0, 3600.0, 3601.0, -300.0, -301.0]
        ).map(lambda age: now - age),
        plausible,
        plausible,  # listed twice: most rows should carry an ordinary recent timestamp
        st.floats(min_value=-1e5, max_value=1e8).map(lambda age: now - age),
        finite,
    )


def row(
    role: st.SearchStrategy[str] = roles,
    kind: st.SearchStrategy[str] = kinds,
    created_at: st.SearchStrategy[float | None] | None = None,
) -> st.SearchStrategy[Message]:
    return st.builds(
        Message,
        session_id=st.just(1),
        seq=st.just(0),
        role=role,
        content=contents,
        kind=kind,
        tool_calls=tool_calls,
        tool_call_id=st.one_of(st.none(), call_ids),
        tool_name=st.one_of(st.none(), tool_names),
        finish_reason=finishes,
        generation=st.integers(0, 3),
        created_at=timestamps() if created_at is None else created_at,
        malformed=st.sampled_from([False, False, False, True]),
    )


def _msg(role: str, content: str = "", **fields: Any) -> Message:
    return Message(session_id=1, seq=0, role=role, content=content, **fields)


user_rows = st.builds(
    lambda text, kind, at: _msg(Role.USER, content=text, kind=kind, created_at=at),
    contents,
    st.sampled_from([MessageKind.TEXT, MessageKind.NOTICE, MessageKind.RECOVERY_NOTE]),
    timestamps(),
)
answer_rows = st.builds(
    lambda text, finish, at: _msg(
        Role.ASSISTANT, content=text, finish_reason=finish, created_at=at
    ),
    contents,
    finishes,
    timestamps(),
)


@st.composite
def tool_blocks(draw: st.DrawFn) -> list[Message]:
    """An assistant tool-call row followed by results for some of its calls (or other ids)."""
    asked = draw(tool_calls)
    at = draw(timestamps())
    rows = [
        _msg(
            Role.ASSISTANT,
            tool_calls=asked,
            finish_reason=FinishReason.TOOL_CALLS,
            created_at=at,
            malformed=draw(st.booleans()) and draw(st.booleans()),
        )
    ]
    answered = [c.id for c in asked] + ["zz"]
    for _ in range(draw(st.integers(0, len(asked) + 1))):
        kind = draw(
            st.sampled_from(
                [
                    MessageKind.TEXT,
                    MessageKind.TOOL_INTERRUPTED,
                    MessageKind.CLARIFY_TIMEOUT,
                    MessageKind.CLARIFY_UNDELIVERED,
                ]
            )
        )
        rows.append(
            _msg(
                Role.TOOL,
                content="result",
                kind=kind,
                tool_call_id=draw(st.sampled_from(answered)),
                created_at=draw(timestamps()),
            )
        )
    return rows


# Rows that are not evidence: system rows (any kind) and meta rows (any role).
skip_rows = st.one_of(row(role=st.just(Role.SYSTEM)), row(kind=st.just(MessageKind.META)))

pieces = st.one_of(
    row().map(lambda m: [m]),
    user_rows.map(lambda m: [m]),
    answer_rows.map(lambda m: [m]),
    tool_blocks(),
    tool_blocks(),  # listed twice: tool blocks carry most of the table's rules
    skip_rows.map(lambda m: [m]),
)


def numbered(rows: Sequence[Message]) -> list[Message]:
    return [dataclasses.replace(m, seq=i) for i, m in enumerate(rows, start=1)]


tails = st.lists(pieces, min_size=1, max_size=6).map(
    lambda ps: numbered([m for p in ps for m in p])
)

# Unknown stored states are decoded to HELD by the store (test_store_tables), so the decision
# only ever sees the enum.
states = st.sampled_from(list(RecoveryState))
records = st.builds(
    RecoveryRecord,
    session_id=st.just(1),
    state=states,
    reason=st.one_of(st.none(), garbage),
    marked_at=st.one_of(st.none(), finite),
    attempts=st.integers(-2, 8),
    last_attempt_at=st.one_of(st.none(), finite),
)
origins = st.one_of(st.none(), st.just(Origin("telegram", "42", "t1", "7", "ada")))
nows = st.one_of(st.just(NOW), st.floats(min_value=NOW - 1e5, max_value=NOW + 1e8), finite)
name_sets = st.frozensets(
    st.sampled_from(["process", "terminal", "clarify", "read_file"]), max_size=3
)
policies = st.builds(
    RecoveryPolicy,
    gate=st.sampled_from(list(Gate)),
    freshness=st.one_of(st.just(0.0), st.just(3600.0), st.floats(min_value=0, max_value=1e8)),
    future_tolerance=st.one_of(st.just(300.0), st.floats(min_value=0, max_value=1e6)),
    max_attempts=st.integers(0, 5),
    read_only_tools=name_sets,
    read_only_calls=st.one_of(
        st.just(DEFAULT_READ_ONLY_CALLS),
        st.frozensets(st.sampled_from(["process:list", "process:kill", "terminal:run"])),
    ),
    user_wait_tools=st.one_of(st.just(DEFAULT_USER_WAIT_TOOLS), name_sets),
)


def decide_(
    record: RecoveryRecord,
    origin: Origin | None,
    tail: Sequence[Message],
    now: float,
    policy: RecoveryPolicy,
    loop_guard: bool = False,
) -> Decision:
    return decide(record, origin, tail, now, policy, loop_guard_tripped=loop_guard)


# --------------------------------------------------------------------------------------------
# (a) total: never raises, always a well-formed Decision


@PROPS
@given(records, origins, tails, nows, policies, st.booleans())
def test_decide_is_total(
    record: RecoveryRecord,
    origin: Origin | None,
    tail: list[Message],
    now: float,
    policy: RecoveryPolicy,
    loop_guard: bool,
) -> None:
    found = classify(record, origin, tail, now, policy)
    d = decide_(record, origin, tail, now, policy, loop_guard)
    assert isinstance(found.verdict, Verdict)
    assert isinstance(d, Decision)
    assert isinstance(d.verdict, Verdict)
    assert isinstance(d.action, RecoveryAction)
    assert d.verdict is found.verdict
    assert isinstance(d.explanation, str) and d.explanation.strip()
    assert all(isinstance(name, str) for name in d.unresolved_tools)
    # (i) a known age is never negative
    if d.tail_age is not None:
        assert d.tail_age >= 0
        assert d.tail_at is not None
    if d.unresolved_tools:
        assert d.verdict is V.AMBIGUOUS_TOOL
    # decide() is the gate's action, except that a RESUME may be turned into a HOLD, and a
    # held record stays held whatever the gate says (unless its turn completed)
    gated = gate_action(d.verdict, policy.gate)
    held = record.state == RecoveryState.HELD and d.verdict is not V.COMPLETE
    assert d.action is gated or (d.action is A.HOLD and (gated is A.RESUME or held))
    # the user is told only when the request is not resumed, and never about a completed turn
    if d.user_notice is not None:
        assert d.told is not None and d.told != record.told
        assert d.action in (A.HOLD, A.CLEAR, A.WAIT)
        assert d.verdict is not V.COMPLETE and origin is not None
    # the first rows of the table depend on the record and origin only
    if record.state == RecoveryState.SUSPENDED:
        assert (d.verdict, d.action) == (V.SUSPENDED, A.SKIP)
    elif origin is None:
        assert (d.verdict, d.action) == (V.NO_ORIGIN, A.HOLD)


# (b) re-marking a session (new marked_at, new reason) never changes the decision


@PROPS
@given(
    records,
    origins,
    tails,
    nows,
    policies,
    st.one_of(st.none(), finite),
    st.one_of(st.none(), garbage),
)
def test_remarking_changes_nothing(
    record: RecoveryRecord,
    origin: Origin | None,
    tail: list[Message],
    now: float,
    policy: RecoveryPolicy,
    marked_at: float | None,
    reason: str | None,
) -> None:
    before = decide_(record, origin, tail, now, policy)
    after = decide_(
        dataclasses.replace(record, marked_at=marked_at, reason=reason), origin, tail, now, policy
    )
    assert (after.verdict, after.action) == (before.verdict, before.action)
    assert (after.tail_at, after.tail_age, after.unresolved_tools) == (
        before.tail_at,
        before.tail_age,
        before.unresolved_tools,
    )


# (c) under gate safe, a tail whose last replayable row is a final answer is never resumed

final_answers = st.builds(
    lambda text, finish, kind, at: _msg(
        Role.ASSISTANT, content=text, finish_reason=finish, kind=kind, created_at=at
    ),
    st.text(min_size=1, max_size=12).filter(lambda t: t.strip() != ""),
    st.sampled_from(FINAL_FINISHES),
    kinds.filter(lambda k: k != MessageKind.META),
    timestamps(),
)


@PROPS
@given(
    records,
    origins,
    tails,
    final_answers,
    st.lists(skip_rows, max_size=3),
    nows,
    policies,
    st.booleans(),
)
def test_final_answer_is_never_resumed_under_safe(
    record: RecoveryRecord,
    origin: Origin | None,
    before: list[Message],
    answer: Message,
    after: list[Message],
    now: float,
    policy: RecoveryPolicy,
    loop_guard: bool,
) -> None:
    tail = numbered([*before, answer, *after])
    d = decide_(record, origin, tail, now, dataclasses.replace(policy, gate=Gate.SAFE), loop_guard)
    assert d.action is not A.RESUME
    if record.state != RecoveryState.SUSPENDED and origin is not None:
        assert (d.verdict, d.action) == (V.COMPLETE, A.CLEAR)


# (d) under safe or operator, a tail older than the freshness window is never resumed


@PROPS
@given(
    records,
    origins,
    tails,
    row(
        # Not our recovery note either: freshness is read from the newest row that is not
        # one, so an old note after a fresh request is a fresh tail (and may be resumed).
        kind=kinds.filter(lambda k: k not in (MessageKind.META, MessageKind.RECOVERY_NOTE)),
        role=roles.filter(lambda r: r != "system"),
        created_at=st.just(0.0),
    ),
    st.lists(skip_rows, max_size=3),
    st.floats(min_value=NOW - 1e5, max_value=NOW + 1e8),
    st.floats(min_value=1e-3, max_value=1e8),
    st.floats(min_value=1e-3, max_value=1e8),
    policies,
    st.sampled_from([Gate.SAFE, Gate.OPERATOR]),
)
def test_old_tail_is_never_resumed_under_safe_or_operator(
    record: RecoveryRecord,
    origin: Origin | None,
    before: list[Message],
    last: Message,
    after: list[Message],
    now: float,
    freshness: float,
    beyond: float,
    policy: RecoveryPolicy,
    gate: Gate,
) -> None:
    tail_at = now - freshness - beyond
    assume(now - tail_at > freshness)
    tail = numbered([*before, dataclasses.replace(last, created_at=tail_at), *after])
    d = decide_(
        record, origin, tail, now, dataclasses.replace(policy, gate=gate, freshness=freshness)
    )
    assert d.action is not A.RESUME
    assert d.verdict is not V.RESUMABLE


# (e) a suspended session is never resumed, under any gate


@PROPS
@given(records, origins, tails, nows, policies, st.booleans())
def test_suspended_is_never_resumed(
    record: RecoveryRecord,
    origin: Origin | None,
    tail: list[Message],
    now: float,
    policy: RecoveryPolicy,
    loop_guard: bool,
) -> None:
    suspended = dataclasses.replace(record, state=RecoveryState.SUSPENDED)
    d = decide_(suspended, origin, tail, now, policy, loop_guard)
    assert (d.verdict, d.action) == (V.SUSPENDED, A.SKIP)


# (f) system and meta rows are not evidence: adding them changes nothing


@PROPS
@given(
    records,
    origins,
    tails,
    st.lists(st.tuples(st.integers(min_value=0), skip_rows), min_size=1, max_size=4),
    nows,
    policies,
)
def test_system_and_meta_rows_change_nothing(
    record: RecoveryRecord,
    origin: Origin | None,
    tail: list[Message],
    extra: list[tuple[int, Message]],
    now: float,
    policy: RecoveryPolicy,
) -> None:
    base = decide_(record, origin, tail, now, policy)
    appended = decide_(record, origin, [*tail, *(m for _, m in extra)], now, policy)
    interleaved = list(tail)
    for position, m in extra:
        interleaved.insert(position % (len(interleaved) + 1), m)
    inserted = decide_(record, origin, interleaved, now, policy)
    assert appended.verdict is base.verdict
    assert inserted.verdict is base.verdict
    assert appended.action is inserted.action is base.action
    assert (appended.tail_at, appended.tail_age) == (base.tail_at, base.tail_age)


# (g) with the loop guard tripped, nothing is resumed


@PROPS
@given(records, origins, tails, nows, policies)
def test_tripped_loop_guard_never_resumes(
    record: RecoveryRecord,
    origin: Origin | None,
    tail: list[Message],
    now: float,
    policy: RecoveryPolicy,
) -> None:
    free = decide_(record, origin, tail, now, policy, loop_guard=False)
    guarded = decide_(record, origin, tail, now, policy, loop_guard=True)
    assert guarded.action is not A.RESUME
    assert guarded.verdict is free.verdict
    if free.action is A.RESUME:
        assert guarded.action is A.HOLD
        assert "loop guard" in guarded.explanation
    else:
        assert guarded.action is free.action


# (h) gate operator never resumes


@PROPS
@given(records, origins, tails, nows, policies)
def test_operator_gate_never_resumes(
    record: RecoveryRecord,
    origin: Origin | None,
    tail: list[Message],
    now: float,
    policy: RecoveryPolicy,
) -> None:
    d = decide_(record, origin, tail, now, dataclasses.replace(policy, gate=Gate.OPERATOR))
    assert d.action is not A.RESUME


# Attempts and an earlier hold also stop a resume, whatever the evidence.


@PROPS
@given(records, origins, tails, nows, policies)
def test_exhausted_or_held_records_never_resume(
    record: RecoveryRecord,
    origin: Origin | None,
    tail: list[Message],
    now: float,
    policy: RecoveryPolicy,
) -> None:
    exhausted = dataclasses.replace(record, attempts=policy.max_attempts)
    held = dataclasses.replace(record, state=RecoveryState.HELD)
    assert decide_(exhausted, origin, tail, now, policy).action is not A.RESUME
    assert decide_(held, origin, tail, now, policy).action is not A.RESUME


# (j) the loop guard is monotonic: an older boot added to the history never un-trips it

boot_times = st.lists(st.floats(min_value=-1e9, max_value=1e9), max_size=8)


@PROPS
@given(
    boot_times,
    st.floats(min_value=-1e9, max_value=1e9),
    st.floats(min_value=0, max_value=1e4),
    st.integers(-1, 6),
)
def test_loop_guard_is_monotonic(
    times: list[float], older: float, window: float, boots: int
) -> None:
    if loop_guard_tripped(times, window, boots):
        assert loop_guard_tripped([older, *times], window, boots)


@PROPS
@given(boot_times, st.floats(min_value=0, max_value=1e4), st.integers(1, 6))
def test_loop_guard_reads_the_chain_ending_at_the_current_boot(
    times: list[float], window: float, boots: int
) -> None:
    # Independent statement of the rule: count back from the last boot while gaps <= window.
    chain = 0
    for i in range(len(times) - 1, -1, -1):
        if i < len(times) - 1 and abs(times[i + 1] - times[i]) > window:
            break
        chain += 1
    assert loop_guard_tripped(times, window, boots) is (chain >= boots)

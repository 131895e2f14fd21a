"""The startup scan reads a short tail and further back only where needed, yet decides exactly
as the whole transcript would.

Property tests generate conversation-shaped transcripts (user messages, notices, recovery
notes, answers, tool-call blocks with and without their results, interrupted and timed-out
calls, system and meta rows) of sizes around the short tail's boundary, store them in a real
SQLite file, and compare the scan's decisions with `decide()` on each transcript read whole.
"""

from __future__ import annotations

import asyncio
import dataclasses
import tempfile
from collections.abc import Sequence
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway_core.clock import ManualClock
from gateway_core.model import (
    Decision,
    FinishReason,
    Gate,
    Message,
    MessageKind,
    NewMessage,
    Origin,
    RecoveryRecord,
    RecoveryState,
    Role,
    SessionKey,
    ToolCall,
)
from gateway_core.recovery import RecoveryPolicy, decide
from gateway_core.recovery.evidence import request_index
from gateway_core.recovery.startup import scan
from gateway_core.recovery.tails import request_tails
from gateway_core.store import Store
from gateway_core.store.codec import decode_message, message_params
from tests.support.transcripts import answer, asks, call, result, user

NOW = 1_800_000_000.0
ORIGIN = Origin("loopback", "chat")

# --------------------------------------------------------------------------------------------
# Strategies: rows the gateway writes, in the shapes a conversation has.

# Ages around the freshness window (3600 s) and the future tolerance (300 s).
ages = st.one_of(
    st.sampled_from([0.0, 10.0, 3599.0, 3601.0, 7200.0, -299.0, -301.0]),
    st.floats(min_value=-1000, max_value=10_000),
)
texts = st.sampled_from(["", " ", "build it", "deploy prod", "what now?"])
call_ids = st.sampled_from(["a", "b", "c", "", "a"])  # repeats: duplicate and empty ids
tool_names = st.sampled_from(["terminal", "process", "clarify", "read_file"])
arguments = st.sampled_from(
    ['{"command": "make"}', '{"action": "poll"}', '{"action": "kill"}', "{}", "{"]
)
tool_calls = st.lists(st.builds(ToolCall, call_ids, tool_names, arguments), min_size=1, max_size=5)


@st.composite
def user_rows(draw: st.DrawFn) -> list[NewMessage]:
    kind = draw(st.sampled_from([MessageKind.TEXT, MessageKind.NOTICE, MessageKind.RECOVERY_NOTE]))
    return [user(draw(texts), NOW - draw(ages), kind=kind)]


@st.composite
def answer_rows(draw: st.DrawFn) -> list[NewMessage]:
    finish = draw(st.sampled_from([FinishReason.STOP, FinishReason.ERROR, "length", None, "x"]))
    return [answer(draw(texts), NOW - draw(ages), finish=finish)]  # type: ignore[arg-type]


@st.composite
def tool_blocks(draw: st.DrawFn) -> list[NewMessage]:
    """An assistant row asking for tools, then results for some of its calls (or for none)."""
    calls = draw(tool_calls)
    at = NOW - draw(ages)
    rows = [asks(*calls, at=at)]
    answered = [c.id for c in calls] + ["zz"]  # "zz": a result that answers no call
    for _ in range(draw(st.integers(0, len(calls) + 1))):
        kind = draw(
            st.sampled_from(
                [
                    MessageKind.TEXT,
                    MessageKind.TEXT,
                    MessageKind.TOOL_INTERRUPTED,
                    MessageKind.CLARIFY_TIMEOUT,
                    MessageKind.CLARIFY_UNDELIVERED,
                ]
            )
        )
        rows.append(result(draw(st.sampled_from(answered)), "out", at + 1, kind=kind))
    return rows


@st.composite
def other_rows(draw: st.DrawFn) -> list[NewMessage]:
    """Rows that are not evidence (system, meta), and one role this version does not know."""
    role, kind = draw(
        st.sampled_from(
            [
                (Role.SYSTEM, MessageKind.TEXT),
                (Role.USER, MessageKind.META),
                (Role.ASSISTANT, MessageKind.META),
                ("robot", MessageKind.TEXT),
            ]
        )
    )
    return [NewMessage(role, "x", kind=kind, created_at=NOW - draw(ages))]


pieces = st.one_of(user_rows(), answer_rows(), tool_blocks(), tool_blocks(), other_rows())
transcripts = st.lists(pieces, max_size=8).map(lambda ps: [m for p in ps for m in p])
policies = st.builds(
    RecoveryPolicy,
    gate=st.sampled_from(list(Gate)),
    freshness=st.sampled_from([0.0, 3600.0]),
    max_attempts=st.integers(1, 3),
    # The short tail's size: around the row counts of the generated transcripts.
    tail_rows=st.integers(1, 6),
    notify_user=st.booleans(),
)


@dataclasses.dataclass(frozen=True)
class Case:
    transcript: list[NewMessage]
    attempts: int  # resumes begun before this boot
    suspended: bool
    has_origin: bool


cases = st.builds(
    Case,
    transcripts,
    st.integers(0, 3),
    st.sampled_from([False, False, False, True]),
    st.sampled_from([True, True, True, False]),
)


# --------------------------------------------------------------------------------------------
# On a real store: the scan against decide() on each whole transcript.


async def _decisions(
    directory: Path, sessions: Sequence[Case], policy: RecoveryPolicy
) -> tuple[list[Decision], list[Decision]]:
    """(the scan's decisions, decide() on each whole transcript), in session order."""
    async with await Store.open(directory / "s.db", clock=ManualClock(NOW)) as store:
        for n, case in enumerate(sessions):
            origin = ORIGIN if case.has_origin else None
            session = await store.sessions.ensure(SessionKey("loopback", f"c{n}"), origin)
            if case.transcript:
                await store.transcript.append(session.id, case.transcript)
            await store.recovery.mark(session.id, "crash")
            for _ in range(case.attempts):
                await store.recovery.begin_attempt(session.id)
            if case.suspended:
                await store.recovery.suspend(session.id, "operator")
        candidates = await scan(store, NOW, policy)
        # The same from reads side by side on several connections (the cold boot's way), in
        # chunks of one or two sessions.
        assert await scan(store, NOW, policy, read_connections=3) == candidates
        whole: list[Decision] = []
        for candidate in candidates:
            record, session = candidate.record, candidate.session
            transcript = await store.transcript.all(session.id)
            last_turn = (await store.turns.last([session.id])).get(session.id)
            whole.append(
                decide(record, session.origin, transcript, NOW, policy, last_turn=last_turn)
            )
        return [c.decision for c in candidates], whole


@settings(max_examples=120, deadline=None)
@given(st.lists(cases, min_size=1, max_size=5), policies)
def test_the_scan_decides_as_each_whole_transcript_would(
    sessions: list[Case], policy: RecoveryPolicy
) -> None:
    with tempfile.TemporaryDirectory() as directory:
        scanned, whole = asyncio.run(_decisions(Path(directory), sessions, policy))
    assert scanned == whole


# --------------------------------------------------------------------------------------------
# The reason it holds, on values alone: the rows from the request on decide as the whole does.


def _stored(rows: Sequence[NewMessage]) -> list[Message]:
    return [decode_message(message_params(1, i, m, NOW)) for i, m in enumerate(rows, start=1)]


records = st.builds(
    RecoveryRecord,
    session_id=st.just(1),
    state=st.sampled_from(list(RecoveryState)),
    attempts=st.integers(0, 4),
)


@settings(max_examples=400, deadline=None)
@given(transcripts, records, st.booleans(), policies, st.booleans())
def test_the_rows_from_the_request_on_decide_as_the_whole_transcript(
    rows: list[NewMessage],
    record: RecoveryRecord,
    has_origin: bool,
    policy: RecoveryPolicy,
    loop_guard: bool,
) -> None:
    whole = _stored(rows)
    start = request_index(whole)
    suffix = whole if start is None else whole[start:]
    origin = ORIGIN if has_origin else None

    def decided(tail: Sequence[Message]) -> Decision:
        return decide(record, origin, tail, NOW, policy, loop_guard_tripped=loop_guard)

    assert decided(suffix) == decided(whole)


# --------------------------------------------------------------------------------------------
# Examples a short tail that never read further back would get wrong.


async def _one(store: Store, rows: Sequence[NewMessage]) -> int:
    session = await store.sessions.ensure(SessionKey("loopback", "one"), ORIGIN)
    await store.transcript.append(session.id, list(rows))
    await store.recovery.mark(session.id, "crash")
    return session.id


async def test_a_held_request_far_behind_its_tool_calls_is_still_quoted(store: Store) -> None:
    """The user's request is 13 rows back: the notice that their request is held quotes it."""
    rows = [user("rotate the keys", NOW - 120)]
    for i in range(5):
        rows += [asks(call("process", f"p{i}", action="poll"), at=NOW - 100), result(f"p{i}")]
    rows += [
        asks(call("terminal", "t1", command="./rotate.sh"), at=NOW - 60),
        result("t1", "[interrupted]", NOW - 50, kind=MessageKind.TOOL_INTERRUPTED),
    ]
    await _one(store, rows)
    (candidate,) = await scan(store, NOW, RecoveryPolicy(tail_rows=4))
    decision = candidate.decision
    assert decision.verdict == "ambiguous-tool"
    assert decision.user_notice is not None and "rotate the keys" in decision.user_notice


async def test_results_of_a_wide_tool_block_are_matched_with_their_call(store: Store) -> None:
    """Eight results after their call: a 4-row tail would see orphan results (ambiguous)."""
    polls = [call("process", f"p{i}", action="poll") for i in range(9)]
    rows = [user("watch", NOW - 60), asks(*polls, at=NOW - 50)]
    rows += [result(f"p{i}", "running", NOW - 40) for i in range(8)]  # p8 unanswered
    await _one(store, rows)
    (candidate,) = await scan(store, NOW, RecoveryPolicy(tail_rows=4))
    assert candidate.decision.verdict == "resumable"
    assert "read-only process" in candidate.decision.explanation


async def test_only_the_rows_from_the_request_on_are_handed_on(store: Store) -> None:
    older = [user("first", NOW - 90), answer("done", NOW - 80)]
    session_id = await _one(store, [*older, user("second", NOW - 30), answer("hm", NOW - 20)])
    empty = await store.sessions.ensure(SessionKey("loopback", "empty"), ORIGIN)
    no_request = await store.sessions.ensure(SessionKey("loopback", "bare"), ORIGIN)
    await store.transcript.append(no_request.id, [answer(f"a{i}", NOW - 9) for i in range(7)])
    tails = await request_tails(
        store.transcript, [session_id, empty.id, no_request.id], first_rows=2
    )
    assert [m.content for m in tails[session_id]] == ["second", "hm"]
    assert tails[empty.id] == []
    # No request anywhere: the whole transcript, read by widening until it ran out.
    assert [m.content for m in tails[no_request.id]] == [f"a{i}" for i in range(7)]

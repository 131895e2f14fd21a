"""Running one agent turn, durably.

Start (one transaction): the session's generation grows by one, the turn is marked running,
the input row is appended (the user's message, or our recovery note for a resume), and the
inbox item is marked done. A crash before this commit leaves the inbox item to replay; after
it, the turn marker tells the next boot a turn died here.

During: every agent event is appended as a transcript row before the agent is asked for the
next one, so a tool call is on disk before the tool runs.

End (one transaction): the answer row, its outbox row, the recovery marker cleared (the turn
really completed) and the turn marker cleared. An interrupted turn instead records each tool
call it left unanswered as interrupted (effect unknown) and keeps any recovery marker.

Every turn also has a row in `turns` (opened at the start, closed at the end with how it
ended): restart recovery reads it to tell a resume that was killed from one that ran to its
end. A resume turn starts only while its session is still a recovery candidate (an answer or
an operator's clear meanwhile makes it unnecessary), so approving twice cannot answer twice.
A resume whose interrupted tool call's job is still running first waits for that job (the
JobWaiter), within the call's own timeout, and is decided again before it starts.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from dataclasses import dataclass
from functools import partial
from types import AsyncGeneratorType
from typing import TYPE_CHECKING, Protocol

from gateway_core.agents.base import AgentEvent, Answer, AskTools, ToolDone, TurnContext
from gateway_core.events import BackgroundNotice, TurnFinished, TurnStarted
from gateway_core.model import (
    CANDIDATE_STATES,
    ClaimedReply,
    FinishReason,
    InboxStatus,
    Message,
    MessageKind,
    NewMessage,
    RecoveryState,
    Role,
    Session,
    ToolCall,
    TurnKind,
    TurnOutcome,
)
from gateway_core.quick_init import quick_frozen_init
from gateway_core.recovery.note import resume_note, with_note
from gateway_core.store.errors import LeaseHeld, LeaseLost
from gateway_core.store.inbox import finish_row
from gateway_core.store.job import job
from gateway_core.store.leases import acquire_row, fence_row, inbox_open_row
from gateway_core.store.outbox import claimed_reply, enqueue_row
from gateway_core.store.processes import (
    hand_over_row,
    is_consumed_row,
    owner_generation_row,
    reply_to_of_job_row,
)
from gateway_core.store.recovery_records import (
    begin_attempt_row,
    clear_row,
    finish_turn_row,
    start_turn_with_state_row,
    state_row,
)
from gateway_core.store.sessions import (
    end_turn_row,
    generation_row,
    start_turn_row,
)
from gateway_core.store.transaction import Transaction
from gateway_core.store.transcript import append_rows, insert_rows
from gateway_core.store.turns import begin_row, end_row, reply_to_row

if TYPE_CHECKING:
    from gateway_core.delivery import Deliverer
    from gateway_core.notifiers import Notifiers
    from gateway_core.runtime import Runtime

log = logging.getLogger(__name__)

HISTORY_ROWS = 200

Outcome = TurnOutcome
RequestKind = TurnKind


class JobWaits(Protocol):
    async def settle(self, session: Session) -> bool:
        """Wait for the jobs a candidate's interrupted calls started and decide again; True
        when the resume should run now."""


@dataclass(frozen=True, slots=True)
class Notice:
    """Where a notice turn comes from: a job's event stamped with the generation that owned
    the job when the event happened."""

    process_id: str
    stamp: int
    what: str  # completion | watch-match | watch-disabled
    consumes: bool  # a completion: telling the agent consumes it (exactly once)
    user_text: str = ""  # for a completion the conversation moved on from: the user is told


@quick_frozen_init
@dataclass(frozen=True, slots=True)
class TurnRequest:
    kind: RequestKind
    text: str = ""
    inbox_id: int | None = None
    notice: Notice | None = None
    # A resume whose interrupted tool call's job still runs: wait for it first.
    await_jobs: bool = False
    message_id: str | None = None  # a user's message: its platform id (answers reply to it)


@dataclass
class TurnStart:
    generation: int
    marker_state: RecoveryState | str
    marker_reason: str | None
    dropped: str | None = None  # a notice or resume not turned into a turn: why
    outbox_id: int | None = None
    # The platform id of the request this turn answers: the user's message; for a resume the
    # interrupted request; for a notice the request of the turn that started the job.
    reply_to: str | None = None
    epoch: int | None = None  # the session's lease epoch this turn writes under (a node)


@dataclass(frozen=True, slots=True)
class LeaseTerms:
    """Which node takes the session's lease in the start transaction, and for how long."""

    node_id: str
    ttl: float


class JobOwners(Protocol):
    def handed_over(self, process_id: str, generation: int, consumed: bool) -> None:
        """A notice turn took the job over (its start transaction already wrote this)."""


def _notice_instead_of_turn(
    db: Transaction, session_id: int, request: TurnRequest, now: float
) -> TurnStart | None:
    """A notice that must not become a turn, decided in the start transaction itself (so no
    tool call can consume the completion or start a turn between the check and the turn)."""
    notice = request.notice
    assert notice is not None
    current = generation_row(db, session_id)
    if notice.consumes and is_consumed_row(db, notice.process_id):
        return TurnStart(current, "none", None, dropped="dropped-consumed")
    if current == notice.stamp or owner_generation_row(db, notice.process_id) == current:
        # Fresh: nothing ran since the event, or the turn that ran since took the job over
        # (an earlier notice of the same job, or a turn that polled it).
        return None
    if not notice.consumes:
        return TurnStart(current, "none", None, dropped="dropped-stale")
    # A completion after the conversation moved on: waking the agent into a newer context
    # would be a phantom turn, and dropping it would lose the result. The transcript keeps
    # it (the agent reads it next turn) and the user gets a short notice.
    row = NewMessage(Role.USER, request.text, kind=MessageKind.NOTICE, generation=current)
    append_rows(db, session_id, [row], now)
    hand_over_row(db, notice.process_id, current, consume=True)
    reply_to = reply_to_of_job_row(db, notice.process_id)
    outbox_id = enqueue_row(
        db, session_id, current, "notice", notice.user_text, now, reply_to=reply_to
    )
    return TurnStart(current, "none", None, dropped="told-user", outbox_id=outbox_id)


def finish_turn_body(
    db: Transaction,
    session_id: int,
    generation: int,
    text: str,
    finish_reason: str | None,
    usage: tuple[int, int] | None,
    outcome: TurnOutcome,
    reply_to: str | None,
    now: float,
    *,
    direct: bool,
    claim: bool,
    fence: tuple[str, int] | None,
) -> tuple[int, bool] | None:
    """The end-of-turn transaction (a job: store/job.py): the answer row, the turn closed,
    the reply written (claimed already when `claim`: it is sent at once). Returns the
    reply's outbox id and whether it is claimed; None when a newer generation owns the
    session. fence: on a node, (node id, lease epoch), refusing the transaction unless the
    lease is still ours."""
    if fence is not None:
        fence_row(db, session_id, *fence)
    # One statement: the running-turn marker cleared if it is still ours, the session
    # touched, its newest generation and whether a recovery marker is set read (the rows
    # below need not touch the session; the record only when marked).
    current, marked = finish_turn_row(db, session_id, generation, now)
    row = NewMessage(
        Role.ASSISTANT,
        text,
        finish_reason=finish_reason,
        generation=generation,
        reply_to=reply_to,
    )
    rows = [row]
    if usage is not None:
        prompt, completion = usage
        rows.append(
            NewMessage(
                Role.SYSTEM,
                json.dumps({"prompt_tokens": prompt, "completion_tokens": completion}),
                kind=MessageKind.META,
                generation=generation,
            )
        )
    insert_rows(db, session_id, rows, now, touch_session=False)
    if current != generation:
        end_row(db, session_id, generation, TurnOutcome.SUPERSEDED, now)
        return None  # kept in the transcript, never delivered into a newer turn
    end_row(db, session_id, generation, outcome, now)
    if marked:  # the turn really completed: its session is no candidate any more
        clear_row(db, session_id, now)
    outbox_id = enqueue_row(
        db,
        session_id,
        generation,
        "reply",
        text,
        now,
        reply_to=reply_to,
        direct=direct,
        claimed=claim,
    )
    return outbox_id, claim


def start_turn_body(
    db: Transaction,
    session_id: int,
    request: TurnRequest,
    now: float,
    run_id: int | None,
    lease: LeaseTerms | None = None,
) -> TurnStart:
    """A turn's start transaction (a job: store/job.py)."""
    # First: on a node, nothing is decided or written for a session another node owns
    # (LeaseHeld rolls the whole start back; the inbox row stays for the owner).
    epoch = None if lease is None else acquire_row(db, session_id, lease.node_id, now, lease.ttl)
    inbox_id = request.inbox_id
    if lease is not None and inbox_id is not None and not inbox_open_row(db, inbox_id):
        # Queued on two nodes (the intake's and the owner's pickup): one turn starts.
        return TurnStart(generation_row(db, session_id), "none", None, dropped="taken")
    if request.notice is not None:
        instead = _notice_instead_of_turn(db, session_id, request, now)
        if instead is not None:
            return instead
    if request.kind is not RequestKind.RESUME and request.notice is None:
        # A user's message (the hot path): nothing below depends on the recovery record,
        # so one statement starts the turn (the new generation, the running-turn marker,
        # the session touched) and reads the record.
        generation, record = start_turn_with_state_row(db, session_id, now)
        state, reason = (RecoveryState.NONE, None) if record is None else record
        reply_to = request.message_id
    else:
        record = state_row(db, session_id)
        state, reason = (RecoveryState.NONE, None) if record is None else record
        if request.kind is RequestKind.RESUME and state not in CANDIDATE_STATES:
            # Answered or cleared since the resume was queued: running it would answer
            # twice.
            return TurnStart(
                generation_row(db, session_id), state, reason, dropped="no-longer-a-candidate"
            )
        if request.kind is RequestKind.RESUME:
            reply_to = reply_to_row(db, session_id)  # the interrupted request
        else:
            assert request.notice is not None
            reply_to = reply_to_of_job_row(db, request.notice.process_id)
        # One statement: the new generation, the running-turn marker, the session touched
        # (so the input row below need not touch it again).
        generation = start_turn_row(db, session_id, now)
    begin_row(db, session_id, generation, request.kind, run_id, now, reply_to)
    if request.kind is RequestKind.RESUME:
        note = NewMessage(
            Role.USER,
            resume_note(reason),
            kind=MessageKind.RECOVERY_NOTE,
            generation=generation,
        )
        insert_rows(db, session_id, [note], now, touch_session=False)
        begin_attempt_row(db, session_id, now)
    elif request.notice is not None:
        row = NewMessage(Role.USER, request.text, kind=MessageKind.NOTICE, generation=generation)
        insert_rows(db, session_id, [row], now, touch_session=False)
        hand_over_row(db, request.notice.process_id, generation, consume=request.notice.consumes)
    else:
        said = NewMessage(
            Role.USER,
            request.text,
            generation=generation,
            platform_message_id=request.message_id,
        )
        insert_rows(db, session_id, [said], now, touch_session=False)
    if request.inbox_id is not None:
        finish_row(db, request.inbox_id, InboxStatus.DONE, None, now)
    return TurnStart(generation, state, reason, reply_to=reply_to, epoch=epoch)


class TurnRunner:
    def __init__(
        self,
        runtime: Runtime,
        deliverer: Deliverer,
        notifiers: Notifiers,
        job_owners: JobOwners | None = None,
        job_waits: JobWaits | None = None,
    ) -> None:
        self._rt = runtime
        self._deliverer = deliverer
        self._notifiers = notifiers
        self._job_owners = job_owners
        self._job_waits = job_waits
        # On a node: the lease epoch each session's running turn writes under (only while it
        # runs: a session that spoke and went idle leaves nothing here).
        self._epochs: dict[int, int] = {}

    async def run(
        self, session: Session, request: TurnRequest, on_generation: Callable[[int], None]
    ) -> Outcome:
        """Run one turn; on_generation learns the turn's generation as soon as it exists."""
        rt = self._rt
        started_mono = rt.clock.monotonic()
        # Nothing is written while waiting: a drain or an interrupt that cancels the wait
        # leaves the candidate (and its re-adopted job) for the next boot to settle.
        waits = self._job_waits if request.await_jobs else None
        if waits is not None and not await waits.settle(session):
            return Outcome.DROPPED
        node = rt.node
        lease = None if node is None else LeaseTerms(node.id, node.lease_ttl)
        try:
            start = await rt.store.write(
                job(start_turn_body, session.id, request, rt.clock.now(), rt.run_id, lease)
            )
        except LeaseHeld as held:
            log.info("turn for session %s not started here: %s", session.id, held)
            return Outcome.DROPPED
        generation = start.generation
        if start.epoch is not None:
            self._epochs[session.id] = start.epoch
        if start.dropped is not None and request.notice is None:
            log.info("turn of session %s not started: %s", session.id, start.dropped)
            return Outcome.DROPPED
        if request.notice is not None:
            outcome_name = start.dropped or "delivered"
            if outcome_name in ("delivered", "told-user") and self._job_owners is not None:
                notice = request.notice
                self._job_owners.handed_over(notice.process_id, generation, notice.consumes)
            rt.events.publish(
                BackgroundNotice(
                    rt.clock.now(),
                    session.id,
                    request.notice.process_id,
                    request.notice.what,
                    outcome_name,
                )
            )
            if start.dropped is not None:
                if start.outbox_id is not None:
                    self._deliverer.enqueue(session.id, start.outbox_id)
                return Outcome.DROPPED
        on_generation(generation)
        resume = request.kind is RequestKind.RESUME
        if resume:
            agent_input = resume_note(start.marker_reason)
        elif start.marker_state in CANDIDATE_STATES:
            agent_input = with_note(start.marker_reason, request.text)
        else:
            agent_input = request.text
        rt.events.publish(TurnStarted(rt.clock.now(), session.id, generation, resume))
        notifier = self._notifiers.start(
            session.id,
            generation,
            session.origin,
            owner=asyncio.current_task(),
            reply_to=start.reply_to,
            direct=request.kind is RequestKind.MESSAGE,
        )
        unanswered: dict[str, ToolCall] = {}
        outcome = Outcome.COMPLETED
        try:

            async def load_history() -> tuple[Message, ...]:
                return tuple(await rt.store.transcript.tail(session.id, HISTORY_ROWS))

            def progress(text: str) -> None:
                if notifier is not None and rt.config.agent.preview == "notifier":
                    self._notifiers.preview(notifier, text)

            context = TurnContext(
                session,
                generation,
                agent_input,
                resume,
                rt.tools,
                rt.clock,
                load_history,
                notice=request.kind is RequestKind.NOTICE,
                progress=progress,
            )
            answer: Answer | None = None
            try:
                events = rt.agent.run_turn(context)
                async for event in events:
                    if isinstance(event, AskTools):
                        await self._append(session.id, generation, _calls_row(event, generation))
                        unanswered.update((call.id, call) for call in event.calls)
                    elif isinstance(event, ToolDone):
                        await self._append(session.id, generation, _result_row(event, generation))
                        unanswered.pop(event.call_id, None)
                    elif isinstance(event, Answer):
                        answer = event
                        break
                await _close_events(events)
                if answer is None:
                    answer = Answer("⚠️ The agent stopped without an answer.", FinishReason.ERROR)
                    outcome = Outcome.FAILED
            except (asyncio.CancelledError, LeaseLost):
                raise
            except Exception as error:  # the agent failed: tell the user, keep the gateway up
                log.warning("turn failed in session %s: %s", session.id, _short(error))
                answer = Answer(f"⚠️ Sorry, this turn failed: {_short(error)}", FinishReason.ERROR)
                outcome = Outcome.FAILED
            delivered = await self._finish(
                session,
                generation,
                answer,
                outcome,
                start.reply_to,
                direct=request.kind is RequestKind.MESSAGE,
            )
            if not delivered:
                outcome = Outcome.SUPERSEDED
        except LeaseLost as lost:
            # Another node took the session over: it owns the turn's recovery now, and this
            # node writes and delivers nothing more for it.
            log.warning("turn %s of session %s fenced off: %s", generation, session.id, lost)
            outcome = Outcome.SUPERSEDED
        except asyncio.CancelledError:
            outcome = Outcome.INTERRUPTED
            # Record what the interruption left unknown, even though we are being cancelled.
            await asyncio.shield(self._record_interruption(session.id, generation, unanswered))
            raise
        finally:
            self._epochs.pop(session.id, None)
            if notifier is not None:  # (most turns have none: no coroutine for nothing)
                await self._notifiers.stop(notifier)
            rt.events.publish(
                TurnFinished(
                    rt.clock.now(),
                    session.id,
                    generation,
                    outcome.value,
                    rt.clock.monotonic() - started_mono,
                )
            )
        return outcome

    @property
    def leased_turns(self) -> int:
        """On a node: how many sessions' turns run here under a lease epoch now."""
        return len(self._epochs)

    def _fence_terms(self, session_id: int) -> tuple[str, int] | None:
        """On a node: (this node, the epoch of its lease on the session) for fence_row."""
        node, epoch = self._rt.node, self._epochs.get(session_id)
        return None if node is None or epoch is None else (node.id, epoch)

    async def _append(self, session_id: int, generation: int, row: NewMessage) -> None:
        if self._rt.node is None:  # SQLite: one process, nothing to fence
            await self._rt.store.transcript.append(session_id, [row])
            return
        now, terms = self._rt.clock.now(), self._fence_terms(session_id)

        def txn(db: Transaction) -> None:
            _fence(db, session_id, terms)
            append_rows(db, session_id, [row], now)

        await self._rt.store.write(txn)

    async def _finish(
        self,
        session: Session,
        generation: int,
        answer: Answer,
        outcome: TurnOutcome,
        reply_to: str | None,
        *,
        direct: bool,
    ) -> bool:
        """The end-of-turn transaction. False when a newer generation owns the session.
        The answer replies to `reply_to`; `direct`: the turn was started by that message."""
        now = self._rt.clock.now()
        session_id = session.id
        # Decided here, on the loop: the deliverer would send this reply the moment it is
        # committed, so the commit claims it too (one commit, not two; store/outbox.py).
        claim = self._deliverer.sends_at_once(session_id, session.origin, answer.text)

        if answer.usage is not None:
            prompt, completion = self._rt.usage.get(session_id, (0, 0))
            self._rt.usage[session_id] = (prompt + answer.usage[0], completion + answer.usage[1])
        # Once the answer is committed it must reach the deliverer even if this turn is
        # cancelled while waiting for the commit: the commit's own callback hands it over,
        # and the turn awaits a future of its own (what asyncio.shield does, with one future
        # and one callback instead of two of each: this runs for every message).
        commit = self._rt.store.write_soon(
            job(
                finish_turn_body,
                session_id,
                generation,
                answer.text,
                answer.finish_reason,
                answer.usage,
                outcome,
                reply_to,
                now,
                direct=direct,
                claim=claim,
                fence=self._fence_terms(session_id),
            )
        )
        landed: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        claim_of = partial(
            claimed_reply,
            session_id=session_id,
            generation=generation,
            kind="reply",
            content=answer.text,
            now=now,
            reply_to=reply_to,
            direct=direct,
        )
        commit.add_done_callback(lambda done: self._hand_over(session, done, landed, claim_of))
        return await landed

    def _hand_over(
        self,
        session: Session,
        commit: asyncio.Future[tuple[int, bool] | None],
        landed: asyncio.Future[bool],
        claim_of: Callable[[int], ClaimedReply],
    ) -> None:
        """The end-of-turn commit is done: its reply to the deliverer, its outcome to the
        turn (unless the turn stopped waiting for it). claim_of: the claim of the reply's
        row, given its id, when the commit claimed it."""
        if commit.cancelled():
            if not landed.done():
                landed.cancel()
            return
        error = commit.exception()
        reply = None if error is not None else commit.result()
        if reply is not None:
            outbox_id, claimed = reply
            if claimed:
                assert session.origin is not None  # sends_at_once said it has a route
                self._deliverer.send_claimed(session.id, claim_of(outbox_id), session.origin)
            else:
                self._deliverer.enqueue(session.id, outbox_id, session.origin)
        if landed.done():  # the turn was cancelled meanwhile
            return
        if error is None:
            landed.set_result(reply is not None)  # None: superseded, not delivered
        else:
            landed.set_exception(error)

    async def _record_interruption(
        self, session_id: int, generation: int, unanswered: dict[str, ToolCall]
    ) -> None:
        now = self._rt.clock.now()
        rows = [
            NewMessage(
                Role.TOOL,
                '{"error": "interrupted before it finished; its effect is unknown"}',
                kind=MessageKind.TOOL_INTERRUPTED,
                tool_call_id=call.id,
                tool_name=call.name,
                generation=generation,
            )
            for call in unanswered.values()
        ]

        terms = self._fence_terms(session_id)

        def txn(db: Transaction) -> None:
            _fence(db, session_id, terms)
            if rows:
                append_rows(db, session_id, rows, now)
            end_turn_row(db, session_id, generation)
            end_row(db, session_id, generation, TurnOutcome.INTERRUPTED, now)

        try:
            await self._rt.store.write(txn)
        except LeaseLost as lost:  # the new owner's recovery reads the tail as it is
            log.warning("interruption of session %s not recorded here: %s", session_id, lost)


def _fence(db: Transaction, session_id: int, terms: tuple[str, int] | None) -> None:
    """On a node: refuse the transaction unless the session's lease is still ours. The terms
    are taken when the write is made, not when the writer runs it: by then the turn may have
    been cancelled and its epoch let go."""
    if terms is not None:
        fence_row(db, session_id, *terms)


async def _close_events(events: AsyncIterator[AgentEvent]) -> None:
    """Close the agent's event generator now that its answer is taken. Left to the garbage
    collector, its close is scheduled through the loop's thread-safe wake-up (a pipe write)
    for every turn; a failure while closing cannot take back an answer already given."""
    # A native async generator (the usual agent) is told apart without the ABC's check.
    if type(events) is AsyncGeneratorType or isinstance(events, AsyncGenerator):
        try:
            await events.aclose()
        except Exception as error:
            log.warning("the agent's events did not close cleanly: %s", _short(error))


def _calls_row(event: AskTools, generation: int) -> NewMessage:
    return NewMessage(
        Role.ASSISTANT,
        event.text,
        tool_calls=event.calls,
        finish_reason=FinishReason.TOOL_CALLS,
        generation=generation,
    )


def _result_row(event: ToolDone, generation: int) -> NewMessage:
    return NewMessage(
        Role.TOOL,
        event.content,
        kind=event.kind,
        tool_call_id=event.call_id,
        tool_name=event.name,
        generation=generation,
    )


def _short(error: BaseException, limit: int = 200) -> str:
    text = f"{type(error).__name__}: {error}"
    return text if len(text) <= limit else text[: limit - 1] + "…"

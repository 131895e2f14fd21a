"""The gateway: wires the parts and owns start, quiet, drain, restart and stop.

Start:   open the store, record the boot, promote turns the last run left running, mark sends
         it left unconfirmed as unknown, run the recovery pass, queue resume turns first, then
         the inbox backlog, deliver owed replies, and only then start intake.
Quiet:   messages are still received and stored; no new turn starts. Reversible.
Drain:   quiet and stop intake; mark every running session BEFORE waiting (a kill during the
         drain still leaves the marker); each session's marker clears the moment its turn
         completes; at the deadline the rest are re-marked drain-timeout and interrupted, get
         a grace period, and their tool processes are killed; the run is recorded clean only
         if nothing had to be interrupted.
Restart: drain, stop, start again in the same process.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace

from gateway_core.adapters.base import Adapter, InboundMessage
from gateway_core.agents.base import Agent
from gateway_core.boot_report import BootReport, read_boot_report
from gateway_core.clock import Clock, SystemClock, wait_or_timeout
from gateway_core.config import Config
from gateway_core.delivery import Deliverer
from gateway_core.events import (
    BackgroundNotice,
    DrainProgress,
    EventBus,
    RecoveryDecided,
    UpdatesStored,
)
from gateway_core.lanes import Lane, LaneFull, Lanes
from gateway_core.model import (
    Decision,
    Origin,
    OutboxItem,
    ProcessCheckpoint,
    ProcessState,
    RecoveryAction,
    RunRecord,
    Session,
    SessionKey,
)
from gateway_core.notifiers import Notifiers
from gateway_core.private_files import warn_if_shared
from gateway_core.processes.notices import (
    completion_for_agent,
    completion_for_user,
    watch_disabled_for_agent,
    watch_for_agent,
)
from gateway_core.processes.registry import ProcessRegistry, TrackedProcess
from gateway_core.processes.watch import BreakerTripped, Match, WatchOutcome
from gateway_core.questions import Questions
from gateway_core.recovery.decision import operator_clear_notice
from gateway_core.recovery.policy import policy_from_settings
from gateway_core.recovery.startup import BootRecovery, Candidate, recover_at_boot
from gateway_core.recovery.waiting import JobWaiter
from gateway_core.runtime import GatewayState, Runtime
from gateway_core.safe_json import parse_json
from gateway_core.snapshot import (
    CandidateView,
    ProcessView,
    SessionView,
    Snapshot,
    candidate_counts,
)
from gateway_core.store import DATABASE_NAME, Store
from gateway_core.store.inbox import finish_row, insert_row
from gateway_core.store.sessions import ensure_row, promote_crashed_turns
from gateway_core.store.transaction import Transaction
from gateway_core.tools.basic import ClockTool, SleepTool
from gateway_core.tools.clarify import ClarifyTool
from gateway_core.tools.processes import ProcessTool, TerminalTool
from gateway_core.tools.registry import Tool, ToolBox
from gateway_core.turn import Notice, RequestKind, TurnRequest, TurnRunner

log = logging.getLogger(__name__)

# Cleanup the drain runs after the grace period, given the sessions whose turns it interrupted.
KillHook = Callable[[Sequence[int]], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class DrainReport:
    clean: bool
    finished: tuple[int, ...]
    interrupted: tuple[int, ...]
    seconds: float


class Gateway:
    def __init__(
        self,
        config: Config,
        *,
        agent: Agent,
        adapters: Sequence[Adapter],
        clock: Clock | None = None,
        tools: Iterable[Tool] | None = None,
    ) -> None:
        self.config = config
        self.clock = clock or SystemClock()
        self.events = EventBus()
        self._agent = agent
        # An agent that reports its requests (openai: duration, tokens) does so on our bus.
        bind_events = getattr(agent, "bind_events", None)
        if bind_events is not None:
            bind_events(self.events)
        self._adapters = {adapter.platform: adapter for adapter in adapters}
        self.questions = Questions(self._adapters, self.clock, self._origin_of)
        # clarify is always offered: asking the user is part of the gateway, not a plug-in.
        clarify = ClarifyTool(self.questions, config.agent.clarify_timeout)
        if tools is None:
            tools = (
                ClockTool(),
                SleepTool(),
                TerminalTool(lambda: self.processes),
                ProcessTool(lambda: self.processes),
            )
        self._tools = ToolBox([*tools, clarify])
        self._kill_hooks: list[KillHook] = [self._kill_jobs_of]
        self._rt: Runtime | None = None
        self.run: RunRecord | None = None
        self.boot: BootRecovery | None = None
        self.report: BootReport | None = None  # the previous run, the loop guard (console)
        self._previous_drain: DrainProgress | None = None
        self._candidates: dict[int, CandidateView] = {}
        # The newest decision on each candidate (the boot's, or a later one after a job it
        # waited for ended): what the console shows as its action.
        self._decisions: dict[int, Decision] = {}
        self._drain: DrainProgress | None = None
        self._started_mono = 0.0
        self._stopped = asyncio.Event()
        self._stopping: asyncio.Task[DrainReport] | None = None
        self._forced = asyncio.Event()  # a second stop signal: end the drain wait now
        self._refreshing: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Future[None]] = set()
        self.unknown_deliveries = 0
        self._completions_queued: set[str] = set()  # exactly one completion notice per job
        # The snapshot's view of each idle session, with the lane version it was built from.
        self._session_views: dict[int, tuple[int, SessionView]] = {}
        # Set up by start(); they live as long as one run.
        self.processes: ProcessRegistry
        self.deliverer: Deliverer
        self.notifiers: Notifiers
        self.lanes: Lanes

    # -- wiring ---------------------------------------------------------------------------

    @property
    def runtime(self) -> Runtime:
        if self._rt is None:
            raise RuntimeError("the gateway is not started")
        return self._rt

    @property
    def store(self) -> Store:
        return self.runtime.store

    @property
    def state(self) -> GatewayState:
        return GatewayState.STOPPED if self._rt is None else self._rt.state

    async def _kill_jobs_of(self, sessions: Sequence[int]) -> None:
        """At the drain deadline: the background jobs of interrupted turns go too."""
        wanted = set(sessions)
        for job in self.processes.all():
            if job.state == ProcessState.RUNNING and job.checkpoint.session_id in wanted:
                result = await self.processes.kill(job.id, grace=self.config.gateway.grace)
                if not result.killed:
                    log.error("job %s survived the drain kill: pids %s", job.id, result.survivors)

    def add_kill_hook(self, hook: KillHook) -> None:
        """Register cleanup that kills tool processes when a drain times out."""
        self._kill_hooks.append(hook)

    async def start(self) -> BootRecovery:
        if self._rt is not None:
            raise RuntimeError("the gateway is already started")
        config = self.config
        warn_if_shared(config.gateway.state_dir)
        store = await Store.open(
            config.gateway.state_dir / DATABASE_NAME,
            synchronous=config.store.synchronous,
            busy_timeout=config.store.busy_timeout,
            clock=self.clock,
        )
        policy = policy_from_settings(config.recovery)
        # Tools that declare themselves read-only are safe to re-run after an interruption.
        policy = replace(
            policy, read_only_tools=policy.read_only_tools | self._tools.read_only_names()
        )
        rt = Runtime(
            config, store, self.clock, self.events, self._agent, self._tools, self._adapters, policy
        )
        self._rt = rt
        self._stopped.clear()
        self._stopping = None
        self._forced.clear()
        self._previous_drain = self._drain or self._previous_drain  # a restart in-process
        self._drain = None
        self._started_mono = self.clock.monotonic()
        rt.set_state(GatewayState.STARTING)
        try:
            boot = await self._boot(rt)
            self.report = await read_boot_report(store, boot.run, boot, rt.policy)
            return boot
        except BaseException:
            await store.close()
            self._rt = None
            raise

    async def _boot(self, rt: Runtime) -> BootRecovery:
        store = rt.store
        self.deliverer = Deliverer(rt)
        self.notifiers = Notifiers(rt, self._may_speak)
        self.processes = ProcessRegistry(store, self.clock, self.config.gateway.state_dir / "jobs")
        self.processes.on_exit(self._job_ended)
        self.processes.on_watch(self._job_watched)
        waiter = JobWaiter(
            rt,
            self.processes,
            self.deliverer,
            loop_guard_tripped=lambda: bool(self.boot and self.boot.loop_guard_tripped),
            on_decided=self._decided_later,
        )
        runner = TurnRunner(
            rt, self.deliverer, self.notifiers, on_notice=self._notice_settled, job_waits=waiter
        )
        self.lanes = Lanes(rt, runner, on_turn_end=self._turn_ended)
        self._completions_queued = set()
        self._session_views = {}
        self._decisions = {}
        self._sampling: asyncio.Task[None] | None = None
        if self.config.gateway.sample_interval > 0:
            self._sampling = asyncio.get_running_loop().create_task(
                self.processes.sample_forever(self.config.gateway.sample_interval),
                name="process-sampler",
            )
        self.run = await store.runs.begin(os.getpid())
        rt.run_id = self.run.id
        promoted = await store.write(lambda db: promote_crashed_turns(db, self.clock.now()))
        if promoted:
            log.warning("previous run died during %d turn(s); marked for recovery", len(promoted))
        adopted = await self.processes.adopt_checkpoints()
        if adopted:
            log.info("re-adopted %d background process(es) of the previous run", len(adopted))
        unknown = await store.outbox.mark_unknown_at_boot()
        for sent in unknown:
            log.warning("reply %s was being sent when the gateway died: not resent", sent.id)
        # Shown to the operator: such a reply may or may not have reached its user.
        self.unknown_deliveries = len(await store.outbox.by_status("unknown", limit=10_000))
        # "Still working" messages of turns that died with the last run: removed once.
        self._background(self.notifiers.remove_left_over(await store.working_notices.all()))
        boot = await recover_at_boot(store, self.run, rt.policy, self.processes.log_tail)
        self.boot = boot
        for candidate in boot.candidates:
            self._decisions[candidate.session.id] = candidate.decision
            decision = candidate.decision
            rt.events.publish(
                RecoveryDecided(
                    self.clock.now(),
                    candidate.session.id,
                    decision.verdict.value,
                    decision.action.value,
                    decision.explanation,
                )
            )
            if decision.action is RecoveryAction.HOLD:
                log.warning(
                    "recovery candidate held for an operator: session %s: %s",
                    candidate.session.id,
                    decision.explanation,
                    extra={"event": "recovery_held", "session": str(candidate.session.key)},
                )
        await self.refresh_candidates()
        rt.set_state(GatewayState.RUNNING)
        # Resume turns go to the front of their lanes, before any inbound backlog; a resume
        # whose interrupted call's job still runs waits for that job first, in its lane.
        for candidate in boot.with_action(RecoveryAction.RESUME):
            self.lanes.submit(candidate.session, TurnRequest(RequestKind.RESUME), first=True)
        for candidate in boot.with_action(RecoveryAction.AWAIT_JOB):
            request = TurnRequest(RequestKind.RESUME, await_jobs=True)
            self.lanes.submit(candidate.session, request, first=True)
        # Completions owed from before (the job ended while we were down, or its notice
        # had not run yet): read from the store, so each is told exactly once.
        for job in await store.processes.untold_completions():
            await self._queue_completion(job, await self.processes.log_tail(job))
        for inbound in await store.inbox.open_items(limit=100_000):
            await self._queue_inbox_item(inbound.id, inbound.session_key, inbound.payload)
        # Replies owed, and the notices this boot's decisions queued for users.
        for owed in await store.outbox.pending(limit=100_000):
            self.deliverer.enqueue(owed.session_id, owed.id)
        self.lanes.kick_all()  # lanes given work while the gateway was still starting
        for adapter in self._adapters.values():
            await adapter.start_intake(self._accept)
        return boot

    def _decided_later(self, candidate: Candidate) -> None:
        """A candidate was decided again during the run (a job it waited for ended)."""
        self._decisions[candidate.session.id] = candidate.decision
        self._schedule_refresh()

    # -- intake ---------------------------------------------------------------------------

    async def _accept(self, batch: Sequence[InboundMessage]) -> None:
        """Persist a batch in one transaction; only then may the adapter acknowledge it."""
        rt = self.runtime
        now = self.clock.now()

        skipped = duplicates = 0

        def txn(db: Transaction) -> list[tuple[Session, int, str]]:
            nonlocal skipped, duplicates
            accepted = []
            for message in batch:
                if message.skip_reason is not None or message.origin is None:
                    # Recorded for dedup and for the operator; never becomes a turn.
                    skip = insert_row(db, message.platform, message.update_id, None, "{}", now)
                    if skip is not None:
                        finish_row(db, skip, "skipped", message.skip_reason, now)
                        skipped += 1
                    else:
                        duplicates += 1
                    continue
                session = ensure_row(db, message.origin.key, message.origin, now)
                payload = json.dumps({"text": message.text})
                inbox_id = insert_row(
                    db, message.platform, message.update_id, str(session.key), payload, now
                )
                if inbox_id is not None:  # None: a redelivered update, already stored
                    accepted.append((session, inbox_id, message.text))
                else:
                    duplicates += 1
            return accepted

        accepted = await rt.store.write(txn)
        refused = 0
        for session, inbox_id, text in accepted:
            if self.questions.answer(session.id, text):
                # The answer to the agent's open question: the turn records it as the tool
                # result, so it does not start a turn of its own.
                await rt.store.inbox.finish(inbox_id, "answered")
                continue
            if not self._submit_message(session, inbox_id, text):
                refused += 1
        if batch:
            rt.events.publish(
                UpdatesStored(
                    now, batch[0].platform, len(accepted) - refused, duplicates, skipped, refused
                )
            )

    def _submit_message(self, session: Session, inbox_id: int, text: str) -> bool:
        """False when the session's queue is full (the message is refused, the user told)."""
        try:
            self.lanes.submit(session, TurnRequest(RequestKind.MESSAGE, text, inbox_id))
        except LaneFull:
            # Refused now, and the user is told so: running it at the next restart, perhaps
            # hours later and out of context, would be worse than asking them to resend.
            log.warning("session %s queue is full; message %s refused", session.id, inbox_id)
            self._background(self._refuse_overflow(session.id, inbox_id))
            return False
        return True

    async def _queue_inbox_item(self, inbox_id: int, key: str | None, payload: str) -> None:
        if key is None:
            return
        session = await self.store.sessions.by_key(SessionKey.parse(key))
        decoded = parse_json(payload)
        text = decoded.get("text") if isinstance(decoded, dict) else None
        if session is None or not isinstance(text, str):
            await self.store.inbox.finish(inbox_id, "skipped", "unreadable inbox item")
            return
        self._submit_message(session, inbox_id, text)

    async def post_notice(self, session_id: int, text: str) -> int:
        """Tell a session's user something outside any turn (a background job finished).

        It goes through the outbox like a reply, so it is durable and sent once, and it is
        routed by the session's own stored origin (its chat and topic), never by whichever
        conversation happens to be in the foreground."""
        session = await self.store.sessions.get(session_id)
        if session is None:
            raise KeyError(f"no session {session_id}")
        outbox_id = await self.store.outbox.enqueue(session_id, session.generation, "notice", text)
        self.deliverer.enqueue(session_id, outbox_id)
        return outbox_id

    async def resend(self, outbox_id: int) -> OutboxItem | None:
        """An operator's resend of a delivery of unknown outcome: queued again, once."""
        item = await self.store.outbox.requeue_unknown(outbox_id)
        if item is not None:
            self.unknown_deliveries = max(0, self.unknown_deliveries - 1)
            self.deliverer.enqueue(item.session_id, item.id)
        return item

    async def _refuse_overflow(self, session_id: int, inbox_id: int) -> None:
        limit = self.config.lanes.max_queue
        await self.store.inbox.finish(inbox_id, "refused", f"more than {limit} messages queued")
        await self.post_notice(
            session_id,
            f"⚠️ {limit} messages are already waiting; this one was not processed. "
            "Please send it again once I have answered.",
        )

    def _background(self, work: Awaitable[None]) -> None:
        """Fire-and-forget work that must not be garbage-collected half way."""
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _origin_of(self, session_id: int) -> Origin | None:
        lane = self.lanes.find(session_id) if self._rt is not None else None
        return None if lane is None else lane.session.origin

    def _turn_ended(self, session_id: int) -> None:
        """A candidate's turn ended: its marker may have cleared. Re-read the candidates once
        (coalesced: one refresh in flight at a time) so the snapshot follows the store."""
        if session_id in self._candidates:
            self._schedule_refresh()

    def _schedule_refresh(self) -> None:
        if self._refreshing is None or self._refreshing.done():
            self._refreshing = asyncio.get_running_loop().create_task(self.refresh_candidates())

    def _may_speak(self, session_id: int, generation: int) -> bool:
        return self.lanes.may_speak(session_id, generation)

    # -- background job notices ----------------------------------------------------------
    #
    # A job's events are stamped with the generation that owns the job (the turn that started
    # it, or a later turn that looked at it or was told about it). They reach the agent as a
    # notice turn through the session's lane, so they wait for the running turn and never
    # interrupt it. Whether a notice still applies is decided in the notice turn's own start
    # transaction (turn.py): a completion the agent already consumed is dropped; a stale
    # watch match is dropped; a stale completion is kept in the transcript and the user told.

    def _job_ended(self, job: TrackedProcess) -> None:
        checkpoint = job.checkpoint
        if checkpoint.session_id is None or not checkpoint.notify_on_complete:
            return
        if self.state is GatewayState.STARTING:
            return  # the boot pass queues owed completions from the store, in order
        if checkpoint.consumed:
            self._publish_notice(checkpoint, "completion", "dropped-consumed")
            return
        self._background(self._queue_completion(checkpoint, job.output.text()))

    async def _queue_completion(self, job: ProcessCheckpoint, output: str) -> None:
        if job.id in self._completions_queued or job.session_id is None:
            return
        self._completions_queued.add(job.id)
        notice = Notice(job.id, job.generation, "completion", True, completion_for_user(job))
        await self._queue_notice(job, notice, completion_for_agent(job, output))

    def _job_watched(self, job: TrackedProcess, outcome: WatchOutcome) -> None:
        checkpoint = job.checkpoint
        if isinstance(outcome, BreakerTripped):
            log.warning(
                "watch breaker tripped: too many matches across jobs; dropping for %g s",
                outcome.cooldown,
            )
            self._publish_notice(checkpoint, "breaker", "breaker-tripped")
            return
        if checkpoint.session_id is None:
            return
        what = "watch-match" if isinstance(outcome, Match) else "watch-disabled"
        lane = self.lanes.find(checkpoint.session_id)
        current = None if lane is None else lane.current
        if current is not None and current.generation == checkpoint.generation:
            # The turn that owns the job is running: it sees the output through its tools,
            # and a notice turn queued behind it would re-inject what it already handled.
            self._publish_notice(checkpoint, what, "dropped-same-turn")
            return
        if current is not None and (current.generation or 0) > checkpoint.generation:
            self._publish_notice(checkpoint, what, "dropped-stale")
            return
        text = (
            watch_for_agent(checkpoint, outcome)
            if isinstance(outcome, Match)
            else watch_disabled_for_agent(checkpoint, outcome)
        )
        notice = Notice(checkpoint.id, checkpoint.generation, what, False)
        self._background(self._queue_notice(checkpoint, notice, text))

    async def _queue_notice(self, job: ProcessCheckpoint, notice: Notice, text: str) -> None:
        assert job.session_id is not None
        if self._rt is None:
            return
        lane = self.lanes.find(job.session_id)
        session = lane.session if lane else await self.store.sessions.get(job.session_id)
        if session is None:
            return
        # Routed by the session's own stored origin when the turn's reply goes out: never by
        # whichever conversation is in the foreground.
        self.lanes.submit(session, TurnRequest(RequestKind.NOTICE, text, notice=notice))
        self._publish_notice(job, notice.what, "queued")

    def _notice_settled(self, notice: Notice, outcome: str, generation: int) -> None:
        """A notice turn started, or was turned into something else, in its transaction."""
        if outcome in ("delivered", "told-user"):
            self.processes.handed_over(notice.process_id, generation, consumed=notice.consumes)

    def _publish_notice(self, job: ProcessCheckpoint, what: str, outcome: str) -> None:
        self.events.publish(
            BackgroundNotice(self.clock.now(), job.session_id, job.id, what, outcome)
        )

    # -- quiet, drain, restart -----------------------------------------------------------

    def quiet(self) -> bool:
        """Stop starting new turns; running ones continue. False if not running."""
        if self.state is not GatewayState.RUNNING:
            return False
        self.runtime.set_state(GatewayState.QUIET)
        return True

    def resume_intake(self) -> bool:
        if self.state is not GatewayState.QUIET:
            return False
        self.runtime.set_state(GatewayState.RUNNING)
        self.lanes.kick_all()
        return True

    async def stop(self, timeout: float | None = None) -> DrainReport:
        """Drain and stop. A second call waits for the first (single flight)."""
        if self._stopping is None:
            drain_timeout = self.config.gateway.drain_timeout if timeout is None else timeout
            self._stopping = asyncio.ensure_future(self._drain_and_close(drain_timeout))
        return await asyncio.shield(self._stopping)

    def force_stop(self) -> bool:
        """Cut a running drain short: what still runs is interrupted now (marked
        drain-timeout, left for recovery), without the grace period. False if no drain."""
        if self._stopping is None or self._stopping.done():
            return False
        self._forced.set()
        return True

    async def restart(self, timeout: float | None = None) -> BootRecovery:
        await self.stop(timeout)
        return await self.start()

    async def wait_stopped(self) -> None:
        await self._stopped.wait()

    async def wait_idle(self) -> None:
        """Until no lane has work and no reply waits to be sent (checked together, since a
        finished turn hands its reply to the deliverer and a delivery can wake nothing)."""
        while True:
            busy = [lane.idle.wait() for lane in self.lanes.all() if not lane.idle.is_set()]
            if busy:
                await asyncio.gather(*busy)
                continue
            if not self.deliverer.busy:
                return
            await self.deliverer.idle(within=3600)

    async def _drain_and_close(self, timeout: float) -> DrainReport:
        try:
            return await self._drain_steps(timeout)
        except Exception:
            # A failing step (a full disk while marking, a hook) must not leave the gateway
            # half-drained forever: record it as unclean and close what can be closed.
            log.exception("the drain failed; stopping anyway")
            if self._rt is not None:
                await self._close(False)
            return DrainReport(False, (), (), 0.0)

    async def _drain_steps(self, timeout: float) -> DrainReport:
        rt = self.runtime
        clock = self.clock
        begun = clock.monotonic()
        deadline = begun + timeout
        rt.set_state(GatewayState.DRAINING)
        for adapter in self._adapters.values():
            await adapter.stop_intake()
        running = {lane.session.id: lane for lane in self.lanes.running()}
        self._progress("marking", running, set(), set(), deadline)
        await rt.store.recovery.mark_many(list(running), "drain")
        await self.refresh_candidates()
        finished: set[int] = set()
        waiting = dict(running)
        while waiting and not self._forced.is_set():
            left = deadline - clock.monotonic()
            if left <= 0:
                break
            self._progress("waiting", running, finished, set(), deadline)
            idle = {asyncio.ensure_future(lane.idle.wait()): sid for sid, lane in waiting.items()}
            tick = asyncio.ensure_future(clock.sleep(min(1.0, left)))
            forced = asyncio.ensure_future(self._forced.wait())
            done, _ = await asyncio.wait({*idle, tick, forced}, return_when=asyncio.FIRST_COMPLETED)
            tick.cancel()
            forced.cancel()
            for future, sid in idle.items():
                future.cancel()
                if future in done or waiting[sid].current is None:
                    finished.add(sid)
                    waiting.pop(sid, None)
        interrupted = set(waiting)
        if interrupted:
            self._progress("interrupting", running, finished, interrupted, deadline)
            await rt.store.recovery.mark_many(sorted(interrupted), "drain-timeout")
            tasks = []
            for lane in waiting.values():
                if lane.current is not None:
                    lane.current.task.cancel()
                    tasks.append(lane.current.task)
            self._progress("grace", running, finished, interrupted, deadline)
            grace = 0.0 if self._forced.is_set() else self.config.gateway.grace
            stopped = asyncio.gather(*tasks, return_exceptions=True)
            forced = asyncio.ensure_future(self._forced.wait())  # a second signal ends it
            await wait_or_timeout(
                clock, asyncio.wait({stopped, forced}, return_when=asyncio.FIRST_COMPLETED), grace
            )
            forced.cancel()
            for hook in self._kill_hooks:
                try:
                    await hook(sorted(interrupted))
                except Exception:
                    log.exception("a drain kill hook failed")
        # Replies of turns that finished still go out before the platforms are closed.
        if not self._forced.is_set():
            await self.deliverer.idle(within=max(self.config.gateway.grace, 1.0))
        report = DrainReport(
            clean=not interrupted,
            finished=tuple(sorted(finished)),
            interrupted=tuple(sorted(interrupted)),
            seconds=clock.monotonic() - begun,
        )
        self._progress("stopped", running, finished, interrupted, deadline)
        await self._close(report.clean)
        return report

    async def _close(self, clean: bool) -> None:
        """Every step is attempted even if one fails, and the gateway always ends STOPPED:
        a drain that wedged half-way would keep the process alive forever."""
        rt = self.runtime
        try:
            await self._close_steps(rt, clean)
        finally:
            rt.set_state(GatewayState.STOPPED)
            self._rt = None
            self._stopped.set()

    async def _close_steps(self, rt: Runtime, clean: bool) -> None:
        if self._sampling is not None:
            self._sampling.cancel()
            await asyncio.gather(self._sampling, return_exceptions=True)
        # Jobs keep running (a later boot re-adopts them); only the watching stops.
        await self.processes.close()
        if self._refreshing is not None:
            await asyncio.gather(self._refreshing, return_exceptions=True)
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for lane in self.lanes.all():
            if lane.loop_task is not None and not lane.loop_task.done():
                lane.loop_task.cancel()
        await asyncio.gather(
            *(lane.loop_task for lane in self.lanes.all() if lane.loop_task is not None),
            return_exceptions=True,
        )
        steps: list[tuple[str, Callable[[], Awaitable[object]]]] = [
            ("deliverer", self.deliverer.close),
            *((f"adapter {name}", adapter.close) for name, adapter in self._adapters.items()),
        ]
        closer = getattr(self._agent, "close", None)
        if closer is not None:  # an agent with connections (openai) lets them go
            steps.append(("agent", closer))
        run = self.run
        if run is not None:
            steps.append(("run record", lambda: rt.store.runs.finish(run.id, clean=clean)))
        steps.append(("store", rt.store.close))
        for name, step in steps:
            try:
                await step()
            except Exception:
                log.exception("closing the %s failed; going on with the rest", name)

    def _progress(
        self,
        phase: str,
        running: Mapping[int, object],
        finished: set[int],
        interrupted: set[int],
        deadline: float,
    ) -> None:
        still = tuple(sorted(set(running) - finished - interrupted))
        left = max(0.0, deadline - self.clock.monotonic())
        self._drain = DrainProgress(
            self.clock.now(),
            phase,
            len(running),
            len(finished),
            still,
            tuple(sorted(interrupted)),
            left,
        )
        self.events.publish(self._drain)

    # -- recovery candidates --------------------------------------------------------------

    async def clear_candidate(self, session_id: int) -> tuple[bool, int | None]:
        """An operator drops a candidate; its user is told once, in the same transaction.
        Returns (cleared, the notice's outbox id)."""
        store = self.store
        record = await store.recovery.get(session_id)
        session = await store.sessions.get(session_id)
        if record is None or session is None:
            return False, None
        tail = await store.transcript.tail(session_id, self.runtime.policy.tail_rows)
        notice, told = operator_clear_notice(record, session.origin, tail, self.runtime.policy)
        cleared, notice_id = await store.recovery.clear_and_tell(session_id, notice, told)
        if notice_id is not None:
            self.deliverer.enqueue(session_id, notice_id)
        return cleared, notice_id

    async def refresh_candidates(self) -> None:
        """Re-read every recovery record that is not 'none' (an indexed read of few rows)."""
        now = self.clock.now()
        views = {}
        for record, session in await self.store.recovery.candidates():
            decision = self._decisions.get(session.id)
            views[session.id] = CandidateView(
                session_id=session.id,
                key=str(session.key),
                user_name=None if session.origin is None else session.origin.user_name,
                state=str(record.state),
                reason=record.reason,
                verdict=record.last_verdict,
                action=None if decision is None else decision.action.value,
                explanation=record.last_explanation,
                tail_age=None
                if decision is None or decision.tail_at is None
                else max(0.0, now - decision.tail_at),
                attempts=record.attempts,
                marked_at=record.marked_at,
                settled=() if decision is None else tuple(_settled_text(decision)),
                told=None if record.told is None else str(record.told),
                tail_at=None if decision is None else decision.tail_at,
            )
        self._candidates = views

    # -- snapshot -------------------------------------------------------------------------

    def _session_view(
        self, lane: Lane, now_mono: float, usage: Mapping[int, tuple[int, int]]
    ) -> SessionView:
        current = lane.current
        if current is not None:
            state = "resuming" if current.request.kind is RequestKind.RESUME else "running"
        else:
            state = "queued" if lane.queue else "idle"
        key = lane.session.key
        origin = lane.session.origin
        return SessionView(
            session_id=lane.session.id,
            key=str(key),
            platform=key.platform,
            chat_id=key.chat_id,
            thread_id=key.thread_id,
            user_name=None if origin is None else origin.user_name,
            state=state,
            generation=lane.generation if current is None else current.generation,
            turn_age=None if current is None else now_mono - current.started_mono,
            queued=len(lane.queue),
            last_activity=lane.last_activity,
            tokens=usage.get(lane.session.id, (0, 0)),
        )

    def snapshot(self) -> Snapshot:
        now_mono = self.clock.monotonic()
        sessions = []
        running = queued = 0
        rt_usage = {} if self._rt is None else self._rt.usage
        if self._rt is not None:
            views = self._session_views
            for lane in self.lanes.all():
                current = lane.current
                queued += len(lane.queue)
                if current is None:
                    cached = views.get(lane.session.id)
                    if cached is not None and cached[0] == lane.version:
                        sessions.append(cached[1])  # idle and unchanged: built once
                        continue
                else:
                    running += 1
                view = self._session_view(lane, now_mono, rt_usage)
                views[lane.session.id] = (lane.version, view)
                sessions.append(view)
        notifiers = tuple(self.notifiers.views()) if self._rt is not None else ()
        now = self.clock.now()
        processes = tuple(
            ProcessView(
                process_id=job.id,
                session_id=job.checkpoint.session_id,
                command=job.checkpoint.command,
                state=job.state,
                age=max(0.0, (job.checkpoint.ended_at or now) - job.checkpoint.started_at),
                exit_code=job.checkpoint.exit_code,
                cpu_percent=None if job.sample is None else job.sample.cpu_percent,
                rss=None if job.sample is None else job.sample.rss,
                children=None if job.sample is None else job.sample.children,
                last_line=job.output.last_line,
                notify_on_complete=job.checkpoint.notify_on_complete,
                watch_patterns=job.checkpoint.watch_patterns,
                detached=job.detached,
                generation=job.checkpoint.generation,
                consumed=job.checkpoint.consumed,
                watch_status="none" if job.watcher is None else job.watcher.status.value,
                watch_delivered=0 if job.watcher is None else job.watcher.delivered,
                watch_suppressed=0 if job.watcher is None else job.watcher.suppressed_total,
            )
            for job in (self.processes.all() if self._rt is not None else [])
        )
        candidates = tuple(self._candidates.values())
        counts = {
            "sessions": len(sessions),
            "running": running,
            "queued": queued,
            **candidate_counts(candidates),
            "notifiers": len(notifiers),
            "processes": sum(1 for p in processes if p.state == ProcessState.RUNNING),
            "unknown_deliveries": self.unknown_deliveries,
            "prompt_tokens": sum(p for p, _ in rt_usage.values()),
            "completion_tokens": sum(c for _, c in rt_usage.values()),
        }
        return Snapshot(
            state=self.state.value,
            run_id=None if self.run is None else self.run.id,
            started_at=None if self.run is None else self.run.started_at,
            uptime=0.0 if self._rt is None else now_mono - self._started_mono,
            sessions=tuple(sessions),
            candidates=candidates,
            notifiers=notifiers,
            drain=self._drain,
            processes=processes,
            loop_guard_tripped=self.report is not None and self.report.loop_guard.active,
            counts=counts,
            taken_at=now,
            loop_guard=None if self.report is None else self.report.loop_guard,
            previous_run=None if self.report is None else self.report.previous_run,
            previous_drain=self._previous_drain,
        )


def _settled_text(decision: Decision) -> list[str]:
    texts = []
    for call in decision.settled:
        text = f"{call.tool_name}: {call.how.value}"
        if call.exit_code is not None:
            text += f" (exit {call.exit_code})"
        texts.append(text)
    return texts

"""Everything that lives as long as one run of the gateway, built at once and closed at once.

    LiveRun(runtime, questions)   # every part, wired (nothing is half set up afterwards)
    await run.boot()              # the boot sequence; intake starts last
    ...
    await run.close(clean)        # every closing step attempted, the store closed last

The parts, in the order they are wired (each uses only those above it):

    deliverer     the outbox's sender                         (delivery.py)
    notifiers     the "still working" messages of long turns  (notifiers.py)
    processes     background jobs                             (processes/registry.py)
    candidates    recovery candidates as the operator sees them (recovery/candidates.py)
    waiter        resumes that wait for a re-adopted job      (recovery/waiting.py)
    runner        one turn, durably                           (turn.py)
    lanes         one turn at a time per session              (lanes.py)
    notices       job events routed to their conversation     (processes/notices.py)
    intake        inbound messages persisted, then to lanes   (intake.py)

The one path of the data: adapter -> intake (inbox) -> lane -> turn (transcript) -> outbox
-> deliverer -> adapter. A few narrow callbacks run the other way, each to the part that owns
what it changes: a lane tells the candidates a turn ended, the waiter tells them a candidate
was decided again, a notice turn tells the registry it took its job over, the registry tells
the notice router a job ended or matched.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable, Callable, Mapping, Sequence

from gateway_core.delivery import Deliverer
from gateway_core.events import RecoveryDecided
from gateway_core.inbox_pickup import InboxPickup
from gateway_core.intake import Intake
from gateway_core.intake_lease import IntakeKeeper
from gateway_core.lanes import Lanes
from gateway_core.model import NodeState, ProcessState, RecoveryAction, RunRecord
from gateway_core.node import Heartbeat
from gateway_core.notifiers import Notifiers
from gateway_core.processes.notices import NoticeRouter
from gateway_core.processes.registry import ProcessRegistry
from gateway_core.questions import Questions
from gateway_core.recovery.candidates import CandidateBoard
from gateway_core.recovery.startup import BootRecovery, recover_at_boot
from gateway_core.recovery.waiting import JobWaiter
from gateway_core.runtime import GatewayState, Runtime
from gateway_core.store.sessions import promote_crashed_turns
from gateway_core.turn import RequestKind, TurnRequest, TurnRunner

log = logging.getLogger(__name__)


class LiveRun:
    def __init__(self, runtime: Runtime, questions: Questions) -> None:
        rt = runtime
        self.runtime = rt
        self.deliverer = Deliverer(rt)
        self.notifiers = Notifiers(rt)
        self.processes = ProcessRegistry(
            rt.store,
            rt.clock,
            rt.config.gateway.state_dir / "jobs",
            host=None if rt.node is None else rt.node.host,
            node=None if rt.node is None else rt.node.id,
        )
        self.candidates = CandidateBoard(rt, self.deliverer)
        self.waiter = JobWaiter(
            rt,
            self.processes,
            self.deliverer,
            loop_guard_tripped=self.candidates.loop_guard_tripped,
            on_decided=self.candidates.decided_later,
        )
        self.runner = TurnRunner(
            rt, self.deliverer, self.notifiers, job_owners=self.processes, job_waits=self.waiter
        )
        self.lanes = Lanes(rt, self.runner, on_turn_end=self.candidates.turn_ended)
        self.notices = NoticeRouter(rt, self.processes, self.lanes)
        self.intake = Intake(rt, self.lanes, questions, self.deliverer)
        # On a node (PostgreSQL): its row and lease renewal (node.py); None on SQLite.
        self.heartbeat = None if rt.node is None else Heartbeat(rt.node, rt.store, rt.clock)
        self.pickup = None if rt.node is None else InboxPickup(rt, self.intake)
        self.intake_keepers: list[IntakeKeeper] = []
        self.record: RunRecord | None = None  # this boot's row in `runs`, once written
        self.boot_recovery: BootRecovery | None = None
        self.started_mono = rt.clock.monotonic()
        self._sampling: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Future[None]] = set()

    async def boot(self) -> BootRecovery:
        """Start: record the boot, recover what the last run left (`_recover`), and only
        then start intake (docs/architecture.md 6.1)."""
        rt, store = self.runtime, self.runtime.store
        interval = rt.config.gateway.sample_interval
        if interval > 0:
            self._sampling = asyncio.get_running_loop().create_task(
                self.processes.sample_forever(interval), name="process-sampler"
            )
        # On a node, this boot recovers only the sessions it takes over: those whose node
        # stopped beating or drained (or its own previous run, under the same node_id).
        only: list[int] | None = None
        node = rt.node
        if self.heartbeat is not None and node is not None:
            await self.heartbeat.beat(NodeState.RUNNING)
            only = await store.leases.claim_left_over(node.id, node.lease_ttl, include_own=True)
        self.record = await store.runs.begin(os.getpid())
        rt.run_id = self.record.id
        boot = await self._recover(only, takeover=False)
        for adapter in rt.adapters.values():
            if rt.node is not None and adapter.capabilities.single_consumer:
                keeper = IntakeKeeper(rt, rt.node, adapter, self.intake.accept)
                keeper.start()
                self.intake_keepers.append(keeper)
            else:
                await adapter.start_intake(self.intake.accept)
        if self.pickup is not None:
            await self.pickup.start()
        if self.heartbeat is not None:
            self.heartbeat.after_beat = self.take_over_lapsed
            self.heartbeat.start()
        return boot

    async def take_over_lapsed(self) -> None:
        """On a node, after each heartbeat: the sessions another node left something in and
        stopped renewing (it died, or was paused past its TTL) or released (it drained) are
        taken over and recovered here by the boot's own sequence (`_recover`), for just
        those sessions."""
        rt, store, node = self.runtime, self.runtime.store, self.runtime.node
        if node is None or not rt.accepting_turns or self.record is None:
            return
        ids = await store.leases.claim_left_over(node.id, node.lease_ttl, include_own=False)
        if not ids:
            return
        log.warning(
            "node %s takes over %d session(s) another node left", node.id, len(ids),
            extra={"event": "sessions_taken_over"},
        )  # fmt: skip
        await self._recover(ids, takeover=True)

    async def _recover(self, only: list[int] | None, *, takeover: bool) -> BootRecovery:
        """A restart for a set of sessions (`only`; None: all of them, on SQLite), in order:
        promote the turns that died with their gateway, re-adopt (or settle) their jobs,
        mark their unconfirmed sends unknown, remove their left-over "still working"
        messages, run the recovery decision (the user told once, the loop guard per
        session), queue resume turns first, then owed job completions (and at a boot the
        inbox backlog), and deliver what is owed. A boot runs it for what the previous run
        left; a takeover for what a dead or drained node left (`takeover`: then the boot's
        own bookkeeping, its candidate count and its boot-chain guard, is not repeated)."""
        rt, store = self.runtime, self.runtime.store
        record = self.record
        assert record is not None
        left_by = "the node that left" if takeover else "the gateway when it died"
        promoted = await store.write(lambda txn: promote_crashed_turns(txn, rt.clock.now(), only))
        if promoted:
            log.warning(
                "%s died during %d turn(s); marked for recovery",
                "a node that left" if takeover else "previous run", len(promoted),
            )  # fmt: skip
        adopted = await self.processes.adopt_jobs(only)
        if adopted:
            log.info("re-adopted %d background process(es)", len(adopted))
        for sent in await store.outbox.mark_unknown_at_boot(only):
            log.warning("reply %s was being sent by %s: not resent", sent.id, left_by)
        await self.deliverer.count_unknown()
        # "Still working" messages of turns that died: removed once.
        if only is None:
            left = await store.working_notices.all()
        else:
            left = await store.working_notices.of_sessions(only)
        self._background(self.notifiers.remove_left_over(left))
        recovered = await recover_at_boot(
            store, record, rt.policy, self.processes.log_tail, only, takeover=takeover
        )
        if takeover:
            self.candidates.taken_over(recovered)
        else:
            self.boot_recovery = recovered
            self.candidates.booted(recovered)
        self._tell_decisions(recovered)
        await self.candidates.refresh()
        if not takeover:
            rt.set_state(GatewayState.RUNNING)
        # Resume turns go to the front of their lanes, before any inbound backlog; a resume
        # whose interrupted call's job still runs waits for that job first, in its lane.
        for candidate in recovered.with_action(RecoveryAction.RESUME):
            self.lanes.submit(candidate.session, TurnRequest(RequestKind.RESUME), first=True)
        for candidate in recovered.with_action(RecoveryAction.AWAIT_JOB):
            request = TurnRequest(RequestKind.RESUME, await_jobs=True)
            self.lanes.submit(candidate.session, request, first=True)
        await self.notices.queue_owed(only)
        if not takeover:
            await self.intake.queue_backlog()  # (on a node, the pickup brings the rest)
        # Replies owed, and the notices these decisions queued for users.
        owed = (
            await store.outbox.pending(limit=100_000)
            if only is None
            else await store.outbox.pending_of(only)
        )
        for item in owed:
            self.deliverer.enqueue(item.session_id, item.id)
        self.lanes.kick_all()  # lanes given work while the gateway was still starting
        return recovered

    def _tell_decisions(self, boot: BootRecovery) -> None:
        rt = self.runtime
        for candidate in boot.candidates:
            decision = candidate.decision
            rt.events.publish(
                RecoveryDecided(
                    rt.clock.now(),
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

    async def kill_jobs_of(self, sessions: Sequence[int]) -> None:
        """At the drain deadline: the background jobs of interrupted turns go too."""
        wanted = set(sessions)
        for job in self.processes.all():
            if job.state == ProcessState.RUNNING and job.record.session_id in wanted:
                result = await self.processes.kill(job.id, grace=self.runtime.config.gateway.grace)
                if not result.killed:
                    log.error("job %s survived the drain kill: pids %s", job.id, result.survivors)

    async def wait_idle(self) -> None:
        """Until no lane has work, no reply waits to be sent (checked together, since a
        finished turn hands its reply to the deliverer and a delivery can wake nothing) and
        the candidate views are current (a candidate's turn that ended asked for a refresh,
        which may still be reading when its reply has been sent)."""
        while True:
            busy = [
                lane.idle.wait()
                for lane in self.lanes.all()
                if lane.current is not None and not lane.idle.is_set()
            ]
            if busy:
                await asyncio.gather(*busy)
                continue
            if not self.deliverer.busy:
                await self.candidates.current()
                return
            await self.deliverer.idle(within=3600)

    async def close(
        self, clean: bool, closers: Mapping[str, Callable[[], Awaitable[object]]]
    ) -> None:
        """Every step is attempted even if one fails; the store is closed last. `closers`
        are the gateway's own (adapters, agent), closed after the deliverer."""
        rt = self.runtime
        if self._sampling is not None:
            self._sampling.cancel()
            await asyncio.gather(self._sampling, return_exceptions=True)
        steps: list[tuple[str, Callable[[], Awaitable[object]]]] = [
            # Jobs keep running (a later boot re-adopts them); only the watching stops.
            ("job watching", self.processes.close),
            ("candidates", self.candidates.close),
            ("job notices", self.notices.close),
            *(("intake lease", keeper.stop) for keeper in self.intake_keepers),
        ]
        if self.pickup is not None:
            steps.append(("inbox pickup", self.pickup.stop))
        steps += [
            ("intake", self.intake.close),
            ("background work", lambda: asyncio.gather(*self._tasks, return_exceptions=True)),
            ("lanes", self.lanes.close),
            ("deliverer", self.deliverer.close),
            *closers.items(),
        ]
        if self.heartbeat is not None:
            # After the lanes and the deliverer: nothing of this run writes for a session
            # any more, so its leases go at once (no TTL wait for the other nodes).
            steps.append(("node's leases", self.heartbeat.stop))
        record = self.record
        if record is not None:
            steps.append(("run record", lambda: rt.store.runs.finish(record.id, clean=clean)))
        steps.append(("store", rt.store.close))
        for name, step in steps:
            try:
                await step()
            except Exception:
                log.exception("closing the %s failed; going on with the rest", name)

    def _background(self, work: Awaitable[None]) -> None:
        """Fire-and-forget work that must not be garbage-collected half way."""
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

"""Routing a background job's events to its conversation, as notice turns.

A job's events are stamped with the generation that owns the job (the turn that started it,
or a later turn that looked at it or was told about it). They reach the agent as a notice turn
through the session's lane, so they wait for the running turn and never interrupt it, and
they are routed by the session's own stored origin, never by whichever conversation is in the
foreground. Whether a notice still applies is decided in the notice turn's own start
transaction (turn.py): a completion the agent already consumed is dropped; a stale watch match
is dropped; a stale completion is kept in the transcript and the user told.

Here, before a notice is queued: a watch match while the owning turn still runs is dropped
(that turn sees the output through its tools), and each completion is queued exactly once.
Completions owed from before a restart are queued by the boot, from the store, in order.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Collection

from gateway_core.events import BackgroundNotice
from gateway_core.lanes import Lanes
from gateway_core.model import JobRecord
from gateway_core.processes.notice_texts import (
    completion_for_agent,
    completion_for_user,
    watch_disabled_for_agent,
    watch_for_agent,
)
from gateway_core.processes.registry import ProcessRegistry, TrackedProcess
from gateway_core.processes.watch import BreakerTripped, Match, WatchOutcome
from gateway_core.runtime import GatewayState, Runtime
from gateway_core.turn import Notice, RequestKind, TurnRequest

log = logging.getLogger(__name__)


class NoticeRouter:
    def __init__(self, runtime: Runtime, processes: ProcessRegistry, lanes: Lanes) -> None:
        self._rt = runtime
        self._processes = processes
        self._lanes = lanes
        self._completions_queued: set[str] = set()  # exactly one completion notice per job
        self._tasks: set[asyncio.Future[None]] = set()
        processes.on_exit(self._job_ended)
        processes.on_watch(self._job_watched)

    async def queue_owed(self, only: Collection[int] | None = None) -> None:
        """At boot: completions owed from before (the job ended while we were down, or its
        notice had not run yet), read from the store so that each is told exactly once. On a
        node, `only` those of the sessions it took over."""
        for job in await self._rt.store.processes.untold_completions(only):
            await self._queue_completion(job, await self._processes.log_tail(job))

    async def close(self) -> None:
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def _job_ended(self, job: TrackedProcess) -> None:
        record = job.record
        if record.session_id is None or not record.notify_on_complete:
            return
        if self._rt.state is GatewayState.STARTING:
            return  # the boot queues owed completions from the store, in order
        if record.consumed:
            self._publish(record, "completion", "dropped-consumed")
            return
        self._background(self._queue_completion(record, job.output.text()))

    async def _queue_completion(self, job: JobRecord, output: str) -> None:
        if job.id in self._completions_queued or job.session_id is None:
            return
        self._completions_queued.add(job.id)
        notice = Notice(job.id, job.generation, "completion", True, completion_for_user(job))
        await self._queue(job, notice, completion_for_agent(job, output))

    def _job_watched(self, job: TrackedProcess, outcome: WatchOutcome) -> None:
        record = job.record
        if isinstance(outcome, BreakerTripped):
            log.warning(
                "watch breaker tripped: too many matches across jobs; dropping for %g s",
                outcome.cooldown,
            )
            self._publish(record, "breaker", "breaker-tripped")
            return
        if record.session_id is None:
            return
        what = "watch-match" if isinstance(outcome, Match) else "watch-disabled"
        lane = self._lanes.find(record.session_id)
        current = None if lane is None else lane.current
        if current is not None and current.generation == record.generation:
            # The turn that owns the job is running: it sees the output through its tools,
            # and a notice turn queued behind it would re-inject what it already handled.
            self._publish(record, what, "dropped-same-turn")
            return
        if current is not None and (current.generation or 0) > record.generation:
            self._publish(record, what, "dropped-stale")
            return
        text = (
            watch_for_agent(record, outcome)
            if isinstance(outcome, Match)
            else watch_disabled_for_agent(record, outcome)
        )
        notice = Notice(record.id, record.generation, what, False)
        self._background(self._queue(record, notice, text))

    async def _queue(self, job: JobRecord, notice: Notice, text: str) -> None:
        assert job.session_id is not None
        lane = self._lanes.find(job.session_id)
        session = lane.session if lane else await self._rt.store.sessions.get(job.session_id)
        if session is None:
            return
        self._lanes.submit(session, TurnRequest(RequestKind.NOTICE, text, notice=notice))
        self._publish(job, notice.what, "queued")

    def _publish(self, job: JobRecord, what: str, outcome: str) -> None:
        self._rt.events.publish(
            BackgroundNotice(self._rt.clock.now(), job.session_id, job.id, what, outcome)
        )

    def _background(self, work: Awaitable[None]) -> None:
        """Queued off the registry's listener (which must not block its reader)."""
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

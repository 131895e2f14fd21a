"""Waiting for a re-adopted job before resuming the turn that was waiting for it.

A turn killed while a foreground `terminal` command ran comes back, after the restart, with
that command's job re-adopted and still running. Resuming at once would either re-run the
command or tell the agent "effect unknown"; holding it would stop a task whose outcome is
about to be known. So the resume waits, in the session's lane (messages queue behind it as
they would behind the running turn), for the job to end or for the call's own timeout:

- the job ends: decide again; its exit status settles the call (the real result is recorded)
  and the decision resumes, holds or clears as it would for any candidate;
- the timeout passes: the job is killed exactly as the tool would have killed it, the tool's
  own "timed out" result is recorded, and the decision runs again.

A drain or an operator's interrupt cancels the wait; nothing is written, and the next boot
finds the same evidence.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from gateway_core.clock import wait_or_timeout
from gateway_core.delivery import Deliverer
from gateway_core.events import RecoveryDecided
from gateway_core.model import (
    MessageKind,
    NewMessage,
    RecoveryAction,
    Role,
    Session,
    SettledCall,
    Settlement,
)
from gateway_core.processes.registry import ProcessRegistry
from gateway_core.recovery.startup import Candidate, decide_again
from gateway_core.runtime import Runtime
from gateway_core.store.transaction import Transaction
from gateway_core.store.transcript import append_rows
from gateway_core.tools import terminal_results

log = logging.getLogger(__name__)


class JobWaiter:
    def __init__(
        self,
        runtime: Runtime,
        registry: ProcessRegistry,
        deliverer: Deliverer,
        loop_guard_tripped: Callable[[], bool],
        on_decided: Callable[[Candidate], None] = lambda candidate: None,
    ) -> None:
        self._rt = runtime
        self._registry = registry
        self._deliverer = deliverer
        self._tripped = loop_guard_tripped
        self._on_decided = on_decided

    async def settle(self, session: Session) -> bool:
        """Wait and decide again until the candidate no longer waits on a job; True when the
        decision is to resume now."""
        while True:
            candidate = await self._decide(session)
            if candidate is None:
                return False  # no longer a candidate (answered or cleared meanwhile)
            action = candidate.decision.action
            if action is RecoveryAction.RESUME:
                return True
            if action is not RecoveryAction.AWAIT_JOB:
                return False
            running = [s for s in candidate.decision.settled if s.how is Settlement.RUNNING]
            await self._wait_for_one(session, running)

    async def _decide(self, session: Session) -> Candidate | None:
        rt = self._rt
        decided = await decide_again(
            rt.store,
            [session.id],
            rt.policy,
            loop_guard_tripped=self._tripped(),
            output_of=self._registry.log_tail,
        )
        if not decided:
            return None
        candidate = decided[0]
        decision = candidate.decision
        rt.events.publish(
            RecoveryDecided(
                rt.clock.now(),
                session.id,
                decision.verdict.value,
                decision.action.value,
                decision.explanation,
            )
        )
        if candidate.notice_id is not None:
            self._deliverer.enqueue(session.id, candidate.notice_id)
        self._on_decided(candidate)
        return candidate

    async def _wait_for_one(self, session: Session, running: list[SettledCall]) -> None:
        """Until one of the jobs ends, or the earliest call timeout passes (then that job is
        killed and the tool's own timed-out result recorded)."""
        clock = self._rt.clock
        watched = []
        for call in running:
            job = None if call.process_id is None else self._registry.get(call.process_id)
            if job is not None and job.finished.is_set():
                return  # ended meanwhile: the next decision settles it with its real result
            if job is not None:
                watched.append((call, job))
        if not watched:
            return
        # Only a job still running may time out: one that ended keeps its exit status.
        first = min((call for call, _ in watched), key=lambda call: call.deadline or 0.0)
        waits = [asyncio.ensure_future(job.finished.wait()) for _, job in watched]
        left = max(0.0, (first.deadline or 0.0) - clock.now())
        try:
            ended = await wait_or_timeout(
                clock, asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED), left
            )
        finally:
            for wait in waits:
                wait.cancel()
        if not ended:
            await self._time_out(session, first)

    async def _time_out(self, session: Session, call: SettledCall) -> None:
        rt = self._rt
        assert call.process_id is not None and call.deadline is not None
        job = self._registry.get(call.process_id)
        if job is None:
            return
        killed = await self._registry.kill(
            call.process_id, grace=rt.config.gateway.grace, consume=True
        )
        timeout = call.deadline - job.record.started_at
        content = terminal_results.timed_out(
            timeout, killed.killed, killed.survivors, job.output.text()
        )
        log.info("re-adopted job %s timed out; its call is settled as timed out", job.id)
        row = NewMessage(
            Role.TOOL,
            content,
            kind=MessageKind.TOOL_RECOVERED,
            tool_call_id=call.call_id,
            tool_name=call.tool_name,
            generation=call.generation,
        )
        now = rt.clock.now()

        def txn(db: Transaction) -> None:
            append_rows(db, session.id, [row], now)

        await rt.store.write(txn)

"""The recovery candidates as the operator sees them, kept in step with the store.

The boot's decisions (and later ones, after a job a candidate waited for ended) give each
candidate its action; the store gives its state. The views are re-read, coalesced to one read
in flight, whenever a candidate's turn ends or an operator acts, so a snapshot soon stops
showing a marker that has cleared. Soon, not at once: a turn's reply can reach its user before
the turn's task has ended and asked for the refresh; `current()` waits for the refresh in
flight, for whoever needs the views to be up to date (the gateway's wait_idle).
"""

from __future__ import annotations

import asyncio

from gateway_core.delivery import Deliverer
from gateway_core.model import Decision, RecoveryState
from gateway_core.recovery.decision import operator_clear_notice
from gateway_core.recovery.startup import BootRecovery, Candidate
from gateway_core.recovery.tails import request_tails
from gateway_core.runtime import Runtime
from gateway_core.snapshot import CandidateView


class CandidateBoard:
    def __init__(self, runtime: Runtime, deliverer: Deliverer) -> None:
        self._rt = runtime
        self._deliverer = deliverer
        self.boot: BootRecovery | None = None
        self._views: dict[int, CandidateView] = {}
        # The newest decision on each candidate: what the console shows as its action.
        self._decisions: dict[int, Decision] = {}
        # The keys of the sessions this boot decided on: their events are logged by key,
        # and a cleared or held one has no lane to ask.
        self._keys: dict[int, str] = {}
        self._refreshing: asyncio.Task[None] | None = None
        self._again = False  # a refresh was asked for since the running one began

    @property
    def views(self) -> tuple[CandidateView, ...]:
        return tuple(self._views.values())

    def loop_guard_tripped(self) -> bool:
        return bool(self.boot and self.boot.loop_guard_tripped)

    def booted(self, boot: BootRecovery) -> None:
        self.boot = boot
        self.taken_over(boot)

    def taken_over(self, recovered: BootRecovery) -> None:
        """Decisions on sessions this run recovered (at its boot, or taken over from another
        node later): the console shows their actions as it shows the boot's."""
        for candidate in recovered.candidates:
            self._decisions[candidate.session.id] = candidate.decision
            self._keys[candidate.session.id] = str(candidate.session.key)

    def key_of(self, session_id: int) -> str | None:
        """The key of a session this boot decided on, or that is a candidate now."""
        view = self._views.get(session_id)
        return view.key if view is not None else self._keys.get(session_id)

    def decided_later(self, candidate: Candidate) -> None:
        """A candidate was decided again during the run (a job it waited for ended)."""
        self._decisions[candidate.session.id] = candidate.decision
        self.schedule_refresh()

    def turn_ended(self, session_id: int) -> None:
        """A candidate's turn ended: its marker may have cleared."""
        if session_id in self._views:
            self.schedule_refresh()

    def schedule_refresh(self) -> None:
        """Refresh soon. One asked for while a refresh runs runs again after it: the one
        running may have read the store before the change that asked for it."""
        self._again = True
        if self._refreshing is None or self._refreshing.done():
            self._refreshing = asyncio.get_running_loop().create_task(self._refresh_until_current())

    async def _refresh_until_current(self) -> None:
        while self._again:
            self._again = False
            await self.refresh()

    async def current(self) -> None:
        """Until no refresh is in flight: the views show every change that asked for one.
        (asyncio.wait, not an await of the task: a waiter cancelled leaves the refresh
        running, and a refresh that failed is close()'s to report.)"""
        while self._refreshing is not None and not self._refreshing.done():
            await asyncio.wait((self._refreshing,))

    async def close(self) -> None:
        if self._refreshing is not None:
            await asyncio.gather(self._refreshing, return_exceptions=True)

    async def refresh(self) -> None:
        """Re-read every recovery record that is not 'none' (an indexed read of few rows)."""
        now = self._rt.clock.now()
        views = {}
        for record, session in await self._rt.store.recovery.candidates():
            decision = self._decisions.get(session.id)
            views[session.id] = CandidateView(
                session_id=session.id,
                key=str(session.key),
                user_name=None if session.origin is None else session.origin.user_name,
                state=RecoveryState(record.state),
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
        self._views = views

    async def clear(self, session_id: int) -> tuple[bool, int | None]:
        """An operator drops a candidate; its user is told once, in the same transaction.
        Returns (cleared, the notice's outbox id)."""
        store, policy = self._rt.store, self._rt.policy
        record = await store.recovery.get(session_id)
        session = await store.sessions.get(session_id)
        if record is None or session is None:
            return False, None
        tail = (await request_tails(store.transcript, [session_id], policy.tail_rows))[session_id]
        notice, told = operator_clear_notice(record, session.origin, tail, policy)
        cleared, notice_id = await store.recovery.clear_and_tell(session_id, notice, told)
        if notice_id is not None:
            self._deliverer.enqueue(session_id, notice_id)
        return cleared, notice_id


def _settled_text(decision: Decision) -> list[str]:
    texts = []
    for call in decision.settled:
        text = f"{call.tool_name}: {call.how.value}"
        if call.exit_code is not None:
            text += f" (exit {call.exit_code})"
        texts.append(text)
    return texts

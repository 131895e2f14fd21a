"""Operator actions on a running gateway: the same API for the console, the CLI and the socket.

Every call writes one audit row (who, what, targets, reason, outcome), refusals included, and
returns an ActionResult whose message says plainly what happened or why not. A read-only
Control refuses every mutating action itself, whatever the UI shows.
"""

from __future__ import annotations

import getpass
import logging
from dataclasses import dataclass

from gateway_core.events import OperatorActed
from gateway_core.gateway import DrainReport, Gateway
from gateway_core.model import RecoveryAction, RecoveryState
from gateway_core.runtime import GatewayState
from gateway_core.turn import RequestKind, TurnRequest

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ActionResult:
    ok: bool
    message: str


MUTATING = frozenset(
    {
        "approve",
        "clear",
        "force-resume",
        "quiet",
        "resume-intake",
        "drain",
        "restart",
        "interrupt",
        "suspend",
        "unsuspend",
    }
)


def current_os_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


class Control:
    def __init__(self, gateway: Gateway, *, read_only: bool = False) -> None:
        self._gateway = gateway
        self.read_only = read_only

    # -- recovery candidates --------------------------------------------------------------

    async def approve(self, session_id: int, *, actor: str) -> ActionResult:
        """Run a held candidate now."""
        refusal = self._refuse_if_read_only("approve") or await self._refuse_unless_state(
            session_id, (RecoveryState.HELD,), "held"
        )
        if refusal:
            return await self._audit(actor, "approve", [session_id], None, refusal)
        return await self._audit(
            actor, "approve", [session_id], None, await self._resume(session_id)
        )

    async def clear(self, session_id: int, *, actor: str) -> ActionResult:
        """Drop a candidate: its turn will not be resumed."""
        refusal = self._refuse_if_read_only("clear")
        if refusal is None:
            cleared = await self._gateway.store.recovery.clear(session_id)
            result = (
                ActionResult(True, f"session {session_id}: recovery marker cleared")
                if cleared
                else ActionResult(False, f"session {session_id} is not a recovery candidate")
            )
        else:
            result = refusal
        return await self._audit(actor, "clear", [session_id], None, result)

    async def force_resume(self, session_id: int, *, actor: str, reason: str) -> ActionResult:
        """Resume any candidate, whatever its verdict. A reason is required and recorded."""
        refusal = self._refuse_if_read_only("force-resume")
        if refusal is None and not reason.strip():
            refusal = ActionResult(False, "force-resume needs a reason")
        if refusal is None:
            refusal = await self._refuse_unless_state(
                session_id,
                (RecoveryState.PENDING, RecoveryState.HELD, RecoveryState.RESUMING),
                "a recovery candidate",
            )
        result = refusal or await self._resume(session_id)
        return await self._audit(
            actor, "force-resume", [session_id], reason.strip() or None, result
        )

    async def suspend(self, session_id: int, *, actor: str, reason: str = "") -> ActionResult:
        """Never resume this session automatically again (its marker is kept for the record)."""
        refusal = self._refuse_if_read_only("suspend")
        if refusal is None:
            done = await self._gateway.store.recovery.suspend(session_id, reason or "operator")
            result = (
                ActionResult(True, f"session {session_id} suspended: never resumed automatically")
                if done
                else ActionResult(False, f"no session {session_id}")
            )
        else:
            result = refusal
        return await self._audit(actor, "suspend", [session_id], reason or None, result)

    async def unsuspend(self, session_id: int, *, actor: str) -> ActionResult:
        refusal = self._refuse_if_read_only("unsuspend")
        if refusal is None:
            done = await self._gateway.store.recovery.unsuspend(session_id)
            result = (
                ActionResult(True, f"session {session_id} is no longer suspended")
                if done
                else ActionResult(False, f"session {session_id} is not suspended")
            )
        else:
            result = refusal
        return await self._audit(actor, "unsuspend", [session_id], None, result)

    # -- turns and the gateway ------------------------------------------------------------

    async def interrupt(self, session_id: int, *, actor: str) -> ActionResult:
        refusal = self._refuse_if_read_only("interrupt")
        if refusal is None:
            result = (
                ActionResult(True, f"session {session_id}: turn interrupted")
                if self._gateway.lanes.interrupt(session_id)
                else ActionResult(False, f"session {session_id} has no running turn")
            )
        else:
            result = refusal
        return await self._audit(actor, "interrupt", [session_id], None, result)

    async def quiet(self, *, actor: str) -> ActionResult:
        refusal = self._refuse_if_read_only("quiet")
        if refusal is None:
            result = (
                ActionResult(True, "quiet: messages are stored, no new turn starts")
                if self._gateway.quiet()
                else ActionResult(False, f"cannot go quiet while {self._gateway.state}")
            )
        else:
            result = refusal
        return await self._audit(actor, "quiet", [], None, result)

    async def resume_intake(self, *, actor: str) -> ActionResult:
        refusal = self._refuse_if_read_only("resume-intake")
        if refusal is None:
            result = (
                ActionResult(True, "intake resumed: queued messages run now")
                if self._gateway.resume_intake()
                else ActionResult(False, f"not quiet (state {self._gateway.state})")
            )
        else:
            result = refusal
        return await self._audit(actor, "resume-intake", [], None, result)

    async def drain(self, *, actor: str, timeout: float | None = None) -> ActionResult:
        """Drain and stop the gateway (the audit row is written before the store closes)."""
        refusal = self._refuse_if_read_only("drain") or self._refuse_unless_live("drain")
        if refusal is not None:
            return await self._audit(actor, "drain", [], None, refusal)
        seconds = self._gateway.config.gateway.drain_timeout if timeout is None else timeout
        if seconds < 0:
            return await self._audit(
                actor, "drain", [], None, ActionResult(False, "drain timeout must be >= 0")
            )
        await self._audit(actor, "drain", [], None, ActionResult(True, f"draining ({seconds:g} s)"))
        report = await self._gateway.stop(seconds)
        return ActionResult(True, _describe(report))

    async def restart(self, *, actor: str, timeout: float | None = None) -> ActionResult:
        refusal = self._refuse_if_read_only("restart") or self._refuse_unless_live("restart")
        if refusal is not None:
            return await self._audit(actor, "restart", [], None, refusal)
        await self._audit(actor, "restart", [], None, ActionResult(True, "restarting"))
        boot = await self._gateway.restart(timeout)
        resumed = len(boot.with_action(RecoveryAction.RESUME))
        held = len(boot.with_action(RecoveryAction.HOLD))
        return ActionResult(
            True, f"restarted as run {boot.run.id}: {resumed} turn(s) resumed, {held} held"
        )

    # -- helpers --------------------------------------------------------------------------

    async def _resume(self, session_id: int) -> ActionResult:
        gateway = self._gateway
        session = await gateway.store.sessions.get(session_id)
        if session is None:
            return ActionResult(False, f"no session {session_id}")
        if session.origin is None:
            return ActionResult(False, f"session {session_id} has no origin: nowhere to reply")
        lane = gateway.lanes.find(session_id)
        if lane is not None and lane.busy:
            return ActionResult(False, f"session {session_id} is running a turn already")
        if gateway.state is not GatewayState.RUNNING:
            return ActionResult(False, f"the gateway is {gateway.state}; no turn can start")
        if session.key.platform not in gateway.runtime.adapters:
            return ActionResult(False, f"no adapter for {session.key.platform}")
        gateway.lanes.submit(session, TurnRequest(RequestKind.RESUME), first=True)
        return ActionResult(True, f"session {session_id}: resume turn started")

    async def _refuse_unless_state(
        self, session_id: int, states: tuple[RecoveryState, ...], wanted: str
    ) -> ActionResult | None:
        record = await self._gateway.store.recovery.get(session_id)
        if record is None:
            return ActionResult(False, f"no session {session_id}")
        if record.state not in states:
            return ActionResult(
                False, f"session {session_id} is not {wanted} (state {record.state})"
            )
        return None

    def _refuse_if_read_only(self, action: str) -> ActionResult | None:
        if self.read_only and action in MUTATING:
            return ActionResult(False, f"{action} refused: this console is read-only")
        return None

    def _refuse_unless_live(self, action: str) -> ActionResult | None:
        if self._gateway.state in (GatewayState.DRAINING, GatewayState.STOPPED):
            return ActionResult(False, f"{action} refused: the gateway is {self._gateway.state}")
        return None

    async def _audit(
        self,
        actor: str,
        action: str,
        targets: list[int],
        reason: str | None,
        result: ActionResult,
    ) -> ActionResult:
        gateway = self._gateway
        names = [str(t) for t in targets]
        outcome = "ok" if result.ok else "refused"
        if gateway.state is GatewayState.STOPPED:
            # No store to write to: the refusal is still returned and published.
            log.warning("%s by %s refused while stopped: %s", action, actor, result.message)
        else:
            await gateway.store.audit.record(actor, action, names, reason, outcome, result.message)
        gateway.events.publish(
            OperatorActed(gateway.clock.now(), actor, action, tuple(names), reason, outcome)
        )
        if action in ("approve", "clear", "force-resume", "suspend", "unsuspend") and result.ok:
            await gateway.refresh_candidates()
        return result


def _describe(report: DrainReport) -> str:
    if report.clean:
        return (
            f"drained cleanly in {report.seconds:.1f} s ({len(report.finished)} turn(s) finished)"
        )
    return (
        f"drained in {report.seconds:.1f} s: {len(report.finished)} finished, "
        f"{len(report.interrupted)} interrupted and left for recovery"
    )

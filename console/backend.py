"""What the console needs from a gateway, and the in-process way to get it.

The console only talks to a `Backend`. `InProcessBackend` wraps a gateway running in the same
event loop; the attach client (issue 8) implements the same protocol over the control socket,
so the console never knows which one it has.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from gateway_core.control import MUTATING, ActionResult, Control, current_os_user
from gateway_core.gateway import Gateway
from gateway_core.log_ring import LogRing
from gateway_core.model import AuditEntry, Message
from gateway_core.runtime import GatewayState
from gateway_core.snapshot import Snapshot


class Backend(Protocol):
    read_only: bool
    actor: str

    async def snapshot(self) -> Snapshot: ...

    async def transcript_tail(self, session_id: int, limit: int = 30) -> list[Message]: ...

    async def process_log(self, process_id: str, limit: int = 200) -> list[str]: ...

    async def audit_tail(self, limit: int = 100) -> list[AuditEntry]: ...

    def log_tail(self, limit: int = 200) -> list[str]: ...

    async def act(
        self,
        action: str,
        targets: Sequence[str] = (),
        *,
        reason: str | None = None,
        timeout: float | None = None,
    ) -> ActionResult: ...


class InProcessBackend:
    """A gateway in this process. Mutating actions go through Control (audited, and refused
    by Control itself when read-only, whatever the console shows)."""

    def __init__(
        self,
        gateway: Gateway,
        *,
        read_only: bool = False,
        log: LogRing | None = None,
        actor: str | None = None,
    ) -> None:
        self.gateway = gateway
        self.read_only = read_only
        self.actor = actor or current_os_user()
        self._control = Control(gateway, read_only=read_only)
        self._log = log

    async def snapshot(self) -> Snapshot:
        return self.gateway.snapshot()

    async def transcript_tail(self, session_id: int, limit: int = 30) -> list[Message]:
        if self.gateway.state is GatewayState.STOPPED:
            return []
        return await self.gateway.store.transcript.tail(session_id, limit)

    async def process_log(self, process_id: str, limit: int = 200) -> list[str]:
        if self.gateway.state is GatewayState.STOPPED:
            return []
        job = self.gateway.processes.get(process_id)
        return [] if job is None else job.output.tail(limit)

    async def audit_tail(self, limit: int = 100) -> list[AuditEntry]:
        if self.gateway.state is GatewayState.STOPPED:
            return []
        return await self.gateway.store.audit.recent(limit)

    def log_tail(self, limit: int = 200) -> list[str]:
        return [] if self._log is None else self._log.tail(limit)

    async def act(
        self,
        action: str,
        targets: Sequence[str] = (),
        *,
        reason: str | None = None,
        timeout: float | None = None,
    ) -> ActionResult:
        control, actor = self._control, self.actor
        if action not in MUTATING:
            return ActionResult(False, f"unknown action {action!r}")
        if action == "quiet":
            return await control.quiet(actor=actor)
        if action == "resume-intake":
            return await control.resume_intake(actor=actor)
        if action in ("drain", "restart"):
            # Long: the console keeps refreshing (drain progress) while this runs.
            call = control.drain if action == "drain" else control.restart
            return await call(actor=actor, timeout=timeout)
        results = [await self._one(action, target, reason) for target in targets]
        if not results:
            return ActionResult(False, f"{action}: nothing selected")
        failed = [r for r in results if not r.ok]
        if len(results) == 1:
            return results[0]
        summary = f"{action}: {len(results) - len(failed)} of {len(results)} done"
        if failed:
            summary += "; " + "; ".join(r.message for r in failed[:3])
        return ActionResult(not failed, summary)

    async def _one(self, action: str, target: str, reason: str | None) -> ActionResult:
        control, actor = self._control, self.actor
        if action == "kill-process":
            return await control.kill_process(target, actor=actor)
        try:
            session_id = int(target)
        except ValueError:
            return ActionResult(False, f"{target!r} is not a session id")
        if action == "approve":
            return await control.approve(session_id, actor=actor)
        if action == "clear":
            return await control.clear(session_id, actor=actor)
        if action == "force-resume":
            return await control.force_resume(session_id, actor=actor, reason=reason or "")
        if action == "interrupt":
            return await control.interrupt(session_id, actor=actor)
        if action == "suspend":
            return await control.suspend(session_id, actor=actor, reason=reason or "")
        if action == "unsuspend":
            return await control.unsuspend(session_id, actor=actor)
        return ActionResult(False, f"unknown action {action!r}")

"""What the console needs from a gateway, and the in-process way to get it.

The console only talks to a `Backend`. `InProcessBackend` wraps a gateway running in the same
event loop; the attach client (console.attach.SocketBackend) implements it over the control socket,
so the console never knows which one it has.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

from console.link import Link
from gateway_core.control import ActionResult, Control, current_os_user
from gateway_core.gateway import Gateway
from gateway_core.log_ring import LogEntry, LogRing
from gateway_core.model import AuditEntry, Message
from gateway_core.runtime import GatewayState
from gateway_core.session_listing import snapshot_with_stored_sessions
from gateway_core.snapshot import SessionQuery, Snapshot


class Backend(Protocol):
    read_only: bool
    actor: str

    @property
    def link(self) -> Link | None:
        """The connection to a gateway elsewhere (None in-process: nothing to lose)."""
        ...

    def on_link_change(self, callback: Callable[[], None]) -> None:
        """Call `callback()` as soon as the link is lost or comes back."""
        ...

    async def snapshot(self, query: SessionQuery | None = None) -> Snapshot:
        """Counts cover every session; `sessions` holds the ones the query selects, in its
        order (all of them when query is None)."""
        ...

    async def transcript_tail(self, session_id: int, limit: int = 30) -> list[Message]: ...

    async def process_log(self, process_id: str, limit: int = 200) -> list[str]: ...

    async def audit_tail(self, limit: int = 100) -> list[AuditEntry]: ...

    async def log_tail(self, limit: int = 200) -> list[str]: ...

    async def log_entries(self, after: int = 0, limit: int = 500) -> list[LogEntry]:
        """The gateway log's records numbered above `after` (the newest `limit`)."""
        ...

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

    @property
    def link(self) -> Link | None:
        return None

    def on_link_change(self, callback: Callable[[], None]) -> None:
        """In-process: the gateway cannot go away under the console."""

    async def snapshot(self, query: SessionQuery | None = None) -> Snapshot:
        return await snapshot_with_stored_sessions(self.gateway, query)

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

    async def log_tail(self, limit: int = 200) -> list[str]:
        return [] if self._log is None else self._log.tail(limit)

    async def log_entries(self, after: int = 0, limit: int = 500) -> list[LogEntry]:
        return [] if self._log is None else self._log.entries(after, limit)

    async def act(
        self,
        action: str,
        targets: Sequence[str] = (),
        *,
        reason: str | None = None,
        timeout: float | None = None,
    ) -> ActionResult:
        return await self._control.perform(
            action, targets, actor=self.actor, reason=reason, timeout=timeout
        )

"""Operator actions on a running gateway: the same API for the console, the CLI and the socket.

Every call writes one audit row (who, what, targets, reason, outcome), refusals included, and
returns an ActionResult whose message says plainly what happened or why not. A read-only
Control refuses every mutating action itself, whatever the UI shows.
"""

from __future__ import annotations

import getpass
import logging
import math
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from enum import StrEnum

from gateway_core.events import OperatorActed
from gateway_core.gateway import DrainReport, Gateway
from gateway_core.model import ProcessState, RecoveryAction, RecoveryState
from gateway_core.runtime import GatewayState
from gateway_core.turn import RequestKind, TurnRequest
from gateway_core.words import plural

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ActionResult:
    ok: bool
    message: str


class Action(StrEnum):
    """The operator actions by name (the socket's and the CLI's names are these values)."""

    APPROVE = "approve"
    CLEAR = "clear"
    FORCE_RESUME = "force-resume"
    QUIET = "quiet"
    RESUME_INTAKE = "resume-intake"
    DRAIN = "drain"
    RESTART = "restart"
    INTERRUPT = "interrupt"
    SUSPEND = "suspend"
    UNSUSPEND = "unsuspend"
    KILL_PROCESS = "kill-process"
    RESEND = "resend"
    RESET_LOOP_GUARD = "reset-loop-guard"


MUTATING = frozenset(Action)  # every one of them: read-only mode refuses them all
# After these the candidate board is read again from the store.
CHANGES_CANDIDATES = frozenset(
    {
        Action.APPROVE,
        Action.CLEAR,
        Action.FORCE_RESUME,
        Action.SUSPEND,
        Action.UNSUSPEND,
        Action.RESET_LOOP_GUARD,
    }
)


class Via(StrEnum):
    """A client an operator acts through, as the client's hello declares it. The audit keeps
    it beside the OS user (which the socket's peer credentials prove): the declaration comes
    from a process of that same user, so it says where the action came from, never who."""

    WEB = "web"  # a visitor of `switchboard web`: a browser tab's own attached console


def actor_name(user: str, via: Via | None = None) -> str:
    """The audit's actor: the OS user, and the client it came through if it said one."""
    return user if via is None else f"{user} via {via}"


def current_os_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


# Headless mode restarts by exiting 75 after the drain (the service manager starts it again):
# the hook drains and arranges that exit, given the drain timeout.
RestartHook = Callable[[float | None], Awaitable[str]]


class Control:
    def __init__(
        self,
        gateway: Gateway,
        *,
        read_only: bool = False,
        restart_hook: RestartHook | None = None,
    ) -> None:
        self._gateway = gateway
        self.read_only = read_only
        self._restart_hook = restart_hook

    # -- recovery candidates --------------------------------------------------------------

    async def approve(self, session_id: int, *, actor: str) -> ActionResult:
        """Run a held candidate now."""

        async def body() -> ActionResult:
            refusal = await self._refuse_if_owned_elsewhere(
                session_id, Action.APPROVE
            ) or await self._refuse_unless_state(session_id, (RecoveryState.HELD,), "held")
            return refusal or await self._resume(session_id)

        return await self._act(actor, Action.APPROVE, [session_id], None, body)

    async def clear(self, session_id: int, *, actor: str) -> ActionResult:
        """Drop a candidate: its turn will not be resumed."""

        async def body() -> ActionResult:
            # Another node's candidate: its user's notice would wait in the outbox for a
            # delivery that only the owner may claim, and its board would not know.
            refusal = await self._refuse_if_owned_elsewhere(session_id, Action.CLEAR)
            if refusal is not None:
                return refusal
            cleared, notice_id = await self._gateway.clear_candidate(session_id)
            if not cleared:
                return ActionResult(False, f"session {session_id} is not a recovery candidate")
            told = "; the user was told" if notice_id is not None else ""
            return ActionResult(True, f"session {session_id}: recovery marker cleared{told}")

        return await self._act(actor, Action.CLEAR, [session_id], None, body)

    async def force_resume(self, session_id: int, *, actor: str, reason: str) -> ActionResult:
        """Resume any candidate, whatever its verdict. A reason is required and recorded."""

        async def body() -> ActionResult:
            if not reason.strip():
                return ActionResult(False, "force-resume needs a reason")
            refusal = await self._refuse_if_owned_elsewhere(
                session_id, Action.FORCE_RESUME
            ) or await self._refuse_unless_state(
                session_id,
                (RecoveryState.PENDING, RecoveryState.HELD, RecoveryState.RESUMING),
                "a recovery candidate",
            )
            return refusal or await self._resume(session_id)

        return await self._act(
            actor, Action.FORCE_RESUME, [session_id], reason.strip() or None, body
        )

    async def suspend(self, session_id: int, *, actor: str, reason: str = "") -> ActionResult:
        """Never resume this session automatically again (its marker is kept for the record)."""

        async def body() -> ActionResult:
            if await self._gateway.store.recovery.suspend(session_id, reason or "operator"):
                return ActionResult(
                    True, f"session {session_id} suspended: never resumed automatically"
                )
            return ActionResult(False, f"no session {session_id}")

        return await self._act(actor, Action.SUSPEND, [session_id], reason or None, body)

    async def unsuspend(self, session_id: int, *, actor: str) -> ActionResult:
        async def body() -> ActionResult:
            if await self._gateway.store.recovery.unsuspend(session_id):
                return ActionResult(True, f"session {session_id} is no longer suspended")
            return ActionResult(False, f"session {session_id} is not suspended")

        return await self._act(actor, Action.UNSUSPEND, [session_id], None, body)

    async def reset_loop_guard(self, *, actor: str) -> ActionResult:
        """Leave the restart-loop guard: the turns it held back (that would have resumed
        without it) resume now, once each; candidates held for their own reasons stay."""

        async def body() -> ActionResult:
            gateway = self._gateway
            report = gateway.report
            if report is None or not report.loop_guard.active:
                return ActionResult(False, "the restart-loop guard has not tripped")
            if gateway.state is not GatewayState.RUNNING:
                return ActionResult(False, f"the gateway is {gateway.state}; no turn can start")
            guard = replace(report.loop_guard, reset_by=actor, reset_at=gateway.clock.now())
            gateway.report = replace(report, loop_guard=guard)
            resumed: list[int] = []
            skipped: list[int] = []
            for session_id in guard.held:
                record = await gateway.store.recovery.get(session_id)
                if record is None or record.state != RecoveryState.HELD:
                    skipped.append(session_id)  # an operator dealt with it already
                    continue
                result = await self._resume(session_id)
                (resumed if result.ok else skipped).append(session_id)
            targets[:] = [str(sid) for sid in resumed]  # the audit row names what it resumed
            message = f"restart-loop guard reset: {plural(len(resumed), 'held turn')} resumed"
            if skipped:
                message += f", {len(skipped)} no longer held or not resumable"
            return ActionResult(True, message)

        targets: list[str] = []
        return await self._act(actor, Action.RESET_LOOP_GUARD, targets, None, body)

    # -- turns and the gateway ------------------------------------------------------------

    async def interrupt(self, session_id: int, *, actor: str) -> ActionResult:
        async def body() -> ActionResult:
            # Another node runs the session's turns: this node has nothing to interrupt.
            refusal = await self._refuse_if_owned_elsewhere(session_id, Action.INTERRUPT)
            if refusal is not None:
                return refusal
            if self._gateway.lanes.interrupt(session_id):
                return ActionResult(True, f"session {session_id}: turn interrupted")
            return ActionResult(False, f"session {session_id} has no running turn")

        return await self._act(actor, Action.INTERRUPT, [session_id], None, body)

    async def kill_process(self, process_id: str, *, actor: str) -> ActionResult:
        """Kill a background job's whole tree. Its conversation is still told it ended (an
        operator's kill is not the agent's: nothing consumed its completion)."""

        async def body() -> ActionResult:
            job = self._gateway.processes.get(process_id)
            if job is None:
                node = self._gateway.runtime.node
                if node is not None:  # jobs run on the machine of the node that started them
                    return ActionResult(
                        False,
                        f"no process {process_id} on node {node.id}; a job is killed by the"
                        " node that started it: attach to that node",
                    )
                return ActionResult(False, f"no process {process_id}")
            if job.state != ProcessState.RUNNING:
                return ActionResult(False, f"process {process_id} is not running ({job.state})")
            result = await self._gateway.processes.kill(
                process_id, grace=self._gateway.config.gateway.grace
            )
            if not result.killed:
                return ActionResult(
                    False, f"process {process_id} NOT killed: {list(result.survivors)} survived"
                )
            return ActionResult(True, f"process {process_id} killed")

        return await self._act(actor, Action.KILL_PROCESS, [process_id], None, body)

    async def resend(self, outbox_id: int, *, actor: str) -> ActionResult:
        """Send again a reply whose outcome is unknown (the gateway died while sending it, or
        the platform's answer was lost). Only the operator can tell it did not arrive: the
        gateway never resends it by itself, since a blind retry could show it twice."""

        async def body() -> ActionResult:
            # Only the session's owner may claim a delivery: queued here, it would never go.
            queued = await self._gateway.store.outbox.get(outbox_id)
            refusal = None
            if queued is not None:
                refusal = await self._refuse_if_owned_elsewhere(queued.session_id, Action.RESEND)
            if refusal is not None:
                return refusal
            item = await self._gateway.resend(outbox_id)
            if item is None:
                return ActionResult(False, f"delivery {outbox_id} is not of unknown outcome")
            return ActionResult(True, f"delivery {outbox_id} queued to be sent again")

        return await self._act(actor, Action.RESEND, [outbox_id], None, body)

    async def quiet(self, *, actor: str) -> ActionResult:
        async def body() -> ActionResult:
            if self._gateway.quiet():
                return ActionResult(True, "quiet: messages are stored, no new turn starts")
            return ActionResult(False, f"cannot go quiet while {self._gateway.state}")

        return await self._act(actor, Action.QUIET, [], None, body)

    async def resume_intake(self, *, actor: str) -> ActionResult:
        async def body() -> ActionResult:
            if self._gateway.resume_intake():
                return ActionResult(True, "intake resumed: queued messages run now")
            return ActionResult(False, f"not quiet (state {self._gateway.state})")

        return await self._act(actor, Action.RESUME_INTAKE, [], None, body)

    async def drain(self, *, actor: str, timeout: float | None = None) -> ActionResult:
        """Drain and stop the gateway (the audit row is written before the store closes)."""
        refusal = self._refuse_if_read_only(Action.DRAIN) or self._refuse_unless_live(Action.DRAIN)
        if refusal is not None:
            return await self._audit(actor, Action.DRAIN, [], None, refusal)
        seconds = self._gateway.config.gateway.drain_timeout if timeout is None else timeout
        if not _valid_timeout(seconds):
            return await self._audit(
                actor, Action.DRAIN, [], None, ActionResult(False, "drain timeout must be >= 0")
            )
        await self._audit(
            actor, Action.DRAIN, [], None, ActionResult(True, f"draining ({seconds:g} s)")
        )
        report = await self._gateway.stop(seconds)
        return ActionResult(True, _describe(report))

    async def restart(self, *, actor: str, timeout: float | None = None) -> ActionResult:
        refusal = self._refuse_if_read_only(Action.RESTART) or self._refuse_unless_live(
            Action.RESTART
        )
        if refusal is None and timeout is not None and not _valid_timeout(timeout):
            refusal = ActionResult(False, "drain timeout must be >= 0")
        if refusal is not None:
            return await self._audit(actor, Action.RESTART, [], None, refusal)
        await self._audit(actor, Action.RESTART, [], None, ActionResult(True, "restarting"))
        if self._restart_hook is not None:
            return ActionResult(True, await self._restart_hook(timeout))
        boot = await self._gateway.restart(timeout)
        resumed = len(boot.with_action(RecoveryAction.RESUME))
        held = len(boot.with_action(RecoveryAction.HOLD))
        return ActionResult(
            True,
            f"restarted as run {boot.run.id}: {plural(resumed, 'turn')} resumed, "
            f"{held} held for an operator",
        )

    # -- by name (the console, the socket and the CLI) -----------------------------------

    async def perform(
        self,
        action: str,  # an Action's value: the socket and the CLI send names
        targets: Sequence[str] = (),
        *,
        actor: str,
        reason: str | None = None,
        timeout: float | None = None,
    ) -> ActionResult:
        """Any operator action by its name; several targets are acted on one by one and
        summed up in one result (ok only if every one succeeded)."""
        try:
            chosen = Action(action)
        except ValueError:
            return ActionResult(False, f"unknown action {action!r}")
        whole = self._gateway_wide(chosen, actor, timeout)
        if whole is not None:
            return await whole()
        if not targets:
            return ActionResult(False, f"{chosen}: no target given")
        results = [await self._on_target(chosen, target, actor, reason) for target in targets]
        if len(results) == 1:
            return results[0]
        failed = [r for r in results if not r.ok]
        summary = f"{chosen}: {len(results) - len(failed)} of {len(results)} done"
        if failed:
            summary += "; " + "; ".join(r.message for r in failed[:3])
        return ActionResult(not failed, summary)

    def _gateway_wide(
        self, action: Action, actor: str, timeout: float | None
    ) -> Callable[[], Awaitable[ActionResult]] | None:
        """The actions on the whole gateway (no target), or None for a per-target one."""
        table: dict[Action, Callable[[], Awaitable[ActionResult]]] = {
            Action.QUIET: lambda: self.quiet(actor=actor),
            Action.RESUME_INTAKE: lambda: self.resume_intake(actor=actor),
            Action.DRAIN: lambda: self.drain(actor=actor, timeout=timeout),
            Action.RESTART: lambda: self.restart(actor=actor, timeout=timeout),
            Action.RESET_LOOP_GUARD: lambda: self.reset_loop_guard(actor=actor),
        }
        return table.get(action)

    async def _on_target(
        self, action: Action, target: str, actor: str, reason: str | None
    ) -> ActionResult:
        if action is Action.KILL_PROCESS:
            return await self.kill_process(target, actor=actor)
        if action is Action.RESEND:
            try:
                return await self.resend(int(target), actor=actor)
            except ValueError:
                return ActionResult(False, f"{target!r} is not a delivery id")
        try:
            session_id = int(target)
        except ValueError:
            return ActionResult(False, f"{target!r} is not a session id")
        on_session: dict[Action, Callable[[int], Awaitable[ActionResult]]] = {
            Action.APPROVE: lambda sid: self.approve(sid, actor=actor),
            Action.CLEAR: lambda sid: self.clear(sid, actor=actor),
            Action.FORCE_RESUME: lambda sid: self.force_resume(
                sid, actor=actor, reason=reason or ""
            ),
            Action.INTERRUPT: lambda sid: self.interrupt(sid, actor=actor),
            Action.SUSPEND: lambda sid: self.suspend(sid, actor=actor, reason=reason or ""),
            Action.UNSUSPEND: lambda sid: self.unsuspend(sid, actor=actor),
        }
        return await on_session[action](session_id)

    # -- helpers --------------------------------------------------------------------------

    async def _act(
        self,
        actor: str,
        action: Action,
        targets: list[int] | list[str],
        reason: str | None,
        body: Callable[[], Awaitable[ActionResult]],
    ) -> ActionResult:
        """Refuse if read-only, else run the action; audit the outcome either way."""
        result = self._refuse_if_read_only(action) or await body()
        return await self._audit(actor, action, targets, reason, result)

    async def _resume(self, session_id: int) -> ActionResult:
        gateway = self._gateway
        session = await gateway.store.sessions.get(session_id)
        if session is None:
            return ActionResult(False, f"no session {session_id}")
        if session.origin is None:
            return ActionResult(False, f"session {session_id} has no origin: nowhere to reply")
        # (The guard's reset resumes through here too: a held session another node took over
        # since this boot is that node's to resume.)
        elsewhere = await self._refuse_if_owned_elsewhere(session_id, Action.APPROVE)
        if elsewhere is not None:
            return elsewhere
        lane = gateway.lanes.find(session_id)
        if lane is not None and lane.resume_pending:
            return ActionResult(False, f"session {session_id}: a resume is already under way")
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

    async def _refuse_if_owned_elsewhere(
        self, session_id: int, action: Action
    ) -> ActionResult | None:
        """On a node: refuse an action that needs the session's owner (its lane, its turn, its
        delivery) when another node holds the session's lease. Queued here it would be
        dropped by the lease (the turn's start is refused for a session another node owns),
        so the operator is told where to go instead. A lapsed lease is nobody's: then this
        node may take the session and act. On SQLite there are no nodes and no leases."""
        node = self._gateway.runtime.node
        if node is None:
            return None
        owner = await self._gateway.store.owners.of_session(session_id)
        if owner is None or owner == node.id:
            return None
        return ActionResult(
            False,
            f"session {session_id} is owned by node {owner}; attach to that node to {action} it",
        )

    def _refuse_if_read_only(self, action: Action) -> ActionResult | None:
        if self.read_only and action in MUTATING:
            # No "<action> refused:" prefix: the CLI and the console say that themselves.
            return ActionResult(False, "this console is read-only")
        return None

    def _refuse_unless_live(self, action: Action) -> ActionResult | None:
        if self._gateway.state in (GatewayState.DRAINING, GatewayState.STOPPED):
            return ActionResult(False, f"the gateway is {self._gateway.state}")
        return None

    async def _audit(
        self,
        actor: str,
        action: Action,
        targets: list[int] | list[str],
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
        if action in CHANGES_CANDIDATES and result.ok:
            await gateway.refresh_candidates()
        return result


def _valid_timeout(seconds: float) -> bool:
    """A drain deadline: finite and not negative (NaN would never pass, -1 kills at once)."""
    return math.isfinite(seconds) and seconds >= 0


def _describe(report: DrainReport) -> str:
    if report.clean:
        return (
            f"drained cleanly in {report.seconds:.1f} s "
            f"({plural(len(report.finished), 'turn')} finished)"
        )
    return (
        f"drained in {report.seconds:.1f} s: {plural(len(report.finished), 'turn')} finished, "
        f"{len(report.interrupted)} interrupted and left for recovery"
    )

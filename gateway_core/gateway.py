"""The gateway: what an embedder (the console, `switchboard run`, the tests) holds.

    gateway = Gateway(config, agent=agent, adapters=[adapter])
    boot = await gateway.start()      # builds one LiveRun and boots it
    gateway.snapshot()                # an immutable picture, for the console and the CLI
    gateway.quiet() / resume_intake()
    await gateway.stop(timeout)       # the drain (drain.py), then every part closed
    await gateway.restart(timeout)    # stop, then start again in this process

Across runs it keeps only what outlives one: the configuration, the clock, the event bus,
the agent, the adapters and the tools. Everything else (store, lanes, deliverer, notifiers,
background jobs, recovery candidates) belongs to the LiveRun that start() builds whole and
stop() closes whole; while stopped there is none, and asking for one says so.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import replace

from gateway_core.adapters.base import Adapter
from gateway_core.agents.base import Agent
from gateway_core.boot_report import BootReport, read_boot_report
from gateway_core.clock import Clock, SystemClock
from gateway_core.config import Config
from gateway_core.delivery import Deliverer
from gateway_core.drain import Drain, DrainReport, KillHook
from gateway_core.events import DrainProgress, EventBus
from gateway_core.lanes import Lanes
from gateway_core.live_run import LiveRun
from gateway_core.model import Origin, OutboxItem, RunRecord
from gateway_core.node import Node
from gateway_core.private_files import warn_if_shared
from gateway_core.processes.registry import ProcessRegistry
from gateway_core.questions import Questions
from gateway_core.recovery.policy import policy_from_settings
from gateway_core.recovery.startup import BootRecovery
from gateway_core.runtime import GatewayState, Runtime
from gateway_core.snapshot import LivePicture, Snapshot, SnapshotCache, build_snapshot
from gateway_core.store import Store
from gateway_core.store_choice import open_configured_store
from gateway_core.tools.basic import ClockTool, SleepTool
from gateway_core.tools.clarify import ClarifyTool
from gateway_core.tools.processes import ProcessTool, TerminalTool
from gateway_core.tools.registry import Tool, ToolBox

log = logging.getLogger(__name__)

__all__ = ["DrainReport", "Gateway", "KillHook"]


class Gateway:
    def __init__(
        self,
        config: Config,
        *,
        agent: Agent,
        adapters: Sequence[Adapter],
        clock: Clock | None = None,
        tools: Iterable[Tool] | None = None,
        store_dsn: str | None = None,
    ) -> None:
        self.config = config
        # store.backend = postgresql: the DSN read from the environment (store_choice.py).
        self._store_dsn = store_dsn
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
        self._kill_hooks: list[KillHook] = []
        self._live: LiveRun | None = None
        # What outlives a run, for the snapshot and the operator: the last boot and drain.
        self.run: RunRecord | None = None
        self.boot: BootRecovery | None = None
        self.report: BootReport | None = None  # the previous run, the loop guard (console)
        self._drain: Drain | None = None
        self._previous_drain: DrainProgress | None = None  # the last one of an earlier run
        self._stopped = asyncio.Event()
        self._stopping: asyncio.Task[DrainReport] | None = None
        self._forced = asyncio.Event()  # a second stop signal: end the drain wait now
        self._snapshots = SnapshotCache()

    # -- the live run ---------------------------------------------------------------------

    @property
    def live(self) -> LiveRun:
        """The parts of the current run; RuntimeError while the gateway is stopped."""
        if self._live is None:
            raise RuntimeError("the gateway is not started")
        return self._live

    @property
    def running(self) -> bool:
        return self._live is not None

    @property
    def runtime(self) -> Runtime:
        return self.live.runtime

    @property
    def store(self) -> Store:
        return self.live.runtime.store

    @property
    def lanes(self) -> Lanes:
        return self.live.lanes

    @property
    def processes(self) -> ProcessRegistry:
        return self.live.processes

    @property
    def deliverer(self) -> Deliverer:
        return self.live.deliverer

    @property
    def state(self) -> GatewayState:
        return GatewayState.STOPPED if self._live is None else self._live.runtime.state

    @property
    def unknown_deliveries(self) -> int:
        return 0 if self._live is None else self._live.deliverer.unknown

    def session_key(self, session_id: int) -> str | None:
        """The key of a session this run has a lane for or its boot decided on (None
        otherwise, or when stopped)."""
        if self._live is None:
            return None
        lane = self._live.lanes.find(session_id)
        if lane is not None:
            return str(lane.session.key)
        return self._live.candidates.key_of(session_id)

    def add_kill_hook(self, hook: KillHook) -> None:
        """Register cleanup that kills tool processes when a drain times out."""
        self._kill_hooks.append(hook)

    # -- start, quiet, stop ---------------------------------------------------------------

    async def start(self) -> BootRecovery:
        if self._live is not None:
            raise RuntimeError("the gateway is already started")
        config = self.config
        warn_if_shared(config.gateway.state_dir)
        store = await open_configured_store(config, self.clock, self._store_dsn)
        policy = policy_from_settings(config.recovery)
        # Tools that declare themselves read-only are safe to re-run after an interruption.
        policy = replace(
            policy, read_only_tools=policy.read_only_tools | self._tools.read_only_names()
        )
        runtime = Runtime(
            config, store, self.clock, self.events, self._agent, self._tools, self._adapters, policy
        )
        runtime.node = Node.from_config(config)
        live = LiveRun(runtime, self.questions)
        self._live = live
        self._stopped.clear()
        self._stopping = None
        self._forced.clear()
        if self._drain is not None and self._drain.latest is not None:
            self._previous_drain = self._drain.latest  # a restart in this process
        self._drain = None
        self._snapshots = SnapshotCache()
        runtime.set_state(GatewayState.STARTING)
        try:
            boot = await live.boot()
            self.report = await read_boot_report(store, boot.run, boot, runtime.policy)
        except BaseException:
            await store.close()
            self._live = None
            raise
        self.run, self.boot = live.record, boot
        return boot

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
        """Until no lane has work, no reply waits to be sent and the snapshot's recovery
        candidates are current."""
        await self.live.wait_idle()

    async def _drain_and_close(self, timeout: float) -> DrainReport:
        live = self.live
        self._drain = Drain(
            live.runtime,
            self._adapters,
            live.lanes,
            live.deliverer,
            live.candidates,
            [live.kill_jobs_of, *self._kill_hooks],
            self._forced,
        )
        try:
            report = await self._drain.run(timeout)
        except Exception:
            # A failing step (a full disk while marking, a hook) must not leave the gateway
            # half-drained forever: record it as unclean and close what can be closed.
            log.exception("the drain failed; stopping anyway")
            report = DrainReport(False, (), (), 0.0)
        await self._close(live, report.clean)
        return report

    async def _close(self, live: LiveRun, clean: bool) -> None:
        """The gateway always ends STOPPED, even when a closing step fails: a close that
        wedged half-way would keep the process alive forever."""
        closers: dict[str, Callable[[], Awaitable[object]]] = {
            f"adapter {name}": adapter.close for name, adapter in self._adapters.items()
        }
        agent_close = getattr(self._agent, "close", None)
        if agent_close is not None:  # an agent with connections (openai) lets them go
            closers["agent"] = agent_close
        try:
            await live.close(clean, closers)
        finally:
            live.runtime.set_state(GatewayState.STOPPED)
            self._live = None
            self._stopped.set()

    # -- for the operator's actions (control.py) ------------------------------------------

    async def refresh_candidates(self) -> None:
        await self.live.candidates.refresh()

    async def clear_candidate(self, session_id: int) -> tuple[bool, int | None]:
        """An operator drops a candidate; its user is told once. (cleared, notice id)"""
        return await self.live.candidates.clear(session_id)

    async def resend(self, outbox_id: int) -> OutboxItem | None:
        """An operator's resend of a delivery of unknown outcome: queued again, once."""
        return await self.live.deliverer.resend(outbox_id)

    async def post_notice(self, session_id: int, text: str) -> int:
        """Tell a session's user something outside any turn, through the outbox."""
        return await self.live.deliverer.post_notice(session_id, text)

    # -- the picture ----------------------------------------------------------------------

    def snapshot(self) -> Snapshot:
        live = self._live
        picture = None
        now_mono = self.clock.monotonic()
        if live is not None:
            picture = LivePicture(
                lanes=live.lanes.all(),
                notifiers=live.notifiers.views(),
                jobs=live.processes.all(),
                candidates=live.candidates.views,
                usage=live.runtime.usage,
                unknown_deliveries=live.deliverer.unknown,
                uptime=now_mono - live.started_mono,
            )
        return build_snapshot(
            picture,
            self._snapshots,
            state=self.state,
            run_id=None if self.run is None else self.run.id,
            started_at=None if self.run is None else self.run.started_at,
            loop_guard=None if self.report is None else self.report.loop_guard,
            previous_run=None if self.report is None else self.report.previous_run,
            drain=None if self._drain is None else self._drain.latest,
            previous_drain=self._previous_drain,
            now=self.clock.now(),
            now_mono=now_mono,
        )

    def _origin_of(self, session_id: int) -> Origin | None:
        lane = None if self._live is None else self._live.lanes.find(session_id)
        return None if lane is None else lane.session.origin

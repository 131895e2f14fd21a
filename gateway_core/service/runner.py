"""The gateway as a service: `switchboard run` (headless) and `switchboard console` share it.

    lock the state dir -> start the gateway -> open the control socket -> READY=1
    SIGTERM / SIGINT  -> STOPPING=1, drain with the configured timeout (EXTEND_TIMEOUT_USEC
                         while it legitimately runs long) -> exit 0
    a second signal   -> the drain is cut short: what still runs is left for recovery
    restart (socket)  -> drain, then exit 75 so the service manager starts a fresh process
    drain (socket)    -> drain, then exit 0

With [http] listen or a Telegram webhook, the HTTP listeners (http_surface.py) start before
the gateway boots and close after it stopped.

Every gateway event is also a JSON log line naming the event and the session.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Sequence

from gateway_core.adapters.base import Adapter
from gateway_core.agents.base import Agent
from gateway_core.clock import Clock
from gateway_core.config import Config
from gateway_core.event_loop import running_loop_kind
from gateway_core.events import DrainProgress, Event, GatewayStateChanged
from gateway_core.gateway import Gateway
from gateway_core.log_ring import LogRing
from gateway_core.runtime import GatewayState
from gateway_core.service.control_server import ControlServer
from gateway_core.service.http_surface import HttpSurface
from gateway_core.service.sdnotify import SystemdNotifier, watchdog_interval, watchdog_loop
from gateway_core.service.state_lock import StateLock
from gateway_core.words import plural

log = logging.getLogger(__name__)

EXIT_OK = 0
EXIT_RESTART = 75
EXTEND_EVERY = 5.0
EXTEND_MARGIN = 15.0


class GatewayService:
    def __init__(
        self,
        config: Config,
        *,
        agent: Agent,
        adapters: Sequence[Adapter],
        notifier: SystemdNotifier,
        clock: Clock | None = None,
        ring: LogRing | None = None,
        exit_to_restart: bool = True,
        store_dsn: str | None = None,
    ) -> None:
        self.config = config
        self.gateway = Gateway(
            config, agent=agent, adapters=adapters, clock=clock, store_dsn=store_dsn
        )
        self.notifier = notifier
        self.ring = ring
        self.exit_code = EXIT_OK
        # Headless: a restart exits 75 for the service manager. With a console in the
        # process, a restart happens in place (nobody would start us again).
        self._exit_to_restart = exit_to_restart
        self._lock = StateLock(config.gateway.state_dir)
        self.http = HttpSurface.for_config(config, self.gateway, adapters)
        self._server: ControlServer | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._signals = 0
        self._stopping: asyncio.Task[object] | None = None
        self._started = False
        self._stop_when_started = False

    async def start(self) -> None:
        """Lock, boot and listen. Raises StateDirBusy if another gateway has the state dir."""
        self._lock.acquire()
        try:
            self._tasks.append(asyncio.create_task(self._follow_events(), name="event-log"))
            if self.http is not None:
                await self.http.start()
            await self.gateway.start()
            self._server = ControlServer(
                self.gateway,
                self.config.control.socket,
                log_ring=self.ring,
                restart_hook=self._restart if self._exit_to_restart else None,
            )
            await self._server.start()
        except BaseException:
            if self.gateway.state is not GatewayState.STOPPED:
                await self.gateway.stop(0)  # or its threads keep the process alive
            await self._cleanup()
            raise
        interval = watchdog_interval()
        if interval is not None:
            self._tasks.append(
                asyncio.create_task(watchdog_loop(self.notifier, interval), name="watchdog")
            )
        self._started = True
        self.notifier.ready("intake started")
        log.info("gateway ready (event loop: %s)", running_loop_kind(), extra={"event": "ready"})
        if self._stop_when_started:  # a signal came while we were starting
            self.request_stop()

    def install_signal_handlers(self) -> None:
        """Before start(): a signal while booting stops the gateway right after the boot."""
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self.on_signal, signum)

    def on_signal(self, signum: int) -> None:
        self._signals += 1
        name = signal.Signals(signum).name
        if self._signals == 1:
            log.info("%s: draining", name, extra={"event": "signal_drain"})
            self.request_stop()
        else:
            log.warning("%s again: stopping now", name, extra={"event": "signal_force"})
            if not self.gateway.force_stop():
                self.request_stop()

    def request_stop(self, timeout: float | None = None) -> None:
        if not self._started:
            self._stop_when_started = True
            return
        if self._stopping is None and self.gateway.state is not GatewayState.STOPPED:
            self._stopping = asyncio.ensure_future(self.gateway.stop(timeout))

    async def _restart(self, timeout: float | None) -> str:
        """Headless restart: drain, then exit 75 for the service manager to start us again."""
        self.exit_code = EXIT_RESTART
        report = await self.gateway.stop(timeout)
        how = (
            "drained cleanly"
            if report.clean
            else f"drained; {plural(len(report.interrupted), 'turn')} interrupted and left for "
            "recovery"
        )
        return (
            f"{how}; exiting with code {EXIT_RESTART} so the service manager starts the "
            "gateway again"
        )

    async def wait(self) -> int:
        """Until the gateway stopped (a signal, or drain/restart over the socket)."""
        await self.gateway.wait_stopped()
        if self._stopping is not None:
            await asyncio.gather(self._stopping, return_exceptions=True)
        await self._cleanup()
        log.info("gateway stopped", extra={"event": "stopped"})
        return self.exit_code

    async def _cleanup(self) -> None:
        if self._server is not None:
            await self._server.close()
            self._server = None
        if self.http is not None:
            await self.http.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        self._lock.release()

    async def _follow_events(self) -> None:
        """Log every event as a JSON line; tell systemd about the drain."""
        subscription = self.gateway.events.subscribe()
        extending: asyncio.Task[None] | None = None
        try:
            async for event in subscription:
                self._log_event(event)
                if isinstance(event, GatewayStateChanged) and event.state == GatewayState.DRAINING:
                    self.notifier.stopping("draining")
                    if extending is None:
                        extending = asyncio.create_task(self._extend_while_draining())
        finally:
            self.gateway.events.unsubscribe(subscription)
            if extending is not None:
                extending.cancel()

    async def _extend_while_draining(self) -> None:
        """EXTEND_TIMEOUT_USEC while the drain legitimately runs: systemd's stop timeout is
        pushed out to what the drain still needs, so it never SIGKILLs a drain in time."""
        gateway = self.gateway
        grace = self.config.gateway.grace
        while gateway.state is GatewayState.DRAINING:
            drain = gateway.snapshot().drain
            left = self.config.gateway.drain_timeout if drain is None else drain.seconds_left
            self.notifier.extend_timeout(left + grace + EXTEND_MARGIN)
            await gateway.clock.sleep(EXTEND_EVERY)

    def _log_event(self, event: Event) -> None:
        session_id = getattr(event, "session_id", None)
        log_event(event, self._session_key(session_id) if isinstance(session_id, int) else None)

    def _session_key(self, session_id: int) -> str:
        return self.gateway.session_key(session_id) or str(session_id)


def log_event(event: Event, session: str | None) -> None:
    """One log line for a gateway event: its name and session as fields, the rest readable
    in the message (key=value, seconds rounded to what a person reads)."""
    fields: dict[str, object] = {"event": type(event).__name__}
    if session is not None:
        fields["session"] = session
    detail = {
        key: _readable(value)
        for key, value in vars_of(event).items()
        if key not in ("at", "session_id")
        and not isinstance(value, tuple | list)
        and value not in (None, "")  # "reason=None" says nothing
    }
    if isinstance(event, DrainProgress):
        detail["running"] = len(event.running)
    log.info(" ".join(f"{k}={v}" for k, v in detail.items()) or type(event).__name__, extra=fields)


def _readable(value: object) -> object:
    """Floats as a person reads them (41.23, 0.0014), not 0.0013629029999719933."""
    if not isinstance(value, float):
        return value
    return f"{value:.2f}" if abs(value) >= 1 else f"{value:.2g}"


def vars_of(event: Event) -> dict[str, object]:
    return {name: getattr(event, name) for name in event.__dataclass_fields__}

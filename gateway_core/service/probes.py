"""Liveness and readiness, for systemd, Kubernetes and load balancers.

GET /healthz   200 for as long as the event loop answers:
               {"status": "alive", "state": ..., "run_id": ..., "uptime_s": ...}.
               It looks at nothing else on purpose: a failing liveness probe gets the process
               restarted, and a restart fixes neither a full disk nor Telegram being down.
GET /readyz    200 {"ready": true, ...} only while all of these hold; otherwise 503 with the
               first that does not as "reason" (and "detail"), and every check in "checks":
  state     the gateway is running. Starting, quiet (no new turns start), draining and stopped
            are not ready. A drain sets the state before it stops intake, so readiness flips
            first and a load balancer stops sending before anything is refused.
  store     the store takes writes: a write that changes nothing (store/runs.py probe_write)
            commits within store.busy_timeout + 1 s. Concurrent probes share one write, and a
            result is reused for REUSE_SECONDS, so a busy prober cannot load the store.
  platforms not ready only when EVERY platform whose adapter reports its intake is
            unreachable (Telegram: not answered yet, or two polls failed in a row; in webhook
            mode, the webhook not registered). With several platforms, one of them down keeps
            the gateway ready: failing the probe would take the working ones out of service
            too. Each platform's state is in "checks" and in switchboard_platform_up.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from aiohttp import web

from gateway_core.adapters.base import Adapter, ReportsIntake
from gateway_core.gateway import Gateway
from gateway_core.runtime import GatewayState
from gateway_core.store import StoreError

REUSE_SECONDS = 1.0
PROBE_MARGIN = 1.0  # on top of store.busy_timeout, for the writer's queue


class NotReady(StrEnum):
    """Why /readyz answers 503, in the order the checks are made."""

    STARTING = "starting"
    QUIET = "quiet"
    DRAINING = "draining"
    STOPPED = "stopped"
    STORE = "store failing"
    PLATFORM = "platform unreachable"


_STATE_REASONS = {
    GatewayState.STARTING: NotReady.STARTING,
    GatewayState.QUIET: NotReady.QUIET,
    GatewayState.DRAINING: NotReady.DRAINING,
    GatewayState.STOPPED: NotReady.STOPPED,
}


@dataclass(frozen=True, slots=True)
class Readiness:
    reason: NotReady | None  # None: ready
    detail: str
    checks: Mapping[str, Any] = field(default_factory=dict)

    @property
    def ready(self) -> bool:
        return self.reason is None

    def body(self) -> dict[str, Any]:
        return {
            "ready": self.ready,
            "reason": None if self.reason is None else self.reason.value,
            "detail": self.detail,
            "checks": dict(self.checks),
        }


class StoreProbe:
    """One write at a time, its result reused for a moment (loop time, not the gateway's
    clock: this is load shedding, not behaviour)."""

    def __init__(self, gateway: Gateway, reuse_for: float = REUSE_SECONDS) -> None:
        self._gateway = gateway
        self._reuse_for = reuse_for
        self._running: asyncio.Future[str | None] | None = None
        self._result: str | None = None
        self._at: float | None = None

    async def check(self) -> str | None:
        """None when the store took a write, else why not."""
        now = asyncio.get_running_loop().time()
        if self._at is not None and now - self._at < self._reuse_for:
            return self._result
        if self._running is None or self._running.done():
            self._running = asyncio.ensure_future(self._probe())
        return await asyncio.shield(self._running)

    async def _probe(self) -> str | None:
        gateway = self._gateway
        limit = gateway.config.store.busy_timeout + PROBE_MARGIN
        result: str | None = None
        try:
            run = gateway.run
            if run is None:
                raise StoreError("no run recorded yet")
            await asyncio.wait_for(gateway.store.runs.probe_write(run.id), limit)
        except TimeoutError:
            result = f"a write did not commit within {limit:g} s"
        except (StoreError, RuntimeError) as error:
            result = str(error)
        self._result, self._at = result, asyncio.get_running_loop().time()
        return result


class Probes:
    def __init__(
        self,
        gateway: Gateway,
        adapters: Sequence[Adapter],
        *,
        reuse_for: float = REUSE_SECONDS,
    ) -> None:
        self._gateway = gateway
        self._adapters = adapters
        self._store = StoreProbe(gateway, reuse_for)
        self._born = time.monotonic()

    def routes(self) -> list[web.RouteDef]:
        return [web.get("/healthz", self._healthz), web.get("/readyz", self._readyz)]

    def health(self) -> dict[str, Any]:
        gateway = self._gateway
        return {
            "status": "alive",
            "state": gateway.state.value,
            "run_id": None if gateway.run is None else gateway.run.id,
            "uptime_s": round(time.monotonic() - self._born, 3),
        }

    def platforms(self) -> dict[str, tuple[bool, str]]:
        """Each reporting adapter's platform: (reachable, detail)."""
        found = {}
        for adapter in self._adapters:
            if isinstance(adapter, ReportsIntake):
                health = adapter.intake_health()
                found[adapter.platform] = (health.reachable, health.detail)
        return found

    async def readiness(self) -> Readiness:
        state = self._gateway.state
        checks: dict[str, Any] = {"state": state.value}
        not_running = _STATE_REASONS.get(state)
        if not_running is not None:
            return Readiness(not_running, f"the gateway is {state.value}", checks)
        failure = await self._store.check()
        checks["store"] = "ok" if failure is None else failure
        platforms = self.platforms()
        checks["platforms"] = {
            name: "ok" if reachable else detail for name, (reachable, detail) in platforms.items()
        }
        if failure is not None:
            return Readiness(NotReady.STORE, failure, checks)
        if platforms and not any(reachable for reachable, _ in platforms.values()):
            detail = "; ".join(f"{name}: {why}" for name, (_, why) in platforms.items())
            return Readiness(NotReady.PLATFORM, detail, checks)
        return Readiness(None, "intake runs and the store takes writes", checks)

    async def _healthz(self, request: web.Request) -> web.Response:
        return web.json_response(self.health(), headers=_NO_STORE)

    async def _readyz(self, request: web.Request) -> web.Response:
        readiness = await self.readiness()
        status = 200 if readiness.ready else 503
        return web.json_response(readiness.body(), status=status, headers=_NO_STORE)


_NO_STORE = {"Cache-Control": "no-store"}

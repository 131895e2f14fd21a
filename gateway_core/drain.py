"""The drain: a bounded, step-by-step stop that leaves nothing unaccounted for.

    1. quiet: the gateway is DRAINING (readiness fails first), then intake stops;
    2. mark: every session with a running turn is marked for recovery (reason `drain`) BEFORE
       the wait, so a kill during the drain still leaves the marker;
    3. wait: until each running turn finishes (its marker clears the moment it completes),
       the deadline passes, or a second stop signal forces the end;
    4. interrupt: what still runs is re-marked `drain-timeout` and cancelled (it records what
       it left unknown), gets `gateway.grace` seconds to unwind (none when forced), and its
       background jobs are killed;
    5. deliver: replies of turns that finished still go out (not when forced).

The run is recorded clean only if nothing had to be interrupted. Each step publishes a
DrainProgress event, so the console and the JSON log show where a drain is and what it waits
for. Closing the run's parts is the caller's job, once the drain returned (or failed).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass

from gateway_core.adapters.base import Adapter
from gateway_core.clock import wait_or_timeout
from gateway_core.delivery import Deliverer
from gateway_core.events import DrainPhase, DrainProgress
from gateway_core.lanes import Lane, Lanes
from gateway_core.recovery.candidates import CandidateBoard
from gateway_core.runtime import GatewayState, Runtime

log = logging.getLogger(__name__)

# Cleanup run after the grace period, given the sessions whose turns the drain interrupted.
KillHook = Callable[[Sequence[int]], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class DrainReport:
    clean: bool
    finished: tuple[int, ...]
    interrupted: tuple[int, ...]
    seconds: float


class Drain:
    def __init__(
        self,
        runtime: Runtime,
        adapters: Mapping[str, Adapter],
        lanes: Lanes,
        deliverer: Deliverer,
        candidates: CandidateBoard,
        kill_hooks: Sequence[KillHook],
        forced: asyncio.Event,
    ) -> None:
        self._rt = runtime
        self._adapters = adapters
        self._lanes = lanes
        self._deliverer = deliverer
        self._candidates = candidates
        self._kill_hooks = kill_hooks
        self._forced = forced
        self.latest: DrainProgress | None = None  # the newest progress, also after the end
        self._running: dict[int, Lane] = {}
        self._finished: set[int] = set()
        self._interrupted: set[int] = set()
        self._deadline = 0.0

    async def run(self, timeout: float) -> DrainReport:
        clock = self._rt.clock
        begun = clock.monotonic()
        self._deadline = begun + timeout
        await self._quiet()
        await self._mark()
        await self._wait()
        if self._interrupted:
            await self._interrupt()
        if not self._forced.is_set():
            # Replies of turns that finished still go out before the platforms are closed.
            await self._deliverer.idle(within=max(self._rt.config.gateway.grace, 1.0))
        self._progress(DrainPhase.STOPPED)
        return DrainReport(
            clean=not self._interrupted,
            finished=tuple(sorted(self._finished)),
            interrupted=tuple(sorted(self._interrupted)),
            seconds=clock.monotonic() - begun,
        )

    async def _quiet(self) -> None:
        self._rt.set_state(GatewayState.DRAINING)
        for adapter in self._adapters.values():
            await adapter.stop_intake()

    async def _mark(self) -> None:
        self._running = {lane.session.id: lane for lane in self._lanes.running()}
        self._progress(DrainPhase.MARKING)
        await self._rt.store.recovery.mark_many(list(self._running), "drain")
        await self._candidates.refresh()

    async def _wait(self) -> None:
        clock = self._rt.clock
        waiting = dict(self._running)
        while waiting and not self._forced.is_set():
            left = self._deadline - clock.monotonic()
            if left <= 0:
                break
            self._progress(DrainPhase.WAITING)
            idle = {asyncio.ensure_future(lane.idle.wait()): sid for sid, lane in waiting.items()}
            tick = asyncio.ensure_future(clock.sleep(min(1.0, left)))
            forced = asyncio.ensure_future(self._forced.wait())
            done, _ = await asyncio.wait({*idle, tick, forced}, return_when=asyncio.FIRST_COMPLETED)
            tick.cancel()
            forced.cancel()
            for future, sid in idle.items():
                future.cancel()
                if future in done or waiting[sid].current is None:
                    self._finished.add(sid)
                    waiting.pop(sid, None)
        self._interrupted = set(waiting)

    async def _interrupt(self) -> None:
        self._progress(DrainPhase.INTERRUPTING)
        await self._rt.store.recovery.mark_many(sorted(self._interrupted), "drain-timeout")
        tasks = []
        for sid in self._interrupted:
            current = self._running[sid].current
            if current is not None:
                current.task.cancel()
                tasks.append(current.task)
        self._progress(DrainPhase.GRACE)
        grace = 0.0 if self._forced.is_set() else self._rt.config.gateway.grace
        stopped = asyncio.gather(*tasks, return_exceptions=True)
        forced = asyncio.ensure_future(self._forced.wait())  # a second signal ends it
        await wait_or_timeout(
            self._rt.clock,
            asyncio.wait({stopped, forced}, return_when=asyncio.FIRST_COMPLETED),
            grace,
        )
        forced.cancel()
        for hook in self._kill_hooks:
            try:
                await hook(sorted(self._interrupted))
            except Exception:
                log.exception("a drain kill hook failed")

    def _progress(self, phase: DrainPhase) -> None:
        clock = self._rt.clock
        still = tuple(sorted(set(self._running) - self._finished - self._interrupted))
        self.latest = DrainProgress(
            clock.now(),
            phase,
            len(self._running),
            len(self._finished),
            still,
            tuple(sorted(self._interrupted)),
            max(0.0, self._deadline - clock.monotonic()),
        )
        self._rt.events.publish(self.latest)

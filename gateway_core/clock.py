"""Injectable clocks, so time-based logic is tested without sleeping.

Durable timestamps are wall-clock epoch seconds (they must mean the same thing after a
restart); deadlines inside one process use the monotonic clock, and every wait goes through
``clock.sleep`` so a test can move time forward instead of waiting for it.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from collections.abc import Awaitable
from typing import Any, Protocol


class Clock(Protocol):
    def now(self) -> float:
        """Wall-clock time as epoch seconds (what the store records)."""

    def monotonic(self) -> float:
        """A clock that never goes back, for deadlines within one process."""

    async def sleep(self, seconds: float) -> None:
        """Wait until monotonic() has advanced by `seconds`."""


class SystemClock:
    def now(self) -> float:
        return time.time()

    def monotonic(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))


class ManualClock:
    """A clock that only moves when told to; sleepers wake when it passes their deadline."""

    def __init__(self, start: float = 1_800_000_000.0) -> None:
        self._now = start
        self._mono = 0.0
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._order = itertools.count()
        self._changed: asyncio.Condition | None = None

    def now(self) -> float:
        return self._now

    def monotonic(self) -> float:
        return self._mono

    async def sleep(self, seconds: float) -> None:
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self._mono + seconds, next(self._order), future))
        async with self._condition():
            self._condition().notify_all()
        await future

    def _condition(self) -> asyncio.Condition:
        if self._changed is None:
            self._changed = asyncio.Condition()
        return self._changed

    async def wait_for_sleepers(self, count: int, within: float = 10.0) -> None:
        """Wait (real time, at most `within` s) until `count` sleeps are pending: the event a
        test needs to know its tasks have reached their waits before it moves time."""
        async with asyncio.timeout(within), self._condition():
            await self._condition().wait_for(lambda: self.sleepers >= count)

    @property
    def sleepers(self) -> int:
        """How many sleeps are waiting (lets a test know a task reached its wait)."""
        return sum(1 for _, _, future in self._sleepers if not future.done())

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("a clock never goes back; use set() to model a wall-clock change")
        self._now += seconds
        self._mono += seconds
        while self._sleepers and self._sleepers[0][0] <= self._mono:
            _, _, future = heapq.heappop(self._sleepers)
            if not future.done():
                future.set_result(None)

    def set(self, epoch: float) -> None:
        """Jump the wall clock (NTP step, operator change); monotonic time is unaffected."""
        self._now = epoch


async def wait_or_timeout(clock: Clock, awaitable: Awaitable[Any], seconds: float) -> bool:
    """Wait for awaitable, at most `seconds` on `clock`. True if it finished in time.

    The awaitable is not cancelled when time runs out (a turn given a deadline keeps running
    until its owner decides what to do with it).
    """
    target = asyncio.ensure_future(awaitable)
    sleeper = asyncio.ensure_future(clock.sleep(seconds))
    try:
        done, _ = await asyncio.wait({target, sleeper}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        sleeper.cancel()
    return target in done

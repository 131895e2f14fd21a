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
from collections.abc import Awaitable, Callable
from typing import Any, Protocol


class Clock(Protocol):
    def now(self) -> float:
        """Wall-clock time as epoch seconds (what the store records)."""

    def monotonic(self) -> float:
        """A clock that never goes back, for deadlines within one process."""

    def sleep(self, seconds: float) -> Awaitable[None]:
        """Wait until monotonic() has advanced by `seconds`."""


class SystemClock:
    def now(self) -> float:
        return time.time()

    def monotonic(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float) -> Awaitable[None]:
        return asyncio.sleep(max(0.0, seconds))


class ManualClock:
    """A clock that only moves when told to; sleepers wake when it passes their deadline.

    sleep() arms its timer when it is *called* (not when the returned awaitable first runs),
    so a timer created just before advance() is measured from the time it was asked for.
    """

    def __init__(self, start: float = 1_800_000_000.0) -> None:
        self._now = start
        self._mono = 0.0
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._order = itertools.count()
        # (predicate, future) pairs of tests waiting for timers to be armed.
        self._watchers: list[tuple[Callable[[], bool], asyncio.Future[None]]] = []

    def now(self) -> float:
        return self._now

    def monotonic(self) -> float:
        return self._mono

    def sleep(self, seconds: float) -> asyncio.Future[None]:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self._mono + max(0.0, seconds), next(self._order), future))
        if seconds <= 0:
            self._wake_due()
        self._check_watchers()
        return future

    @property
    def sleepers(self) -> int:
        """How many sleeps are waiting (lets a test know a task reached its wait)."""
        return sum(1 for _, _, future in self._sleepers if not future.done())

    def due_at(self, deadline: float) -> int:
        """How many pending sleeps end exactly at `deadline` (monotonic)."""
        return sum(1 for d, _, f in self._sleepers if d == deadline and not f.done())

    async def wait_for_sleepers(self, count: int, within: float = 10.0) -> None:
        """Wait (real time, at most `within` s) until `count` sleeps are pending: the event a
        test needs to know its tasks have reached their waits before it moves time."""
        await self._watch(lambda: self.sleepers >= count, within)

    async def wait_for_deadline(
        self, deadline: float, more_than: int = 0, within: float = 10.0
    ) -> None:
        """Wait until more than `more_than` sleeps end exactly at `deadline`."""
        await self._watch(lambda: self.due_at(deadline) > more_than, within)

    async def _watch(self, predicate: Callable[[], bool], within: float) -> None:
        if predicate():
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._watchers.append((predicate, future))
        try:
            async with asyncio.timeout(within):
                await future
        finally:
            self._watchers = [(p, f) for p, f in self._watchers if f is not future]

    def _check_watchers(self) -> None:
        for predicate, future in self._watchers:
            if not future.done() and predicate():
                future.set_result(None)

    def _wake_due(self) -> None:
        while self._sleepers and self._sleepers[0][0] <= self._mono:
            _, _, future = heapq.heappop(self._sleepers)
            if not future.done():
                future.set_result(None)

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("a clock never goes back; use set() to model a wall-clock change")
        self._now += seconds
        self._mono += seconds
        self._wake_due()
        self._check_watchers()

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

"""Injectable clocks, so time-based logic is tested without sleeping.

Durable timestamps are wall-clock epoch seconds (they must mean the same thing after a
restart); deadlines inside one process use the monotonic clock.
"""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    def now(self) -> float:
        """Wall-clock time as epoch seconds (what the store records)."""

    def monotonic(self) -> float:
        """A clock that never goes back, for deadlines within one process."""


class SystemClock:
    def now(self) -> float:
        return time.time()

    def monotonic(self) -> float:
        return time.monotonic()


class ManualClock:
    """A clock that only moves when told to."""

    def __init__(self, start: float = 1_800_000_000.0) -> None:
        self._now = start
        self._mono = 0.0

    def now(self) -> float:
        return self._now

    def monotonic(self) -> float:
        return self._mono

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("a clock never goes back; use set() to model a wall-clock change")
        self._now += seconds
        self._mono += seconds

    def set(self, epoch: float) -> None:
        """Jump the wall clock (NTP step, operator change); monotonic time is unaffected."""
        self._now = epoch

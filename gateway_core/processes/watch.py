"""Watch patterns: which output lines are worth waking a conversation for, and how often.

A background job may name substrings to watch for ("ERROR", "listening on"). Every chunk of
new output is matched line by line; the matching lines of one chunk make one match (at most
MAX_LINES lines, MAX_CHARS characters). A chatty job must not flood its conversation, so:

* per job, one delivered match per WINDOW seconds; matches inside the window are suppressed
  and counted, and the count rides along with the next delivered match;
* a window that had suppressed matches is a strike; STRIKES consecutive strike windows switch
  the job to notify-on-exit (one "watch disabled" notice), and a clean window resets the count;
* after LIFETIME delivered matches the job is switched to notify-on-exit the same way (the
  last match is still delivered); suppressed matches do not count toward the cap;
* across all jobs, more than BREAKER_LIMIT delivered matches within BREAKER_SPAN seconds trip
  a breaker for BREAKER_COOLDOWN seconds: matches meanwhile are dropped and counted, and the
  first match let through afterwards reports how many were dropped.

Pure bookkeeping on an injected monotonic time: no I/O, so every rule is unit-tested with a
manual clock.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from enum import StrEnum

WINDOW = 15.0
STRIKES = 3
LIFETIME = 8
BREAKER_LIMIT = 15
BREAKER_SPAN = 10.0
BREAKER_COOLDOWN = 30.0
MAX_LINES = 20
MAX_CHARS = 2000


class WatchStatus(StrEnum):
    WATCHING = "watching"
    NONE = "none"  # no patterns
    DISABLED_STRIKES = "disabled: too chatty"
    DISABLED_CAP = "disabled: match cap reached"


@dataclass(frozen=True, slots=True)
class Match:
    pattern: str  # the first pattern that matched
    lines: tuple[str, ...]
    suppressed: int  # matches of this job held back by the rate limit since the last one
    dropped_by_breaker: int = 0  # matches of all jobs dropped while the breaker was open


@dataclass(frozen=True, slots=True)
class WatchDisabled:
    reason: WatchStatus
    delivered: int


@dataclass(frozen=True, slots=True)
class BreakerTripped:
    """Too many matches across all jobs: matches are dropped for `cooldown` seconds."""

    cooldown: float = BREAKER_COOLDOWN


WatchOutcome = Match | WatchDisabled | BreakerTripped


def find_matches(patterns: tuple[str, ...], lines: list[str]) -> tuple[str, tuple[str, ...]] | None:
    """The first pattern that matched and the matching lines (bounded), or None."""
    first: str | None = None
    matched: list[str] = []
    chars = 0
    for line in lines:
        hit = next((p for p in patterns if p and p in line), None)
        if hit is None:
            continue
        first = first or hit
        if len(matched) < MAX_LINES and chars < MAX_CHARS:
            piece = line[: MAX_CHARS - chars]
            matched.append(piece)
            chars += len(piece)
    return None if first is None else (first, tuple(matched))


class Breaker:
    """The global circuit breaker, shared by every job's watcher."""

    def __init__(self) -> None:
        self._admitted: deque[float] = deque()
        self._open_until: float | None = None
        self.dropped = 0
        self.trips = 0

    @property
    def is_open(self) -> bool:
        return self._open_until is not None

    def admit(self, now: float) -> tuple[bool, int, bool]:
        """(let through?, dropped count to report, just tripped?)."""
        if self._open_until is not None:
            if now < self._open_until:
                self.dropped += 1
                return False, 0, False
            self._open_until = None
            self._admitted.clear()
            released, self.dropped = self.dropped, 0
            self._admitted.append(now)
            return True, released, False
        while self._admitted and now - self._admitted[0] >= BREAKER_SPAN:
            self._admitted.popleft()
        if len(self._admitted) >= BREAKER_LIMIT:
            self._open_until = now + BREAKER_COOLDOWN
            self.trips += 1
            self.dropped = 1
            return False, 0, True
        self._admitted.append(now)
        return True, 0, False


class Watcher:
    """One job's watch state: rate limit, strikes and lifetime cap."""

    def __init__(self, patterns: tuple[str, ...], breaker: Breaker) -> None:
        self.patterns = tuple(p for p in patterns if p)
        self.status = WatchStatus.WATCHING if self.patterns else WatchStatus.NONE
        self.delivered = 0
        self.suppressed_total = 0
        self._breaker = breaker
        self._window_end: float | None = None
        self._window_drops = 0
        self._strikes = 0
        self._pending_suppressed = 0

    @property
    def active(self) -> bool:
        return self.status is WatchStatus.WATCHING

    def feed(self, lines: list[str], now: float) -> list[WatchOutcome]:
        """New complete output lines at monotonic time `now`: what, if anything, to deliver."""
        if not self.active:
            return []
        found = find_matches(self.patterns, lines)
        if found is None:
            return []
        pattern, matched = found
        if self._window_end is not None and now < self._window_end:
            self._window_drops += 1
            self._pending_suppressed += 1
            self.suppressed_total += 1
            return []
        if self._window_end is not None:  # the previous window closed: strike or clean
            if now >= self._window_end + WINDOW:
                self._strikes = 0  # at least one whole quiet window passed since: clean
            self._strikes = self._strikes + 1 if self._window_drops else 0
            self._window_drops = 0
            if self._strikes >= STRIKES:
                self.status = WatchStatus.DISABLED_STRIKES
                return [WatchDisabled(self.status, self.delivered)]
        admitted, released, tripped = self._breaker.admit(now)
        if not admitted:
            return [BreakerTripped()] if tripped else []
        self._window_end = now + WINDOW
        self.delivered += 1
        match = Match(pattern, matched, self._pending_suppressed, released)
        self._pending_suppressed = 0
        if self.delivered >= LIFETIME:
            self.status = WatchStatus.DISABLED_CAP
            return [match, WatchDisabled(self.status, self.delivered)]
        return [match]

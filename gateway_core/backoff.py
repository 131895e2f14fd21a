"""Retry delays: exponential backoff with full jitter, one helper for every retry loop.

An outage fails many workers at once (every session's delivery worker, the poller, the agent
client). With plain exponential delays they would all retry in lockstep at 2, 4, 8 s and hit
the recovering server together; full jitter (a delay drawn uniformly from zero up to the
exponential ceiling) spreads them out while keeping the same growth. A server's own
Retry-After always wins over this.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field


@dataclass
class Backoff:
    base: float = 1.0  # seconds: the ceiling of the first retry is 2 * base
    cap: float = 30.0  # seconds: no ceiling grows past this
    rng: random.Random = field(default_factory=random.Random)

    def ceiling(self, attempt: int) -> float:
        """The longest delay before retry number `attempt` (1 for the first retry)."""
        return min(self.cap, self.base * 2.0 ** min(max(attempt, 0), 30))

    def delay(self, attempt: int) -> float:
        """A delay before retry number `attempt`: uniform in [0, ceiling(attempt)]."""
        return self.rng.uniform(0.0, self.ceiling(attempt))

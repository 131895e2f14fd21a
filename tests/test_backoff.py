"""The one retry-delay helper: exponential ceilings, full jitter, bounded."""

from __future__ import annotations

import random
import statistics

from gateway_core.backoff import Backoff


def test_ceilings_double_from_the_base_and_stop_at_the_cap() -> None:
    backoff = Backoff(base=1.0, cap=30.0)
    assert [backoff.ceiling(n) for n in range(1, 7)] == [2.0, 4.0, 8.0, 16.0, 30.0, 30.0]
    assert backoff.ceiling(10_000) == 30.0  # no overflow however long the outage


def test_delays_stay_within_their_ceiling_and_are_spread_out() -> None:
    backoff = Backoff(base=1.0, cap=30.0, rng=random.Random(7))
    for attempt in range(1, 12):
        delays = [backoff.delay(attempt) for _ in range(200)]
        assert all(0.0 <= d <= backoff.ceiling(attempt) for d in delays)
        # Full jitter: not all at the ceiling (lockstep), spread over the whole range.
        assert statistics.pstdev(delays) > backoff.ceiling(attempt) / 5


def test_workers_failing_together_do_not_retry_together() -> None:
    # Twenty sessions' delivery workers, each with its own generator, fail at the same moment.
    workers = [Backoff(base=1.0, cap=30.0, rng=random.Random(seed)) for seed in range(20)]
    first_retries = sorted(round(w.delay(3), 3) for w in workers)
    assert len(set(first_retries)) == 20
    assert first_retries[-1] - first_retries[0] > 4.0  # spread over the 8 s ceiling

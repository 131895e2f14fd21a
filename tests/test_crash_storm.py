"""A crash storm in the default suite: a real `switchboard run` SIGKILLed at seeded random
moments while four Telegram conversations talk (quick echoes, long turns whose resume works
again, a foreground terminal command and multi-step tasks, and a user who writes once and
waits), then the held candidates approved over the control socket.

Every request is answered exactly once, nothing is said that nobody asked for, and what the
storm held is reported. tests/support/crash_storm.py drives it; bench/crash_storm.py runs the
same storm with 300 kills and prints the figures.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.crash_storm import StormPlan, run_storm

pytestmark = pytest.mark.slow


async def test_a_crash_storm_loses_nothing_doubles_nothing_and_says_nothing_unasked(
    tmp_path: Path,
) -> None:
    report = await run_storm(tmp_path, StormPlan(kills=6, seed=12, min_gap=0.3, max_gap=1.5))
    print(f"\n[crash storm] {report.figures()}")
    assert report.kills == 6
    assert report.sent >= 8, report.figures()
    assert report.problems == [], "\n".join(report.problems) + f"\n{report.figures()}"
    assert (report.lost, report.duplicated, report.phantom) == (0, 0, 0)
    assert report.answered_once == report.sent

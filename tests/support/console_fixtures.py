"""Fixtures for driving the console over a real gateway (loaded by tests/conftest.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from gateway_core.clock import ManualClock
from gateway_core.gateway import Gateway
from gateway_core.lanes import Lane
from gateway_core.processes.registry import TrackedProcess
from tests.support.console_pilot import Crashed, Jobs, crashed_gateway
from tests.support.harness import Running, start_gateway


@pytest.fixture
async def running(tmp_path: Path, clock: ManualClock) -> Running:
    return await start_gateway(tmp_path / "state", clock)


@pytest.fixture
async def jobs() -> AsyncIterator[Jobs]:
    started = Jobs()
    try:
        yield started
    finally:
        await started.kill_all()


@dataclass
class Busy:
    """A gateway with something for every action: two held candidates (ada, cy) and a
    pending one (bob), a turn thinking for 30 s (carl) and a running `sleep 30` job."""

    running: Running
    ada: int
    bob: int
    cy: int
    carl: Lane
    job: TrackedProcess

    @property
    def gateway(self) -> Gateway:
        return self.running.gateway


@pytest.fixture
async def busy(tmp_path: Path, clock: ManualClock, jobs: Jobs) -> Busy:
    running, (ada, bob, cy) = await crashed_gateway(
        tmp_path / "state",
        clock,
        [Crashed("ada", "Ada"), Crashed("bob", "Bob", risky=False), Crashed("cy", "Cy")],
    )
    gateway = running.gateway
    await running.adapter.user("carl", name="Carl").say("think 30")
    await clock.wait_for_sleepers(2)  # the think and its "still working" notifier
    (carl,) = gateway.lanes.running()
    job = await jobs.start(gateway, "sleep 30", carl.session.id)
    return Busy(running, ada, bob, cy, carl, job)

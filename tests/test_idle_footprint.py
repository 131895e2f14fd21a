"""A session that spoke and went idle keeps nothing alive but its small lane: no finished task,
no idle event, no delivery queue (bench/memory.py measures the bytes)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from gateway_core.clock import ManualClock
from gateway_core.events import ReplySent
from tests.support.harness import Running, next_event, start_gateway


@pytest.fixture
async def running(tmp_path: Path, clock: ManualClock) -> AsyncIterator[Running]:
    gateway = await start_gateway(tmp_path / "state", clock, notifier={"interval": 0})
    try:
        yield gateway
    finally:
        await gateway.stop()


async def test_an_answered_session_holds_no_task_event_or_delivery_queue(
    running: Running,
) -> None:
    sent = running.gateway.events.subscribe()
    ada = running.adapter.user("ada")
    await ada.say("hello")
    await next_event(sent, ReplySent)
    await running.gateway.wait_idle()
    await asyncio.sleep(0)  # the delivery worker's last step, after its send was published

    (lane,) = running.gateway.lanes.all()
    assert lane.current is None and not lane.queue
    assert lane.idle.is_set()
    assert running.gateway.deliverer.backlog == 0
    assert not running.gateway.deliverer.busy
    assert running.gateway.deliverer.queued_sessions == 0


async def test_an_idle_lane_is_awaited_at_once_and_a_busy_one_until_its_turn_ends(
    running: Running, clock: ManualClock
) -> None:
    ada = running.adapter.user("ada")
    await ada.say("think 10")
    await clock.wait_for_sleepers(1)
    (lane,) = running.gateway.lanes.all()
    waiting = asyncio.ensure_future(lane.idle.wait())
    await asyncio.sleep(0)
    assert not waiting.done()
    clock.advance(10)
    async with asyncio.timeout(5):
        await waiting
    await running.gateway.wait_idle()
    assert lane.idle.is_set()

"""The demo's gateway without its screen: what its own keys do to it (issue 13, items 7-8)."""

from __future__ import annotations

from pathlib import Path

from console.demo import Demo
from gateway_core.model import Gate


async def test_the_demos_own_restarts_do_not_trip_the_loop_guard(tmp_path: Path) -> None:
    demo = Demo(tmp_path, Gate.SAFE)
    await demo.gateway.start()
    try:
        for _ in range(2):  # x, twice
            assert (await demo.crash_restart()).ok
        await demo.gateway.restart(0)  # ctrl+r
        snap = demo.gateway.snapshot()
        assert snap.counts["candidates"] > 0  # the held ones are still there at each boot
        assert not snap.loop_guard_tripped
    finally:
        await demo.gateway.stop(0)

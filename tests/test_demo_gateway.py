"""The demo's gateway without its screen: what its own keys do to it (issue 13, items 7-8)."""

from __future__ import annotations

from pathlib import Path

from console.demo import Demo
from gateway_core.events import TurnStarted
from gateway_core.model import Gate
from tests.support.harness import next_event


async def test_the_demos_own_restarts_do_not_trip_the_loop_guard(tmp_path: Path) -> None:
    demo = Demo(tmp_path, Gate.SAFE)
    await demo.gateway.start()
    try:
        for _ in range(2):  # x, twice
            assert (await demo.crash_restart()).ok
        await demo.gateway.restart(0)  # ctrl+r
        snap = demo.gateway.snapshot()
        assert snap.counts.candidates > 0  # the held ones are still there at each boot
        assert not snap.loop_guard_tripped
    finally:
        await demo.gateway.stop(0)


async def test_restart_now_says_exactly_what_it_decided_and_marks_a_crash(
    tmp_path: Path,
) -> None:
    demo = Demo(tmp_path, Gate.SAFE)
    await demo.gateway.start()
    try:
        bob = demo.adapter.user("bob", name="bob")
        await bob.say("think 20")
        started = demo.gateway.events.subscribe()
        await next_event(started, TurnStarted)
        (thinking,) = demo.gateway.lanes.running()
        result = await demo.crash_restart()
        snap = demo.gateway.snapshot()
        held = sum(1 for c in snap.candidates if c.state == "held")
        waiting = sum(1 for c in snap.candidates if c.action == "wait")
        boot = demo.gateway.boot
        assert boot is not None  # resumed ones may have finished already: counted at boot
        resumed = sum(1 for c in boot.candidates if c.decision.action == "resume")
        assert result.ok
        assert f"{held} held for an operator" in result.message
        assert f"{waiting} waiting for their user" in result.message
        assert f"{resumed} resumed" in result.message
        assert "candidate(s)" not in result.message
        assert "cleared" in result.message  # finished and stale ones go
        (cut,) = [c for c in boot.candidates if c.session.id == thinking.session.id]
        assert cut.record.reason == "crash"  # not "drain-timeout": x stands for a crash
    finally:
        await demo.gateway.stop(0)

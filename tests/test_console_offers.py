"""An action is offered (footer, palette, key) only when it can apply to the current state and
selection, and each recovery row says which of its actions apply (issue 13, item 2). The
gateway still refuses what it must: that is tested with the control API itself."""

from __future__ import annotations

import asyncio

from textual.command import CommandPalette

from console.app import ConsoleApp
from gateway_core.clock import ManualClock
from tests.support.console_fixtures import Busy
from tests.support.console_pilot import (
    ConsolePilot,
    Jobs,
    cell,
    closed,
    open_console,
    open_dialog,
    palette_hits,
    rendered_lines,
    settled,
    show_tab,
    table,
    wait_until,
)
from tests.support.console_pilot import focus_row as highlight

GATEWAY_WIDE = ("quiet", "resume_intake", "drain", "restart")


def footer(app: ConsoleApp) -> str:
    return rendered_lines(app)[-1]


async def refreshed(app: ConsoleApp, pilot: ConsolePilot) -> None:
    await app.tick()
    await pilot.pause()


async def nothing_opens(app: ConsoleApp, pilot: ConsolePilot, key: str) -> None:
    await pilot.press(key)
    await pilot.pause()
    await settled(app)
    assert len(app.screen_stack) == 1, f"{key!r} opened {app.screen!r}"


async def test_quiet_and_resume_intake_are_offered_by_turns(busy: Busy) -> None:
    async with open_console(busy.gateway) as (app, pilot):
        assert app.offers("quiet") and not app.offers("resume_intake")
        assert "Quiet" in footer(app) and "Resume" not in footer(app)
        await nothing_opens(app, pilot, "i")

        assert busy.gateway.quiet()
        await refreshed(app, pilot)
        assert app.offers("resume_intake") and not app.offers("quiet")
        assert "Resume" in footer(app) and "Quiet" not in footer(app)
        await nothing_opens(app, pilot, "s")
        await open_dialog(app, pilot, "i")
        await pilot.press("escape")
        await closed(app, pilot)


async def test_during_a_drain_no_gateway_wide_action_is_offered(busy: Busy) -> None:
    gateway = busy.gateway
    async with open_console(gateway) as (app, pilot):
        draining = asyncio.ensure_future(gateway.stop(60))  # carl's turn keeps it draining
        try:
            await wait_until(pilot, lambda: gateway.state.value == "draining", "the drain")
            await refreshed(app, pilot)
            for action in GATEWAY_WIDE:
                assert not app.offers(action), action
            for title in ("Quiet", "Resume", "Drain", "Restart"):
                assert title not in footer(app), title
            for key in ("s", "i", "d", "ctrl+r"):
                await nothing_opens(app, pilot, key)
            await pilot.press("ctrl+p")
            await wait_until(pilot, lambda: isinstance(app.screen, CommandPalette), "palette")
            await wait_until(pilot, lambda: "Leave" in palette_hits(app), "the entries")
            assert not {"Quiet", "Resume", "Drain", "Restart"} & set(palette_hits(app))
            await pilot.press("escape")
        finally:
            gateway.force_stop()
            await draining


async def test_approve_is_offered_on_a_held_row_only_and_rows_say_what_applies(
    busy: Busy,
) -> None:
    async with open_console(busy.gateway) as (app, pilot):
        await show_tab(app, pilot, "3", "recovery")
        candidates = table(app, "#candidate-table")
        assert cell(app, "#candidate-table", str(busy.ada), "keys") == "a c f"  # held
        assert cell(app, "#candidate-table", str(busy.bob), "keys") == "c f"  # pending

        await highlight(pilot, candidates, str(busy.bob))
        assert not app.offers("approve") and app.offers("clear")
        await wait_until(pilot, lambda: "Approve" not in footer(app), "no Approve in the footer")
        assert "Clear" in footer(app)
        await nothing_opens(app, pilot, "a")

        await highlight(pilot, candidates, str(busy.ada))
        assert app.offers("approve")
        await wait_until(pilot, lambda: "Approve" in footer(app), "Approve in the footer")
        await open_dialog(app, pilot, "a")
        await pilot.press("escape")
        await closed(app, pilot)


async def test_kill_is_offered_on_a_running_job_only(
    busy: Busy, jobs: Jobs, clock: ManualClock
) -> None:
    gateway = busy.gateway
    done = await jobs.start(gateway, "true", busy.carl.session.id)
    async with asyncio.timeout(10):
        await done.finished.wait()
    async with open_console(gateway) as (app, pilot):
        await show_tab(app, pilot, "4", "processes")
        processes = table(app, "#process-table")
        await highlight(pilot, processes, done.id)
        assert not app.offers("kill") and app.offers("show_log")
        await wait_until(pilot, lambda: "Kill" not in footer(app), "no Kill in the footer")
        await nothing_opens(app, pilot, "k")

        await highlight(pilot, processes, busy.job.id)
        assert app.offers("kill")
        await open_dialog(app, pilot, "k")
        await pilot.press("escape")
        await closed(app, pilot)


async def test_interrupt_is_offered_on_a_running_turn_only(busy: Busy) -> None:
    gateway = busy.gateway
    ada = busy.running.adapter.user("idle-ida", name="Ida")
    await ada.say("hello")
    await ada.wait_for(1)
    idle = next(lane for lane in gateway.lanes.all() if lane.session.key.chat_id == "idle-ida")
    async with open_console(gateway) as (app, pilot):
        await show_tab(app, pilot, "2", "sessions")
        sessions = table(app, "#session-table")
        await highlight(pilot, sessions, str(idle.session.id))
        assert not app.offers("interrupt")
        await nothing_opens(app, pilot, "t")
        await highlight(pilot, sessions, str(busy.carl.session.id))
        assert app.offers("interrupt")
        await wait_until(pilot, lambda: "Interrupt" in footer(app), "Interrupt in the footer")

"""The recovery tab tells the truth: suspended sessions (issue 13, item 4), ages (item 5) and
the restart-loop guard (item 7), over a real gateway booted on crashed conversations."""

from __future__ import annotations

from pathlib import Path

from console.app import ConsoleApp
from gateway_core.clock import ManualClock
from gateway_core.control import Control
from tests.support.console_pilot import (
    ACTOR,
    Crashed,
    cell,
    closed,
    confirm,
    crashed_gateway,
    dialog_targets,
    label_text,
    looping_gateway,
    open_console,
    open_dialog,
    show_tab,
    shown_texts,
    static_text,
    table,
    wait_until,
)
from tests.support.console_pilot import focus_row as highlight
from tests.support.harness import Running, start_gateway

CRASHED = [
    Crashed("ada", "Ada"),
    Crashed("bob", "Bob", risky=False),
    Crashed("gus", "Gus", suspended=True),
]


def screen_text(app: ConsoleApp) -> str:
    return "\n".join(shown_texts(app))


async def test_a_suspended_session_says_so_is_counted_apart_and_can_be_unsuspended(
    tmp_path: Path, clock: ManualClock
) -> None:
    running, (ada, bob, gus) = await crashed_gateway(tmp_path / "state", clock, CRASHED)
    gateway = running.gateway
    snap = gateway.snapshot()
    assert (snap.counts.candidates, snap.counts.suspended) == (2, 1)
    async with open_console(gateway) as (app, pilot):
        banner = static_text(app, "#banner")
        assert "candidates 2" in banner and "suspended 1" in banner
        await show_tab(app, pilot, "3", "recovery")
        row = str(gus)
        assert cell(app, "#candidate-table", row, "verdict") == "suspended"
        assert cell(app, "#candidate-table", row, "keys") == "u"
        assert cell(app, "#candidate-table", row, "why").startswith(
            "suspended (operator) — never resumed automatically"
        )
        assert "2 candidates, 1 suspended" in label_text(app, "#recovery-title")
        await highlight(pilot, table(app, "#candidate-table"), row)
        detail = static_text(app, "#candidate-detail")
        assert "suspended (operator) — never resumed automatically" in detail
        assert "None" not in screen_text(app)
        assert not app.offers("approve") and not app.offers("clear")
        assert app.offers("unsuspend")

        await open_dialog(app, pilot, "u")
        assert dialog_targets(app) == f"  • {gus}: loopback:gus Gus (suspended)"
        assert "None" not in screen_text(app)
        await confirm(app, pilot)
        (entry,) = await gateway.store.audit.recent()
        assert (entry.actor, entry.action, entry.targets, entry.outcome) == (
            ACTOR,
            "unsuspend",
            (row,),
            "ok",
        )
        record = await gateway.store.recovery.get(gus)
        assert record is not None and record.state == "none"
        await app.tick()
        await wait_until(
            pilot, lambda: row not in table(app, "#candidate-table").keys, "the row gone"
        )
        assert "suspended" not in static_text(app, "#banner")
        assert {ada, bob} == {int(k) for k in table(app, "#candidate-table").keys}


async def test_unsuspend_is_offered_on_suspended_rows_only(
    tmp_path: Path, clock: ManualClock
) -> None:
    running, (ada, _bob, _gus) = await crashed_gateway(tmp_path / "state", clock, CRASHED)
    async with open_console(running.gateway) as (app, pilot):
        await show_tab(app, pilot, "3", "recovery")
        await highlight(pilot, table(app, "#candidate-table"), str(ada))
        assert not app.offers("unsuspend")
        await pilot.press("u")
        await pilot.pause()
        assert len(app.screen_stack) == 1
        await closed(app, pilot)


# -- item 5: ages come from the durable time at each refresh, rounded right -------------------


async def test_the_tail_age_follows_the_clock_at_each_refresh(
    tmp_path: Path, clock: ManualClock
) -> None:
    running, (ada, _bob, _gus) = await crashed_gateway(tmp_path / "state", clock, CRASHED)
    async with open_console(running.gateway) as (app, pilot):
        await show_tab(app, pilot, "3", "recovery")
        assert cell(app, "#candidate-table", str(ada), "tail") == "0s"
        clock.advance(299.7)  # the transcript row is 4m59.7s old: shown as 5m00s
        await app.tick()
        await pilot.pause()
        assert cell(app, "#candidate-table", str(ada), "tail") == "5m00s"
        clock.advance(40)
        await app.tick()
        await pilot.pause()
        assert cell(app, "#candidate-table", str(ada), "tail") == "5m40s"


# -- item 7: the restart-loop guard explains itself and can be left ---------------------------


async def test_the_loop_guard_says_what_tripped_it_and_how_to_leave(
    tmp_path: Path, clock: ManualClock
) -> None:
    running, ada, cy = await looping_gateway(tmp_path / "state", clock)
    async with open_console(running.gateway) as (app, pilot):
        assert "RESTART LOOP" in static_text(app, "#banner")
        overview = static_text(app, "#overview-guard")
        assert "3 boots" in overview and "300 s" not in overview
        assert "5 min" in overview  # the window, in words
        await show_tab(app, pilot, "3", "recovery")
        explained = static_text(app, "#loop-guard")
        for words in ("3 boots with recovery candidates", "within 5 min", "1 turn", "approve"):
            assert words in explained, words
        times = running.gateway.snapshot().loop_guard
        assert times is not None and len(times.boots) == 3
        assert "r" in explained and "reset" in explained.lower()
        assert app.offers("reset_loop_guard")
        assert cell(app, "#candidate-table", str(ada), "why").endswith(
            "held: restart loop guard tripped (3 boots with recovery candidates, each within "
            "300 s of the last)"
        )

        await open_dialog(app, pilot, "r")
        await confirm(app, pilot)
        ada_user = running.adapter.user("ada", name="Ada")
        said = [m.text for m in await ada_user.wait_for(2)]  # told it was held, then answered
        assert said[-1] == "Back after a restart. You had asked: 'deploy'"
        assert sum("Back after a restart" in text for text in said) == 1
        (entry,) = await running.gateway.store.audit.recent()
        assert (entry.actor, entry.action, entry.targets, entry.outcome) == (
            ACTOR,
            "reset-loop-guard",
            (str(ada),),
            "ok",
        )
        await app.tick()
        assert "RESTART LOOP" not in static_text(app, "#banner")
        assert not app.offers("reset_loop_guard")
        record = await running.gateway.store.recovery.get(cy)
        assert record is not None and record.state == "held"  # not the guard's to release


async def test_the_overview_shows_the_previous_runs_drain_after_a_restart(
    running: Running,
) -> None:
    async with open_console(running.gateway) as (app, pilot):
        assert "No drain has run" in static_text(app, "#drain-title")
        await running.gateway.restart(0)
        await app.tick()
        await pilot.pause()
        title = static_text(app, "#drain-title")
        assert "previous run" in title and "#1" in title, title
        assert "stopped cleanly" in static_text(app, "#drain-text")


async def test_the_reset_is_refused_unless_the_guard_tripped_and_resumes_once(
    tmp_path: Path, clock: ManualClock
) -> None:
    running, _ada, _cy = await looping_gateway(tmp_path / "state", clock)
    control = Control(running.gateway)
    first = await control.reset_loop_guard(actor=ACTOR)
    assert first.ok and first.message == "restart-loop guard reset: 1 held turn resumed"
    again = await control.reset_loop_guard(actor=ACTOR)
    assert not again.ok and again.message == "the restart-loop guard has not tripped"
    ada_user = running.adapter.user("ada", name="Ada")
    said = [m.text for m in await ada_user.wait_for(2)]  # told it was held, then answered once
    assert sum("Back after a restart" in text for text in said) == 1
    assert [e.outcome for e in await running.gateway.store.audit.recent()] == ["refused", "ok"]

    calm = await start_gateway(tmp_path / "calm", clock)
    refused = await Control(calm.gateway).reset_loop_guard(actor=ACTOR)
    assert not refused.ok

"""Dialogs keep what is typed into them: a dialog that asks for text focuses its input, and no
key typed into a dialog reaches the screen below (issue 13, items 1, 3 and 15)."""

from __future__ import annotations

from textual.command import CommandPalette
from textual.widgets import Button, Input, Static

from console.actions import ACTIONS, Tab
from console.app import ConsoleApp
from console.screens.dialogs import ConfirmScreen, InputScreen, LeaveScreen
from console.screens.help import HelpScreen
from console.tabs.recovery import RecoveryTab
from tests.support.console_fixtures import Busy
from tests.support.console_pilot import (
    ACTOR,
    closed,
    focused_id,
    open_console,
    open_dialog,
    palette_hits,
    rendered_lines,
    show_tab,
    shown_texts,
    state_of,
    table,
    wait_until,
    world,
)
from tests.support.console_pilot import focus_row as highlight
from tests.support.harness import Running

RESUMED = "Back after a restart. You had asked: 'deploy'"
# Letters that are action keys on the screen below (d drain, c clear, a approve, s quiet, x,
# k kill, q leave, t interrupt), digits that switch tabs, and the space that presses a button.
REASON = "ok now: drain, clear and approve 1 2 3 (asked bob) q x k t s"


def keys_of(text: str) -> list[str]:
    names = {
        " ": "space",
        ",": "comma",
        ":": "colon",
        "(": "left_parenthesis",
        ")": "right_parenthesis",
    }
    return [names.get(char, char) for char in text]


async def test_typing_a_force_resume_reason_goes_into_the_reason_and_nowhere_else(
    busy: Busy,
) -> None:
    gateway = busy.gateway
    async with open_console(gateway) as (app, pilot):
        await show_tab(app, pilot, "3", "recovery")
        await highlight(pilot, table(app, "#candidate-table"), str(busy.bob))
        before = await world(gateway)
        await open_dialog(app, pilot, "f")
        assert isinstance(app.screen, InputScreen)
        assert focused_id(app) == "answer"

        await pilot.press(*keys_of(REASON))
        answer = app.screen.query_one("#answer", Input)
        assert answer.value == REASON
        assert len(app.screen_stack) == 2 and isinstance(app.screen, InputScreen)
        assert app.active_tab == "recovery"
        assert await world(gateway) == before
        assert await gateway.store.audit.recent() == []

        await pilot.press("enter")  # a typed reason: enter confirms
        await closed(app, pilot)
        (entry,) = await gateway.store.audit.recent()
        assert (entry.actor, entry.action, entry.reason, entry.outcome) == (
            ACTOR,
            "force-resume",
            REASON,
            "ok",
        )
        bob = busy.running.adapter.user("bob", name="Bob")
        assert [m.text for m in await bob.wait_for(1)] == [RESUMED]


async def test_the_drain_timeout_is_typed_over_its_default_and_a_lone_enter_does_not_drain(
    running: Running,
) -> None:
    async with open_console(running.gateway) as (app, pilot):
        await open_dialog(app, pilot, "d")
        assert focused_id(app) == "answer"
        await pilot.press("enter")  # the default untouched: enter only moves to the button
        await pilot.pause()
        assert isinstance(app.screen, InputScreen)
        assert focused_id(app) == "confirm"
        assert state_of(running.gateway) == "running"
        assert "Enter again" in app.screen.query_one("#problem", Static).content.__str__()

        app.screen.query_one("#answer", Input).focus()
        await pilot.press("5")  # the default is selected: typing replaces it
        assert app.screen.query_one("#answer", Input).value == "5"
        await pilot.press("escape")
        await closed(app, pilot)
        assert state_of(running.gateway) == "running"


async def test_no_key_typed_into_a_confirmation_reaches_the_screen_below(busy: Busy) -> None:
    gateway = busy.gateway
    async with open_console(gateway) as (app, pilot):
        await show_tab(app, pilot, "3", "recovery")
        before = await world(gateway)
        await open_dialog(app, pilot, "a")
        assert isinstance(app.screen, ConfirmScreen)
        for key in ("d", "c", "a", "f", "s", "x", "i", "2", "4", "ctrl+r", "ctrl+q", "ctrl+p"):
            await pilot.press(key)
            await pilot.pause()
            assert len(app.screen_stack) == 2, key
            assert isinstance(app.screen, ConfirmScreen), key
            assert isinstance(app.focused, Button) and app.focused.id == "cancel", key
        assert app.active_tab == "recovery"
        await pilot.press("escape")
        await closed(app, pilot)
        assert await world(gateway) == before
        assert await gateway.store.audit.recent() == []


async def test_no_key_typed_into_the_leave_dialog_reaches_the_screen_below(
    running: Running,
) -> None:
    async with open_console(running.gateway) as (app, pilot):
        await open_dialog(app, pilot, "q")
        for key in ("ctrl+q", "q", "d", "3"):
            await pilot.press(key)
            await pilot.pause()
            assert [type(s) for s in app.screen_stack[1:]] == [LeaveScreen], key
        await pilot.press("escape")
        await closed(app, pilot)
        assert app.active_tab == "overview"


# -- item 15: every way of quitting goes through the leave dialog -----------------------------


async def test_the_palettes_quit_opens_the_leave_dialog(running: Running) -> None:
    async with open_console(running.gateway) as (app, pilot):
        await pilot.press("ctrl+p")
        await wait_until(pilot, lambda: isinstance(app.screen, CommandPalette), "the palette")
        await pilot.press(*"quit")
        await wait_until(pilot, lambda: "Quit" in palette_hits(app), "a Quit hit")
        await pilot.press("enter")
        await wait_until(pilot, lambda: isinstance(app.screen, LeaveScreen), "the leave dialog")
        assert app.is_running and app.return_value is None
        assert focused_id(app) == "cancel"
        await pilot.press("escape")
        await closed(app, pilot)
    assert state_of(running.gateway) == "running"


# -- item 3: a read-only console offers nothing it cannot do -----------------------------------


def leave_text(app: ConsoleApp) -> str:
    return "\n".join(shown_texts(app))


async def test_a_read_only_leave_dialog_describes_only_detaching(running: Running) -> None:
    async with open_console(running.gateway, read_only=True) as (app, pilot):
        await open_dialog(app, pilot, "q")
        assert isinstance(app.screen, LeaveScreen)
        assert [b.id for b in app.screen.query(Button)] == ["cancel", "detach"]
        assert "Detach" in leave_text(app)
        assert "Drain and stop" not in leave_text(app)
        await pilot.press("escape")
        await closed(app, pilot)


async def test_a_read_only_console_offers_no_marking(busy: Busy) -> None:
    async with open_console(busy.gateway, read_only=True) as (app, pilot):
        await show_tab(app, pilot, "3", "recovery")
        assert table(app, "#candidate-table").current_key() is not None
        assert not app.offers("mark")
        assert "Mark" not in rendered_lines(app)[-1]
        await pilot.press("space")
        await pilot.pause()
        assert app.query_one(RecoveryTab).marked == set()


# -- item 12: ? shows the keys of this tab, from the same table as the footer ------------------


async def test_help_lists_this_tabs_keys_and_the_global_ones(busy: Busy) -> None:
    async with open_console(busy.gateway) as (app, pilot):
        await show_tab(app, pilot, "3", "recovery")
        await pilot.press("question_mark")
        await wait_until(pilot, lambda: isinstance(app.screen, HelpScreen), "the help screen")
        text = "\n".join(shown_texts(app))
        assert "Recovery" in text
        for action in ACTIONS:
            if action.tab in (Tab.RECOVERY, None) and not action.demo_only:
                assert action.help in text, action.name
            elif action.tab is not None:
                assert action.help not in text, action.name  # another tab's
        assert "not now" in text  # the reset applies only after the guard tripped
        await pilot.press("escape")
        await closed(app, pilot)
        await show_tab(app, pilot, "2", "sessions")
        await pilot.press("question_mark")
        await wait_until(pilot, lambda: isinstance(app.screen, HelpScreen), "the help screen")
        text = "\n".join(shown_texts(app))
        assert "Cancel the highlighted session's running turn" in text
        assert "Run the held candidates" not in text
        await pilot.press("q")
        await closed(app, pilot)


async def test_tab_moves_between_a_dialogs_buttons(running: Running) -> None:
    async with open_console(running.gateway) as (app, pilot):
        await open_dialog(app, pilot, "q")
        assert focused_id(app) == "cancel"
        await pilot.press("tab")
        assert focused_id(app) == "detach"
        await pilot.press("tab")
        assert focused_id(app) == "stop"
        await pilot.press("escape")
        await closed(app, pilot)

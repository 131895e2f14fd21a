"""The sessions tab: its filter (issue 13, item 10) and sessions counted from the store
(item 6), over a real gateway."""

from __future__ import annotations

from textual.widgets import Input

from console.tabs.sessions import SessionsTab
from tests.support.console_pilot import (
    focused_id,
    label_text,
    open_console,
    rendered_lines,
    show_tab,
    table,
    wait_until,
)
from tests.support.harness import Running


async def say_hello(running: Running, *names: str) -> None:
    for name in names:
        user = running.adapter.user(name, name=name)
        await user.say("hello")
        await user.wait_for(1)


async def test_escape_clears_and_leaves_the_filter_and_the_footer_says_so(
    running: Running,
) -> None:
    await say_hello(running, "ada", "bob", "cy")
    async with open_console(running.gateway) as (app, pilot):
        await show_tab(app, pilot, "2", "sessions")
        await pilot.press("slash")
        box = app.query_one("#session-filter", Input)
        await wait_until(pilot, lambda: focused_id(app) == "session-filter", "the filter")
        await wait_until(pilot, lambda: "Clear filter" in rendered_lines(app)[-1], "footer")
        await pilot.press(*"bob")
        await wait_until(pilot, lambda: len(table(app, "#session-table").keys) == 1, "bob only")

        await pilot.press("escape")
        await wait_until(pilot, lambda: not box.display, "the filter hidden")
        assert box.value == "" and app.query_one(SessionsTab).filter_text == ""
        assert focused_id(app) == "session-table"
        await wait_until(pilot, lambda: len(table(app, "#session-table").keys) == 3, "all again")
        assert "filter" not in label_text(app, "#sessions-title")

        await pilot.press("3")  # tab keys work again
        await wait_until(pilot, lambda: app.active_tab == "recovery", "the recovery tab")


async def test_enter_keeps_the_filter_and_returns_to_the_table(running: Running) -> None:
    await say_hello(running, "ada", "bob")
    async with open_console(running.gateway) as (app, pilot):
        await show_tab(app, pilot, "2", "sessions")
        await pilot.press("slash", *"ada", "enter")
        await wait_until(pilot, lambda: focused_id(app) == "session-table", "the table")
        await wait_until(pilot, lambda: len(table(app, "#session-table").keys) == 1, "ada only")
        assert "filter 'ada'" in label_text(app, "#sessions-title")
        await pilot.press("1")
        await wait_until(pilot, lambda: app.active_tab == "overview", "the overview")

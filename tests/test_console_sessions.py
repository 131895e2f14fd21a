"""The sessions tab: its filter (issue 13, item 10) and sessions counted from the store
(item 6), over a real gateway."""

from __future__ import annotations

from textual.widgets import Input

from console.tabs.sessions import SessionsTab
from tests.support.console_pilot import (
    cell,
    focused_id,
    label_text,
    open_console,
    rendered_lines,
    show_tab,
    static_text,
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


# -- item 6: sessions are counted and listed from the store, not from this run's lanes -------


async def test_after_a_restart_every_stored_session_is_listed_counted_and_searchable(
    running: Running,
) -> None:
    names = ("ada", "bob", "cy", "dee", "eve")
    await say_hello(running, *names)
    gateway = running.gateway
    await gateway.restart(0)
    assert gateway.snapshot().sessions == ()  # no lane yet in the new run
    await say_hello(running, "fay")
    async with open_console(gateway) as (app, pilot):
        assert "sessions 6" in static_text(app, "#banner")
        await show_tab(app, pilot, "2", "sessions")
        shown = table(app, "#session-table")
        assert len(shown.keys) == 6
        assert "6 of 6 shown" in label_text(app, "#sessions-title")
        await pilot.press("slash", *"bob")
        await wait_until(pilot, lambda: len(shown.keys) == 1, "bob found")
        (bob,) = shown.keys
        assert cell(app, "#session-table", bob, "where") == "loopback:bob bob"
        assert cell(app, "#session-table", bob, "state") == "idle"
        await wait_until(
            pilot,
            lambda: static_text(app, "#transcript").startswith(f"Session {bob}"),
            "bob's transcript from the store",
        )
        assert "You said: hello" in static_text(app, "#transcript")


async def test_the_transcript_pane_counts_its_rows_in_words(running: Running) -> None:
    await say_hello(running, "ada")
    (lane,) = running.gateway.lanes.all()
    async with open_console(running.gateway) as (app, pilot):
        await show_tab(app, pilot, "2", "sessions")
        await wait_until(
            pilot,
            lambda: static_text(app, "#transcript").startswith(f"Session {lane.session.id}"),
            "the transcript",
        )
        title = static_text(app, "#transcript").split("\n")[0]
        assert title == f"Session {lane.session.id}: 2 rows"


async def test_the_transcript_shows_which_message_each_answer_replied_to(
    running: Running,
) -> None:
    mallory = running.adapter.user("team", name="mallory", group=True)
    await mallory.say("hi \x1b]0;pwned\x07 [bold]there[/]")
    await mallory.wait_for(1)
    (lane,) = running.gateway.lanes.all()
    async with open_console(running.gateway) as (app, pilot):
        await show_tab(app, pilot, "2", "sessions")
        await wait_until(
            pilot,
            lambda: static_text(app, "#transcript").startswith(f"Session {lane.session.id}"),
            "the transcript",
        )
        answer = static_text(app, "#transcript").splitlines()[-1]
        assert answer.startswith("assistant ↩ “hi ␛]0;pwned␇ [bold]there[/]”: You said: hi")
        assert "\x1b" not in static_text(app, "#transcript")

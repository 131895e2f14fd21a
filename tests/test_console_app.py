"""The operator console (ConsoleApp) driven by Textual's Pilot over a real gateway.

Real parts only: a real SQLite store, the loopback adapter, the scripted agent, real
background jobs and a manual clock. Results are read back from the store (audit rows,
recovery records), the gateway's snapshot and the app's own widgets.
"""

from __future__ import annotations

import asyncio
import logging
import shlex
from dataclasses import dataclass
from pathlib import Path

import pytest
from textual import events
from textual.command import CommandPalette
from textual.widgets import Button, Input

from console.actions import ACTIONS
from console.app import ConsoleApp
from console.backend import InProcessBackend
from console.safety import clean
from console.screens.dialogs import ConfirmScreen, InputScreen, LeaveScreen
from console.screens.log_view import LogScreen
from console.widgets.follow_log import FollowLog
from gateway_core.clock import ManualClock
from gateway_core.events import OperatorActed, TurnFinished
from gateway_core.log_ring import LogRing
from tests.support.console_fixtures import Busy
from tests.support.console_pilot import (
    ACTOR,
    SIZE,
    Crashed,
    Jobs,
    cell,
    click_button,
    closed,
    confirm,
    crashed_gateway,
    dialog_targets,
    focus_row,
    focused_id,
    label_text,
    lists_targets,
    open_console,
    open_dialog,
    palette_hits,
    palette_options,
    quiesce,
    recovery_tab,
    rendered_lines,
    rendered_segments,
    settled,
    show_tab,
    shown_texts,
    state_of,
    static_text,
    table,
    wait_until,
    world,
)
from tests.support.harness import Running

RESUMED = "Back after a restart. You had asked: 'deploy'"

# -- 1. every mutating action asks first, with Cancel focused --------------------------------


@dataclass(frozen=True)
class Case:
    action: str
    key: str
    tab: tuple[str, str] | None  # (digit, tab) to show first
    dialog: type[ConfirmScreen] | type[InputScreen]
    title: str


CASES = [
    pytest.param(Case("quiet", "s", None, ConfirmScreen, "Go quiet?"), id="quiet"),
    pytest.param(
        Case("resume-intake", "i", None, ConfirmScreen, "Resume intake?"), id="resume-intake"
    ),
    pytest.param(Case("drain", "d", None, InputScreen, "Drain and stop the gateway?"), id="drain"),
    pytest.param(
        Case("restart", "ctrl+r", None, InputScreen, "Drain and restart the gateway?"),
        id="restart",
    ),
    pytest.param(
        Case("interrupt", "t", ("2", "sessions"), ConfirmScreen, "Interrupt this turn?"),
        id="interrupt",
    ),
    pytest.param(
        Case("approve", "a", ("3", "recovery"), ConfirmScreen, "Approve: resume these now?"),
        id="approve",
    ),
    pytest.param(
        Case("clear", "c", ("3", "recovery"), ConfirmScreen, "Clear: never resume these?"),
        id="clear",
    ),
    pytest.param(
        Case("force-resume", "f", ("3", "recovery"), InputScreen, "Force-resume"),
        id="force-resume",
    ),
    pytest.param(
        Case("kill-process", "k", ("4", "processes"), ConfirmScreen, "Kill this job"),
        id="kill",
    ),
]


def expected_target(busy: Busy, action: str) -> tuple[str, str] | None:
    """How the confirmation's target line for the highlighted row starts and ends, if the
    action has a target (the middle, how a conversation is named, is the app's choice)."""
    if action == "interrupt":
        return f"  • {busy.carl.session.id}: loopback:carl", ""
    if action in ("approve", "clear", "force-resume"):
        return f"  • {busy.ada}: loopback:ada", "(ambiguous-tool)"
    if action == "kill-process":
        return f"  • {busy.job.id}: sleep 30", ""
    return None


@pytest.mark.parametrize("case", CASES)
async def test_a_mutating_key_opens_a_confirmation_and_a_lone_enter_changes_nothing(
    busy: Busy, case: Case
) -> None:
    """A yes/no opens on Cancel; a dialog asking for a value opens on its input, where a lone
    Enter acts on nothing (an empty reason is refused, an untouched default only moves to
    the button)."""
    gateway = busy.gateway
    if case.action == "resume-intake":
        assert gateway.quiet()  # offered only when there is an intake to resume
    async with open_console(gateway) as (app, pilot):
        if case.tab is not None:
            await show_tab(app, pilot, *case.tab)
        before = await world(gateway)

        await open_dialog(app, pilot, case.key)
        assert type(app.screen) is case.dialog
        assert any(case.title in text for text in shown_texts(app))
        target = expected_target(busy, case.action)
        if target is not None:
            assert "1 target:" in shown_texts(app)
            assert lists_targets(app, target), dialog_targets(app)
        if case.dialog is ConfirmScreen:
            focused = app.focused
            assert isinstance(focused, Button) and focused.id == "cancel"
            await pilot.press("enter")
        else:
            assert focused_id(app) == "answer"
            await pilot.press("enter")
            await pilot.pause()
            assert type(app.screen) is case.dialog  # still asking
            await pilot.press("escape")
        await closed(app, pilot)
        assert app.is_running
        assert await world(gateway) == before
        assert await gateway.store.audit.recent() == []
        assert busy.carl.busy and busy.job.state == "running"


async def test_enter_right_after_the_drain_key_leaves_the_gateway_running(
    running: Running,
) -> None:
    async with open_console(running.gateway) as (app, pilot):
        await open_dialog(app, pilot, "d")
        await pilot.press("enter")
        await pilot.pause()
        await settled(app)
        assert isinstance(app.screen, InputScreen)  # still open, on its Drain button now
        assert state_of(running.gateway) == "running"


@pytest.mark.parametrize(
    ("key", "tab"),
    [("d", None), ("ctrl+r", None), ("f", ("3", "recovery"))],
    ids=["drain", "restart", "force-resume"],
)
async def test_the_cancel_button_of_an_input_dialog_changes_nothing(
    busy: Busy, key: str, tab: tuple[str, str] | None
) -> None:
    gateway = busy.gateway
    async with open_console(gateway) as (app, pilot):
        if tab is not None:
            await show_tab(app, pilot, *tab)
        before = await world(gateway)
        await open_dialog(app, pilot, key)
        assert isinstance(app.screen, InputScreen)
        await click_button(app, pilot, "#cancel")
        await closed(app, pilot)
        assert await world(gateway) == before
        assert await gateway.store.audit.recent() == []


# -- 2. confirming does it -------------------------------------------------------------------


async def test_confirming_quiet_makes_the_gateway_quiet_and_audits_the_operator(
    running: Running,
) -> None:
    gateway = running.gateway
    async with open_console(gateway) as (app, pilot):
        await open_dialog(app, pilot, "s")
        await confirm(app, pilot)
        assert state_of(gateway) == "quiet"
        (entry,) = await gateway.store.audit.recent()
        assert (entry.actor, entry.action, entry.targets, entry.outcome) == (
            ACTOR,
            "quiet",
            (),
            "ok",
        )
        await app.tick()
        assert " QUIET " in static_text(app, "#banner")


async def test_confirming_approve_runs_the_held_candidates_resume_turn(busy: Busy) -> None:
    gateway = busy.gateway
    ada = busy.running.adapter.user("ada", name="Ada")
    async with open_console(gateway) as (app, pilot):
        await show_tab(app, pilot, "3", "recovery")
        await focus_row(pilot, table(app, "#candidate-table"), str(busy.ada))
        await open_dialog(app, pilot, "a")
        await confirm(app, pilot)

        # The held notice came at boot; the resumed answer follows it, once.
        assert [m.text for m in await ada.wait_for(2)][1:] == [RESUMED]
        record = await gateway.store.recovery.get(busy.ada)
        assert record is not None and record.state == "none"
        (entry,) = await gateway.store.audit.recent()
        assert (entry.actor, entry.action, entry.targets, entry.outcome) == (
            ACTOR,
            "approve",
            (str(busy.ada),),
            "ok",
        )
        await app.tick()
        assert table(app, "#candidate-table").keys == [str(busy.bob), str(busy.cy)]


async def test_confirming_clear_drops_the_candidate(busy: Busy) -> None:
    gateway = busy.gateway
    async with open_console(gateway) as (app, pilot):
        await show_tab(app, pilot, "3", "recovery")
        await focus_row(pilot, table(app, "#candidate-table"), str(busy.cy))
        await open_dialog(app, pilot, "c")
        assert lists_targets(app, (f"  • {busy.cy}: loopback:cy", "(ambiguous-tool)"))
        await confirm(app, pilot)

        record = await gateway.store.recovery.get(busy.cy)
        assert record is not None and record.state == "none"
        assert gateway.lanes.find(busy.cy) is None  # cleared: never run
        (entry,) = await gateway.store.audit.recent()
        assert (entry.actor, entry.action, entry.targets, entry.outcome) == (
            ACTOR,
            "clear",
            (str(busy.cy),),
            "ok",
        )
        await app.tick()
        assert table(app, "#candidate-table").keys == [str(busy.ada), str(busy.bob)]


async def test_confirming_kill_kills_the_background_job(busy: Busy) -> None:
    gateway = busy.gateway
    async with open_console(gateway) as (app, pilot):
        await show_tab(app, pilot, "4", "processes")
        await open_dialog(app, pilot, "k")
        await confirm(app, pilot)

        assert busy.job.state == "killed"
        (entry,) = await gateway.store.audit.recent()
        assert (entry.actor, entry.action, entry.targets, entry.outcome) == (
            ACTOR,
            "kill-process",
            (busy.job.id,),
            "ok",
        )
        await app.tick()
        assert cell(app, "#process-table", busy.job.id, "state") == "killed"


async def test_confirming_interrupt_stops_a_thinking_turn(busy: Busy) -> None:
    gateway, lane = busy.gateway, busy.carl
    finished = gateway.events.subscribe()
    async with open_console(gateway) as (app, pilot):
        await show_tab(app, pilot, "2", "sessions")
        assert table(app, "#session-table").current_key() == str(lane.session.id)
        await open_dialog(app, pilot, "t")
        await confirm(app, pilot)

        # The turn's end and the audited action, in whichever order they come: the audit
        # row is written once the cancel was made, not once the turn has unwound.
        seen: dict[type, object] = {}
        async with asyncio.timeout(10):
            while len(seen) < 2:
                event = await finished.queue.get()
                if isinstance(event, TurnFinished | OperatorActed):
                    seen[type(event)] = event
        ended = seen[TurnFinished]
        assert isinstance(ended, TurnFinished)
        assert (ended.session_id, ended.outcome) == (lane.session.id, "interrupted")
        assert lane.current is None
        (entry,) = await gateway.store.audit.recent()
        assert (entry.actor, entry.action, entry.outcome, entry.detail) == (
            ACTOR,
            "interrupt",
            "ok",
            f"session {lane.session.id}: turn interrupted",
        )
        assert busy.running.adapter.user("carl").received() == []
        await app.tick()
        assert cell(app, "#session-table", str(lane.session.id), "state") == "idle"


async def test_confirming_restart_with_a_timeout_restarts_the_gateway_under_the_console(
    running: Running,
) -> None:
    gateway = running.gateway
    user = running.adapter.user("ada")
    await user.say("hello")
    await user.wait_for(1)
    first_run = gateway.snapshot().run_id
    assert first_run is not None
    async with open_console(gateway) as (app, pilot):
        await show_tab(app, pilot, "2", "sessions")  # the detail pane reads the store
        await open_dialog(app, pilot, "ctrl+r")
        app.screen.query_one("#answer", Input).value = "0"
        await confirm(app, pilot)

        assert state_of(gateway) == "running"
        assert gateway.snapshot().run_id == first_run + 1
        (entry,) = await gateway.store.audit.recent()
        assert (entry.actor, entry.action, entry.outcome) == (ACTOR, "restart", "ok")
        await app.tick()
        assert f"run #{first_run + 1}" in static_text(app, "#banner")
        assert app.is_running
        await user.say("hello again")
        assert [m.text for m in await user.wait_for(2)][-1] == "You said: hello again"


# -- 3. force-resume needs a reason ----------------------------------------------------------


async def test_force_resume_refuses_an_empty_reason_and_records_a_given_one(busy: Busy) -> None:
    gateway = busy.gateway
    bob = busy.running.adapter.user("bob", name="Bob")
    async with open_console(gateway) as (app, pilot):
        await show_tab(app, pilot, "3", "recovery")
        await focus_row(pilot, table(app, "#candidate-table"), str(busy.bob))
        await open_dialog(app, pilot, "f")
        assert lists_targets(app, (f"  • {busy.bob}: loopback:bob", "(awaiting-user)"))

        await click_button(app, pilot, "#confirm")
        await pilot.pause()
        assert isinstance(app.screen, InputScreen)  # still open
        assert label_text(app, "#problem") == "A value is required."
        assert await gateway.store.audit.recent() == []
        assert gateway.lanes.find(busy.bob) is None

        answer = app.screen.query_one("#answer", Input)
        answer.post_message(events.Paste("Bob asked again"))  # as an operator pastes it
        await wait_until(pilot, lambda: answer.value == "Bob asked again", "the pasted reason")
        await confirm(app, pilot)
        (entry,) = await gateway.store.audit.recent()
        assert (entry.actor, entry.action, entry.targets, entry.reason, entry.outcome) == (
            ACTOR,
            "force-resume",
            (str(busy.bob),),
            "Bob asked again",
            "ok",
        )
        assert [m.text for m in await bob.wait_for(1)] == [RESUMED]


# -- 4. bulk ---------------------------------------------------------------------------------


async def test_marking_two_candidates_approves_both_after_one_confirmation(busy: Busy) -> None:
    gateway = busy.gateway
    ada = busy.running.adapter.user("ada", name="Ada")
    cy = busy.running.adapter.user("cy", name="Cy")
    async with open_console(gateway) as (app, pilot):
        await show_tab(app, pilot, "3", "recovery")
        candidates = table(app, "#candidate-table")
        for session_id in (busy.ada, busy.cy):
            await focus_row(pilot, candidates, str(session_id))
            await pilot.press("space")
        assert recovery_tab(app).marked == {str(busy.ada), str(busy.cy)}
        assert "2 marked" in label_text(app, "#recovery-title")
        assert [cell(app, "#candidate-table", str(s), "mark") for s in (1, 2, 3)] == [
            "✓",
            " ",
            "✓",
        ]

        await open_dialog(app, pilot, "a")
        assert isinstance(app.screen, ConfirmScreen)
        assert "2 targets:" in shown_texts(app)
        assert lists_targets(
            app,
            (f"  • {busy.ada}: loopback:ada", "(ambiguous-tool)"),
            (f"  • {busy.cy}: loopback:cy", "(ambiguous-tool)"),
        ), dialog_targets(app)
        await confirm(app, pilot)  # one confirmation for both

        assert [m.text for m in await ada.wait_for(2)][1:] == [RESUMED]
        assert [m.text for m in await cy.wait_for(2)][1:] == [RESUMED]
        entries = await gateway.store.audit.recent()
        assert sorted((e.actor, e.action, e.targets, e.outcome) for e in entries) == [
            (ACTOR, "approve", (str(busy.ada),), "ok"),
            (ACTOR, "approve", (str(busy.cy),), "ok"),
        ]
        assert recovery_tab(app).marked == set()
        record = await gateway.store.recovery.get(busy.bob)
        assert record is not None and record.state == "pending"  # not marked: untouched


# -- 5. read-only ----------------------------------------------------------------------------


MUTATING_TITLES = {action.title for action in ACTIONS if action.mutating}


async def test_a_read_only_console_hides_every_mutation_and_the_core_refuses_too(
    busy: Busy,
) -> None:
    gateway = busy.gateway
    async with open_console(gateway, read_only=True) as (app, pilot):
        assert "READ-ONLY" in static_text(app, "#banner")
        for action in ACTIONS:
            if action.mutating:
                assert app.refusal(action) is not None, action.name
        assert app.offers("leave")
        footer = rendered_lines(app)[-1]
        assert "Leave" in footer
        assert not [title for title in MUTATING_TITLES if title in footer]

        for tab, keys in [
            (None, ("s", "i", "d", "ctrl+r")),
            (("2", "sessions"), ("t",)),
            (("3", "recovery"), ("a", "c", "f")),
            (("4", "processes"), ("k",)),
        ]:
            if tab is not None:
                await show_tab(app, pilot, *tab)
            for key in keys:
                await pilot.press(key)
                assert len(app.screen_stack) == 1, key

        await pilot.press("ctrl+p")
        await wait_until(pilot, lambda: isinstance(app.screen, CommandPalette), "the palette")
        await wait_until(pilot, lambda: "Leave" in palette_hits(app), "the palette's entries")
        offered = palette_hits(app)
        assert "Go to Recovery" in offered
        assert not MUTATING_TITLES & set(offered)
        await pilot.press(*"Quiet")
        await wait_until(
            pilot,
            lambda: [option_id for option_id, _ in palette_options(app)] == ["--no-matches"],
            "no match for Quiet",
        )
        await pilot.press("escape")
        await wait_until(pilot, lambda: len(app.screen_stack) == 1, "the palette closed")
        assert await gateway.store.audit.recent() == []
        assert state_of(gateway) == "running"

        refused = await app.backend.act("quiet")
        assert not refused.ok and "read-only" in refused.message
        assert state_of(gateway) == "running"
        (entry,) = await gateway.store.audit.recent()
        assert (entry.actor, entry.action, entry.outcome) == (ACTOR, "quiet", "refused")


# -- 6. the cursor stays on its row ----------------------------------------------------------


async def test_the_session_cursor_stays_on_its_session_across_updates_and_sorts(
    running: Running, clock: ManualClock
) -> None:
    gateway = running.gateway

    async def hello(name: str) -> None:
        clock.advance(1)  # newer activity: listed above the others
        user = running.adapter.user(name)
        await user.say("hello")
        await user.wait_for(1)
        # Its turn ended too (its reply may go out first): its activity time is now's.
        await gateway.wait_idle()

    for name in ("s1", "s2", "s3", "s4"):
        await hello(name)
    ids = {lane.session.key.chat_id: str(lane.session.id) for lane in gateway.lanes.all()}
    async with open_console(gateway) as (app, pilot):
        await show_tab(app, pilot, "2", "sessions")
        sessions = table(app, "#session-table")

        async def sort() -> None:
            await pilot.press("o")
            await app.tick()
            await pilot.pause()

        for _ in range(5):  # to the "most recent" order, where new sessions come first
            if label_text(app, "#sessions-title").endswith("most recent"):
                break
            await sort()
        assert sessions.keys == [ids[n] for n in ("s4", "s3", "s2", "s1")]
        await focus_row(pilot, sessions, ids["s2"])
        assert (sessions.current_key(), sessions.cursor_row) == (ids["s2"], 2)

        for name in ("s5", "s6"):  # two new sessions, listed above s2
            await hello(name)
        await app.tick()
        await pilot.pause()
        assert len(sessions.keys) == 6
        assert (sessions.current_key(), sessions.cursor_row) == (ids["s2"], 4)
        await wait_until(
            pilot,
            lambda: static_text(app, "#transcript").startswith(f"Session {ids['s2']}:"),
            "the detail pane on the same session",
        )

        rows_seen = {sessions.cursor_row}
        titles = set()
        for _ in range(3):  # every order once, back to "most recent"
            await sort()
            assert sessions.current_key() == ids["s2"]
            rows_seen.add(sessions.cursor_row)
            titles.add(label_text(app, "#sessions-title"))
        assert len(titles) == 3
        assert len(rows_seen) > 1  # the row moved with the order; the cursor went with it
        assert static_text(app, "#transcript").startswith(f"Session {ids['s2']}:")


# -- 7. leaving ------------------------------------------------------------------------------


async def test_leave_opens_with_cancel_focused_and_enter_stays(running: Running) -> None:
    async with open_console(running.gateway) as (app, pilot):
        await open_dialog(app, pilot, "q")
        assert isinstance(app.screen, LeaveScreen)
        assert focused_id(app) == "cancel"
        assert [b.id for b in app.screen.query(Button)] == ["cancel", "detach", "stop"]
        await pilot.press("enter")
        await closed(app, pilot)
        assert app.is_running
    assert app.return_value is None
    assert state_of(running.gateway) == "running"


async def test_detach_exits_the_console_and_leaves_the_gateway_running(
    running: Running,
) -> None:
    async with open_console(running.gateway) as (app, pilot):
        await open_dialog(app, pilot, "q")
        await quiesce(app)  # the app exits by itself: see the shutdown-race test
        await click_button(app, pilot, "#detach")
        await wait_until(pilot, lambda: app.return_value is not None, "the app exiting")
    assert app.return_value == "detach"
    assert state_of(running.gateway) == "running"
    user = running.adapter.user("ada")
    await user.say("hello")
    assert [m.text for m in await user.wait_for(1)] == ["You said: hello"]


async def test_drain_and_stop_stops_the_gateway_and_exits_stopped(running: Running) -> None:
    async with open_console(running.gateway) as (app, pilot):
        await open_dialog(app, pilot, "q")
        await quiesce(app)  # the app exits by itself: see the shutdown-race test
        await click_button(app, pilot, "#stop")
        async with asyncio.timeout(10):
            await running.gateway.wait_stopped()
        await wait_until(pilot, lambda: app.return_value is not None, "the app exiting")
    assert app.return_value == "stopped"
    assert state_of(running.gateway) == "stopped"


async def test_a_read_only_leave_dialog_offers_no_stop(running: Running) -> None:
    async with open_console(running.gateway, read_only=True) as (app, pilot):
        await open_dialog(app, pilot, "q")
        assert isinstance(app.screen, LeaveScreen)
        assert focused_id(app) == "cancel"
        assert [b.id for b in app.screen.query(Button)] == ["cancel", "detach"]
        await pilot.press("escape")
        await closed(app, pilot)


# -- 8. hostile text -------------------------------------------------------------------------

HOSTILE = [
    pytest.param("[/x]", id="closing-tag"),
    pytest.param("[@click=app.quit]x[/]", id="click-action"),
    pytest.param("[$accent]", id="variable"),
    pytest.param("\x1b]0;pwned\x07\x1b[5m", id="escape-sequences"),
    pytest.param("trailing\\", id="trailing-backslash"),
    pytest.param("[bold]unclosed", id="unclosed-tag"),
    pytest.param("W" * 4992 + "[/x]\x1b[2J", id="5000-chars"),
    pytest.param("\u202eevil", id="bidi-override"),
    pytest.param("\x9b31mC1 CSI\x9b0m", id="c1-csi"),
]
RAW_CONTROL = {chr(c) for c in (*range(0x00, 0x20), *range(0x7F, 0xA0))} - {"\n"}


def raw_controls(app: ConsoleApp) -> list[str]:
    """Widget texts and rendered lines holding a raw control character (ESC, BEL, CSI...)."""
    found = [t[:60] for t in shown_texts(app) if RAW_CONTROL & set(t)]
    found += [line[:60] for line in rendered_lines(app) if RAW_CONTROL & set(line)]
    return found


def shows(shown: str, full: str) -> bool:
    """`shown` is `full` made inert, whole or cut to its column with an ellipsis."""
    return len(shown) >= min(len(clean(full, 10_000)), 10) and shown == clean(full, len(shown))


def user_line(transcript: str) -> str:
    (line,) = [line for line in transcript.split("\n") if line.startswith("user: ")]
    return line.removeprefix("user: ")


def click_actions(app: ConsoleApp) -> list[str]:
    """The click actions (markup links) anywhere on the rendered screen."""
    actions = []
    for segment in rendered_segments(app):
        meta = segment.style.meta if segment.style is not None else {}
        if "@click" in meta:
            actions.append(str(meta["@click"]))
    return actions


@pytest.mark.parametrize("hostile", HOSTILE)
async def test_hostile_text_is_shown_inert_in_every_widget(
    tmp_path: Path, clock: ManualClock, jobs: Jobs, hostile: str
) -> None:
    # A crashed conversation whose user name, request, tool name and mark reason are hostile.
    running, (victim, bob) = await crashed_gateway(
        tmp_path / "state",
        clock,
        [
            Crashed("mallory", hostile, request=hostile, tool=hostile, reason=hostile),
            Crashed("bob", "Bob", risky=False),
        ],
    )
    gateway = running.gateway
    record = await gateway.store.recovery.get(victim)
    assert record is not None and record.last_explanation is not None
    assert hostile in record.last_explanation
    # A live user with the hostile name, saying it.
    eve = running.adapter.user("eve", name=hostile)
    await eve.say(hostile)
    await eve.wait_for(1)
    (lane,) = gateway.lanes.all()
    transcript = await gateway.store.transcript.all(lane.session.id)
    assert [(m.role, m.content) for m in transcript] == [
        ("user", hostile),
        ("assistant", f"You said: {hostile}"),
    ]
    # A real job whose command line and output hold it.
    job = await jobs.start(gateway, f"printf '%s\\n' {shlex.quote(hostile)}", lane.session.id)
    async with asyncio.timeout(10):
        await job.finished.wait()
    assert job.output.tail(5) == [hostile]
    # An audit reason: bob force-resumed with it (typing a reason is tested above).
    backend = InProcessBackend(gateway, actor=ACTOR)
    assert (await backend.act("force-resume", [str(bob)], reason=hostile)).ok
    (entry,) = await gateway.store.audit.recent()
    assert entry.reason == hostile
    # A gateway log line quoting it, for the log pane.
    ring = LogRing()
    ring.emit(logging.makeLogRecord({"name": "chat", "msg": hostile, "levelname": "INFO"}))

    async with open_console(gateway, log=ring) as (app, pilot):

        def inert() -> None:
            assert app.is_running and app.return_value is None
            assert raw_controls(app) == []
            assert click_actions(app) == []

        await show_tab(app, pilot, "1", "overview")
        inert()

        await show_tab(app, pilot, "2", "sessions")
        sid = str(lane.session.id)
        await focus_row(pilot, table(app, "#session-table"), sid)
        assert shows(cell(app, "#session-table", sid, "where"), f"loopback:eve {hostile}")
        await wait_until(
            pilot,
            lambda: static_text(app, "#transcript").startswith(f"Session {sid}:"),
            "the transcript pane",
        )
        assert shows(user_line(static_text(app, "#transcript")), hostile)
        inert()

        await show_tab(app, pilot, "3", "recovery")
        await focus_row(pilot, table(app, "#candidate-table"), str(victim))
        row = str(victim)
        where = f"loopback:mallory {hostile}"
        assert shows(cell(app, "#candidate-table", row, "where"), where)
        assert shows(cell(app, "#candidate-table", row, "reason"), hostile)
        assert shows(cell(app, "#candidate-table", row, "why"), record.last_explanation)
        detail = static_text(app, "#candidate-detail")
        assert detail.startswith("Conversation: loopback:mallory")
        explained = clean(record.last_explanation, 10_000)[:30]
        assert explained in detail or "…" in detail
        inert()

        await show_tab(app, pilot, "4", "processes")
        assert shows(cell(app, "#process-table", job.id, "command"), job.record.command)
        assert shows(cell(app, "#process-table", job.id, "last"), hostile)
        inert()
        await pilot.press("l")
        await wait_until(pilot, lambda: isinstance(app.screen, LogScreen), "the job's log")
        job_log = app.screen.query_one(FollowLog)
        await wait_until(pilot, lambda: bool(job_log.lines), "the job's lines")
        assert shows("".join(job_log.plain_lines).rstrip(), hostile)
        inert()
        await pilot.press("escape")
        await closed(app, pilot)

        await show_tab(app, pilot, "5", "timers")
        inert()

        await show_tab(app, pilot, "6", "audit")
        detail = f"{hostile} | {entry.detail}"
        assert shows(cell(app, "#audit-table", str(entry.id), "detail"), detail)
        log_pane = app.query_one("#log", FollowLog)
        await wait_until(pilot, lambda: len(log_pane.lines) == 1, "the log line")
        line = log_pane.plain_lines[0].rstrip()
        assert line.split()[1:3] == ["INFO", "chat"]
        assert shows(line.split("chat", 1)[1].strip(), hostile)
        inert()
    assert app.return_value is None


# -- 9. the command palette ------------------------------------------------------------------


async def test_the_command_palette_finds_an_action_and_runs_it_behind_its_confirmation(
    running: Running,
) -> None:
    async with open_console(running.gateway) as (app, pilot):
        await pilot.press("ctrl+p")
        await wait_until(pilot, lambda: isinstance(app.screen, CommandPalette), "the palette")
        await pilot.press(*"Quiet")
        await wait_until(pilot, lambda: "Quiet" in palette_hits(app), "a Quiet hit")
        assert palette_hits(app)[0] == "Quiet"

        await pilot.press("enter")  # run it: the same confirmation as its key
        await wait_until(pilot, lambda: isinstance(app.screen, ConfirmScreen), "the confirm")
        assert focused_id(app) == "cancel"
        assert any("Go quiet?" in text for text in shown_texts(app))
        await pilot.press("enter")
        await closed(app, pilot)
    assert state_of(running.gateway) == "running"
    assert await running.gateway.store.audit.recent() == []


# -- bugs found on the way (fixed) ----------------------------------------------------------


async def test_key_1_shows_the_overview_from_the_audit_tab(running: Running) -> None:
    async with open_console(running.gateway) as (app, pilot):
        await show_tab(app, pilot, "6", "audit")
        await pilot.press("1")
        await pilot.pause()
        assert app.active_tab == "overview"


async def test_a_refresh_tick_during_shutdown_does_not_crash_the_app(running: Running) -> None:
    for _ in range(3):  # a fast refresh makes the race certain, not rare
        app = ConsoleApp(InProcessBackend(running.gateway, actor=ACTOR), refresh_every=0.001)
        async with app.run_test(size=SIZE) as pilot:
            await pilot.pause(0.02)


async def test_the_log_pane_shows_new_lines_after_the_ring_is_full(running: Running) -> None:
    ring = LogRing()
    for number in range(500):
        ring.emit(logging.makeLogRecord({"name": "old", "msg": f"line {number}"}))
    async with open_console(running.gateway, log=ring) as (app, pilot):
        await show_tab(app, pilot, "6", "audit")
        log_pane = app.query_one("#log", FollowLog)
        assert log_pane.plain_lines[-1].rstrip().endswith("old              line 499")
        ring.emit(logging.makeLogRecord({"name": "new", "msg": "the newest line"}))
        await app.tick()
        await pilot.pause()
        assert log_pane.plain_lines[-1].rstrip().endswith("new              the newest line")

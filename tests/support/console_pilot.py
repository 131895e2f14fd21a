"""Driving the operator console in tests: a real gateway under it, and what it really shows.

`open_console` runs `ConsoleApp` headless over an `InProcessBackend` (actor "tester");
`crashed_gateway` boots a gateway whose previous run left recovery candidates, made the way
production makes them (transcript rows plus a marker, then a fresh boot classifies them);
`shown_texts` and `rendered_lines` read every widget's text and the composed screen, so a
test can check what would reach the terminal.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from rich.segment import Segment
from rich.text import Text
from textual.command import CommandList
from textual.content import Content
from textual.pilot import Pilot
from textual.widget import Widget
from textual.widgets import Button, DataTable, Input, Label, Log, RichLog, Static
from textual.worker import WorkerCancelled

from console.app import ConsoleApp
from console.backend import InProcessBackend
from console.tabs.recovery import RecoveryTab
from console.widgets.keyed_table import KeyedTable
from gateway_core.clock import ManualClock
from gateway_core.gateway import Gateway
from gateway_core.log_ring import LogRing
from gateway_core.model import MessageKind, Origin, SessionKey
from gateway_core.processes.killing import kill_tree
from gateway_core.processes.registry import TrackedProcess
from gateway_core.store import DATABASE_NAME, Store
from tests.support.harness import Running, start_gateway
from tests.support.transcripts import asks, call, result, user

ACTOR = "tester"
SIZE = (140, 45)

ConsolePilot = Pilot[str]


@asynccontextmanager
async def open_console(
    gateway: Gateway, *, read_only: bool = False, log: LogRing | None = None
) -> AsyncIterator[tuple[ConsoleApp, ConsolePilot]]:
    """The console over `gateway`, headless, refreshing every 0.2 s, mounted and painted."""
    backend = InProcessBackend(gateway, read_only=read_only, log=log, actor=ACTOR)
    app = ConsoleApp(backend, refresh_every=0.2)
    app.animation_level = "none"  # the tab underline's slide costs ~0.4 s a tab switch
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await pilot.pause()
        try:
            yield app, pilot
        finally:
            await quiesce(app)


async def quiesce(app: ConsoleApp) -> None:
    """Disarm the refresh interval and let running workers finish before the app shuts down,
    so each test ends at a known point (a late tick is harmless now; see
    test_a_refresh_tick_during_shutdown_does_not_crash_the_app)."""
    for timer in list(app._timers):
        if timer.name == "refresh":
            timer.stop()
    await settled(app)


async def settled(app: ConsoleApp) -> None:
    """Until no worker runs. A transcript load is an exclusive worker: one started while we
    wait cancels the one we wait on, which is not a failure."""
    while True:
        try:
            await app.workers.wait_for_complete()
            return
        except WorkerCancelled:
            continue


async def wait_until(
    pilot: ConsolePilot, predicate: Callable[[], bool], what: str, within: float = 5.0
) -> None:
    """Pump the app until `predicate` holds (for state with no event to wait on), bounded."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError(f"not within {within} s: {what}")
        await pilot.pause(0.05)


async def show_tab(app: ConsoleApp, pilot: ConsolePilot, key: str, tab: str) -> None:
    """Press a digit key and wait until its tab is active and painted from a fresh snapshot."""
    await pilot.press(key)
    await wait_until(pilot, lambda: app.active_tab == tab, f"tab {tab}")
    await app.tick()
    await pilot.pause()


async def focus_row(pilot: ConsolePilot, table: DataTable[Text], key: str) -> None:
    """Move a table's cursor onto the row with this key."""
    table.move_cursor(row=table.get_row_index(key), animate=False)
    await pilot.pause()


# -- what is on the screen -------------------------------------------------------------------


def _plain(visual: object) -> str:
    if isinstance(visual, Text | Content):
        return visual.plain
    return str(visual)


def widget_text(widget: Widget) -> list[str]:
    """The text a widget holds for display (its content, cells, lines, value or label)."""
    if isinstance(widget, DataTable):
        cells = [_plain(cell) for row_key in widget.rows for cell in widget.get_row(row_key)]
        return cells + [_plain(column.label) for column in widget.columns.values()]
    if isinstance(widget, Log):
        return list(widget.lines)
    if isinstance(widget, RichLog):
        return [strip.text for strip in widget.lines]
    if isinstance(widget, Input):
        return [widget.value]
    if isinstance(widget, Button):
        return [_plain(widget.label)]
    if isinstance(widget, Static):
        return [_plain(widget.content)]
    return []


def shown_texts(app: ConsoleApp) -> list[str]:
    """The display text of every widget on every screen of the stack."""
    return [
        text
        for screen in app.screen_stack
        for widget in screen.walk_children(Widget, with_self=False)
        for text in widget_text(widget)
    ]


def rendered_segments(app: ConsoleApp) -> Iterator[Segment]:
    """Every segment of a full render of the current screen (what goes to the terminal)."""
    update = app.screen._compositor.render_full_update()
    for line in update.strips:
        for strip in line:
            yield from strip


def rendered_lines(app: ConsoleApp) -> list[str]:
    update = app.screen._compositor.render_full_update()
    return ["".join(s.text for strip in line for s in strip) for line in update.strips]


def static_text(app: ConsoleApp, selector: str) -> str:
    return _plain(app.screen.query_one(selector, Static).content)


def label_text(app: ConsoleApp, selector: str) -> str:
    return _plain(app.screen.query_one(selector, Label).content)


# -- recovery candidates ---------------------------------------------------------------------


@dataclass(frozen=True)
class Crashed:
    """A conversation a crashed run left behind.

    risky: the turn was cut during a `tool` call of unknown effect (ambiguous-tool: held);
    otherwise its clarify question timed out (awaiting-user: pending, waits for the user).
    unanswered: only the user's message was written (resumable: resumed at the next boot,
    unless the restart-loop guard holds it).
    suspended: an operator suspended it instead (never resumed automatically)."""

    chat_id: str
    user_name: str
    request: str = "deploy"
    tool: str = "terminal"
    reason: str = "crash"
    risky: bool = True
    unanswered: bool = False
    suspended: bool = False


async def _write_crashed(
    state_dir: Path, clock: ManualClock, crashed: Sequence[Crashed]
) -> list[int]:
    now = clock.now()
    store = await Store.open(state_dir / DATABASE_NAME, clock=clock)
    ids = []
    try:
        for spec in crashed:
            session = await store.sessions.ensure(
                SessionKey("loopback", spec.chat_id),
                Origin("loopback", spec.chat_id, user_name=spec.user_name),
            )
            if spec.unanswered:
                rows = [user(spec.request, now)]
            elif spec.risky:
                rows = [
                    user(spec.request, now),
                    asks(call(spec.tool, "t1", command="./deploy.sh"), at=now),
                ]
            else:
                rows = [
                    user(spec.request, now),
                    asks(call("clarify", "q1", question="Where to?"), at=now),
                    result("q1", "[no reply]", now, kind=MessageKind.CLARIFY_TIMEOUT),
                ]
            await store.transcript.append(session.id, rows)
            if spec.suspended:
                assert await store.recovery.suspend(session.id, "operator")
            else:
                assert await store.recovery.mark(session.id, spec.reason)
            ids.append(session.id)
    finally:
        await store.close()
    return ids


async def write_crashed(
    state_dir: Path, clock: ManualClock, crashed: Sequence[Crashed]
) -> list[int]:
    """Write `crashed` conversations into a stopped gateway's store; their session ids."""
    return await _write_crashed(state_dir, clock, crashed)


async def crashed_gateway(
    state_dir: Path, clock: ManualClock, crashed: Sequence[Crashed]
) -> tuple[Running, list[int]]:
    """A gateway booted over a store holding `crashed` conversations; their session ids."""
    first = await start_gateway(state_dir, clock)
    await first.stop()
    ids = await _write_crashed(state_dir, clock, crashed)
    return await start_gateway(state_dir, clock), ids


async def looping_gateway(state_dir: Path, clock: ManualClock) -> tuple[Running, int, int]:
    """Three boots with recovery candidates, seconds apart: the guard trips at the third and
    holds ada's turn, which would have been resumed. (cy, interrupted during a deploy, is
    held whatever the guard says.)"""
    first = await start_gateway(state_dir, clock)
    await first.stop()
    (cy,) = await write_crashed(state_dir, clock, [Crashed("cy", "Cy")])
    for _ in range(2):
        clock.advance(20)
        boot = await start_gateway(state_dir, clock)
        await boot.stop()
    clock.advance(20)
    (ada,) = await write_crashed(state_dir, clock, [Crashed("ada", "Ada", unanswered=True)])
    running = await start_gateway(state_dir, clock)
    assert running.gateway.snapshot().loop_guard_tripped
    return running, ada, cy


# -- background jobs -------------------------------------------------------------------------


class Jobs:
    """Real background jobs started for a test; whatever still runs is killed at the end."""

    def __init__(self) -> None:
        self._started: list[TrackedProcess] = []

    async def start(self, gateway: Gateway, command: str, session_id: int) -> TrackedProcess:
        job = await gateway.processes.start(command, session_id=session_id, generation=1)
        self._started.append(job)
        return job

    async def kill_all(self) -> None:
        for job in self._started:
            pid = job.record.pid
            if pid is not None:
                await asyncio.to_thread(kill_tree, pid, job.record.pid_started_at, 0.5)


# -- acting through the console ----------------------------------------------------------------

# What an action could change: gateway state, run, candidates, sessions, jobs, audit rows.
World = tuple[str, int | None, dict[int, str], dict[str, str], dict[str, str], int]


async def world(gateway: Gateway) -> World:
    snap = gateway.snapshot()
    return (
        snap.state,
        snap.run_id,
        {c.session_id: c.state for c in snap.candidates},
        {s.chat_id: s.state for s in snap.sessions},
        {p.process_id: p.state for p in snap.processes},
        len(await gateway.store.audit.recent(1000)),
    )


def state_of(gateway: Gateway) -> str:
    """Read fresh each time (a plain attribute read would be narrowed by mypy)."""
    return gateway.state.value


async def open_dialog(app: ConsoleApp, pilot: ConsolePilot, key: str) -> None:
    await pilot.press(key)
    await wait_until(pilot, lambda: len(app.screen_stack) == 2, f"a dialog after {key!r}")


async def closed(app: ConsoleApp, pilot: ConsolePilot) -> None:
    """Wait until the dialog is gone and the action it started (if any) has finished."""
    await wait_until(pilot, lambda: len(app.screen_stack) == 1, "the dialog closed")
    await settled(app)
    await pilot.pause()


async def click_button(app: ConsoleApp, pilot: ConsolePilot, selector: str) -> None:
    """Click a dialog button once it takes clicks (a Button ignores clicks for 0.2 s after a
    press, while it shows its "-active" effect)."""
    button = app.screen.query_one(selector, Button)
    await wait_until(pilot, lambda: not button.has_class("-active"), f"{selector} clickable")
    await pilot.click(selector)


async def confirm(app: ConsoleApp, pilot: ConsolePilot) -> None:
    await click_button(app, pilot, "#confirm")
    await closed(app, pilot)


def dialog_targets(app: ConsoleApp) -> str:
    return static_text(app, ".dialog-targets")


def table(app: ConsoleApp, selector: str) -> KeyedTable:
    return app.query_one(selector, KeyedTable)


def cell(app: ConsoleApp, selector: str, row: str, column: str) -> str:
    return table(app, selector).get_cell(row, column).plain


def recovery_tab(app: ConsoleApp) -> RecoveryTab:
    return app.query_one(RecoveryTab)


def focused_id(app: ConsoleApp) -> str | None:
    return None if app.focused is None else app.focused.id


def palette_options(app: ConsoleApp) -> list[tuple[str | None, str]]:
    """(id, title) of every entry the open command palette lists (the title is line 1)."""
    found = []
    for option in app.screen.query_one(CommandList).options:
        prompt = option.prompt
        text = prompt.plain if isinstance(prompt, Text | Content) else str(prompt)
        found.append((option.id, text.split("\n")[0]))
    return found


def palette_hits(app: ConsoleApp) -> list[str]:
    return [title for option_id, title in palette_options(app) if option_id != "--no-matches"]


def lists_targets(app: ConsoleApp, *targets: tuple[str, str]) -> bool:
    lines = dialog_targets(app).split("\n")
    return len(lines) == len(targets) and all(
        line.startswith(head) and line.endswith(tail)
        for line, (head, tail) in zip(lines, targets, strict=True)
    )

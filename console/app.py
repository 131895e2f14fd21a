"""The operator console: a live view of one gateway, and every operator action behind a confirm.

The gateway owns the event loop; this app is awaited inside it and is only a view over a
`Backend` (in-process, or the control socket when attached). Once per tick it takes one
snapshot, updates the header and asks the visible tab to show it; each tab (console/tabs/)
owns its widgets, its refresh and its actions. This module only composes, binds and routes.
Nothing untrusted is ever parsed as markup.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable
from functools import partial
from pathlib import Path

from textual.app import App, ComposeResult, SystemCommand
from textual.css.query import NoMatches
from textual.screen import Screen
from textual.widgets import TabbedContent

from console.actions import ACTIONS, BY_NAME, TAB_TITLES, TABS, ConsoleAction, Tab, app_bindings
from console.applicable import gateway_actions
from console.backend import Backend
from console.commands import ConsoleCommands
from console.host import PaletteEntry
from console.leaving import Leave
from console.operations import DemoAction, Operations, Request
from console.safety import clean
from console.screens.dialogs import InputScreen, LeaveScreen
from console.screens.help import HelpScreen, help_lines
from console.tabs.audit import AuditTab
from console.tabs.base import ConsoleTab
from console.tabs.nodes import NodesTab
from console.tabs.overview import OverviewTab
from console.tabs.processes import ProcessesTab
from console.tabs.recovery import RecoveryTab
from console.tabs.sessions import SessionsTab
from console.tabs.timers import TimersTab
from console.widgets.key_bar import KeyBar
from console.widgets.status_bar import StatusBar
from console.widgets.tab_bar import ConsoleTabs
from gateway_core.control import Action, ActionResult
from gateway_core.runtime import GatewayState
from gateway_core.snapshot import Snapshot

log = logging.getLogger(__name__)


# The app's own actions that are not in the table; Tab (focus_next) and the like still work.
BELOW = {"show_tab", "command_palette", "quit"}
TAB_CLASSES: tuple[type[ConsoleTab], ...] = (
    OverviewTab, SessionsTab, RecoveryTab, ProcessesTab, TimersTab, AuditTab, NodesTab,
)  # fmt: skip


def _css_path() -> Path:
    here = Path(__file__).resolve().parent
    for candidate in (here / "styles" / "console.tcss", here.parent / "styles" / "console.tcss"):
        if candidate.exists():
            return candidate
    return here.parent / "styles" / "console.tcss"


class ConsoleApp(App[str]):
    CSS_PATH = _css_path()
    TITLE = "Switchboard"
    BINDINGS = app_bindings()
    COMMANDS = App.COMMANDS | {ConsoleCommands}

    def __init__(
        self,
        backend: Backend,
        *,
        refresh_every: float = 1.0,
        demo_restart: Callable[[], Awaitable[ActionResult]] | None = None,
        attached: bool = False,
    ) -> None:
        super().__init__()
        self.backend = backend
        self.attached = attached  # over the socket: leaving never stops the gateway
        self.read_only = backend.read_only
        self.refresh_every = refresh_every
        self.snap: Snapshot | None = None
        self._ops = Operations(self, backend, self.tick, demo_restart)
        self._offered: frozenset[str] = frozenset()

    @property
    def ops(self) -> Operations:
        return self._ops

    # -- layout ---------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        yield StatusBar(id="banner")
        with ConsoleTabs(id="tabs", initial=Tab.OVERVIEW.value):
            for tab in TAB_CLASSES:
                yield tab()
        yield KeyBar()

    async def on_mount(self) -> None:
        self.backend.on_link_change(self.refresh_soon)  # a lost gateway is shown at once
        await self.tick()
        self.set_interval(self.refresh_every, self.tick, name="refresh")

    def tab(self, tab: Tab | str) -> ConsoleTab:
        return self.query_one(f"#{tab}", ConsoleTab)

    @property
    def active_tab(self) -> str:
        return self.query_one("#tabs", TabbedContent).active or Tab.OVERVIEW.value

    # -- the refresh tick -----------------------------------------------------------------

    async def tick(self) -> None:
        try:
            await self._tick()
        except NoMatches:
            # Every widget a tick touches exists for the app's whole life, except while the
            # app shuts down and removes them: a late tick then has nothing left to do.
            log.debug("refresh tick during shutdown skipped")

    def refresh_soon(self) -> None:
        self.call_later(self.tick)

    async def _tick(self) -> None:
        tab = self.tab(self.active_tab)
        bar = self.query_one("#banner", StatusBar)
        link = self.backend.link
        try:
            snap = await self.backend.snapshot(tab.session_query())
        except Exception as error:  # a backend hiccup must not kill the view
            log.warning("snapshot failed: %s", error)
            if self.snap is not None and link is not None and not link.connected:
                bar.show(self.snap, busy=None, read_only=self.read_only, link=link)
                self.offered_changed()  # nothing can be done until it is back
            return
        if not self.is_running:
            return
        self.snap = snap
        bar.show(snap, busy=self._ops.busy, read_only=self.read_only, link=link)
        self.offered_changed()
        if len(self.screen_stack) > 1:
            return  # a dialog covers the tables: do not repaint under it
        await tab.show(snap)

    def offered_changed(self) -> None:
        """Refresh the footer only when what it offers changed (a recompose costs)."""
        offered = frozenset(a.name for a in ACTIONS if self.offers(a.name))
        if offered != self._offered:
            self._offered = offered
            self.refresh_bindings()

    def on_tabbed_content_tab_activated(self, event: TabbedContent.TabActivated) -> None:
        self.refresh_bindings()
        self.tab(self.active_tab).focus_first()
        self.call_later(self.tick)

    # -- which actions are offered where --------------------------------------------------

    def refusal(self, action: ConsoleAction) -> str | None:
        if action.mutating and self.read_only:
            return "this console is read-only"
        if action.demo_only and not self._ops.demo:
            return "only in the demo"
        link = self.backend.link
        if action.mutating and link is not None and not link.connected:
            return "not connected to the gateway"
        return None

    def why_not(self, action: str) -> str | None:
        """Why an action of the app's own does not apply now."""
        if action in ("help", "leave"):
            return None
        if self.snap is None:
            return "no snapshot of the gateway yet"
        if action not in gateway_actions(self.snap.state):
            return f"the gateway is {self.snap.state}"
        return None

    def offers(self, action: str) -> bool:
        """Whether `action` is offered now, wherever it is bound."""
        spec = BY_NAME.get(action)
        if spec is None:
            return True
        if spec.tab is not None:
            return spec.tab == self.active_tab and self.tab(spec.tab).offered(action)
        return self.refusal(spec) is None and self.why_not(action) is None

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if len(self.screen_stack) > 1 and (action in BY_NAME or action in BELOW):
            return False  # a dialog is open: no key typed into it may act on the screen below
        spec = BY_NAME.get(action)
        if spec is None or spec.tab is not None:
            return True
        return self.offers(action)

    def palette_entries(self) -> list[PaletteEntry]:
        tab = self.tab(self.active_tab)
        entries = []
        for action in ACTIONS:
            if not self.offers(action.name):
                continue
            namespace = tab if action.tab is not None else self
            entries.append(
                PaletteEntry(
                    action.title, action.help, partial(self._run_later, action.name, namespace)
                )
            )
        for number, other in enumerate(TABS, start=1):
            entries.append(
                PaletteEntry(
                    f"Go to {TAB_TITLES[other]}",
                    f"key {number}",
                    partial(self.action_show_tab, other),
                )
            )
        return entries

    def _run_later(self, action: str, namespace: ConsoleTab | ConsoleApp) -> None:
        self.call_later(self.run_action, action, namespace)

    # -- actions --------------------------------------------------------------------------

    def action_show_tab(self, tab: str) -> None:
        if tab in TABS:
            # Let go of the focus first: hiding the focused table would hand the focus to the
            # next widget of the same pane, and TabbedContent would switch back to that pane.
            self.screen.set_focus(None)
            self.query_one("#tabs", TabbedContent).active = tab

    def action_quiet(self) -> None:
        self._ops.confirm(Request(Action.QUIET), "Go quiet? No new turn starts.", "Quiet")

    def action_resume_intake(self) -> None:
        self._ops.confirm(
            Request(Action.RESUME_INTAKE), "Resume intake? Queued turns start.", "Resume"
        )

    def _ask_timeout(self, action: Action, title: str, verb: str) -> None:
        screen = InputScreen(
            title, [], verb, prompt="Drain timeout in seconds:", value="60", number=True
        )
        self._ops.ask(screen, lambda answer: Request(action, timeout=float(answer)))

    def action_drain(self) -> None:
        self._ask_timeout(Action.DRAIN, "Drain and stop the gateway?", "Drain")

    def action_restart(self) -> None:
        self._ask_timeout(Action.RESTART, "Drain and restart the gateway?", "Restart")

    def action_crash_restart(self) -> None:
        self._ops.confirm(
            Request(DemoAction.CRASH_RESTART),
            "Restart now? Running turns are interrupted, as in a crash.",
            "Restart now",
        )

    def action_help(self) -> None:
        tab = self.tab(self.active_tab)

        def why_not(action: ConsoleAction) -> str | None:
            owner = self.why_not if action.tab is None else tab.why_not
            return self.refusal(action) or owner(action.name)

        here, everywhere = help_lines(self, Tab(self.active_tab), why_not, demo=self._ops.demo)
        self.push_screen(HelpScreen(TAB_TITLES[Tab(self.active_tab)], here, everywhere))

    async def action_quit(self) -> None:
        """Textual's own Quit (the palette's) is a way of leaving like any other."""
        self.action_leave()

    def get_system_commands(self, screen: Screen[object]) -> Iterable[SystemCommand]:
        # "Keys" shows Textual's panel of bindings; our help screen (?) explains them.
        for command in super().get_system_commands(screen):
            if command.title != "Keys":
                yield command

    def action_leave(self) -> None:
        def chosen(answer: object) -> None:
            if answer == "detach":
                self.exit(Leave.DETACH)
            elif answer == "stop":
                self.run_worker(self._stop_and_exit(), group="actions")

        stopped = self.snap is not None and self.snap.state is GatewayState.STOPPED
        if stopped:
            self.exit(Leave.STOPPED)
            return
        draining = self.snap is not None and self.snap.state is GatewayState.DRAINING
        can_stop = not (self.read_only or self.attached or draining)
        self.push_screen(LeaveScreen(can_stop=can_stop), chosen)

    async def _stop_and_exit(self) -> None:
        self.action_show_tab(Tab.OVERVIEW)
        result = await self._ops.act(Request(Action.DRAIN))
        if not result.ok:
            self.notify(clean(result.message), severity="error", markup=False)
            return
        self.exit(Leave.STOPPED)

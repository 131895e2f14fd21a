"""The console's actions, in one table: keys, titles, where they apply, whether they mutate.

Bindings (the app's and each tab's), the footer's order, the help screen, the command palette
and read-only mode are all derived from this table, so a mutating action cannot be forgotten
in one of them. Whether an action applies *now* (to this state and this selection) is decided
by whoever owns it: the app for gateway-wide actions, each tab for its own (`why_not`).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from textual.binding import Binding, BindingType

from gateway_core.control import Action


class Tab(StrEnum):
    """The tabs, in order; digits 1-7 switch to them."""

    OVERVIEW = "overview"
    SESSIONS = "sessions"
    RECOVERY = "recovery"
    PROCESSES = "processes"
    TIMERS = "timers"
    AUDIT = "audit"
    NODES = "nodes"  # last: the digits of the others stay what operators learned


TABS = tuple(Tab)
TAB_TITLES = {
    Tab.OVERVIEW: "Overview",
    Tab.SESSIONS: "Sessions",
    Tab.RECOVERY: "Recovery",
    Tab.PROCESSES: "Processes",
    Tab.TIMERS: "Timers",
    Tab.AUDIT: "Audit & log",
    Tab.NODES: "Nodes",
}


# Seven full labels take 82 columns: under that, these are shortened so every tab shows.
SHORT_TITLES = {Tab.AUDIT: "Audit"}
TAB_PADDING = 2  # each tab's label has a cell of padding on either side


def tab_label(tab: Tab, *, short: bool = False) -> str:
    """The tab bar's label: the key first, so it survives a narrow terminal."""
    title = SHORT_TITLES.get(tab, TAB_TITLES[tab]) if short else TAB_TITLES[tab]
    return f"{TABS.index(tab) + 1} {title}"


def tab_bar_width() -> int:
    """The columns the tab bar needs with every label in full."""
    return sum(len(tab_label(tab)) + TAB_PADDING for tab in TABS)


@dataclass(frozen=True, slots=True)
class ConsoleAction:
    name: str  # the action_* method (on the app, or on the tab that owns it)
    keys: str
    title: str  # the footer's word for it
    help: str  # one line for the help screen and the palette
    performs: Action | None  # the gateway's operator action it asks for (None: the view's own)
    tab: Tab | None = None  # owned by this tab (None: the app, everywhere)
    demo_only: bool = False

    @property
    def mutating(self) -> bool:
        """It changes the gateway: refused read-only, always confirmed first."""
        return self.performs is not None or self.demo_only


ACTIONS = (
    # Each tab's own actions come first: the footer keeps them when it runs out of room.
    ConsoleAction(
        "interrupt", "t", "Interrupt", "Cancel the highlighted session's running turn",
        Action.INTERRUPT, Tab.SESSIONS,
    ),
    ConsoleAction(
        "filter", "slash", "Filter", "Show only sessions whose chat, topic or user match",
        None, Tab.SESSIONS,
    ),
    ConsoleAction(
        "sort", "o", "Sort", "Cycle the order: busy first, by id, most recent", None,
        Tab.SESSIONS,
    ),
    ConsoleAction(
        "approve", "a", "Approve", "Run the held candidates now (the marked ones, or this one)",
        Action.APPROVE, Tab.RECOVERY,
    ),
    ConsoleAction(
        "clear", "c", "Clear", "Drop the candidates: never resumed", Action.CLEAR, Tab.RECOVERY
    ),
    ConsoleAction(
        "force_resume", "f", "Force-resume",
        "Resume whatever the verdict (a reason is required)", Action.FORCE_RESUME, Tab.RECOVERY,
    ),
    ConsoleAction(
        "unsuspend", "u", "Unsuspend",
        "Let recovery consider a suspended session again", Action.UNSUSPEND, Tab.RECOVERY,
    ),
    ConsoleAction(
        "reset_loop_guard", "r", "Reset guard",
        "Leave the restart-loop guard: resume what it held back", Action.RESET_LOOP_GUARD,
        Tab.RECOVERY,
    ),
    ConsoleAction(
        "mark", "space", "Mark", "Mark or unmark the row for a bulk action", None, Tab.RECOVERY
    ),
    ConsoleAction(
        "kill", "k", "Kill", "Kill the job's whole process tree", Action.KILL_PROCESS,
        Tab.PROCESSES,
    ),
    ConsoleAction(
        "show_log", "l", "Log", "The job's output, following new lines", None, Tab.PROCESSES
    ),
    # Everywhere.
    ConsoleAction("help", "question_mark", "Help", "The keys of this tab and what they do", None),
    ConsoleAction("leave", "q", "Leave", "Detach, or drain and stop", None),
    ConsoleAction(
        "quiet", "s", "Quiet", "Stop starting new turns (messages are kept)", Action.QUIET
    ),
    ConsoleAction(
        "resume_intake", "i", "Resume", "Leave quiet: queued turns run", Action.RESUME_INTAKE
    ),
    ConsoleAction(
        "drain", "d", "Drain", "Finish running turns (with a deadline), then stop", Action.DRAIN
    ),
    ConsoleAction("restart", "ctrl+r", "Restart", "Drain, then start again", Action.RESTART),
    ConsoleAction(
        "crash_restart", "x", "Crash (demo)",
        "Interrupt every turn and restart at once, with crashed conversations of every verdict",
        None, demo_only=True,
    ),
)  # fmt: skip

BY_NAME = {action.name: action for action in ACTIONS}


def footer_rank(action: str) -> int:
    """Where a key goes in the footer (lower first); the footer drops the highest ranks when
    the terminal is too narrow. Keys not in the table (a dialog's, an input's) come right
    after the tab's own."""
    spec = BY_NAME.get(action)
    if spec is None:
        return len(ACTIONS)
    rank = ACTIONS.index(spec)
    return rank if spec.tab is not None else rank + len(ACTIONS) + 1


def _binding(action: ConsoleAction) -> Binding:
    return Binding(action.keys, action.name, action.title, id=action.name, tooltip=action.help)


def app_bindings() -> list[BindingType]:
    """The app's: actions that apply everywhere, the tab digits and ctrl+q."""
    keys: list[BindingType] = [_binding(a) for a in ACTIONS if a.tab is None]
    keys.append(Binding("ctrl+q", "leave", "Leave", show=False, priority=True))
    keys.extend(
        Binding(str(number), f"show_tab('{tab}')", TAB_TITLES[tab], show=False)
        for number, tab in enumerate(TABS, start=1)
    )
    return keys


def tab_bindings(tab: Tab) -> list[BindingType]:
    """A tab's own: active while the focus is inside it."""
    return [_binding(a) for a in ACTIONS if a.tab is tab]

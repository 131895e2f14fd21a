"""The console's actions, in one table: keys, titles, where they apply, whether they mutate.

Bindings, the footer, the command palette and read-only mode are all derived from this table,
so a mutating action cannot be forgotten in one of them.
"""

from __future__ import annotations

from dataclasses import dataclass

from textual.binding import Binding

# The tabs, in order; digits 1-6 switch to them.
TABS = ("overview", "sessions", "recovery", "processes", "timers", "audit")
TAB_TITLES = {
    "overview": "Overview",
    "sessions": "Sessions",
    "recovery": "Recovery",
    "processes": "Processes",
    "timers": "Timers",
    "audit": "Audit & log",
}


@dataclass(frozen=True, slots=True)
class ConsoleAction:
    name: str  # the action_* method
    keys: str
    title: str
    help: str
    mutating: bool
    tab: str | None = None  # only where this tab is shown (None: everywhere)
    demo_only: bool = False


ACTIONS = (
    ConsoleAction("quiet", "s", "Quiet", "Stop starting new turns (messages are kept)", True),
    ConsoleAction("resume_intake", "i", "Resume intake", "Leave quiet: queued turns run", True),
    ConsoleAction("drain", "d", "Drain", "Finish running turns (with a deadline), then stop", True),
    ConsoleAction("restart", "ctrl+r", "Restart", "Drain, then start again in this process", True),
    ConsoleAction(
        "crash_restart",
        "x",
        "Restart now (demo)",
        "Interrupt every turn and restart at once, with crashed conversations of every verdict",
        True,
        demo_only=True,
    ),
    ConsoleAction(
        "interrupt",
        "t",
        "Interrupt turn",
        "Cancel the highlighted session's turn",
        True,
        "sessions",
    ),
    ConsoleAction(
        "filter", "slash", "Filter", "Show only sessions matching a text", False, "sessions"
    ),
    ConsoleAction("sort", "o", "Sort", "Cycle the session order", False, "sessions"),
    ConsoleAction("mark", "space", "Mark", "Mark or unmark for a bulk action", False, "recovery"),
    ConsoleAction("approve", "a", "Approve", "Run the held candidate(s) now", True, "recovery"),
    ConsoleAction("clear", "c", "Clear", "Drop the candidate(s): never resumed", True, "recovery"),
    ConsoleAction(
        "force_resume",
        "f",
        "Force-resume",
        "Resume whatever the verdict (a reason is required)",
        True,
        "recovery",
    ),
    ConsoleAction(
        "kill", "k", "Kill process", "Kill the job's whole process tree", True, "processes"
    ),
    ConsoleAction("show_log", "l", "Show log", "The job's output tail", False, "processes"),
    ConsoleAction("leave", "q", "Leave", "Detach, or drain and stop", False),
)

BY_NAME = {action.name: action for action in ACTIONS}


def bindings() -> list[Binding | tuple[str, str] | tuple[str, str, str]]:
    keys: list[Binding | tuple[str, str] | tuple[str, str, str]] = [
        Binding(action.keys, action.name, action.title, id=action.name) for action in ACTIONS
    ]
    keys.append(Binding("ctrl+q", "leave", "Leave", show=False, priority=True))
    keys.extend(
        Binding(str(number), f"show_tab('{tab}')", TAB_TITLES[tab], show=False)
        for number, tab in enumerate(TABS, start=1)
    )
    return keys

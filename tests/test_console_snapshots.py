"""Snapshot tests of the operator console: one picture per screen, at 120x40.

The real `ConsoleApp` over the fixed data of tests/support/console_data.py (a drain half way
through, every session state, every verdict, every job state, hostile names and output), with
`refresh_every=3600` so no tick runs while a picture is taken. The keys are pressed in
`run_before` (snap_compare's `press` runs after it, too late to wait for what the keys start):
`show()` then waits for the transcript loader, stops the cursor blinking and lets animations
end, so a picture never depends on timing. (The README's screenshots come from a real gateway:
screenshots/make_screenshots.py.)

Update after an intended change of the console:
    .venv/bin/python -m pytest tests/test_console_snapshots.py --snapshot-update
and look at the changed SVGs (tests/__snapshots__/test_console_snapshots/) before committing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from textual.pilot import Pilot
from textual.widgets import Static

from console.app import ConsoleApp
from console.screens.dialogs import ConfirmScreen, InputScreen, LeaveScreen
from console.screens.help import HelpScreen
from console.tabs.recovery import RecoveryTab
from tests.support.console_data import BY_SCREEN, SIZE, ActCall, show, static_backend


class SnapCompare(Protocol):
    def __call__(
        self,
        app: ConsoleApp,
        *,
        terminal_size: tuple[int, int],
        run_before: Callable[[Pilot[str]], object],
    ) -> bool: ...


@dataclass
class Seen:
    """What the app showed when its picture was taken."""

    screen: object = None
    banner: str = ""
    tab: str = ""
    transcript: str = ""
    calls: list[ActCall] = field(default_factory=list)
    keys: set[str] = field(default_factory=set)  # the footer's enabled actions
    marked: set[str] = field(default_factory=set)


def picture(snap_compare: SnapCompare, name: str) -> tuple[bool, Seen]:
    """The named screen compared with its stored snapshot, and what the app showed then."""
    screen = BY_SCREEN[name]
    backend = static_backend(read_only=screen.read_only, drain=screen.drain, cluster=screen.cluster)
    app = ConsoleApp(backend, refresh_every=3600)
    seen = Seen()

    async def run_before(pilot: Pilot[str]) -> None:
        await show(pilot, screen.keys)
        seen.screen = app.screen
        seen.banner = str(app.query_one("#banner", Static).render())
        seen.tab = app.active_tab
        seen.transcript = str(app.query_one("#transcript", Static).render())
        seen.calls = list(backend.calls)
        seen.keys = {
            active.binding.action
            for active in app.screen.active_bindings.values()
            if active.binding.show and active.enabled
        }
        seen.marked = set(app.query_one(RecoveryTab).marked)

    matched = snap_compare(app, terminal_size=SIZE, run_before=run_before)
    return matched, seen


def test_overview_shows_the_drain_in_progress(snap_compare: SnapCompare) -> None:
    matched, seen = picture(snap_compare, "overview")
    assert "DRAINING" in seen.banner
    assert seen.tab == "overview"
    assert matched


def test_sessions_with_the_highlighted_transcript(snap_compare: SnapCompare) -> None:
    matched, seen = picture(snap_compare, "sessions")
    assert seen.tab == "sessions"
    assert "Session 101: 10 rows" in seen.transcript
    assert matched


def test_recovery_with_a_marked_row(snap_compare: SnapCompare) -> None:
    matched, seen = picture(snap_compare, "recovery")
    assert seen.marked == {"202"}
    assert {"mark", "approve", "clear", "force_resume"} <= seen.keys
    assert matched


def test_processes(snap_compare: SnapCompare) -> None:
    matched, seen = picture(snap_compare, "processes")
    assert seen.tab == "processes"
    assert matched


def test_timers(snap_compare: SnapCompare) -> None:
    matched, seen = picture(snap_compare, "timers")
    assert seen.tab == "timers"
    assert matched


def test_audit_and_log(snap_compare: SnapCompare) -> None:
    matched, seen = picture(snap_compare, "audit")
    assert seen.tab == "audit"
    assert matched


def test_confirm_dialog_lists_the_marked_targets(snap_compare: SnapCompare) -> None:
    matched, seen = picture(snap_compare, "confirm")
    assert isinstance(seen.screen, ConfirmScreen)
    assert seen.marked == {"201", "202"}
    assert seen.calls == []  # asking is not doing
    assert matched


def test_force_resume_asks_for_a_reason(snap_compare: SnapCompare) -> None:
    matched, seen = picture(snap_compare, "force_resume")
    assert isinstance(seen.screen, InputScreen)
    assert seen.calls == []
    assert matched


def test_leave_dialog(snap_compare: SnapCompare) -> None:
    matched, seen = picture(snap_compare, "leave")
    assert isinstance(seen.screen, LeaveScreen)
    assert matched


def test_read_only_hides_every_mutating_key(snap_compare: SnapCompare) -> None:
    matched, seen = picture(snap_compare, "read_only")
    assert "READ-ONLY" in seen.banner
    assert seen.keys == {"help", "leave"}  # the footer: looking and leaving only
    assert matched


def test_help_lists_the_keys_of_the_tab(snap_compare: SnapCompare) -> None:
    matched, seen = picture(snap_compare, "help")
    assert isinstance(seen.screen, HelpScreen)
    assert matched


def test_nodes_of_a_cluster_with_this_one_marked(snap_compare: SnapCompare) -> None:
    matched, seen = picture(snap_compare, "nodes")
    assert seen.tab == "nodes"
    assert matched


def test_nodes_on_sqlite_say_the_gateway_runs_alone(snap_compare: SnapCompare) -> None:
    matched, seen = picture(snap_compare, "nodes_alone")
    assert seen.tab == "nodes"
    assert matched


def test_sessions_on_a_node_show_each_owner(snap_compare: SnapCompare) -> None:
    matched, seen = picture(snap_compare, "sessions_cluster")
    assert seen.tab == "sessions"
    assert matched


def test_recovery_on_a_node_refuses_another_nodes_candidate(snap_compare: SnapCompare) -> None:
    matched, seen = picture(snap_compare, "recovery_cluster")
    # 202 is gw-1's: nothing but marking is offered for it here (not even unsuspend: held).
    assert not {"approve", "clear", "force_resume"} & seen.keys
    assert matched

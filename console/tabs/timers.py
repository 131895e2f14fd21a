"""The timers tab: the "still working" notifiers of long turns, and when each speaks next."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.widgets import Label

from console import rows
from console.actions import Tab
from console.tabs.base import ConsoleTab
from console.widgets.keyed_table import KeyedTable
from gateway_core.snapshot import Snapshot


class TimersTab(ConsoleTab):
    TAB = Tab.TIMERS

    def compose(self) -> ComposeResult:
        yield Label(id="timers-title")
        yield KeyedTable(rows.TIMER_COLUMNS, id="timer-table")

    @property
    def table(self) -> KeyedTable:
        return self.query_one("#timer-table", KeyedTable)

    def focus_first(self) -> None:
        self.table.focus()

    async def show(self, snap: Snapshot) -> None:
        views = sorted(snap.notifiers, key=lambda n: n.next_fire_in)
        self.table.apply([(str(n.session_id), rows.timer_row(n, n.conversation)) for n in views])
        self.query_one("#timers-title", Label).update(
            Text(f"'Still working' notifiers: {len(views)}")
        )

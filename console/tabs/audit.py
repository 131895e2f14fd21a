"""The audit tab: operator actions, newest first, and the gateway's log."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.widgets import Label

from console import rows
from console.actions import Tab
from console.safety import clean
from console.tabs.base import ConsoleTab
from console.widgets.follow_log import FollowLog
from console.widgets.keyed_table import KeyedTable
from gateway_core.snapshot import Snapshot


class AuditTab(ConsoleTab):
    TAB = Tab.AUDIT

    def __init__(self) -> None:
        super().__init__()
        self._audit_seen: int | None = None
        self._log_shown: list[str] = []

    def compose(self) -> ComposeResult:
        yield Label(Text("Operator actions, newest first; the gateway log below"))
        yield KeyedTable(rows.AUDIT_COLUMNS, id="audit-table")
        yield FollowLog(id="log", max_lines=500)

    @property
    def table(self) -> KeyedTable:
        return self.query_one("#audit-table", KeyedTable)

    def focus_first(self) -> None:
        self.table.focus()

    async def show(self, snap: Snapshot) -> None:
        backend = self.host.backend
        entries = await backend.audit_tail(100)
        newest = entries[0].id if entries else 0
        if newest != self._audit_seen:
            self._audit_seen = newest
            self.table.apply([(str(e.id), rows.audit_row(e, snap.taken_at)) for e in entries])
        lines = await backend.log_tail(500)
        if lines != self._log_shown:  # compared by content: a full ring stays 500 lines long
            self.query_one("#log", FollowLog).replace([Text(clean(line, 400)) for line in lines])
            self._log_shown = lines

"""The audit tab: operator actions, newest first, and the gateway's log."""

from __future__ import annotations

import time

from rich.text import Text
from textual.app import ComposeResult
from textual.widgets import Label

from console import rows
from console.actions import Tab
from console.rows import display_key
from console.safety import clean
from console.tabs.base import ConsoleTab
from console.tones import LEVEL_TONES, TONE_CLASSES, Tone, Toned
from console.widgets.follow_log import FollowLog
from console.widgets.keyed_table import KeyedTable
from gateway_core.log_ring import LogEntry
from gateway_core.snapshot import Snapshot


class AuditTab(ConsoleTab, Toned):
    COMPONENT_CLASSES = TONE_CLASSES
    TAB = Tab.AUDIT

    def __init__(self) -> None:
        super().__init__()
        self._audit_seen: int | None = None
        self._log_seen = 0  # the last log entry shown

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
        logged = await backend.log_entries(self._log_seen, 500)
        if logged:
            self._log_seen = logged[-1].seq
            self.query_one("#log", FollowLog).append([self._line(e) for e in logged])

    def _line(self, entry: LogEntry) -> Text:
        """time, level, event (or the logger), session, then the message."""
        stamp = time.strftime("%H:%M:%S", time.localtime(entry.at))
        what = entry.event or entry.logger.rsplit(".", 1)[-1]
        line = Text(f"{stamp} ")
        line.append(f"{entry.level:<7}", style=self.tone_style(LEVEL_TONES.get(entry.level, "")))
        line.append(f" {clean(what, 30):<16} ", style=self.tone_style(Tone.STRONG))
        if entry.session:
            line.append(clean(display_key(entry.session), 60) + " ")
        line.append(clean(entry.message, 400))
        return line

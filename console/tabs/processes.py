"""The processes tab: background jobs, their resources and output; kill, show the log."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.widgets import DataTable, Label

from console import rows
from console.actions import Tab, tab_bindings
from console.applicable import process_actions, why_not_all
from console.operations import Request
from console.screens.log_view import LogScreen
from console.tabs.base import ConsoleTab
from console.widgets.keyed_table import KeyedTable
from gateway_core.control import Action
from gateway_core.model import ProcessState
from gateway_core.snapshot import ProcessView, Snapshot

LOG_LINES = 2000  # the tail a job's log view reads (the gateway keeps a bounded tail)


class ProcessesTab(ConsoleTab):
    TAB = Tab.PROCESSES
    BINDINGS = tab_bindings(Tab.PROCESSES)

    def __init__(self) -> None:
        super().__init__()
        self._views: dict[str, ProcessView] = {}

    def compose(self) -> ComposeResult:
        yield Label(id="processes-title")
        yield KeyedTable(rows.PROCESS_COLUMNS, id="process-table")

    @property
    def table(self) -> KeyedTable:
        return self.query_one("#process-table", KeyedTable)

    def focus_first(self) -> None:
        self.table.focus()

    async def show(self, snap: Snapshot) -> None:
        views = sorted(snap.processes, key=lambda p: (p.state is not ProcessState.RUNNING, -p.age))
        self._views = {p.process_id: p for p in views}
        self.table.apply([(p.process_id, rows.process_row(p)) for p in views])
        running = sum(1 for p in views if p.state is ProcessState.RUNNING)
        self.query_one("#processes-title", Label).update(
            Text(f"Background jobs: {running} running, {len(views)} known")
        )

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        self.host.offered_changed()

    def why_not(self, action: str) -> str | None:
        view = self.highlighted()
        return why_not_all(action, [] if view is None else [process_actions(view)], what="this job")

    def highlighted(self) -> ProcessView | None:
        key = self.table.current_key()
        return None if key is None else self._views.get(key)

    def action_kill(self) -> None:
        view = self.highlighted()
        if view is None:
            self.app.notify("Nothing selected.", severity="warning", markup=False)
            return
        self.host.ops.confirm(
            Request(Action.KILL_PROCESS, (view.process_id,)),
            "Kill this job and its children?",
            "Kill",
            [f"{view.process_id}: {view.command}"],
        )

    def action_show_log(self) -> None:
        view = self.highlighted()
        if view is None:
            return
        backend, job = self.host.backend, view.process_id

        async def load() -> list[str]:
            return await backend.process_log(job, LOG_LINES)

        title = f"Output of {job}: {view.command}"
        self.app.push_screen(LogScreen(title, load, self.host.refresh_every))

"""The nodes tab: every gateway node on the shared PostgreSQL store, this one marked; or, on
SQLite, plainly that this gateway runs alone.

Everything here comes from the shared store (each node's heartbeat row and the leases it
holds), so every node's console shows the same cluster, the dead nodes included. Ages are
computed at each refresh from the stored heartbeat times and the snapshot's own time.
"""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.widgets import Label, Static

from console import rows
from console.actions import Tab
from console.safety import clean
from console.tabs.base import ConsoleTab
from console.tones import TONE_CLASSES, Tone, Toned
from console.widgets.keyed_table import KeyedTable
from gateway_core.snapshot import NodeStatus, Snapshot

ALONE = (
    "This gateway runs alone. Its store is SQLite: one gateway per state directory, "
    "so there are no other nodes, no session leases and no intake to hand over; "
    "every session on the other tabs is this gateway's."
)
ALONE_HOW = "Several gateways share their sessions on PostgreSQL: see docs/cluster.md."
CLUSTER_NOTE = (
    "Sessions: the leases a node holds now. Intake: the platform a node polls for all "
    "(Telegram allows one poller). Read from the shared store; the turns and jobs on the "
    "other tabs are this node's own. Approve, clear, force-resume and interrupt act only "
    "on the owner's console: attach to that node."
)


class NodesTab(ConsoleTab, Toned):
    COMPONENT_CLASSES = TONE_CLASSES
    TAB = Tab.NODES
    DEFAULT_CSS = """
    NodesTab #node-table { height: auto; max-height: 1fr; }
    NodesTab #node-note { padding: 1 1 0 1; height: auto; }
    NodesTab.-alone #node-table { display: none; }
    """

    def compose(self) -> ComposeResult:
        yield Label(id="nodes-title")
        yield KeyedTable(rows.NODE_COLUMNS, id="node-table")
        yield Static(id="node-note")

    @property
    def table(self) -> KeyedTable:
        return self.query_one("#node-table", KeyedTable)

    def focus_first(self) -> None:
        self.table.focus()

    async def show(self, snap: Snapshot) -> None:
        here = snap.node_id
        alone = here is None
        self.set_class(alone, "-alone")
        title = self.query_one("#nodes-title", Label)
        note = self.query_one("#node-note", Static)
        if alone:
            title.update(Text("Nodes: this gateway only (SQLite)"))
            text = Text(ALONE + "\n\n")
            text.append(ALONE_HOW, style=self.tone_style(Tone.DIM))
            note.update(text)
            self.table.apply([])
            return
        views = sorted(snap.nodes, key=lambda n: (n.node_id != here, n.node_id))
        self.table.apply([(n.node_id, rows.node_row(n, snap.taken_at, here)) for n in views])
        counts = {status: sum(1 for n in views if n.state is status) for status in NodeStatus}
        parts = [f"{n} {status}" for status, n in counts.items() if n]
        summary = f"Nodes: {len(views)}"  # short: it must fit 80 columns with four states
        if parts:
            summary += " (" + ", ".join(parts) + ")"
        title.update(Text(f"{summary}; this one: {clean(here, 40)}"))
        note.update(Text(CLUSTER_NOTE, style=self.tone_style(Tone.DIM)))

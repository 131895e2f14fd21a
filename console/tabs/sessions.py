"""The sessions tab: every conversation, a filter, three orders, and the highlighted one's
transcript; interrupting a running turn. On several nodes each row says which node owns it
(an interrupt is that node's to do)."""

from __future__ import annotations

import asyncio
import contextlib

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.css.query import NoMatches
from textual.message import Message
from textual.widgets import DataTable, Input, Label, Static

from console import rows
from console.actions import Tab, tab_bindings
from console.applicable import owned_elsewhere, session_actions, why_not_all
from console.operations import Request
from console.replies import replied_to
from console.safety import clean
from console.tabs.base import ConsoleTab
from console.tones import TONE_CLASSES, Tone, Toned
from console.widgets.keyed_table import KeyedTable
from console.words import plural
from gateway_core.control import Action
from gateway_core.snapshot import SessionQuery, SessionView, Snapshot

NARROW = 100  # columns below which the transcript pane goes under the table
MAX_SESSION_ROWS = 200  # each shown row costs paint and diff time every tick: past this, filter
# (label, SessionQuery order)
SORTS = (("busy first", "busy"), ("by id", "id"), ("most recent", "recent"))


class FilterInput(Input):
    """The sessions filter. Escape clears and leaves it, Enter keeps it and returns to the
    table; the footer says so while it has the focus."""

    BINDINGS = [
        Binding("escape", "leave(True)", "Clear filter"),
        Binding("enter", "leave(False)", "Keep filter"),
    ]

    class Left(Message):
        def __init__(self, cleared: bool) -> None:
            super().__init__()
            self.cleared = cleared

    def action_leave(self, clear: bool) -> None:
        self.post_message(self.Left(clear))


class SessionsTab(ConsoleTab, Toned):
    COMPONENT_CLASSES = TONE_CLASSES
    TAB = Tab.SESSIONS
    BINDINGS = tab_bindings(Tab.SESSIONS)

    def __init__(self) -> None:
        super().__init__()
        self.filter_text = ""
        self._sort = 0
        self._views: dict[str, SessionView] = {}
        self._transcript_of: int | None = None

    def compose(self) -> ComposeResult:
        yield Label(id="sessions-title")
        yield FilterInput(placeholder="filter: chat, topic or user", id="session-filter")
        with Horizontal(id="sessions-body"):
            yield KeyedTable(rows.SESSION_COLUMNS, id="session-table")
            with VerticalScroll(id="transcript-scroll", classes="detail"):
                yield Static(id="transcript")

    def on_mount(self) -> None:
        self.query_one("#session-filter", Input).display = False

    def on_resize(self) -> None:
        # Under 100 columns the transcript goes below the table: beside it, both were cut.
        self.query_one("#sessions-body").set_class(self.size.width < NARROW, "-narrow")

    @property
    def table(self) -> KeyedTable:
        return self.query_one("#session-table", KeyedTable)

    def focus_first(self) -> None:
        self.table.focus()

    def session_query(self) -> SessionQuery:
        return SessionQuery(SORTS[self._sort][1], self.filter_text, MAX_SESSION_ROWS)

    async def show(self, snap: Snapshot) -> None:
        """The snapshot's sessions are already the selected ones, in order (SessionQuery)."""
        shown = snap.sessions[:MAX_SESSION_ROWS]
        total = snap.counts.sessions
        title = f"Sessions: {len(shown)} of {total:,} shown, {SORTS[self._sort][0]}"
        if self.filter_text:
            title += f", filter {clean(self.filter_text, 40)!r}"
        here = snap.node_id
        if here is not None:
            elsewhere = sum(1 for v in shown if snap.owned_elsewhere(v.owner))
            if elsewhere:
                title += f"; {elsewhere} run by other nodes"
        # Alone (SQLite) every session is this gateway's: a column saying so on every row
        # would only take room from the conversation.
        self.table.hide(() if here is not None else ("owner",))
        built = [(str(v.session_id), rows.session_row(v, snap.taken_at, here)) for v in shown]
        self._views = {str(v.session_id): v for v in shown}
        await asyncio.sleep(0)  # let the gateway's tasks run between the pieces of a tick
        self.table.apply(built)
        self.query_one("#sessions-title", Label).update(Text(title))
        self._load_detail(self.table.current_key())

    # -- the transcript of the highlighted session ----------------------------------------

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        key = event.row_key.value
        self._load_detail(None if key is None else str(key))
        self.host.offered_changed()

    def _load_detail(self, key: str | None) -> None:
        """Show the highlighted session's transcript tail (re-read each tick: it grows)."""
        if key is not None:
            self._show_transcript(int(key))

    @work(exclusive=True, group="detail")
    async def _show_transcript(self, session_id: int) -> None:
        messages = await self.host.backend.transcript_tail(session_id, 30)
        if not self.is_attached:
            return
        text = Text()
        text.append(
            f"Session {session_id}: {plural(len(messages), 'row')}\n",
            style=self.tone_style(Tone.STRONG),
        )
        for message in messages:
            label = message.role if message.kind == "text" else f"{message.role}/{message.kind}"
            tone = Tone.USER if message.role == "user" else Tone.STRONG
            anchor = replied_to(message, messages)
            if anchor is None:
                text.append(f"{label}: ", style=self.tone_style(tone))
            else:
                text.append(label, style=self.tone_style(tone))
                text.append(f" {anchor}", style=self.tone_style(Tone.DIM))
                text.append(": ", style=self.tone_style(tone))
            body = message.content
            if message.tool_calls:
                body = " ".join(f"{c.name}({c.arguments})" for c in message.tool_calls)
            text.append(clean(body, 240) + "\n")
        with contextlib.suppress(NoMatches):  # the app may be closing meanwhile
            pane = self.query_one("#transcript-scroll", VerticalScroll)
            # The newest rows are at the bottom: follow them, unless the reader scrolled up
            # in this same session's transcript.
            follow = session_id != self._transcript_of or pane.scroll_y >= pane.max_scroll_y
            self._transcript_of = session_id
            self.query_one("#transcript", Static).update(text)
            if follow:
                pane.call_after_refresh(pane.scroll_end, animate=False)

    # -- the filter -----------------------------------------------------------------------

    def on_input_changed(self, event: Input.Changed) -> None:
        if event.input.id == "session-filter":
            self.filter_text = event.value.strip()
            self.host.refresh_soon()

    def on_filter_input_left(self, event: FilterInput.Left) -> None:
        box = self.query_one("#session-filter", FilterInput)
        if event.cleared:
            box.value = ""
            self.filter_text = ""
            box.display = False
            self.host.refresh_soon()
        self.table.focus()

    # -- actions --------------------------------------------------------------------------

    def highlighted(self) -> SessionView | None:
        key = self.table.current_key()
        return None if key is None else self._views.get(key)

    def why_not(self, action: str) -> str | None:
        if action != "interrupt":
            return None
        view = self.highlighted()
        here = None if self.host.snap is None else self.host.snap.node_id
        if view is not None:
            elsewhere = owned_elsewhere(view.session_id, view.owner, here)
            if elsewhere is not None:
                return elsewhere
        allowed = [] if view is None else [session_actions(view, here)]
        return why_not_all(action, allowed, what="a session without a running turn")

    def action_interrupt(self) -> None:
        view = self.highlighted()
        if view is None:
            self.app.notify("Nothing selected.", severity="warning", markup=False)
            return
        self.host.ops.confirm(
            Request(Action.INTERRUPT, (str(view.session_id),)),
            "Interrupt this turn?",
            "Interrupt",
            [f"{view.session_id}: {rows.display_key(view.key, view.user_name)}"],
        )

    def action_filter(self) -> None:
        box = self.query_one("#session-filter", Input)
        box.display = not box.display
        if box.display:
            box.focus()
        else:
            box.value = ""
            self.table.focus()

    def action_sort(self) -> None:
        self._sort = (self._sort + 1) % len(SORTS)
        self.host.refresh_soon()

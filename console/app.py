"""The operator console: a live view of one gateway, and every operator action behind a confirm.

The gateway owns the event loop; this app is awaited inside it and is only a view over a
`Backend` (in-process, or the control socket when attached). Once per tick it takes one
snapshot and updates the banner and the visible tab only: tables are diffed by key (never
rebuilt) and keep their cursor on the same row. Nothing untrusted is ever parsed as markup.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

from rich.text import Text
from textual import work
from textual.app import App, ComposeResult
from textual.containers import Horizontal, Vertical
from textual.css.query import NoMatches
from textual.widgets import (
    Footer,
    Input,
    Label,
    Log,
    ProgressBar,
    Static,
    TabbedContent,
    TabPane,
)

from console import rows
from console.actions import BY_NAME, TAB_TITLES, TABS, bindings
from console.backend import Backend
from console.commands import ConsoleCommands
from console.safety import clean, safe
from console.screens.dialogs import ConfirmScreen, InputScreen, LeaveScreen, TextScreen
from console.widgets.keyed_table import KeyedTable
from gateway_core.control import ActionResult
from gateway_core.snapshot import SessionQuery, Snapshot

log = logging.getLogger(__name__)

MAX_SESSION_ROWS = 200  # each shown row costs paint and diff time every tick: past this, filter
# (label, SessionQuery order)
SORTS = (("busy first", "busy"), ("by id", "id"), ("most recent", "recent"))
STATE_STYLE = {
    "running": "bold white on dark_green",
    "quiet": "bold black on yellow",
    "draining": "bold white on dark_orange3",
    "starting": "bold white on blue",
    "stopped": "bold white on red",
}
AUDIT_COLUMNS = (
    rows.Column("id", "#", 5),
    rows.Column("when", "When", 11),
    rows.Column("actor", "Who", 10),
    rows.Column("action", "Action", 13),
    rows.Column("targets", "Targets", 14),
    rows.Column("outcome", "Outcome", 8),
    rows.Column("detail", "Reason / detail", 50),
)


def _css_path() -> Path:
    here = Path(__file__).resolve().parent
    for candidate in (here / "styles" / "console.tcss", here.parent / "styles" / "console.tcss"):
        if candidate.exists():
            return candidate
    return here.parent / "styles" / "console.tcss"


class ConsoleApp(App[str]):
    CSS_PATH = _css_path()
    TITLE = "Switchboard"
    BINDINGS = bindings()
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
        self._refresh_every = refresh_every
        self._demo_restart = demo_restart
        self.snap: Snapshot | None = None
        self.marked: set[str] = set()
        self._filter = ""
        self._sort = 0
        self._detail_for: str | None = None
        self._log_shown: list[str] = []
        self._audit_seen: int | None = None
        self._busy: str | None = None  # a long action (drain, restart) in progress

    # -- layout ---------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        yield Static(id="banner")
        with TabbedContent(id="tabs", initial="overview"):
            with TabPane(TAB_TITLES["overview"] + " [1]", id="overview"):
                yield Static(id="overview-text")
                yield Label(id="drain-title")
                yield ProgressBar(id="drain-bar", show_eta=False, total=1)
                yield Static(id="drain-text")
            with TabPane(TAB_TITLES["sessions"] + " [2]", id="sessions"):
                yield Label(id="sessions-title")
                yield Input(placeholder="filter: chat, topic or user", id="session-filter")
                with Horizontal():
                    yield KeyedTable(rows.SESSION_COLUMNS, id="session-table")
                    yield Static(id="transcript", classes="detail")
            with TabPane(TAB_TITLES["recovery"] + " [3]", id="recovery"):
                yield Label(id="recovery-title")
                with Vertical():
                    yield KeyedTable(rows.CANDIDATE_COLUMNS, id="candidate-table")
                    yield Static(id="candidate-detail", classes="detail-bottom")
            with TabPane(TAB_TITLES["processes"] + " [4]", id="processes"):
                yield Label(id="processes-title")
                yield KeyedTable(rows.PROCESS_COLUMNS, id="process-table")
            with TabPane(TAB_TITLES["timers"] + " [5]", id="timers"):
                yield Label(id="timers-title")
                yield KeyedTable(rows.TIMER_COLUMNS, id="timer-table")
            with TabPane(TAB_TITLES["audit"] + " [6]", id="audit"):
                yield Label(Text("Operator actions, newest first; the gateway log below"))
                yield KeyedTable(AUDIT_COLUMNS, id="audit-table")
                yield Log(id="log", max_lines=500, auto_scroll=True)
        yield Footer()

    async def on_mount(self) -> None:
        self.query_one("#session-filter", Input).display = False
        await self.tick()
        self.set_interval(self._refresh_every, self.tick, name="refresh")

    # -- the refresh tick -----------------------------------------------------------------

    async def tick(self) -> None:
        try:
            await self._tick()
        except NoMatches:
            # Every widget a tick touches exists for the app's whole life, except while the
            # app shuts down and removes them: a late tick then has nothing left to do.
            log.debug("refresh tick during shutdown skipped")

    def _session_query(self) -> SessionQuery:
        """Only the sessions tab needs session rows, and only the ones it shows."""
        if self.active_tab != "sessions":
            return SessionQuery(limit=0)
        return SessionQuery(SORTS[self._sort][1], self._filter, MAX_SESSION_ROWS)

    async def _tick(self) -> None:
        try:
            snap = await self.backend.snapshot(self._session_query())
        except Exception as error:  # a backend hiccup must not kill the view
            log.warning("snapshot failed: %s", error)
            return
        if not self.is_running:
            return
        self.snap = snap
        self._update_banner(snap)
        if len(self.screen_stack) > 1:
            return  # a dialog covers the tables: do not repaint under it
        # The work of a tick is cut in a few short pieces (asyncio.sleep(0) between them), so
        # the gateway's own tasks run in between instead of waiting for the whole tick.
        await asyncio.sleep(0)
        tab = self.active_tab
        if tab == "overview":
            self._update_overview(snap)
        elif tab == "sessions":
            built = self._session_rows(snap)
            await asyncio.sleep(0)
            self._show_sessions(built)
        elif tab == "recovery":
            self._update_candidates(snap)
        elif tab == "processes":
            self._update_processes(snap)
        elif tab == "timers":
            self._update_timers(snap)
        elif tab == "audit":
            await self._update_audit()

    @property
    def active_tab(self) -> str:
        return self.query_one("#tabs", TabbedContent).active or "overview"

    def _update_banner(self, snap: Snapshot) -> None:
        banner = Text()
        banner.append(" SWITCHBOARD ", style="bold")
        banner.append(f" {snap.state.upper()} ", style=STATE_STYLE.get(snap.state, "bold"))
        if snap.run_id is not None:
            banner.append(f"  run #{snap.run_id}  up {rows.age(snap.uptime)}")
        counts = snap.counts
        banner.append(
            f"  sessions {counts.get('sessions', 0)}  running {counts.get('running', 0)}"
            f"  queued {counts.get('queued', 0)}  candidates {counts.get('candidates', 0)}"
            f"  jobs {counts.get('processes', 0)}"
        )
        if snap.loop_guard_tripped:
            banner.append("  RESTART LOOP: all held ", style="bold white on red")
        if self._busy:
            banner.append(f"  {self._busy}… ", style="bold yellow")
        if self.read_only:
            banner.append("  READ-ONLY ", style="bold black on cyan")
        self.query_one("#banner", Static).update(banner)

    def _update_overview(self, snap: Snapshot) -> None:
        counts = dict(snap.counts)
        text = Text()
        text.append(f"Gateway {snap.state}", style=STATE_STYLE.get(snap.state, "bold"))
        text.append(f"   uptime {rows.age(snap.uptime)}\n\n")
        for label, key in (
            ("Sessions", "sessions"),
            ("Running turns", "running"),
            ("Queued messages", "queued"),
            ("Recovery candidates", "candidates"),
            ("Background jobs running", "processes"),
            ("Notifiers", "notifiers"),
            ("Replies of unknown fate", "unknown_deliveries"),
            ("Tokens in (this run)", "prompt_tokens"),
            ("Tokens out (this run)", "completion_tokens"),
        ):
            text.append(f"  {label:<26}{counts.get(key, 0):>11,}\n")
        verdicts = sorted(
            (k[8:] if k[8:] != "None" else "not decided yet", v)
            for k, v in counts.items()
            if k.startswith("verdict:")
        )
        if verdicts:
            text.append("\n  Candidates by verdict\n", style="bold")
            for verdict, count in verdicts:
                style = rows.VERDICT_STYLES.get(verdict, "")
                text.append(f"    {verdict:<24}", style=style)
                text.append(f"{count:>11,}\n")
        self.query_one("#overview-text", Static).update(text)
        drain = snap.drain
        title = self.query_one("#drain-title", Label)
        bar = self.query_one("#drain-bar", ProgressBar)
        detail = self.query_one("#drain-text", Static)
        if drain is None:
            title.update(Text("No drain has run.", style="dim"))
            bar.display = False
            detail.update("")
            return
        bar.display = True
        title.update(Text(f"Drain: {drain.phase}", style="bold"))
        bar.update(total=max(drain.total, 1), progress=drain.finished if drain.total else 1)
        still = ", ".join(str(s) for s in drain.running[:20]) or "none"
        detail.update(
            Text(
                f"{drain.finished} of {drain.total} finished, {drain.seconds_left:.0f} s left\n"
                f"still running: {still}\n"
                f"interrupted: {', '.join(str(s) for s in drain.interrupted[:20]) or 'none'}"
            )
        )

    def _session_rows(self, snap: Snapshot) -> tuple[list[tuple[str, rows.Cells]], str]:
        """The snapshot's sessions are already the selected ones, in order (SessionQuery)."""
        shown = snap.sessions[:MAX_SESSION_ROWS]
        total = snap.counts.get("sessions", len(snap.sessions))
        title = f"Sessions: {len(shown)} of {total:,} shown, {SORTS[self._sort][0]}"
        if self._filter:
            title += f", filter {clean(self._filter, 40)!r}"
        return [(str(v.session_id), rows.session_row(v, snap.taken_at)) for v in shown], title

    def _show_sessions(self, built: tuple[list[tuple[str, rows.Cells]], str]) -> None:
        table = self.query_one("#session-table", KeyedTable)
        table.apply(built[0])
        self.query_one("#sessions-title", Label).update(Text(built[1]))
        self._load_detail(table.current_key())

    def _update_candidates(self, snap: Snapshot) -> None:
        views = sorted(snap.candidates, key=lambda c: c.session_id)
        self.marked &= {str(c.session_id) for c in views}
        table = self.query_one("#candidate-table", KeyedTable)
        table.apply(
            [
                (str(c.session_id), rows.candidate_row(c, str(c.session_id) in self.marked))
                for c in views
            ]
        )
        marked = f", {len(self.marked)} marked" if self.marked else ""
        self.query_one("#recovery-title", Label).update(
            Text(f"Recovery candidates: {len(views)}{marked}   (space marks for bulk actions)")
        )
        key = table.current_key()
        chosen = next((c for c in views if str(c.session_id) == key), None)
        detail = self.query_one("#candidate-detail", Static)
        if chosen is None:
            detail.update(Text("No candidate selected.", style="dim"))
        else:
            detail.update(
                Text(
                    clean(
                        f"{rows.display_key(chosen.key, chosen.user_name)}: {chosen.verdict}"
                        f" → {chosen.action or 'operator'}\n"
                        f"{chosen.explanation or ''}",
                        600,
                        multiline=True,
                    )
                )
            )

    def _update_processes(self, snap: Snapshot) -> None:
        views = sorted(snap.processes, key=lambda p: (p.state != "running", -p.age))
        self.query_one("#process-table", KeyedTable).apply(
            [(p.process_id, rows.process_row(p)) for p in views]
        )
        running = sum(1 for p in views if p.state == "running")
        self.query_one("#processes-title", Label).update(
            Text(f"Background jobs: {running} running, {len(views)} known")
        )

    def _update_timers(self, snap: Snapshot) -> None:
        views = sorted(snap.notifiers, key=lambda n: n.next_fire_in)
        self.query_one("#timer-table", KeyedTable).apply(
            [(str(n.session_id), rows.timer_row(n, n.conversation)) for n in views]
        )
        self.query_one("#timers-title", Label).update(
            Text(f"'Still working' notifiers: {len(views)}")
        )

    async def _update_audit(self) -> None:
        entries = await self.backend.audit_tail(100)
        newest = entries[0].id if entries else 0
        if newest != self._audit_seen:
            self._audit_seen = newest
            self.query_one("#audit-table", KeyedTable).apply(
                [
                    (
                        str(e.id),
                        (
                            rows.plain(e.id),
                            rows.plain(rows.age(self._now() - e.at) + " ago"),
                            safe(e.actor, 10),
                            rows.plain(e.action),
                            safe(",".join(e.targets) or "–", 14),
                            rows.plain(e.outcome, "green" if e.outcome == "ok" else "red"),
                            safe(" | ".join(x for x in (e.reason, e.detail) if x), 200),
                        ),
                    )
                    for e in entries
                ]
            )
        lines = await self.backend.log_tail(500)
        if lines != self._log_shown:  # compared by content: a full ring stays 500 lines long
            pane = self.query_one("#log", Log)
            pane.clear()
            pane.write_lines([clean(line, 400) for line in lines])
            self._log_shown = lines

    def _now(self) -> float:
        return 0.0 if self.snap is None else self.snap.taken_at

    # -- the session detail pane ----------------------------------------------------------

    def on_data_table_row_highlighted(self, event: KeyedTable.RowHighlighted) -> None:
        if event.data_table.id == "session-table":
            key = event.row_key.value
            self._load_detail(None if key is None else str(key))
        elif event.data_table.id == "candidate-table" and self.snap is not None:
            self._update_candidates(self.snap)

    def _load_detail(self, key: str | None) -> None:
        """Show the highlighted session's transcript tail (re-read each tick: it grows)."""
        if key is None:
            return
        self._detail_for = key
        self._show_transcript(int(key))

    @work(exclusive=True, group="detail")
    async def _show_transcript(self, session_id: int) -> None:
        messages = await self.backend.transcript_tail(session_id, 30)
        if not self.is_running:
            return
        text = Text()
        text.append(f"Session {session_id}: last {len(messages)} rows\n", style="bold")
        for message in messages:
            label = message.role if message.kind == "text" else f"{message.role}/{message.kind}"
            text.append(f"{label}: ", style="bold cyan" if message.role == "user" else "bold")
            body = message.content
            if message.tool_calls:
                body = " ".join(f"{c.name}({c.arguments})" for c in message.tool_calls)
            text.append(clean(body, 240) + "\n")
        with contextlib.suppress(NoMatches):  # the app may be closing meanwhile
            self.query_one("#transcript", Static).update(text)

    def on_input_changed(self, event: Input.Changed) -> None:
        if event.input.id == "session-filter":
            self._filter = event.value.strip()
            self.call_later(self.tick)  # the backend selects the matching sessions

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.input.id == "session-filter":
            self.query_one("#session-table", KeyedTable).focus()

    def on_tabbed_content_tab_activated(self, event: TabbedContent.TabActivated) -> None:
        self.refresh_bindings()
        table_id = {
            "sessions": "#session-table",
            "recovery": "#candidate-table",
            "processes": "#process-table",
            "timers": "#timer-table",
            "audit": "#audit-table",
        }.get(self.active_tab)
        if table_id is not None:
            self.query_one(table_id, KeyedTable).focus()
        self.call_later(self.tick)

    # -- which actions are allowed where --------------------------------------------------

    def allowed(self, action: str, *, anywhere: bool = False) -> bool:
        spec = BY_NAME.get(action)
        if spec is None:
            return True
        if spec.mutating and self.read_only:
            return False  # hidden: a read-only console offers no way to change anything
        if spec.demo_only and self._demo_restart is None:
            return False
        return anywhere or spec.tab is None or spec.tab == self.active_tab

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        return self.allowed(action)

    def run_from_palette(self, action: str, tab: str | None) -> None:
        if tab is not None and tab != self.active_tab:
            self.action_show_tab(tab)
        if action:
            self.call_later(self.run_action, action)

    # -- actions --------------------------------------------------------------------------

    def action_show_tab(self, tab: str) -> None:
        if tab in TABS:
            # Let go of the focus first: hiding the focused table would hand the focus to the
            # next widget of the same pane, and TabbedContent would switch back to that pane.
            self.screen.set_focus(None)
            self.query_one("#tabs", TabbedContent).active = tab

    def _targets(self, table_id: str, *, bulk: bool = False) -> list[str]:
        if bulk and self.marked:
            return sorted(self.marked, key=int)
        key = self.query_one(table_id, KeyedTable).current_key()
        return [] if key is None else [key]

    def _describe(self, targets: Sequence[str]) -> list[str]:
        if self.snap is None:
            return list(targets)
        names = {
            str(s.session_id): rows.display_key(s.key, s.user_name) for s in self.snap.sessions
        }
        names |= {
            str(c.session_id): f"{rows.display_key(c.key, c.user_name)} ({c.verdict})"
            for c in self.snap.candidates
        }
        names |= {p.process_id: p.command for p in self.snap.processes}
        return [f"{t}: {names[t]}" if t in names else t for t in targets]

    def _confirm_then(
        self,
        action: str,
        targets: list[str],
        title: str,
        verb: str,
        *,
        needs_targets: bool = True,
    ) -> None:
        if needs_targets and not targets:
            self.notify("Nothing selected.", severity="warning", markup=False)
            return

        def chosen(answer: object) -> None:
            if answer is True:
                self._run(action, targets)

        self.push_screen(ConfirmScreen(title, self._describe(targets), verb, danger=True), chosen)

    @work(group="actions")
    async def _run(
        self,
        action: str,
        targets: Sequence[str] = (),
        reason: str | None = None,
        timeout: float | None = None,
    ) -> None:
        if action in ("drain", "restart", "crash-restart"):
            self._busy = action
        try:
            if action == "crash-restart" and self._demo_restart is not None:
                result = await self._demo_restart()
            else:
                result = await self.backend.act(action, targets, reason=reason, timeout=timeout)
        except Exception as error:  # an action failing must not take the console down
            log.exception("action %s failed", action)
            result = ActionResult(False, f"{action} failed: {error}")
        finally:
            self._busy = None
        if action in ("approve", "clear", "force-resume") and result.ok:
            self.marked -= set(targets)
        self.notify(
            clean(result.message, 300),
            title="Done" if result.ok else "Refused",
            severity="information" if result.ok else "error",
            markup=False,
        )
        await self.tick()

    def action_quiet(self) -> None:
        self._confirm_then(
            "quiet", [], "Go quiet? No new turn starts.", "Quiet", needs_targets=False
        )

    def action_resume_intake(self) -> None:
        self._confirm_then(
            "resume-intake", [], "Resume intake? Queued turns start.", "Resume", needs_targets=False
        )

    def _ask_timeout(self, action: str, title: str, verb: str) -> None:
        def chosen(answer: object) -> None:
            if isinstance(answer, str):
                self._run(action, timeout=float(answer))

        self.push_screen(
            InputScreen(
                title, [], verb, prompt="Drain timeout in seconds:", value="60", number=True
            ),
            chosen,
        )

    def action_drain(self) -> None:
        self._ask_timeout("drain", "Drain and stop the gateway?", "Drain")

    def action_restart(self) -> None:
        self._ask_timeout("restart", "Drain and restart the gateway?", "Restart")

    def action_crash_restart(self) -> None:
        self._confirm_then(
            "crash-restart",
            [],
            "Restart now? Running turns are interrupted, as in a crash.",
            "Restart now",
            needs_targets=False,
        )

    def action_interrupt(self) -> None:
        targets = self._targets("#session-table")
        self._confirm_then("interrupt", targets, "Interrupt this turn?", "Interrupt")

    def action_filter(self) -> None:
        box = self.query_one("#session-filter", Input)
        box.display = not box.display
        if box.display:
            box.focus()
        else:
            box.value = ""
            self.query_one("#session-table", KeyedTable).focus()

    def action_sort(self) -> None:
        self._sort = (self._sort + 1) % len(SORTS)
        self.call_later(self.tick)

    def action_mark(self) -> None:
        key = self.query_one("#candidate-table", KeyedTable).current_key()
        if key is None:
            return
        self.marked ^= {key}
        if self.snap is not None:
            self._update_candidates(self.snap)

    def action_approve(self) -> None:
        targets = self._targets("#candidate-table", bulk=True)
        self._confirm_then("approve", targets, "Approve: resume these now?", "Approve")

    def action_clear(self) -> None:
        targets = self._targets("#candidate-table", bulk=True)
        self._confirm_then("clear", targets, "Clear: never resume these?", "Clear")

    def action_force_resume(self) -> None:
        targets = self._targets("#candidate-table", bulk=True)
        if not targets:
            self.notify("Nothing selected.", severity="warning", markup=False)
            return

        def chosen(answer: object) -> None:
            if isinstance(answer, str):
                self._run("force-resume", targets, reason=answer)

        self.push_screen(
            InputScreen(
                "Force-resume, whatever the verdict?",
                self._describe(targets),
                "Force-resume",
                prompt="Reason (recorded in the audit log):",
            ),
            chosen,
        )

    def action_kill(self) -> None:
        targets = self._targets("#process-table")
        self._confirm_then("kill-process", targets, "Kill this job and its children?", "Kill")

    @work(group="log")
    async def action_show_log(self) -> None:
        targets = self._targets("#process-table")
        if not targets:
            return
        lines = await self.backend.process_log(targets[0], 200)
        await self.push_screen(TextScreen(f"Output of {targets[0]}", lines))

    def action_leave(self) -> None:
        def chosen(answer: object) -> None:
            if answer == "detach":
                self.exit("detach")
            elif answer == "stop":
                self._stop_and_exit()

        stopped = self.snap is not None and self.snap.state == "stopped"
        if stopped:
            self.exit("stopped")
            return
        draining = self.snap is not None and self.snap.state == "draining"
        can_stop = not (self.read_only or self.attached or draining)
        self.push_screen(LeaveScreen(can_stop=can_stop), chosen)

    @work(group="actions")
    async def _stop_and_exit(self) -> None:
        self._busy = "draining"
        self.action_show_tab("overview")
        result = await self.backend.act("drain")
        self._busy = None
        if not result.ok:
            self.notify(clean(result.message), severity="error", markup=False)
            return
        self.exit("stopped")

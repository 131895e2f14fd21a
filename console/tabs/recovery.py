"""The recovery tab: every candidate with its verdict and why; approve, clear, force-resume,
one row or the marked ones."""

from __future__ import annotations

from collections.abc import Sequence

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import DataTable, Label, Static

from console import rows
from console.actions import Tab, tab_bindings
from console.applicable import OWNER_ONLY, candidate_actions, owned_elsewhere, why_not_all
from console.operations import Request
from console.recovery_text import (
    describe,
    detail_fields,
    explanation,
    loop_guard_summary,
    verdict_label,
)
from console.safety import clean
from console.screens.dialogs import InputScreen
from console.tabs.base import ConsoleTab
from console.tones import TONE_CLASSES, Tone, Toned
from console.widgets.keyed_table import KeyedTable
from console.words import plural
from gateway_core.control import Action, ActionResult
from gateway_core.runtime import GatewayState
from gateway_core.snapshot import CandidateView, Snapshot, tail_age

SHORT = 30  # rows below which the detail pane gets less of the height


class RecoveryTab(ConsoleTab, Toned):
    COMPONENT_CLASSES = TONE_CLASSES
    TAB = Tab.RECOVERY
    BINDINGS = tab_bindings(Tab.RECOVERY)

    def __init__(self) -> None:
        super().__init__()
        self.marked: set[str] = set()
        self._views: dict[str, CandidateView] = {}

    def compose(self) -> ComposeResult:
        yield Label(id="recovery-title")
        yield Static(id="loop-guard")
        with Vertical():
            yield KeyedTable(rows.CANDIDATE_COLUMNS, id="candidate-table")
            yield Static(id="candidate-detail", classes="detail-bottom")

    @property
    def table(self) -> KeyedTable:
        return self.query_one("#candidate-table", KeyedTable)

    def focus_first(self) -> None:
        self.table.focus()

    async def show(self, snap: Snapshot) -> None:
        self._fill(snap)

    def _fill(self, snap: Snapshot) -> None:
        views = sorted(snap.candidates, key=lambda c: c.session_id)
        self._views = {str(c.session_id): c for c in views}
        self.marked &= set(self._views)
        chosen, state = self.marked, snap.state
        self.table.apply(
            [
                (
                    key,
                    rows.candidate_row(
                        view,
                        key in chosen,
                        candidate_actions(view, state, snap.node_id),
                        verdict_label(view),
                        explanation(view),
                        tail_age(view, snap.taken_at),
                    ),
                )
                for key, view in self._views.items()
            ]
        )
        suspended = snap.counts.suspended
        title = f"Recovery: {plural(len(views) - suspended, 'candidate')}"
        if suspended:
            title += f", {suspended} suspended"
        if self.marked:
            title += f", {len(self.marked)} marked"
        if not self.host.read_only:
            title += "   (space marks rows for a bulk action)"
        self.query_one("#recovery-title", Label).update(Text(title))
        guard = self.query_one("#loop-guard", Static)
        lines = [] if snap.loop_guard is None else loop_guard_summary(snap.loop_guard)
        guard.display = snap.loop_guard_tripped
        guard.update(Text("\n".join(lines)))
        self._show_detail()

    def _show_detail(self) -> None:
        chosen = self.highlighted()
        detail = self.query_one("#candidate-detail", Static)
        if chosen is None:
            detail.update(Text("No candidate selected.", style=self.tone_style(Tone.DIM)))
            return
        text = Text()
        snap = self.host.snap
        elsewhere = owned_elsewhere(
            chosen.session_id, chosen.owner, None if snap is None else snap.node_id
        )
        if elsewhere is not None:
            text.append("Owner: ", style=self.tone_style(Tone.STRONG))
            text.append(clean(elsewhere, 200) + "\n", style=self.tone_style(Tone.WARN))
        for label, value in detail_fields(chosen):
            text.append(f"{label}: ", style=self.tone_style(Tone.STRONG))
            text.append(clean(value, 600) + "\n")
        text.rstrip()
        detail.update(text)

    def on_resize(self) -> None:
        # On a short terminal the table keeps most of the height; the detail scrolls.
        detail = self.query_one("#candidate-detail", Static)
        detail.styles.max_height = 4 if self.size.height < SHORT else 8

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        self._show_detail()
        self.host.offered_changed()

    # -- actions --------------------------------------------------------------------------

    def highlighted(self) -> CandidateView | None:
        key = self.table.current_key()
        return None if key is None else self._views.get(key)

    def why_not(self, action: str) -> str | None:
        if action == "mark":
            if self.host.read_only:
                return "marking is for bulk actions, and this console is read-only"
            return None if self.highlighted() is not None else "nothing is selected"
        if action == "reset_loop_guard":
            snap = self.host.snap
            if snap is None or not snap.loop_guard_tripped:
                return "the restart-loop guard has not tripped"
            return None if snap.state is GatewayState.RUNNING else f"the gateway is {snap.state}"
        snap = self.host.snap
        state = GatewayState.STOPPED if snap is None else snap.state
        here = None if snap is None else snap.node_id
        views = [self._views[key] for key in self.targets() if key in self._views]
        if action in OWNER_ONLY:
            for view in views:
                elsewhere = owned_elsewhere(view.session_id, view.owner, here)
                if elsewhere is not None:
                    return elsewhere
        return why_not_all(action, [candidate_actions(view, state, here) for view in views])

    def targets(self) -> list[str]:
        """The marked rows, else the highlighted one."""
        if self.marked:
            return sorted(self.marked, key=int)
        key = self.table.current_key()
        return [] if key is None else [key]

    def _describe(self, targets: Sequence[str]) -> list[str]:
        return [
            target if target not in self._views else describe(self._views[target])
            for target in targets
        ]

    def _done(self, result: ActionResult, targets: Sequence[str]) -> None:
        if result.ok:
            self.marked -= set(targets)

    def _confirm(self, action: Action, title: str, verb: str) -> None:
        targets = self.targets()
        if not targets:
            self.app.notify("Nothing selected.", severity="warning", markup=False)
            return
        self.host.ops.confirm(
            Request(action, tuple(targets)),
            title,
            verb,
            self._describe(targets),
            lambda result: self._done(result, targets),
        )

    def action_approve(self) -> None:
        self._confirm(Action.APPROVE, "Approve: resume these now?", "Approve")

    def action_clear(self) -> None:
        self._confirm(Action.CLEAR, "Clear: never resume these?", "Clear")

    def action_force_resume(self) -> None:
        targets = self.targets()
        if not targets:
            self.app.notify("Nothing selected.", severity="warning", markup=False)
            return
        screen = InputScreen(
            "Force-resume, whatever the verdict?",
            self._describe(targets),
            "Force-resume",
            prompt="Reason (recorded in the audit log):",
        )
        self.host.ops.ask(
            screen,
            lambda reason: Request(Action.FORCE_RESUME, tuple(targets), reason=reason),
            lambda result: self._done(result, targets),
        )

    def action_unsuspend(self) -> None:
        self._confirm(
            Action.UNSUSPEND,
            "Unsuspend? Nothing runs now; after a restart recovery may resume these again.",
            "Unsuspend",
        )

    def action_reset_loop_guard(self) -> None:
        snap = self.host.snap
        held = () if snap is None or snap.loop_guard is None else snap.loop_guard.held
        self.host.ops.confirm(
            Request(Action.RESET_LOOP_GUARD),
            "Reset the restart-loop guard? What it held back resumes now, once each.",
            "Reset",
            self._describe([str(sid) for sid in held]),
        )

    def action_mark(self) -> None:
        key = self.table.current_key()
        if not self.offered("mark"):
            return
        if key is None:
            return
        self.marked ^= {key}
        if self.host.snap is not None:
            self._fill(self.host.snap)
        self.host.offered_changed()

"""The overview tab: the gateway's counts, candidates by verdict, the restart-loop guard, and
the drain (this run's, or the last one of the run before)."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.widgets import Label, ProgressBar, Static

from console.actions import Tab
from console.durations import duration
from console.recovery_text import loop_guard_lines
from console.safety import clean
from console.status_text import drain_lines, previous_run_line
from console.tabs.base import ConsoleTab
from console.tones import STATE_TONES, TONE_CLASSES, VERDICT_TONES, Tone, Toned
from gateway_core.snapshot import Snapshot

COUNTS = (
    ("Sessions", "sessions"),
    ("Running turns", "running"),
    ("Queued messages", "queued"),
    ("Recovery candidates", "candidates"),
    ("Suspended sessions", "suspended"),
    ("Background jobs running", "processes"),
    ("Notifiers", "notifiers"),
    ("Replies of unknown fate", "unknown_deliveries"),
    ("Tokens in (this run)", "prompt_tokens"),
    ("Tokens out (this run)", "completion_tokens"),
)


class OverviewTab(ConsoleTab, Toned):
    COMPONENT_CLASSES = TONE_CLASSES
    TAB = Tab.OVERVIEW

    def compose(self) -> ComposeResult:
        # One scrollable column: on a short terminal the arrows reach the drain below.
        with VerticalScroll(id="overview-scroll"):
            yield Static(id="overview-guard")
            yield Static(id="overview-text")
            yield Label(id="drain-title")
            yield ProgressBar(id="drain-bar", show_eta=False, total=1)
            yield Static(id="drain-text")

    def focus_first(self) -> None:
        self.query_one("#overview-scroll", VerticalScroll).focus()

    async def show(self, snap: Snapshot) -> None:
        self._show_guard(snap)
        self.query_one("#overview-text", Static).update(self._counts(snap))
        self._show_drain(snap)

    def _counts(self, snap: Snapshot) -> Text:
        counts = snap.counts
        text = Text()
        state_tone = STATE_TONES.get(snap.state, Tone.STRONG)
        text.append(f"Gateway {snap.state}", style=self.tone_style(state_tone))
        text.append(f"   uptime {duration(snap.uptime)}\n")
        if snap.node_id is not None:
            # On several nodes the sessions and candidates are the shared store's, but
            # turns, jobs and notifiers only this node's: say so (80 columns, one line).
            text.append(
                f"  node {clean(snap.node_id, 40)}, one of {len(snap.nodes)} (tab 7); turns,"
                " jobs and notifiers are this node's\n",
                style=self.tone_style(Tone.DIM),
            )
        text.append("\n")
        for label, key in COUNTS:
            text.append(f"  {label:<26}{getattr(counts, key):>11,}\n")
        verdicts = sorted(counts.by_verdict.items())
        if verdicts:
            text.append("\n  Candidates by verdict\n", style=self.tone_style(Tone.STRONG))
            for verdict, count in verdicts:
                tone = VERDICT_TONES.get(verdict, Tone.PLAIN)
                text.append(f"    {verdict:<24}", style=self.tone_style(tone))
                text.append(f"{count:>11,}\n")
        return text

    def _show_guard(self, snap: Snapshot) -> None:
        """The restart-loop guard first, where a short terminal still shows it."""
        guard = snap.loop_guard
        lines = [] if guard is None else loop_guard_lines(guard, snap.taken_at)
        box = self.query_one("#overview-guard", Static)
        box.display = bool(lines)
        box.set_class(snap.loop_guard_tripped, "-alarm")
        box.update(Text("\n".join(lines)))

    def _show_drain(self, snap: Snapshot) -> None:
        drain = snap.drain
        title = self.query_one("#drain-title", Label)
        bar = self.query_one("#drain-bar", ProgressBar)
        detail = self.query_one("#drain-text", Static)
        if drain is None:
            bar.display = False
            self._show_previous(snap, title, detail)
            return
        bar.display = True
        title.update(Text(f"Drain: {drain.phase}", style=self.tone_style(Tone.STRONG)))
        bar.update(total=max(drain.total, 1), progress=drain.finished if drain.total else 1)
        detail.update(Text(drain_lines(drain)))

    def _show_previous(self, snap: Snapshot, title: Label, detail: Static) -> None:
        """No drain in this run: the last one of the run before, if there was one."""
        previous = snap.previous_run
        if previous is None:
            title.update(Text("No drain has run.", style=self.tone_style(Tone.DIM)))
            detail.update("")
            return
        heading = f"Last drain: previous run (#{previous.run_id})"
        title.update(Text(heading, style=self.tone_style(Tone.STRONG)))
        lines = [previous_run_line(previous, snap.taken_at)]
        if snap.previous_drain is not None:
            lines.append(drain_lines(snap.previous_drain))
        detail.update(Text("\n".join(lines)))

"""The overview tab: the gateway's counts, candidates by verdict, and the drain."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.widgets import Label, ProgressBar, Static

from console.actions import Tab
from console.durations import duration
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
        yield Static(id="overview-text")
        yield Label(id="drain-title")
        yield ProgressBar(id="drain-bar", show_eta=False, total=1)
        yield Static(id="drain-text")

    async def show(self, snap: Snapshot) -> None:
        self.query_one("#overview-text", Static).update(self._counts(snap))
        self._show_drain(snap)

    def _counts(self, snap: Snapshot) -> Text:
        counts = dict(snap.counts)
        text = Text()
        text.append(
            f"Gateway {snap.state}", style=self.tone_style(STATE_TONES.get(snap.state, Tone.STRONG))
        )
        text.append(f"   uptime {duration(snap.uptime)}\n\n")
        for label, key in COUNTS:
            text.append(f"  {label:<26}{counts.get(key, 0):>11,}\n")
        verdicts = sorted(
            (k[8:] if k[8:] != "None" else "not decided yet", v)
            for k, v in counts.items()
            if k.startswith("verdict:")
        )
        if verdicts:
            text.append("\n  Candidates by verdict\n", style=self.tone_style(Tone.STRONG))
            for verdict, count in verdicts:
                text.append(
                    f"    {verdict:<24}", style=self.tone_style(VERDICT_TONES.get(verdict, ""))
                )
                text.append(f"{count:>11,}\n")
        return text

    def _show_drain(self, snap: Snapshot) -> None:
        drain = snap.drain
        title = self.query_one("#drain-title", Label)
        bar = self.query_one("#drain-bar", ProgressBar)
        detail = self.query_one("#drain-text", Static)
        if drain is None:
            title.update(Text("No drain has run.", style=self.tone_style(Tone.DIM)))
            bar.display = False
            detail.update("")
            return
        bar.display = True
        title.update(Text(f"Drain: {drain.phase}", style=self.tone_style(Tone.STRONG)))
        bar.update(total=max(drain.total, 1), progress=drain.finished if drain.total else 1)
        still = ", ".join(str(s) for s in drain.running[:20]) or "none"
        detail.update(
            Text(
                f"{drain.finished} of {drain.total} finished, {duration(drain.seconds_left)} left\n"
                f"still running: {still}\n"
                f"interrupted: {', '.join(str(s) for s in drain.interrupted[:20]) or 'none'}"
            )
        )

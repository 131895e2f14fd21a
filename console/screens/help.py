"""`?`: the keys of the current tab and of every tab, what each does, and whether it applies
right now (and if not, why). Built from the same action table as the footer and the palette,
so the three always agree."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from rich.text import Text
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Label, Static

from console.actions import ACTIONS, ConsoleAction, Tab
from console.tones import TONE_CLASSES, Tone, Toned

# Keys that are not actions of the table: how to move around.
MOVING = (
    ("1-7", "Switch to a tab"),
    ("↑ ↓ PgUp PgDn", "Move in a table or scroll a log"),
    ("Home End g G", "The first or last line of a log; at the end it follows new output"),
    ("Tab", "Move the focus (a table, a log, a dialog's buttons)"),
    ("ctrl+p", "The command palette: every action offered here, searchable"),
)


@dataclass(frozen=True, slots=True)
class HelpLine:
    key: str
    title: str
    help: str
    why_not: str | None  # None: it applies now


def help_lines(
    app: App[Any],
    tab: Tab,
    why_not: Callable[[ConsoleAction], str | None],
    *,
    demo: bool,
) -> tuple[list[HelpLine], list[HelpLine]]:
    """(this tab's, everywhere's) lines, in the table's order."""
    here, everywhere = [], []
    for action in ACTIONS:
        if action.demo_only and not demo:
            continue
        line = HelpLine(
            app.get_key_display(Binding(action.keys, action.name)),
            action.title,
            action.help,
            why_not(action),
        )
        if action.tab is None:
            everywhere.append(line)
        elif action.tab == tab:
            here.append(line)
    return here, everywhere


class HelpScreen(ModalScreen[None], Toned):
    COMPONENT_CLASSES = TONE_CLASSES
    BINDINGS = [Binding("escape,q,question_mark", "close", "Close")]

    def __init__(self, tab: str, here: Sequence[HelpLine], everywhere: Sequence[HelpLine]):
        super().__init__()
        self._tab, self._here, self._everywhere = tab, here, everywhere

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog dialog-wide"):
            yield Label(Text(f"Keys: {self._tab}, and everywhere"), classes="dialog-title")
            with VerticalScroll():
                yield Static(self._body(), id="help-text")
            yield Label(Text("Esc, q or ? closes"), classes="dialog-hint")

    def on_mount(self) -> None:
        self.query_one(VerticalScroll).focus()

    def _body(self) -> Text:
        text = Text()
        for heading, lines in ((f"On {self._tab}", self._here), ("Everywhere", self._everywhere)):
            if not lines:
                continue
            text.append(f"{heading}\n", style=self.tone_style(Tone.STRONG))
            for line in lines:
                self._line(text, line)
            text.append("\n")
        text.append("Moving around\n", style=self.tone_style(Tone.STRONG))
        for key, what in MOVING:
            text.append(f"  {key:<14}", style=self.tone_style(Tone.STRONG))
            text.append(f"{what}\n")
        text.rstrip()
        return text

    def _line(self, text: Text, line: HelpLine) -> None:
        text.append(f"  {line.key:<14}", style=self.tone_style(Tone.STRONG))
        text.append(f"{line.title:<14}")
        text.append(line.help)
        if line.why_not is not None:
            text.append(f"  (not now: {line.why_not})", style=self.tone_style(Tone.DIM))
        text.append("\n")

    def action_close(self) -> None:
        self.dismiss(None)

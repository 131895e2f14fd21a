"""What a state *means* on screen (good, busy, warning, alarm...), not how it looks.

Rows and panels say a cell's tone; the stylesheet (styles/console.tcss) says what each tone
looks like, through the component classes `tone--<name>` of the widgets that draw cells.
"""

from __future__ import annotations

from enum import StrEnum
from typing import ClassVar, cast

from rich.style import Style
from textual.widget import Widget


class Tone(StrEnum):
    PLAIN = ""
    STRONG = "strong"  # headings and marks
    GOOD = "good"
    BUSY = "busy"  # something runs right now
    ACCENT = "accent"  # resuming
    INFO = "info"  # waiting for a user
    WARN = "warn"
    HOT = "hot"  # needs an operator
    ALARM = "alarm"
    DIM = "dim"
    USER = "user"  # a user's words in a transcript


STATE_TONES = {
    "running": Tone.BUSY,
    "resuming": Tone.ACCENT,
    "queued": Tone.WARN,
    "idle": Tone.DIM,
    "exited": Tone.DIM,
    "killed": Tone.ALARM,
    "lost": Tone.ALARM,
    "held": Tone.HOT,
    "pending": Tone.WARN,
    "suspended": Tone.DIM,
}
VERDICT_TONES = {
    "resumable": Tone.GOOD,
    "ambiguous-tool": Tone.HOT,
    "undetermined": Tone.HOT,
    "no-origin": Tone.WARN,
    "recovery-loop": Tone.ALARM,
    "stale": Tone.DIM,
    "complete": Tone.DIM,
    "awaiting-user": Tone.INFO,
    "suspended": Tone.DIM,
}
LEVEL_TONES = {
    "DEBUG": Tone.DIM,
    "INFO": Tone.PLAIN,
    "WARNING": Tone.WARN,
    "ERROR": Tone.ALARM,
    "CRITICAL": Tone.ALARM,
}

TONE_CLASSES = {f"tone--{tone.value}" for tone in Tone if tone.value}


class Toned:
    """Mixed into a widget whose cells take their look from the stylesheet's `tone--*`
    classes. Textual collects component classes along the first base only, so the widget
    class itself declares them: `COMPONENT_CLASSES = TONE_CLASSES`."""

    COMPONENT_CLASSES: ClassVar[set[str]] = TONE_CLASSES

    def tone_style(self, tone: Tone | str) -> Style:
        if not tone:
            return Style()
        widget = cast(Widget, self)
        return widget.get_component_rich_style(f"tone--{tone}", partial=True, default=Style())

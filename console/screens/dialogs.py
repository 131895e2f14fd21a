"""Modal dialogs: every mutating action is confirmed here, with Cancel focused.

Targets and prompts are shown as plain Text (a session name may hold markup). `n`, `escape`
and `q` cancel; ESC alone is never the only way out (tmux may delay a bare ESC).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Static

from console.safety import clean
from console.words import plural

MAX_TARGETS_SHOWN = 12


def _targets_text(targets: Sequence[str]) -> Text:
    shown = [clean(t, 80) for t in targets[:MAX_TARGETS_SHOWN]]
    more = len(targets) - len(shown)
    text = "\n".join(f"  • {t}" for t in shown)
    if more > 0:
        text += f"\n  … and {more} more"
    return Text(text)


class _Dialog(ModalScreen[object]):
    DEFAULT_CSS = """
    _Dialog { align: center middle; }
    """
    BINDINGS = [
        Binding("escape,n", "cancel", "Cancel"),
    ]

    def action_cancel(self) -> None:
        self.dismiss(None)

    def on_button_pressed(self, event: Button.Pressed) -> None:
        # One handler for every dialog (Textual runs a handler of each class in the MRO).
        event.stop()
        self.pressed(event.button.id or "")

    def pressed(self, button: str) -> None:
        if button == "cancel":
            self.dismiss(None)
        else:
            self.confirm()

    def confirm(self) -> None:
        self.dismiss(True)


class ConfirmScreen(_Dialog):
    """Yes/no for an action on listed targets. Dismisses True, or None when cancelled."""

    def __init__(self, title: str, targets: Sequence[str], verb: str, *, danger: bool) -> None:
        super().__init__()
        self._title, self._targets, self._verb, self._danger = title, targets, verb, danger

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label(Text(self._title), classes="dialog-title")
            if self._targets:
                yield Label(Text(plural(len(self._targets), "target") + ":"))
                yield Static(_targets_text(self._targets), classes="dialog-targets")
            with Horizontal(classes="dialog-buttons"):
                yield Button("Cancel", id="cancel", variant="primary")
                yield Button(
                    self._verb, id="confirm", variant="error" if self._danger else "default"
                )

    def on_mount(self) -> None:
        self.query_one("#cancel", Button).focus()

    def confirm(self) -> None:
        self.dismiss(True)


class InputScreen(_Dialog):
    """Ask for a value (a reason, a timeout) before confirming. Dismisses the text, or None.

    `required`: an empty answer is refused with a message, and the dialog stays open."""

    def __init__(
        self,
        title: str,
        targets: Sequence[str],
        verb: str,
        *,
        prompt: str,
        value: str = "",
        required: bool = True,
        number: bool = False,
    ) -> None:
        super().__init__()
        self._title, self._targets, self._verb = title, targets, verb
        self._prompt, self._value, self._required, self._number = prompt, value, required, number
        self._edited = False

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label(Text(self._title), classes="dialog-title")
            if self._targets:
                yield Label(Text(plural(len(self._targets), "target") + ":"))
                yield Static(_targets_text(self._targets), classes="dialog-targets")
            yield Label(Text(self._prompt))
            yield Input(value=self._value, id="answer", type="number" if self._number else "text")
            yield Label(Text(""), id="problem", classes="dialog-problem")
            with Horizontal(classes="dialog-buttons"):
                yield Button("Cancel", id="cancel", variant="primary")
                yield Button(self._verb, id="confirm", variant="error")

    def on_mount(self) -> None:
        # The input, so what is typed lands in it (a reason typed with Cancel focused would
        # press Cancel with its first space). A default value is selected: typing replaces it.
        self.query_one("#answer", Input).focus()

    def on_input_changed(self, event: Input.Changed) -> None:
        self._edited = self._edited or event.value != self._value

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        if self._value and not self._edited:
            # Enter on the untouched default must not act at once (a drain is one stray Enter
            # away otherwise): it moves to the button, and a second Enter confirms.
            self.query_one("#confirm", Button).focus()
            hint = f"Enter again to {self._verb.lower()} with {self._value}, or type another value."
            problem = self.query_one("#problem", Label)
            problem.set_class(True, "-hint")
            problem.update(Text(hint))
            return
        self.confirm()

    def confirm(self) -> None:
        answer = self.query_one("#answer", Input).value.strip()
        problem = self.query_one("#problem", Label)
        problem.set_class(False, "-hint")
        if self._required and not answer:
            problem.update(Text("A value is required."))
            return
        if self._number:
            try:
                seconds = float(answer)
                if not math.isfinite(seconds) or seconds < 0:
                    raise ValueError
            except ValueError:
                problem.update(Text("Enter a number of seconds (0 or more)."))
                return
        self.dismiss(answer)


class LeaveScreen(_Dialog):
    """Leaving the console: detach (the gateway keeps running) or drain and stop."""

    def __init__(self, *, can_stop: bool) -> None:
        super().__init__()
        self._can_stop = can_stop

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label(Text("Leave the console?"), classes="dialog-title")
            lines = ["Detach: the gateway keeps running without the console."]
            if self._can_stop:
                lines.append(
                    "Drain and stop: running turns finish (up to the drain timeout), then the "
                    "gateway stops."
                )
            yield Static(Text("\n".join(lines)))
            with Horizontal(classes="dialog-buttons"):
                yield Button("Cancel", id="cancel", variant="primary")
                yield Button("Detach", id="detach")
                if self._can_stop:
                    yield Button("Drain and stop", id="stop", variant="error")

    def on_mount(self) -> None:
        self.query_one("#cancel", Button).focus()

    def pressed(self, button: str) -> None:
        self.dismiss(None if button == "cancel" else button)

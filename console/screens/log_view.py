"""A job's output, read like `less +F`: it opens at the end, follows new output while there,
and stays where the reader scrolled to. Re-read from the backend once per refresh."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Label

from console.safety import clean
from console.widgets.follow_log import FollowLog

Load = Callable[[], Awaitable[list[str]]]
HINT = "↑↓ PgUp PgDn Home End g G: scroll; at the end it follows. q: close"


class LogScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape,q", "close", "Close")]

    def __init__(self, title: str, load: Load, refresh_every: float) -> None:
        super().__init__()
        self._title, self._load, self._refresh_every = title, load, refresh_every
        self._shown: list[str] | None = None

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog dialog-wide"):
            yield Label(Text(clean(self._title, 100)), classes="dialog-title")
            yield FollowLog(id="log-view", wrap=True)
            yield Label(Text(HINT), classes="dialog-hint")

    async def on_mount(self) -> None:
        self.query_one(FollowLog).focus()
        await self.reload()
        self.set_interval(self._refresh_every, self.reload, name="log-view-refresh")

    async def reload(self) -> None:
        lines = await self._load()
        if lines == self._shown or not self.is_attached:
            return
        self._shown = lines
        shown = [Text(clean(line, 400)) for line in lines] or [Text("(no output)")]
        self.query_one(FollowLog).replace(shown)

    def action_close(self) -> None:
        self.dismiss(None)

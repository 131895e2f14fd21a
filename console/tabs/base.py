"""What every tab is: a pane with its widgets, its refresh and its actions.

The app calls `show(snapshot)` once per tick on the visible tab only. A tab's own keys are
bound on the pane, so they act while the focus is inside it; `why_not` says whether one of
them applies to the current state and selection (the footer, the palette and the help
screen all ask it), and the app adds what holds everywhere (read-only, disconnected).
"""

from __future__ import annotations

from typing import ClassVar, cast

from textual.widgets import TabPane

from console.actions import BY_NAME, Tab, tab_label
from console.host import ConsoleHost
from gateway_core.snapshot import SessionQuery, Snapshot


class ConsoleTab(TabPane):
    TAB: ClassVar[Tab]

    def __init__(self) -> None:
        super().__init__(tab_label(self.TAB), id=self.TAB.value)

    @property
    def host(self) -> ConsoleHost:
        return cast(ConsoleHost, self.app)

    def session_query(self) -> SessionQuery:
        """The sessions this tab needs in a snapshot (most need none, only the counts)."""
        return SessionQuery(limit=0)

    async def show(self, snap: Snapshot) -> None:
        """Refresh from a new snapshot (only called while this tab is visible)."""

    def focus_first(self) -> None:
        """Put the focus where this tab's keys act (its table)."""

    def why_not(self, action: str) -> str | None:
        """Why this tab's action does not apply now, or None if it does."""
        return None

    def offered(self, action: str) -> bool:
        spec = BY_NAME.get(action)
        if spec is None:
            return True
        return self.host.refusal(spec) is None and self.why_not(action) is None

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        return self.offered(action)

"""The command palette: every action the operator may take here, from the same table as the keys."""

from __future__ import annotations

from collections.abc import AsyncIterator
from functools import partial
from typing import TYPE_CHECKING

from textual.command import DiscoveryHit, Hit, Hits, Provider

from console.actions import ACTIONS, TAB_TITLES, TABS

if TYPE_CHECKING:
    from console.app import ConsoleApp


class ConsoleCommands(Provider):
    def _entries(self) -> list[tuple[str, str, str, str | None]]:
        """(title, help, action, tab) of every action allowed here (read-only hides some)."""
        app: ConsoleApp = self.app  # type: ignore[assignment]
        entries = []
        for action in ACTIONS:
            if app.allowed(action.name, anywhere=True):
                entries.append((action.title, action.help, action.name, action.tab))
        for number, tab in enumerate(TABS, start=1):
            entries.append((f"Go to {TAB_TITLES[tab]}", f"key {number}", "", tab))
        return entries

    def _run(self, action: str, tab: str | None) -> None:
        app: ConsoleApp = self.app  # type: ignore[assignment]
        app.run_from_palette(action, tab)

    async def discover(self) -> Hits:
        for title, help_text, action, tab in self._entries():
            yield DiscoveryHit(title, partial(self._run, action, tab), help=help_text)

    async def search(self, query: str) -> AsyncIterator[Hit]:
        matcher = self.matcher(query)
        for title, help_text, action, tab in self._entries():
            score = matcher.match(title)
            if score > 0:
                yield Hit(
                    score, matcher.highlight(title), partial(self._run, action, tab), help=help_text
                )

"""The command palette: what the keys offer right now, from the same table as the keys."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import cast

from textual.command import DiscoveryHit, Hit, Hits, Provider

from console.host import PaletteEntry, PaletteHost


class ConsoleCommands(Provider):
    def _entries(self) -> list[PaletteEntry]:
        return cast(PaletteHost, self.app).palette_entries()

    async def discover(self) -> Hits:
        for entry in self._entries():
            yield DiscoveryHit(entry.title, entry.run, help=entry.help)

    async def search(self, query: str) -> AsyncIterator[Hit]:
        matcher = self.matcher(query)
        for entry in self._entries():
            score = matcher.match(entry.title)
            if score > 0:
                yield Hit(score, matcher.highlight(entry.title), entry.run, help=entry.help)

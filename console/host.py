"""What the tabs and the command palette need from the app, as small protocols.

The tabs and the palette are given the app at run time (`self.app`); typing it as these
protocols instead of `ConsoleApp` keeps them from importing app.py, which imports them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from console.actions import ConsoleAction
from console.backend import Backend
from gateway_core.snapshot import Snapshot

if TYPE_CHECKING:
    from console.operations import Operations


class ConsoleHost(Protocol):
    backend: Backend
    snap: Snapshot | None
    read_only: bool
    refresh_every: float

    @property
    def ops(self) -> Operations: ...

    def refusal(self, action: ConsoleAction) -> str | None:
        """Why an action cannot be offered anywhere right now (read-only, disconnected,
        a dialog open), or None."""
        ...

    def refresh_soon(self) -> None:
        """Take a fresh snapshot now (a filter or an order changed), not at the next tick."""
        ...

    def offered_changed(self) -> None:
        """The selection or the state moved: the footer re-asks what applies."""
        ...


@dataclass(frozen=True, slots=True)
class PaletteEntry:
    title: str
    help: str
    run: Callable[[], None]


class PaletteHost(Protocol):
    def palette_entries(self) -> list[PaletteEntry]:
        """Every action offered right now, and the tabs to go to."""
        ...

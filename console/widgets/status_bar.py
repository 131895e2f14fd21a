"""The one-line header: the gateway's state, its counts, and any alarm, fitted to the width.

Each part has a rank; on a narrow terminal the least needed go first (the title, then the
uptime, the job and queue counts...), so the state, the candidates and every alarm (the
restart-loop guard, a disconnection, read-only, a drain in progress) always stay.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from rich.cells import cell_len
from rich.text import Text
from textual.widgets import Static

from console.durations import duration
from console.link import Link
from gateway_core.snapshot import Snapshot

STATE_CLASSES = {
    "running": "state-running",
    "quiet": "state-quiet",
    "draining": "state-draining",
    "starting": "state-starting",
    "stopped": "state-stopped",
}
KEEP = 0  # a part that is never dropped


@dataclass(frozen=True, slots=True)
class Part:
    text: str
    rank: int  # dropped in decreasing rank order when there is no room
    look: str = ""  # a component class (status-bar--<look>), or plain


def parts(
    snap: Snapshot, *, busy: str | None, read_only: bool, link: Link | None = None
) -> list[Part]:
    counts = snap.counts
    found = [Part(" SWITCHBOARD ", 9, "title")]
    if link is not None and not link.connected:
        # What follows is the last data received: say how old it is, and what happens next.
        now = time.time()
        found.append(Part(" DISCONNECTED ", KEEP, "alarm"))
        lost = "" if link.lost_at is None else f" for {duration(now - link.lost_at)}"
        retry = "" if link.next_try_at is None else duration(max(0.0, link.next_try_at - now))
        found.append(Part(f" gateway gone{lost}; data {duration(now - snap.taken_at)} old", KEEP))
        if retry:
            found.append(Part(f" reconnecting in {retry}", 1))
    else:
        state = STATE_CLASSES.get(snap.state, "state-stopped")
        found.append(Part(f" {snap.state.upper()} ", KEEP, state))
    if snap.run_id is not None:
        found.append(Part(f" run #{snap.run_id} up {duration(snap.uptime)}", 7))
    found += [
        Part(f" sessions {counts.sessions}", 5),
        Part(f" running {counts.running}", 3),
        Part(f" queued {counts.queued}", 6),
        Part(f" candidates {counts.candidates}", KEEP),
    ]
    if counts.suspended:
        found.append(Part(f" suspended {counts.suspended}", 2))
    found.append(Part(f" jobs {counts.processes}", 6))
    if snap.loop_guard_tripped:
        held = 0 if snap.loop_guard is None else len(snap.loop_guard.held)
        found.append(Part(f" RESTART LOOP: {held} held, see tab 3 ", KEEP, "alarm"))
    if busy:
        found.append(Part(f" {busy}… ", KEEP, "busy"))
    if read_only:
        found.append(Part(" READ-ONLY ", KEEP, "read-only"))
    return found


def fit(found: list[Part], width: int) -> list[Part]:
    """Drop the highest ranks until the parts fit `width` (parts of rank 0 always stay)."""
    kept = list(found)
    while sum(cell_len(p.text) + 1 for p in kept) > width:
        droppable = [p for p in kept if p.rank != KEEP]
        if not droppable:
            break
        kept.remove(max(droppable, key=lambda p: p.rank))
    return kept


class StatusBar(Static):
    COMPONENT_CLASSES = {
        "status-bar--title",
        "status-bar--alarm",
        "status-bar--busy",
        "status-bar--read-only",
        *(f"status-bar--{name}" for name in STATE_CLASSES.values()),
    }

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self._parts: list[Part] = []

    def show(
        self, snap: Snapshot, *, busy: str | None, read_only: bool, link: Link | None = None
    ) -> None:
        self._parts = parts(snap, busy=busy, read_only=read_only, link=link)
        self._draw()

    def on_resize(self) -> None:
        self._draw()

    def _draw(self) -> None:
        width = self.size.width or 200  # not laid out yet: everything, cut later
        banner = Text()
        for part in fit(self._parts, width):
            style = self.get_component_rich_style(f"status-bar--{part.look}") if part.look else ""
            banner.append(part.text, style=style)
            banner.append(" ")
        self.update(banner)

"""The one-line header: the gateway's state, its counts, and any alarm."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static

from console.durations import duration
from gateway_core.snapshot import Snapshot

STATE_TONES = {
    "running": "state-running",
    "quiet": "state-quiet",
    "draining": "state-draining",
    "starting": "state-starting",
    "stopped": "state-stopped",
}


class StatusBar(Static):
    COMPONENT_CLASSES = {
        "status-bar--title",
        "status-bar--alarm",
        "status-bar--busy",
        "status-bar--read-only",
        *(f"status-bar--{name}" for name in STATE_TONES.values()),
    }

    def part(self, name: str) -> str:
        return f"status-bar--{name}"

    def show(self, snap: Snapshot, *, busy: str | None, read_only: bool) -> None:
        style = self.get_component_rich_style
        banner = Text()
        banner.append(" SWITCHBOARD ", style=style(self.part("title")))
        state_class = self.part(STATE_TONES.get(snap.state, "state-stopped"))
        banner.append(f" {snap.state.upper()} ", style=style(state_class))
        if snap.run_id is not None:
            banner.append(f"  run #{snap.run_id}  up {duration(snap.uptime)}")
        counts = snap.counts
        banner.append(
            f"  sessions {counts.get('sessions', 0)}  running {counts.get('running', 0)}"
            f"  queued {counts.get('queued', 0)}  candidates {counts.get('candidates', 0)}"
        )
        if counts.get("suspended"):
            banner.append(f"  suspended {counts['suspended']}")
        banner.append(f"  jobs {counts.get('processes', 0)}")
        if snap.loop_guard_tripped:
            held = 0 if snap.loop_guard is None else len(snap.loop_guard.held)
            banner.append(
                f"  RESTART LOOP: {held} held, see 3 Recovery ", style=style(self.part("alarm"))
            )
        if busy:
            banner.append(f"  {busy}… ", style=style(self.part("busy")))
        if read_only:
            banner.append("  READ-ONLY ", style=style(self.part("read-only")))
        self.update(banner)

"""The console's connection to a gateway in another process (`switchboard attach`)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Link:
    """As the console shows it; times are the wall clock's."""

    connected: bool = True
    lost_at: float | None = None  # when the connection ended
    why: str = ""  # why it ended, or why the last try to reconnect failed
    next_try_at: float | None = None

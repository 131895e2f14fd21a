"""How the console ended: the app's return value (None means the app failed)."""

from __future__ import annotations

from enum import StrEnum


class Leave(StrEnum):
    """How the console ended (the app's return value; None means it failed)."""

    DETACH = "detach"  # the gateway keeps running
    STOPPED = "stopped"  # drained and stopped from the console
    SIGNAL = "signal"  # the process was told to stop (SIGTERM, the terminal closed)

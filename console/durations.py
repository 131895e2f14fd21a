"""Every duration on the console's screen, written by one function.

`duration` is the compact form of tables and the header ("59s", "5m00s", "3h17m", "3d4h"):
the value is rounded to the unit shown before it is split, so 299.7 s is "5m00s", never
"4m60s". `coarse=True` is the "last activity" form ("2m ago"), which changes rarely, so
rows are not repainted every second for a clock nobody reads to the second. `spoken` is the
form of sentences ("25 s"), shared with what the gateway tells its users.
"""

from __future__ import annotations

import math

from gateway_core.durations import spoken

__all__ = ["duration", "spoken"]

NONE = "–"


def duration(seconds: float | None, *, coarse: bool = False) -> str:
    if seconds is None or math.isnan(seconds):
        return NONE
    if coarse:
        return _coarse(seconds)
    total = max(0, round(seconds))
    if total < 60:
        return f"{total}s"
    if total < 3600:
        return f"{total // 60}m{total % 60:02d}s"
    minutes = round(total / 60)
    if minutes < 24 * 60:
        return f"{minutes // 60}h{minutes % 60:02d}m"
    hours = round(total / 3600)
    return f"{hours // 24}d{hours % 24}h"


def _coarse(seconds: float) -> str:
    if seconds < 10:
        return "just now"
    if seconds < 60:
        return f"{int(seconds) // 10 * 10}s ago"
    if seconds < 3600:
        return f"{int(seconds) // 60}m ago"
    if seconds < 86400:
        return f"{int(seconds) // 3600}h ago"
    return f"{int(seconds) // 86400}d ago"

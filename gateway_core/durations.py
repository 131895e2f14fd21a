"""A duration in a sentence: "25 s", "1 min 30 s", "2 h 5 min". Rounded before it is split,
so 59.6 s reads "1 min", never "0 min" or "60 s"."""

from __future__ import annotations

import math


def spoken(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "forever"
    total = max(0, round(seconds))
    if total < 60:
        return f"{total} s"
    if total < 3600:
        minutes, rest = divmod(total, 60)
        return f"{minutes} min" + (f" {rest} s" if rest else "")
    total_minutes = round(total / 60)
    hours, minutes = divmod(total_minutes, 60)
    if hours < 24:
        return f"{hours} h" + (f" {minutes} min" if minutes else "")
    days, hours = divmod(round(total / 3600), 24)
    return f"{days} d" + (f" {hours} h" if hours else "")

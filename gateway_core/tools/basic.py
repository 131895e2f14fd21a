"""Small built-in tools that need nothing from the host: time and waiting."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from gateway_core.tools.registry import ToolContext, ToolError, ToolOutcome


class ClockTool:
    name = "clock"
    description = "Current time as epoch seconds."
    parameters: Mapping[str, Any] = {"type": "object", "properties": {}}
    read_only = True

    async def __call__(self, arguments: Mapping[str, Any], context: ToolContext) -> ToolOutcome:
        return ToolOutcome(json.dumps({"now": round(context.clock.now(), 3)}))


class SleepTool:
    """Waits. Not read-only on purpose: it stands in for any slow tool with an effect, so an
    interruption inside it is what an interrupted deploy looks like to recovery."""

    name = "sleep"
    description = "Wait for the given number of seconds (at most 3600)."
    parameters: Mapping[str, Any] = {
        "type": "object",
        "properties": {"seconds": {"type": "number", "minimum": 0, "maximum": 3600}},
        "required": ["seconds"],
    }
    read_only = False

    async def __call__(self, arguments: Mapping[str, Any], context: ToolContext) -> ToolOutcome:
        seconds = arguments.get("seconds")
        if isinstance(seconds, bool) or not isinstance(seconds, int | float):
            raise ToolError("seconds must be a number")
        if not 0 <= seconds <= 3600:
            raise ToolError("seconds must be between 0 and 3600")
        await context.clock.sleep(float(seconds))
        return ToolOutcome(json.dumps({"slept": seconds}))

"""The tool box a turn hands to its agent: names, JSON schemas, and safe execution."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any, Protocol

from gateway_core.clock import Clock
from gateway_core.model import MessageKind, ToolCall
from gateway_core.safe_json import parse_json


@dataclass(frozen=True, slots=True)
class ToolContext:
    session_id: int
    generation: int
    clock: Clock
    # The call being run (set by ToolBox.run): a tool that starts a job records it, so a
    # restart can settle the call from the job's exit status.
    call_id: str | None = None


@dataclass(frozen=True, slots=True)
class ToolOutcome:
    content: str  # short JSON text the model can read
    kind: str = MessageKind.TEXT


class Tool(Protocol):
    name: str
    description: str
    parameters: Mapping[str, Any]  # JSON schema of the arguments object
    # True when calling it again after an interruption cannot change anything. Recovery
    # re-runs read-only calls freely and holds turns interrupted in any other call.
    read_only: bool

    async def __call__(self, arguments: Mapping[str, Any], context: ToolContext) -> ToolOutcome:
        """Run the tool; raise ToolError for a result the model should see as an error."""


class ToolError(Exception):
    """A failure reported to the model as a result (bad arguments, refused action)."""


def error_result(message: str) -> ToolOutcome:
    return ToolOutcome(json.dumps({"error": message}))


class ToolBox:
    def __init__(self, tools: Iterable[Tool] = ()) -> None:
        self._tools: dict[str, Tool] = {tool.name: tool for tool in tools}

    def names(self) -> list[str]:
        return sorted(self._tools)

    def read_only_names(self) -> frozenset[str]:
        return frozenset(name for name, tool in self._tools.items() if tool.read_only)

    def schemas(self) -> list[dict[str, Any]]:
        """Function-tool schemas in the chat-completions format."""
        return [
            {
                "type": "function",
                "function": {
                    "name": tool.name,
                    "description": tool.description,
                    "parameters": dict(tool.parameters),
                },
            }
            for tool in self._tools.values()
        ]

    async def run(self, call: ToolCall, context: ToolContext) -> ToolOutcome:
        """Run one call. Unknown tools, bad JSON and tool failures come back as results."""
        tool = self._tools.get(call.name)
        if tool is None:
            return error_result(f"unknown tool {call.name!r}; available: {', '.join(self.names())}")
        arguments = parse_json(call.arguments or "{}")
        if not isinstance(arguments, dict):
            return error_result("arguments must be a JSON object")
        try:
            return await tool(arguments, replace(context, call_id=call.id))
        except ToolError as error:
            return error_result(str(error))

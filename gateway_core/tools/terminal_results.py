"""What a `terminal` call returns, in one place.

The tool builds its results here, and so does restart recovery when it settles a call that a
restart interrupted from the job's durable exit status: a recovered result reads exactly like
the one the tool would have returned, plus a note saying it was recovered.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

DEFAULT_TIMEOUT = 180.0
MAX_TIMEOUT = 3600.0
OUTPUT_CHARS = 2000

RECOVERED_NOTE = "finished while the gateway was restarting; result recovered from its exit status"


class BadTimeout(ValueError):
    """A timeout argument that is not a positive number of seconds."""


def call_timeout(arguments: Mapping[str, Any]) -> float:
    """The call's timeout in seconds (default 180, at most an hour)."""
    value = arguments.get("timeout", DEFAULT_TIMEOUT)
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise BadTimeout("timeout must be a positive number of seconds")
    return min(float(value), MAX_TIMEOUT)


def timeout_or_default(arguments: object) -> float:
    """call_timeout for arguments read back from a transcript (anything may be there)."""
    if not isinstance(arguments, Mapping):
        return DEFAULT_TIMEOUT
    try:
        return call_timeout(arguments)
    except BadTimeout:
        return DEFAULT_TIMEOUT


def is_background(arguments: object) -> bool:
    return isinstance(arguments, Mapping) and arguments.get("background", False) is True


def finished(exit_code: int | None, state: str, output: str, *, recovered: bool = False) -> str:
    result: dict[str, Any] = {
        "exit_code": exit_code,
        "state": state,
        "output": output[-OUTPUT_CHARS:],
    }
    if recovered:
        result["note"] = RECOVERED_NOTE
    return json.dumps(result)


def timed_out(timeout: float, killed: bool, survivors: object, output: str) -> str:
    return json.dumps(
        {
            "error": f"timed out after {timeout:g} s"
            + ("; killed" if killed else f"; still alive: {survivors}"),
            "output": output[-OUTPUT_CHARS:],
        }
    )


def started(process_id: str, pid: int | None, note: str | None = None) -> str:
    result: dict[str, Any] = {"process_id": process_id, "pid": pid}
    if note:
        result["note"] = note
    return json.dumps(result)

"""The one recovery note a resumed turn carries.

A synthetic resume turn persists the note itself as its user row (kind recovery_note), which
is how the decision recognises "our own note, nothing after it" on a later boot. A real user
message to a session that still has a marker gets the note prepended for the agent only; the
persisted row is the user's own text.
"""

from __future__ import annotations

NOTE_PREFIX = "[System note:"

_CAUSES = {
    "drain": "a gateway restart or shutdown",
    "drain-timeout": "a gateway restart or shutdown",
    "crash": "a gateway crash",
    "operator": "an operator",
}


def _cause(reason: str | None) -> str:
    return _CAUSES.get(reason or "", "a gateway interruption")


def resume_note(reason: str | None) -> str:
    """The whole input of a synthetic resume turn."""
    return (
        f"{NOTE_PREFIX} The previous turn was interrupted by {_cause(reason)}. The gateway is "
        "back online. CONTINUE the interrupted task to completion. Do NOT re-run tool calls "
        "whose results are already in the history; any restart or shutdown command in the "
        "history already ran.]"
    )


def with_note(reason: str | None, user_text: str) -> str:
    """A real user message arriving while the session still has a recovery marker."""
    return (
        f"{NOTE_PREFIX} The previous turn was interrupted by {_cause(reason)}. The gateway is "
        "back online; any restart or shutdown command in the history already ran, do NOT "
        "re-execute or verify it. Address the user's NEW message below FIRST. Do NOT "
        f"re-execute old tool calls.]\n\n{user_text}"
    )

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


# -- what the user is told when their request is not resumed automatically ------------------
#
# Plain text (adapters send no markup), one short message, saying what happened and what to
# do. The request is quoted (shortened) so that in a group the right person recognises it.

QUOTE_CHARS = 60


def quote(request: str | None) -> str:
    """The request as a short quote: its first line, at most QUOTE_CHARS characters."""
    if not request or not request.strip():
        return ""
    line = request.strip().splitlines()[0].strip()
    if len(line) > QUOTE_CHARS:
        line = line[: QUOTE_CHARS - 1].rstrip() + "…"
    return f"“{line}”"


def _subject(request: str | None) -> str:
    quoted = quote(request)
    return f"Your request {quoted}" if quoted else "My work on your last request"


def held_for_review(request: str | None) -> str:
    return (
        f"⚠️ {_subject(request)} was interrupted by a restart. An operator will review it "
        "before I continue."
    )


def not_resumed_stale(request: str | None, age: str) -> str:
    return (
        f"⚠️ {_subject(request)} was interrupted by a restart and not resumed because it was "
        f"{age} old. Send it again if you still need it."
    )


def cleared_by_operator(request: str | None) -> str:
    return (
        f"⚠️ {_subject(request)} was interrupted by a restart, and an operator decided not to "
        "resume it. Send it again if you still need it."
    )


def question_never_asked(request: str | None) -> str:
    about = quote(request)
    return (
        "⚠️ A restart interrupted me before I could ask you something"
        + (f" about {about}" if about else "")
        + ". Reply to continue, or send your request again."
    )

"""Which message an answer in a transcript replied to, in words for the transcript pane.

An answer row names the platform id of the request it answers (reply_to); the request is
quoted from the rows shown when it is among them, else named by its id. Chat text is
untrusted: it goes through clean() like every other transcript text.
"""

from __future__ import annotations

from collections.abc import Sequence

from console.safety import clean
from gateway_core.model import Message

QUOTE_CHARS = 40


def replied_to(answer: Message, shown: Sequence[Message]) -> str | None:
    """ "↩ “quote”" (or "↩ message ID" when the request is not among the shown rows) for an
    answer that names its request; None for every other row."""
    if answer.role != "assistant" or answer.reply_to is None:
        return None
    for row in shown:
        if row.role == "user" and row.platform_message_id == answer.reply_to:
            return f"↩ “{clean(row.content, QUOTE_CHARS)}”"
    return f"↩ message {clean(answer.reply_to, QUOTE_CHARS)}"

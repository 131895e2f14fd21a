"""Reply anchors: which answers are sent as replies to the message they answer.

Every answer knows the platform id of the request it answers (the outbox row's reply_to, see
docs/architecture.md 5.1). Whether it is sent as a reply to it depends on the adapter's mode:

- never: no answer is anchored;
- always: every answer that knows its request is;
- auto: in a group (or a chat of unknown kind) every answer is, because several people talk
  there; in a private chat only an answer that is not the immediate reply to the user's
  newest message (a resumed turn, a notice, a job's news, an answer the user wrote past).

A deleted original never blocks an answer: the adapter sends it loose instead.
"""

from __future__ import annotations

from gateway_core.model import ChatKind, Origin, ReplyAnchorMode
from gateway_core.store import Store


def anchor_to(
    mode: ReplyAnchorMode, chat_kind: ChatKind | None, reply_to: str | None, *, immediate: bool
) -> str | None:
    """The id to send as a reply to (None: a loose message). immediate: the answer is the
    direct reply to the user's newest message."""
    if reply_to is None or mode is ReplyAnchorMode.NEVER:
        return None
    if mode is ReplyAnchorMode.AUTO and chat_kind is ChatKind.PRIVATE and immediate:
        return None
    return reply_to


async def anchor_for(
    store: Store,
    mode: ReplyAnchorMode,
    origin: Origin,
    session_id: int,
    reply_to: str | None,
    *,
    direct: bool,
) -> str | None:
    """anchor_to, reading the session's newest message only when the answer depends on it
    (auto, a private chat, the direct answer of its turn): read at send time, so a message
    the user wrote after the answer was produced still counts."""
    immediate = False
    asks = mode is ReplyAnchorMode.AUTO and origin.chat_kind is ChatKind.PRIVATE
    if asks and direct and reply_to is not None:
        immediate = await store.sessions.last_message_id(session_id) == reply_to
    return anchor_to(mode, origin.chat_kind, reply_to, immediate=immediate)

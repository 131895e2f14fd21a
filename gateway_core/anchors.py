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

from collections.abc import Awaitable, Callable

from gateway_core.model import ChatKind, Origin, ReplyAnchorMode
from gateway_core.store import Store

NewestOf = Callable[[int], Awaitable[str | None]]


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


class NewestMessages:
    """The platform id of each session's newest user message, as intake committed it.

    Durable in the sessions table; kept here too for the sessions this run took messages
    for, so the common case (a private chat's immediate answer) costs no store read per
    reply. A session this run has not heard from is read once from the store."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._known: dict[int, str] = {}

    def saw(self, session_id: int, message_id: str) -> None:
        """Intake committed a newer message of this session."""
        self._known[session_id] = message_id

    async def of(self, session_id: int) -> str | None:
        if session_id in self._known:
            return self._known[session_id]
        stored = await self._store.sessions.last_message_id(session_id)
        if stored is None:
            return None
        # setdefault: a message intake noted while the read ran is newer than what it read.
        return self._known.setdefault(session_id, stored)


async def anchor_for(
    newest: NewestOf,
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
        immediate = await newest(session_id) == reply_to
    return anchor_to(mode, origin.chat_kind, reply_to, immediate=immediate)

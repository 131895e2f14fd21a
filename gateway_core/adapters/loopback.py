"""The loopback platform: in-process users, for the demo and for tests.

It behaves like a real platform where it matters: a message said while intake is stopped
waits (as updates wait on Telegram's server) and is handed over when intake starts again;
sends get message ids; edits and deletes of unknown messages fail. An optional journal file
records every message in and out as JSON lines, flushed at once, so a test can check what
users saw even after the gateway process was killed.

A message a user says has the platform id of its update id (say() returns it); a message the
gateway sends as a reply carries the id it replies to (reply_to), which stays through edits,
as it would on a real platform; a reply to a message the user deleted (forget()) is sent
without it.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from gateway_core.adapters.base import Capabilities, DeliveryError, InboundMessage, IntakeSink
from gateway_core.model import ChatKind, Origin, ReplyAnchorMode

PLATFORM = "loopback"


@dataclass
class ChatMessage:
    """A message as the user sees it now (edits applied; deleted ones flagged)."""

    message_id: str
    chat_id: str
    thread_id: str | None
    text: str
    edits: int = 0
    deleted: bool = False
    reply_to: str | None = None  # the platform id of the message it was sent as a reply to


@dataclass
class LoopbackUser:
    adapter: LoopbackAdapter
    origin: Origin

    async def say(self, text: str) -> str:
        """Send a message to the gateway; returns its update id once it is persisted
        (or queued on the 'server' while intake is stopped)."""
        return await self.adapter.deliver_inbound(self.origin, text)

    def received(self) -> list[ChatMessage]:
        """Messages the gateway sent to this chat/topic, oldest first, deleted ones left out."""
        return [
            m
            for m in self.adapter.messages
            if m.chat_id == self.origin.chat_id
            and m.thread_id == self.origin.thread_id
            and not m.deleted
        ]

    async def wait_for(self, count: int, within: float = 10.0) -> list[ChatMessage]:
        """Wait (at most `within` seconds) until this chat shows at least `count` messages."""
        async with asyncio.timeout(within), self.adapter.watching():
            await self.adapter.changed.wait_for(lambda: len(self.received()) >= count)
        return self.received()


@dataclass
class LoopbackAdapter:
    journal_path: Path | None = None
    platform: str = PLATFORM
    capabilities: Capabilities = field(default_factory=Capabilities)
    reply_anchor: ReplyAnchorMode = ReplyAnchorMode.AUTO
    messages: list[ChatMessage] = field(default_factory=list)
    # Ids of messages users deleted: a reply to one goes out without its anchor.
    forgotten: set[str] = field(default_factory=set)
    changed: asyncio.Condition = field(default_factory=asyncio.Condition)
    _sink: IntakeSink | None = None
    _waiting: list[InboundMessage] = field(default_factory=list)
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    # Update ids are globally unique (a restarted gateway must never mistake a new message
    # for a duplicate of one it persisted before the restart): a random prefix per adapter
    # and a counter, instead of a uuid4 (a getrandom call) per message.
    _update_prefix: str = field(default_factory=lambda: uuid.uuid4().hex)
    _update_ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    _journal: TextIO | None = None
    _failures: list[DeliveryError | None] = field(default_factory=list)  # None: succeed
    _watchers: int = 0  # waiting on `changed` (wait_until, wait_for)

    def __post_init__(self) -> None:
        if self.journal_path is not None:
            self._journal = self.journal_path.open("a", encoding="utf-8")

    def user(
        self,
        chat_id: str,
        thread_id: str | None = None,
        name: str | None = None,
        *,
        group: bool = False,
    ) -> LoopbackUser:
        """A user in a private chat (chat_id is theirs), or with group=True one of the
        people in a group chat (their name is who they are)."""
        kind = ChatKind.GROUP if group else ChatKind.PRIVATE
        user_id = (name or chat_id) if group else chat_id
        origin = Origin(self.platform, chat_id, thread_id, user_id, name, chat_kind=kind)
        return LoopbackUser(self, origin)

    async def wait_until(self, predicate: Callable[[], bool], within: float = 10.0) -> None:
        """Wait (at most `within` s) until predicate holds; re-checked on every send/edit/delete."""
        async with asyncio.timeout(within), self.watching():
            await self.changed.wait_for(predicate)

    @asynccontextmanager
    async def watching(self) -> AsyncIterator[None]:
        """Hold `changed` (to wait on it), counted: a send with nobody watching skips the
        condition's lock (it runs for every message the gateway sends)."""
        self._watchers += 1
        try:
            async with self.changed:
                yield
        finally:
            self._watchers -= 1

    def fail_next(
        self,
        count: int,
        *,
        final: bool = False,
        unknown: bool = False,
        after: int = 0,
        reason: str = "injected",
    ) -> None:
        """Make the next `count` sends/edits/deletes fail, once `after` more have succeeded
        (fault injection for tests). unknown: the failure is an unknown outcome (a timeout),
        though nothing reaches the chat."""
        self._failures.extend(None for _ in range(after))
        self._failures.extend(
            DeliveryError(reason, final=final, outcome_unknown=unknown) for _ in range(count)
        )

    # -- intake ---------------------------------------------------------------------------

    async def start_intake(self, sink: IntakeSink) -> None:
        self._sink = sink
        waiting, self._waiting = self._waiting, []
        if waiting:
            await sink(waiting)

    async def stop_intake(self) -> None:
        self._sink = None

    async def deliver_inbound(self, origin: Origin, text: str) -> str:
        update_id = self._next_update_id()
        message = InboundMessage(self.platform, update_id, origin, text, message_id=update_id)
        if self._journal is not None:  # (its keyword arguments cost a dict per message)
            self._write_journal("in", update_id=update_id, chat=origin.chat_id, text=text)
        if self._sink is None:
            self._waiting.append(message)
        else:
            await self._sink([message])
        return update_id

    async def deliver_batch(self, messages: Sequence[tuple[Origin, str]]) -> list[str]:
        """Several messages in one intake batch (as one getUpdates answer would carry)."""
        ids = [self._next_update_id() for _ in messages]
        batch = [
            InboundMessage(self.platform, i, o, t, message_id=i)
            for i, (o, t) in zip(ids, messages, strict=True)
        ]
        for message, (origin, text) in zip(batch, messages, strict=True):
            self._write_journal("in", update_id=message.update_id, chat=origin.chat_id, text=text)
        if self._sink is None:
            self._waiting.extend(batch)
        else:
            await self._sink(batch)
        return [m.update_id for m in batch]

    # -- outbound -------------------------------------------------------------------------

    def forget(self, message_id: str) -> None:
        """The user deleted a message they sent (an answer to it goes out unanchored)."""
        self.forgotten.add(message_id)

    async def send(self, origin: Origin, text: str, reply_to: str | None = None) -> str | None:
        self._maybe_fail()
        message_id = str(next(self._ids))
        if reply_to in self.forgotten:
            reply_to = None  # sent anyway, as a loose message
        self.messages.append(
            ChatMessage(message_id, origin.chat_id, origin.thread_id, text, reply_to=reply_to)
        )
        if self._journal is not None:
            self._write_journal(
                "out",
                message_id=message_id,
                chat=origin.chat_id,
                thread=origin.thread_id,
                text=text,
                reply_to=reply_to,
            )
        await self._notify()
        return message_id

    async def edit(self, origin: Origin, message_id: str, text: str) -> None:
        self._maybe_fail()
        message = self._find(origin, message_id)
        message.text = text
        message.edits += 1
        self._write_journal("edit", message_id=message_id, chat=origin.chat_id, text=text)
        await self._notify()

    async def delete(self, origin: Origin, message_id: str) -> None:
        self._maybe_fail()
        self._find(origin, message_id).deleted = True
        self._write_journal("delete", message_id=message_id, chat=origin.chat_id)
        await self._notify()

    async def close(self) -> None:
        self._sink = None
        if self._journal is not None:
            self._journal.close()
            self._journal = None

    # -- helpers --------------------------------------------------------------------------

    def _next_update_id(self) -> str:
        return f"{self._update_prefix}-{next(self._update_ids)}"

    def _find(self, origin: Origin, message_id: str) -> ChatMessage:
        for message in self.messages:
            if message.message_id == message_id and message.chat_id == origin.chat_id:
                if message.deleted:
                    break
                return message
        raise DeliveryError(f"message {message_id} not found in chat {origin.chat_id}", final=True)

    def _maybe_fail(self) -> None:
        if self._failures:
            failure = self._failures.pop(0)
            if failure is not None:
                raise failure

    async def _notify(self) -> None:
        if self._watchers:
            async with self.changed:
                self.changed.notify_all()

    def _write_journal(self, direction: str, **fields: object) -> None:
        if self._journal is not None:
            self._journal.write(json.dumps({"dir": direction, **fields}) + "\n")
            self._journal.flush()

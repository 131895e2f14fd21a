"""The "still working" notice of a long turn.

One notifier per running turn, owned by (session, generation). It sends one message and then
edits it in place; it stops with its turn (its task is cancelled and awaited in the turn's
`finally`, before any queued follow-up starts), and it never speaks once a drain has started,
checked again after every await so a notice cannot land after the drain began.

The message is recorded in the store (store/working_notices.py) before it is first sent and
its id as soon as the platform answers, so a failed edit is retried as an edit and never
becomes a second message, and a send whose outcome is unknown is never repeated. A turn that
ends removes its message and the record; a run that dies leaves the record, and the next boot
removes that message once (remove_left_over). A record without an id (the run died while the
platform had not yet answered the send) cannot be acted on: it is dropped with a warning.

The message is anchored to the turn's request as its answer would be (anchors.py); edits keep
that anchor, since an edit changes only the text.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from gateway_core.adapters.base import Adapter, DeliveryError, Typing
from gateway_core.anchors import anchor_for
from gateway_core.events import NotifierFired
from gateway_core.model import Origin, WorkingNotice
from gateway_core.runtime import Runtime
from gateway_core.store import StoreError

log = logging.getLogger(__name__)

TYPING_EVERY = 4.0
# Streamed text is shown by editing one message at most this often (platforms rate-limit
# edits; Telegram allows about one a second per chat).
PREVIEW_EVERY = 2.0
PREVIEW_CHARS = 600
# A turn that answers within this long never shows "typing…": for instant replies the extra
# request cost more than the reply itself (bench/telegram.py: ~12% of the loop, and a new
# connection each time a typing request was cut off by the answer).
TYPING_AFTER = 1.0

# Where a platform cannot delete a dead turn's message, it is edited to say this instead.
INTERRUPTED_TEXT = "⚠️ Interrupted by a restart."


class Spoke(StrEnum):
    SENT = "sent"
    EDITED = "edited"
    HELD = "held"  # nothing said: it could have been a second message, or a drain began


@dataclass
class Notifier:
    session_id: int
    generation: int
    origin: Origin
    interval: float
    started_at: float  # monotonic
    next_fire_at: float  # monotonic
    # The turn that owns it: once that task is done, the notifier never speaks again (even
    # in the instant before its own cancellation is processed).
    owner: asyncio.Task[object] | None = None
    # The request the turn answers, and whether the turn was started by it (anchors.py).
    reply_to: str | None = None
    direct: bool = False
    sent: int = 0
    message_id: str | None = None
    task: asyncio.Task[None] | None = None
    typing_task: asyncio.Task[None] | None = None
    preview_text: str = ""  # streamed answer text so far
    preview_shown: str = ""
    preview_task: asyncio.Task[None] | None = None
    # One send or edit at a time (the preview and the periodic notice share the message),
    # and a send in flight is finished by stop() so its message can be deleted, not orphaned.
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    sending: asyncio.Future[str | None] | None = None
    recorded: bool = False  # its message has a record in the store (begun before the send)
    # Never speak again this turn: a send's outcome is unknown (it may be showing), or the
    # message can no longer be edited. Either way another message could be a second bubble.
    silenced: bool = False


@dataclass(frozen=True, slots=True)
class NotifierView:
    session_id: int
    generation: int
    interval: float
    next_fire_in: float
    sent: int
    conversation: str = ""  # where it speaks: platform:chat[/topic] and user (raw text)


def _conversation(origin: Origin) -> str:
    place = f"{origin.platform}:{origin.chat_id}" + (
        f"/{origin.thread_id}" if origin.thread_id else ""
    )
    return f"{place} {origin.user_name}" if origin.user_name else place


def working_text(elapsed: float) -> str:
    minutes = int(elapsed // 60)
    return f"⏳ Still working — {minutes} min so far"


class Notifiers:
    def __init__(self, runtime: Runtime) -> None:
        self._rt = runtime
        self._active: dict[tuple[int, int], Notifier] = {}

    def start(
        self,
        session_id: int,
        generation: int,
        origin: Origin | None,
        owner: asyncio.Task[object] | None = None,
        *,
        reply_to: str | None = None,
        direct: bool = False,
    ) -> Notifier | None:
        """The notifier of one turn; `owner` is the turn's task (it speaks only while that
        task runs and no drain has begun); reply_to and direct say what its message is
        anchored to, as for the turn's answer."""
        if origin is None or origin.platform not in self._rt.adapters:
            return None
        interval = self._rt.config.notifier.interval
        adapter = self._rt.adapters[origin.platform]
        typer = adapter if adapter.capabilities.typing and isinstance(adapter, Typing) else None
        if interval <= 0 and typer is None:
            return None  # nothing to show: no notifier built (it would be one per turn)
        now = self._rt.clock.monotonic()
        notifier = Notifier(
            session_id,
            generation,
            origin,
            interval,
            now,
            now + interval,
            owner=owner,
            reply_to=reply_to,
            direct=direct,
        )
        loop = asyncio.get_running_loop()
        if typer is not None:
            notifier.typing_task = loop.create_task(
                self._type(notifier, typer), name=f"typing-{session_id}-{generation}"
            )
        if interval > 0:
            notifier.task = loop.create_task(
                self._run(notifier), name=f"notifier-{session_id}-{generation}"
            )
        self._active[(session_id, generation)] = notifier
        return notifier

    async def stop(self, notifier: Notifier | None) -> None:
        """Stop and await the notifier, then remove its bubble (the answer replaces it)."""
        if notifier is None:
            return
        self._active.pop((notifier.session_id, notifier.generation), None)
        tasks = [
            t for t in (notifier.task, notifier.typing_task, notifier.preview_task) if t is not None
        ]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if notifier.sending is not None:
            # A send was cut off by the cancel but may have reached the chat: learn its id.
            sent = await asyncio.gather(notifier.sending, return_exceptions=True)
            if isinstance(sent[0], str):
                notifier.message_id = sent[0]
        removed = True
        if notifier.message_id is not None:
            adapter = self._rt.adapters[notifier.origin.platform]
            if adapter.capabilities.delete:
                removed = await _remove(adapter, notifier.origin, notifier.message_id)
        if notifier.recorded and removed:  # else the record stays: the next boot tries again
            await self._forget(notifier.session_id, notifier.generation)

    async def remove_left_over(self, notices: Sequence[WorkingNotice]) -> None:
        """At boot: remove the messages of turns the previous run left "still working".

        Each is removed once: its record goes right after, and a second try after a crash in
        between finds the message gone, which counts as removed."""
        for notice in notices:
            if await self._remove_left_over(notice):
                await self._forget(notice.session_id, notice.generation)

    async def _remove_left_over(self, notice: WorkingNotice) -> bool:
        """True when nothing more can be done about it (removed, or impossible)."""
        origin = notice.origin
        adapter = None if origin is None else self._rt.adapters.get(origin.platform)
        if origin is None or adapter is None or notice.message_id is None:
            log.warning(
                "a still-working message of session %s (turn %s) may still be showing: the "
                "previous run died before it learned its message id",
                notice.session_id,
                notice.generation,
            )
            return True
        log.info("removing a still-working message of session %s", notice.session_id)
        if adapter.capabilities.delete:
            return await _remove(adapter, origin, notice.message_id)
        if adapter.capabilities.edit:
            try:
                await adapter.edit(origin, notice.message_id, INTERRUPTED_TEXT)
            except DeliveryError as error:
                log.info("could not mark a still-working message as interrupted: %s", error)
                return error.final
        return True

    async def _forget(self, session_id: int, generation: int) -> None:
        try:
            await self._rt.store.working_notices.end(session_id, generation)
        except StoreError as error:  # a stuck record costs one more removal try at boot
            log.warning("could not forget a still-working message: %s", error)

    def preview(self, notifier: Notifier, text: str) -> None:
        """The agent streamed more of its answer: show it (throttled) in the notice."""
        notifier.preview_text = text
        if notifier.preview_task is None:
            notifier.preview_task = asyncio.get_running_loop().create_task(
                self._show_previews(notifier),
                name=f"preview-{notifier.session_id}-{notifier.generation}",
            )

    async def _show_previews(self, notifier: Notifier) -> None:
        clock = self._rt.clock
        # A quick answer needs no preview: a notice sent and deleted again is only noise.
        await clock.sleep(max(0.0, TYPING_AFTER - (clock.monotonic() - notifier.started_at)))
        while self._allowed(notifier):
            if notifier.preview_text != notifier.preview_shown:
                notifier.preview_shown = notifier.preview_text
                try:
                    await self._say(notifier, self._text(notifier))
                except DeliveryError as error:
                    log.info("streamed preview not shown: %s", error)
            await clock.sleep(PREVIEW_EVERY)

    def _text(self, notifier: Notifier) -> str:
        text = working_text(self._rt.clock.monotonic() - notifier.started_at)
        if notifier.preview_shown:
            tail = notifier.preview_shown[-PREVIEW_CHARS:]
            text += "\n\n" + ("…" if len(notifier.preview_shown) > PREVIEW_CHARS else "") + tail
        return text

    async def _say(self, notifier: Notifier, text: str) -> Spoke:
        """Send the notice once, then only ever edit that one message. Raises DeliveryError
        (a failed edit is simply tried again next time, as an edit)."""
        adapter = self._rt.adapters[notifier.origin.platform]
        store = self._rt.store
        async with notifier.lock:
            if notifier.silenced:
                return Spoke.HELD
            if notifier.message_id is not None and adapter.capabilities.edit:
                try:
                    await adapter.edit(notifier.origin, notifier.message_id, text)
                except DeliveryError as error:
                    if error.final:  # gone or no longer editable
                        notifier.silenced = True
                    raise
                return Spoke.EDITED
            if not notifier.recorded:
                notifier.recorded = True
                await store.working_notices.begin(
                    notifier.session_id, notifier.generation, notifier.origin
                )
                if not self._allowed(notifier):  # a drain may have begun during the commit
                    return Spoke.HELD
            anchor = await anchor_for(
                store.sessions.last_message_id,  # once per long turn: read it from the store
                adapter.reply_anchor,
                notifier.origin,
                notifier.session_id,
                notifier.reply_to,
                direct=notifier.direct,
            )
            if not self._allowed(notifier):
                return Spoke.HELD
            notifier.sending = asyncio.ensure_future(adapter.send(notifier.origin, text, anchor))
            try:
                notifier.message_id = await asyncio.shield(notifier.sending)
            except DeliveryError as error:
                if error.outcome_unknown:  # it may be showing: never send a second one
                    notifier.silenced = True
                raise
            notifier.sending = None
            await store.working_notices.shown(
                notifier.session_id, notifier.generation, notifier.message_id
            )
            return Spoke.SENT

    def views(self) -> list[NotifierView]:
        now = self._rt.clock.monotonic()
        return [
            NotifierView(
                n.session_id,
                n.generation,
                n.interval,
                n.next_fire_at - now,
                n.sent,
                _conversation(n.origin),
            )
            for n in self._active.values()
            if n.task is not None
        ]

    async def _type(self, notifier: Notifier, adapter: Typing) -> None:
        """Keep "typing…" showing while the turn runs (platforms show it for ~5 s a call)."""
        await self._rt.clock.sleep(TYPING_AFTER)
        while self._allowed(notifier):
            try:
                await adapter.typing(notifier.origin)
            except DeliveryError as error:
                log.debug("typing indicator not shown: %s", error)
            await self._rt.clock.sleep(TYPING_EVERY)

    def _allowed(self, notifier: Notifier) -> bool:
        owner = notifier.owner
        return not self._rt.draining and (owner is None or not owner.done())

    async def _run(self, notifier: Notifier) -> None:
        clock = self._rt.clock
        while True:
            await clock.sleep(notifier.next_fire_at - clock.monotonic())
            if not self._allowed(notifier):
                return  # a false check ends the notifier, it does not just skip a beat
            try:
                spoke = await self._say(notifier, self._text(notifier))
            except DeliveryError as error:
                log.info("still-working notice not delivered: %s", error)
            else:
                if spoke is not Spoke.HELD:
                    notifier.sent += 1
                    edited = spoke is Spoke.EDITED
                    self._rt.events.publish(
                        NotifierFired(
                            clock.now(),
                            notifier.session_id,
                            notifier.generation,
                            notifier.sent,
                            edited,
                        )
                    )
            notifier.next_fire_at += notifier.interval


async def _remove(adapter: Adapter, origin: Origin, message_id: str) -> bool:
    """Delete a still-working message; True unless a later try could still succeed."""
    try:
        await adapter.delete(origin, message_id)
    except DeliveryError as error:
        log.info("could not remove a still-working notice: %s", error)
        return error.final  # final: it cannot be removed (already gone, or not allowed)
    return True

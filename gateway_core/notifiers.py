"""The "still working" notice of a long turn.

One notifier per running turn, owned by (session, generation). It sends one message and then
edits it in place; it stops with its turn (its task is cancelled and awaited in the turn's
`finally`, before any queued follow-up starts), and it never speaks once a drain has started,
checked again after every await so a notice cannot land after the drain began.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from gateway_core.adapters.base import DeliveryError, Typing
from gateway_core.events import NotifierFired
from gateway_core.model import Origin
from gateway_core.runtime import Runtime

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

# (session_id, generation) -> may this turn's notifier speak now?
OwnershipCheck = Callable[[int, int], bool]


@dataclass
class Notifier:
    session_id: int
    generation: int
    origin: Origin
    interval: float
    started_at: float  # monotonic
    next_fire_at: float  # monotonic
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
    def __init__(self, runtime: Runtime, may_speak: OwnershipCheck) -> None:
        self._rt = runtime
        self._may_speak = may_speak
        self._active: dict[tuple[int, int], Notifier] = {}

    def start(self, session_id: int, generation: int, origin: Origin | None) -> Notifier | None:
        if origin is None or origin.platform not in self._rt.adapters:
            return None
        interval = self._rt.config.notifier.interval
        now = self._rt.clock.monotonic()
        notifier = Notifier(session_id, generation, origin, interval, now, now + interval)
        loop = asyncio.get_running_loop()
        adapter = self._rt.adapters[origin.platform]
        if adapter.capabilities.typing and isinstance(adapter, Typing):
            notifier.typing_task = loop.create_task(
                self._type(notifier, adapter), name=f"typing-{session_id}-{generation}"
            )
        if interval <= 0:
            if notifier.typing_task is None:
                return None
        else:
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
        if notifier.message_id is not None:
            adapter = self._rt.adapters[notifier.origin.platform]
            if adapter.capabilities.delete:
                try:
                    await adapter.delete(notifier.origin, notifier.message_id)
                except DeliveryError as error:
                    log.info("could not remove a still-working notice: %s", error)

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

    async def _say(self, notifier: Notifier, text: str) -> bool:
        """Send the notice, or edit it in place; True when it was an edit."""
        adapter = self._rt.adapters[notifier.origin.platform]
        async with notifier.lock:
            if notifier.message_id is not None and adapter.capabilities.edit:
                try:
                    await adapter.edit(notifier.origin, notifier.message_id, text)
                    return True
                except DeliveryError:
                    # The edit failed; a drain may have started while we awaited it.
                    if not self._allowed(notifier):
                        raise
            notifier.sending = asyncio.ensure_future(adapter.send(notifier.origin, text))
            notifier.message_id = await asyncio.shield(notifier.sending)
            notifier.sending = None
            return False

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
        return not self._rt.draining and self._may_speak(notifier.session_id, notifier.generation)

    async def _run(self, notifier: Notifier) -> None:
        clock = self._rt.clock
        while True:
            await clock.sleep(notifier.next_fire_at - clock.monotonic())
            if not self._allowed(notifier):
                return  # a false check ends the notifier, it does not just skip a beat
            try:
                edited = await self._say(notifier, self._text(notifier))
            except DeliveryError as error:
                log.info("still-working notice not delivered: %s", error)
            else:
                notifier.sent += 1
                self._rt.events.publish(
                    NotifierFired(
                        clock.now(), notifier.session_id, notifier.generation, notifier.sent, edited
                    )
                )
            notifier.next_fire_at += notifier.interval

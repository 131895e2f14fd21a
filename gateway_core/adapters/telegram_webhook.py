"""Telegram intake by webhook: Telegram POSTs each update to us instead of us polling.

    start   accept pushed updates at once (a webhook kept from the last run delivers as soon as
            we listen), and register the webhook in the background: setWebhook with the URL,
            the secret token, allowed_updates and max_connections, retried with backoff until
            it succeeds. Intake counts as unreachable for readiness until then.
    receive validate the update like a polled one (a malformed update is recorded as skipped,
            never stalls anything) and commit it to the inbox; only then does the HTTP side
            answer 200. A crash before the commit gets no 200, so Telegram redelivers; a
            redelivery of a committed update is a no-op (the inbox's unique update id).
    stop    refuse new updates (the HTTP side answers 503 so Telegram retries later), wait for
            the ones being committed, then keep the webhook registered or delete it
            (telegram.webhook_on_stop). Kept, Telegram holds and retries what arrives while we
            are down; deleted, it holds updates for the next setWebhook or getUpdates.
            Pending updates are never dropped.

The HTTP endpoint itself (secret check, size limit, JSON) is gateway_core/service/webhook.py.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
from aiogram import Bot
from aiogram.exceptions import ClientDecodeError, TelegramAPIError

from gateway_core.adapters.base import InboundMessage, IntakeHealth, IntakeSink
from gateway_core.clock import Clock
from gateway_core.config import WebhookOnStop

log = logging.getLogger(__name__)

ALLOWED_UPDATES = ["message"]  # the only kind the adapter turns into turns


class IntakeClosed(Exception):
    """The webhook is not taking updates now (not started yet, or stopping)."""


@dataclass(frozen=True, slots=True)
class WebhookRegistration:
    url: str
    secret: str
    max_connections: int = 40
    on_stop: WebhookOnStop = WebhookOnStop.KEEP


class WebhookIntake:
    def __init__(
        self,
        bot: Bot,
        registration: WebhookRegistration,
        *,
        clock: Clock,
        to_inbound: Callable[[Any], InboundMessage],
        scrub: Callable[[str], str],
        backoff: Callable[[int], float],
    ) -> None:
        self.registration = registration
        self._bot = bot
        self._clock = clock
        self._to_inbound = to_inbound
        self._scrub = scrub
        self._backoff = backoff
        self._sink: IntakeSink | None = None
        self._accepting = False
        self._in_flight = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self._registering: asyncio.Task[None] | None = None
        self._health = IntakeHealth(False, "intake not started")

    @property
    def accepting(self) -> bool:
        return self._accepting

    def health(self) -> IntakeHealth:
        return self._health

    async def start(self, sink: IntakeSink) -> None:
        self._sink = sink
        self._accepting = True
        self._health = IntakeHealth(False, "registering the webhook")
        self._registering = asyncio.get_running_loop().create_task(
            self._register(), name="telegram-set-webhook"
        )

    async def receive(self, raw: Any) -> None:
        """Commit one pushed update to the inbox. IntakeClosed when not taking updates; the
        sink's error (the store failing) when it could not be committed."""
        if not self._accepting or self._sink is None:
            raise IntakeClosed()
        self._in_flight += 1
        self._idle.clear()
        try:
            await self._sink([self._to_inbound(raw)])
        finally:
            self._in_flight -= 1
            if self._in_flight == 0:
                self._idle.set()

    async def stop(self) -> None:
        """Refuse new updates, let the ones being committed finish, then keep or delete."""
        if not self._accepting:
            return
        self._accepting = False
        if self._registering is not None:
            self._registering.cancel()
            await asyncio.gather(self._registering, return_exceptions=True)
            self._registering = None
        await self._idle.wait()  # a commit under way gets its 200
        self._health = IntakeHealth(False, "intake stopped")
        if self.registration.on_stop is WebhookOnStop.DELETE:
            try:
                await self._bot.delete_webhook(drop_pending_updates=False)
                log.info("telegram: webhook deleted (telegram.webhook_on_stop = delete)")
            except (TelegramAPIError, ClientDecodeError, aiohttp.ClientError, TimeoutError) as e:
                log.warning("telegram: could not delete the webhook: %s", self._scrub(str(e)))

    async def _register(self) -> None:
        registration = self.registration
        failures = 0
        while True:
            try:
                await self._bot.set_webhook(
                    registration.url,
                    secret_token=registration.secret,
                    allowed_updates=ALLOWED_UPDATES,
                    max_connections=registration.max_connections,
                    drop_pending_updates=False,
                )
            except (TelegramAPIError, ClientDecodeError, aiohttp.ClientError, TimeoutError) as e:
                failures += 1
                reason = self._scrub(str(e))
                log.warning("telegram: setWebhook failed (%s); retrying", reason)
                self._health = IntakeHealth(
                    False, f"setWebhook failed {failures} time(s): {reason}"
                )
                await self._clock.sleep(self._backoff(failures))
                continue
            self._health = IntakeHealth(True, f"webhook registered at {registration.url}")
            log.info("telegram: webhook registered at %s", registration.url)
            return

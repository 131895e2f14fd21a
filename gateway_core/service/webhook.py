"""The Telegram webhook endpoint: POST <path of telegram.webhook_url>, one update per request.

Checked in this order, so that nothing is read or stored for a request that fails a check:

    401  X-Telegram-Bot-Api-Secret-Token missing or wrong (compared in constant time)
    503  intake is not taking updates: the gateway is starting, draining or stopped (while
         quiet updates are still taken and stored). Telegram retries later, so a drain loses
         nothing and the next instance gets them.
    413  the body is larger than telegram.webhook_max_body
    400  the body is not JSON
    500  the update could not be committed (the store failed): Telegram retries it
    200  the update is committed to the inbox (telegram_webhook.py), or it was a redelivery of
         one already there. A body that is JSON but not a valid update is recorded as skipped
         and also answered 200: asking Telegram to retry it would only repeat it forever.

Every answer is counted by status (switchboard_webhook_requests_total).
"""

from __future__ import annotations

import hmac
import json
import logging
from collections import Counter
from collections.abc import Callable

from aiohttp import web

from gateway_core.adapters.telegram import PLATFORM
from gateway_core.adapters.telegram_webhook import IntakeClosed, WebhookIntake

log = logging.getLogger(__name__)

SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"


class TelegramWebhook:
    def __init__(
        self,
        intake: WebhookIntake,
        *,
        path: str,
        max_body: int,
        gateway_accepts: Callable[[], bool],
    ) -> None:
        self.path = path
        self.max_body = max_body
        self._intake = intake
        self._secret = intake.registration.secret.encode()
        self._gateway_accepts = gateway_accepts
        self.answered: Counter[int] = Counter()

    def routes(self) -> list[web.RouteDef]:
        return [web.post(self.path, self._handle)]

    def tally(self) -> dict[tuple[str, int], int]:
        return {(PLATFORM, status): count for status, count in self.answered.items()}

    async def _handle(self, request: web.Request) -> web.Response:
        response = await self._answer(request)
        self.answered[response.status] += 1
        return response

    async def _answer(self, request: web.Request) -> web.Response:
        given = request.headers.get(SECRET_HEADER, "").encode()
        if not hmac.compare_digest(given, self._secret):
            return _status(401, "wrong or missing secret token")
        if not (self._gateway_accepts() and self._intake.accepting):
            return _status(503, "not taking updates now; retry later")
        if request.content_length is not None and request.content_length > self.max_body:
            return _status(413, f"body over {self.max_body} bytes")
        try:
            body = await request.read()  # bounded by the app's client_max_size (= max_body)
        except web.HTTPRequestEntityTooLarge:
            return _status(413, f"body over {self.max_body} bytes")
        try:
            update = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            return _status(400, "the body is not JSON")
        try:
            await self._intake.receive(update)
        except IntakeClosed:
            return _status(503, "not taking updates now; retry later")
        except Exception as error:  # the store failed: no 200, so Telegram sends it again
            log.error("telegram webhook: could not store an update (%s); answered 500", error)
            return _status(500, "could not store the update; retry later")
        return web.Response(status=200)


def _status(code: int, reason: str) -> web.Response:
    return web.json_response({"ok": code == 200, "description": reason}, status=code)

"""Which HTTP listeners a configured gateway has, and what each serves.

    http.listen              /healthz and /readyz (probes.py), /metrics (metrics.py), and the
                             Telegram webhook unless it has a listener of its own
    telegram.webhook_listen  the Telegram webhook only (webhook mode)

The webhook's path is the path of telegram.webhook_url (a reverse proxy in front forwards it
unchanged). Listeners start before the gateway boots, so probes answer "starting" meanwhile
and a webhook kept from the last run finds us listening (it gets 503 until intake starts), and
close after the gateway has stopped.
"""

from __future__ import annotations

from collections.abc import Sequence
from urllib.parse import urlsplit

from aiohttp import web

from gateway_core.adapters.base import Adapter
from gateway_core.adapters.telegram import TelegramAdapter
from gateway_core.config import Config, ListenAddress
from gateway_core.gateway import Gateway
from gateway_core.runtime import GatewayState
from gateway_core.service.http_server import HttpListener
from gateway_core.service.metrics import LAG_INTERVAL, GatewayMetrics
from gateway_core.service.probes import REUSE_SECONDS, Probes
from gateway_core.service.webhook import TelegramWebhook

TAKES_UPDATES = (GatewayState.RUNNING, GatewayState.QUIET)


class HttpSurface:
    def __init__(
        self,
        config: Config,
        gateway: Gateway,
        adapters: Sequence[Adapter],
        *,
        probe_reuse: float = REUSE_SECONDS,
        lag_interval: float = LAG_INTERVAL,
    ) -> None:
        self.probes = Probes(gateway, adapters, reuse_for=probe_reuse)
        self.metrics: GatewayMetrics | None = None
        self.webhook: TelegramWebhook | None = None
        self.listeners: list[HttpListener] = []
        settings = config.telegram
        for adapter in adapters:
            if isinstance(adapter, TelegramAdapter) and adapter.webhook is not None:
                self.webhook = TelegramWebhook(
                    adapter.webhook,
                    path=urlsplit(adapter.webhook.registration.url).path or "/",
                    max_body=settings.webhook_max_body,
                    gateway_accepts=lambda: gateway.state in TAKES_UPDATES,
                )
        webhook_apart = self.webhook is not None and settings.webhook_listen is not None
        if config.http.listen is not None:
            self.metrics = GatewayMetrics(
                gateway,
                [adapter.platform for adapter in adapters],
                platform_health=self.probes.platforms,
                webhook_tally=None if self.webhook is None else self.webhook.tally,
                lag_interval=lag_interval,
            )
            routes = [*self.probes.routes(), *self.metrics.routes()]
            if self.webhook is not None and not webhook_apart:
                routes += self.webhook.routes()
            self._listen(config.http.listen, routes, "http.listen")
        if self.webhook is not None and settings.webhook_listen is not None:
            self._listen(settings.webhook_listen, self.webhook.routes(), "telegram.webhook_listen")

    def _listen(self, address: ListenAddress, routes: list[web.RouteDef], setting: str) -> None:
        # Only the webhook takes a body; the limit is its own (413 above it).
        limit = 1024**2 if self.webhook is None else self.webhook.max_body
        app = web.Application(client_max_size=limit)
        app.add_routes(routes)
        self.listeners.append(HttpListener(address, app, setting=setting))

    @classmethod
    def for_config(
        cls, config: Config, gateway: Gateway, adapters: Sequence[Adapter]
    ) -> HttpSurface | None:
        """None when nothing is to be served over HTTP (the default)."""
        surface = cls(config, gateway, adapters)
        return surface if surface.listeners else None

    @property
    def base_url(self) -> str:
        """http://host:port of the first TCP listener (for tests and the README's curl)."""
        for listener in self.listeners:
            if listener.port is not None:
                return f"http://{listener.bound}"
        raise RuntimeError("no TCP listener is started")

    async def start(self) -> None:
        if self.metrics is not None:
            await self.metrics.start()
        try:
            for listener in self.listeners:
                await listener.start()
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        for listener in self.listeners:
            await listener.close()
        if self.metrics is not None:
            await self.metrics.close()

"""`switchboard run`, `switchboard console` and `switchboard attach`: wiring, no logic.

run and console build the configured gateway (Telegram, the configured agent) as a
GatewayService; console also shows the ConsoleApp in-process. attach shows the same app over
the control socket; leaving it only disconnects.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Mapping
from pathlib import Path

from console.log_setup import log_to_file
from gateway_core.clock import SystemClock
from gateway_core.config import Config
from gateway_core.control import Via
from gateway_core.log_ring import LogRing
from gateway_core.runtime import GatewayState
from gateway_core.service.json_log import JsonFormatter, configure_json_logging
from gateway_core.service.sdnotify import SystemdNotifier
from gateway_core.store_choice import dsn_secrets, store_dsn

EXIT_FAILURE = 1


class RedactingFormatter(logging.Formatter):
    """Plain log lines with the same secret redaction as the JSON log."""

    def __init__(self, redactor: JsonFormatter) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s: %(message)s")
        self._redactor = redactor

    def format(self, record: logging.LogRecord) -> str:
        return self._redactor.redact(super().format(record))


async def serve(
    config: Config, env: Mapping[str, str], *, console: bool, read_only: bool, mouse: bool
) -> int:
    # Here, not at the top: aiogram takes seconds to import, and attach (a browser tab's
    # console, each time) needs none of it.
    from gateway_core.adapters.factory import telegram_from_config
    from gateway_core.agents.factory import agent_from_config
    from gateway_core.service.runner import GatewayService

    dsn = store_dsn(config, env)  # ConfigError (exit 78) when the variable is not set
    secrets = [
        env.get(config.telegram.token_env, ""),
        env.get(config.telegram.webhook_secret_env, ""),
        env.get(config.agent.api_key_env, ""),
        *dsn_secrets(dsn),
    ]
    # The ring is served over the socket and shown in the console: redacted like the JSON log.
    redactor = JsonFormatter([s for s in secrets if s])
    ring = LogRing(redact=redactor.redact)
    ring.setFormatter(RedactingFormatter(redactor))
    if console:
        log_to_file(
            config.log.file or config.gateway.state_dir / "gateway.log",
            config.log.level,
            RedactingFormatter(redactor),
        )
    else:
        configure_json_logging(config.log.level, config.log.file, [s for s in secrets if s])
    logging.getLogger().addHandler(ring)
    clock = SystemClock()
    adapters = [telegram_from_config(config, env, clock)]
    service = GatewayService(
        config,
        agent=agent_from_config(config, env),
        adapters=adapters,
        notifier=SystemdNotifier.from_environment(env),
        clock=clock,
        ring=ring,
        exit_to_restart=not console,
        store_dsn=dsn,
    )
    service.install_signal_handlers()
    await service.start()
    if console:
        # Imported only here: `switchboard run` never shows the console, and importing
        # Textual and the app would delay its first poll (bench/restart.py).
        from console.app import ConsoleApp
        from console.backend import InProcessBackend
        from console.leaving import Leave

        app = ConsoleApp(InProcessBackend(service.gateway, read_only=read_only, log=ring))
        outcome = await app.run_async(mouse=mouse)
        if service.gateway.state is not GatewayState.STOPPED:
            why = "detached" if outcome is Leave.DETACH else "the console stopped"
            print(f"Console {why}; the gateway keeps running. Ctrl+C (or SIGTERM) drains it.")
    return await service.wait()


async def attach(socket: Path, *, read_only: bool, mouse: bool, via: Via | None = None) -> int:
    from console.app import ConsoleApp
    from console.attach import ControlError, SocketBackend

    try:
        backend = await SocketBackend.connect(socket, read_only=read_only, via=via)
    except ControlError as error:
        print(f"switchboard: {error}", file=sys.stderr)
        return EXIT_FAILURE
    try:
        await ConsoleApp(backend, attached=True).run_async(mouse=mouse)
    finally:
        await backend.close()
    return 0

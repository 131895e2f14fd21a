"""Building the configured platform adapters. Secrets come from the environment, by name."""

from __future__ import annotations

from collections.abc import Mapping

from aiogram.utils.token import TokenValidationError

from gateway_core.adapters.telegram import TelegramAdapter
from gateway_core.clock import Clock
from gateway_core.config import Config, ConfigError


def telegram_from_config(config: Config, env: Mapping[str, str], clock: Clock) -> TelegramAdapter:
    """The Telegram adapter, or ConfigError (exit 78) naming the variable, never the token."""
    settings = config.telegram
    token = env.get(settings.token_env, "").strip()
    source = f"environment {settings.token_env} (telegram.token_env)"
    if not token:
        raise ConfigError(f"{source}: not set; it must hold the bot token")
    try:
        return TelegramAdapter(
            token,
            api_base=settings.api_base,
            allowed_users=settings.allowed_users,
            clock=clock,
            poll_timeout=settings.poll_timeout,
        )
    except TokenValidationError:
        raise ConfigError(f"{source}: not a bot token (expected <digits>:<secret>)") from None

"""Building the configured platform adapters. Secrets come from the environment, by name."""

from __future__ import annotations

import re
from collections.abc import Mapping

from aiogram.utils.token import TokenValidationError

from gateway_core.adapters.telegram import TelegramAdapter
from gateway_core.adapters.telegram_webhook import WebhookRegistration
from gateway_core.clock import Clock
from gateway_core.config import Config, ConfigError, TelegramMode

# What Telegram accepts as setWebhook's secret_token.
WEBHOOK_SECRET = re.compile(r"[A-Za-z0-9_-]{1,256}")


def telegram_from_config(config: Config, env: Mapping[str, str], clock: Clock) -> TelegramAdapter:
    """The Telegram adapter, or ConfigError (exit 78) naming the variable, never the token."""
    settings = config.telegram
    token = env.get(settings.token_env, "").strip()
    source = f"environment {settings.token_env} (telegram.token_env)"
    if not token:
        raise ConfigError(f"{source}: not set; it must hold the bot token")
    webhook = _webhook(config, env) if settings.mode is TelegramMode.WEBHOOK else None
    try:
        return TelegramAdapter(
            token,
            api_base=settings.api_base,
            allowed_users=settings.allowed_users,
            clock=clock,
            poll_timeout=settings.poll_timeout,
            webhook=webhook,
            reply_anchor=settings.reply_anchor,
        )
    except TokenValidationError:
        raise ConfigError(f"{source}: not a bot token (expected <digits>:<secret>)") from None


def _webhook(config: Config, env: Mapping[str, str]) -> WebhookRegistration:
    """The webhook to register; its secret is required (an open webhook takes anyone's
    updates) and named, never shown, in errors."""
    settings = config.telegram
    secret = env.get(settings.webhook_secret_env, "").strip()
    source = f"environment {settings.webhook_secret_env} (telegram.webhook_secret_env)"
    if not secret:
        raise ConfigError(f"{source}: not set; webhook mode needs a secret token")
    if not WEBHOOK_SECRET.fullmatch(secret):
        raise ConfigError(f"{source}: 1-256 characters of A-Z, a-z, 0-9, _ and - only")
    return WebhookRegistration(
        settings.webhook_url,
        secret,
        max_connections=settings.webhook_max_connections,
        on_stop=settings.webhook_on_stop,
    )

"""The Telegram adapter is configured from the environment variable the config names."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway_core.adapters.factory import telegram_from_config
from gateway_core.clock import ManualClock
from gateway_core.config import ConfigError
from tests.support.harness import make_config

SECRET = "123456:AAH-very-secret-value"


async def test_the_token_comes_from_the_named_variable(tmp_path: Path) -> None:
    config = make_config(tmp_path / "s", telegram={"token_env": "MY_BOT", "allowed_users": [7]})
    adapter = telegram_from_config(config, {"MY_BOT": SECRET}, ManualClock())
    try:
        assert adapter.bot.id == 123456
    finally:
        await adapter.close()


@pytest.mark.parametrize("value", ["", "   ", "not-a-token", "12:has space"])
def test_a_missing_or_malformed_token_is_a_config_error_that_never_shows_it(
    tmp_path: Path, value: str
) -> None:
    config = make_config(tmp_path / "s", telegram={"token_env": "MY_BOT"})
    with pytest.raises(ConfigError) as caught:
        telegram_from_config(config, {"MY_BOT": value}, ManualClock())
    message = str(caught.value)
    assert "MY_BOT" in message and "telegram.token_env" in message
    if value.strip():
        assert value.strip() not in message

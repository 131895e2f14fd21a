"""A config and environment for running the real `switchboard` service commands in tests:
Telegram pointed at the fake Bot API, the scripted agent, the state dir in tmp_path."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path

from tests.support.fake_bot_api import DEFAULT_TOKEN, FakeBotAPI

REPO = Path(__file__).resolve().parent.parent.parent
CHAT = 7001  # the one allowed Telegram user/chat


def write_config(
    tmp_path: Path,
    fake: FakeBotAPI,
    *,
    telegram: Mapping[str, object] | None = None,
    sections: Mapping[str, Mapping[str, object]] | None = None,
    **gateway: object,
) -> Path:
    """[gateway] keys as keyword arguments; more [telegram] keys, and other sections, as
    mappings (values written as TOML: strings quoted)."""
    state = tmp_path / "state"
    settings = {"drain_timeout": 10, "grace": 0.5, "sample_interval": 0} | gateway
    lines = ["[gateway]", f'state_dir = "{state}"']
    lines += [f"{key} = {value}" for key, value in settings.items()]
    table = {"api_base": fake.base_url, "allowed_users": [CHAT], "poll_timeout": 1}
    lines += [
        "[telegram]",
        *(f"{key} = {_toml(value)}" for key, value in (table | dict(telegram or {})).items()),
        "[agent]",
        'kind = "scripted"',
        "[notifier]",
        "interval = 0",
    ]
    for name, keys in (sections or {}).items():
        lines.append(f"[{name}]")
        lines += [f"{key} = {_toml(value)}" for key, value in keys.items()]
    path = tmp_path / "switchboard.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def environment(tmp_path: Path, **extra: str) -> dict[str, str]:
    return {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path),
        "PYTHONPATH": str(REPO),
        "SWITCHBOARD_TELEGRAM_TOKEN": DEFAULT_TOKEN,
        **extra,
    }


def _toml(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return json.dumps(value) if isinstance(value, str) else str(value)

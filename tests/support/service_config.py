"""A config and environment for running the real `switchboard` service commands in tests:
Telegram pointed at the fake Bot API, the scripted agent, the state dir in tmp_path."""

from __future__ import annotations

import os
from pathlib import Path

from tests.support.fake_bot_api import DEFAULT_TOKEN, FakeBotAPI

REPO = Path(__file__).resolve().parent.parent.parent
CHAT = 7001  # the one allowed Telegram user/chat


def write_config(tmp_path: Path, fake: FakeBotAPI, **gateway: object) -> Path:
    state = tmp_path / "state"
    settings = {"drain_timeout": 10, "grace": 0.5, "sample_interval": 0} | gateway
    lines = ["[gateway]", f'state_dir = "{state}"']
    lines += [f"{key} = {value}" for key, value in settings.items()]
    lines += [
        "[telegram]",
        f'api_base = "{fake.base_url}"',
        f"allowed_users = [{CHAT}]",
        "poll_timeout = 1",
        "[agent]",
        'kind = "scripted"',
        "[notifier]",
        "interval = 0",
    ]
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

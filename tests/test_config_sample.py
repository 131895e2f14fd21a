"""The sample config (`switchboard config --sample`, deploy/switchboard.example.toml), the
listen addresses, and the webhook settings that are only valid together."""

from __future__ import annotations

from pathlib import Path

import pytest

from console.cli import main
from gateway_core.config import ConfigError, ListenAddress, load_config
from gateway_core.config_sample import sample_toml

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "deploy" / "switchboard.example.toml"


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    fake = tmp_path / "home"
    fake.mkdir()
    monkeypatch.setenv("HOME", str(fake))
    return fake


def test_the_example_file_is_the_generated_sample() -> None:
    assert EXAMPLE.read_text(encoding="utf-8") == sample_toml(), (
        "deploy/switchboard.example.toml is stale: regenerate it with "
        "`switchboard config --sample > deploy/switchboard.example.toml`"
    )


def test_config_sample_prints_it(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["config", "--sample"]) == 0
    assert capsys.readouterr().out == sample_toml()


def test_the_sample_loads_to_exactly_the_defaults(home: Path) -> None:
    from_sample = load_config(EXAMPLE, env={})
    assert from_sample == load_config(env={})
    assert {source for _, _, source in from_sample.describe()} == {"file"}


def test_every_key_has_a_comment_above_it() -> None:
    lines = sample_toml().splitlines()
    for number, line in enumerate(lines):
        if " = " in line and not line.startswith("#"):
            assert lines[number - 1].startswith("# "), f"no comment above {line!r}"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("127.0.0.1:9464", ListenAddress("127.0.0.1", 9464)),
        ("[::1]:8443", ListenAddress("::1", 8443)),
        ("0.0.0.0:0", ListenAddress("0.0.0.0", 0)),
        ("/run/switchboard/http.sock", ListenAddress(path=Path("/run/switchboard/http.sock"))),
        ("", None),
    ],
)
def test_listen_addresses(tmp_path: Path, text: str, expected: ListenAddress | None) -> None:
    path = tmp_path / "sb.toml"
    path.write_text(f'[http]\nlisten = "{text}"\n')
    config = load_config(path, env={})
    assert config.http.listen == expected
    assert dict((key, value) for key, value, _ in config.describe())["http.listen"] == text


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("9464", "expected host:port"),
        (":9464", "expected host:port"),
        ("localhost:http", "port 'http' is not a number"),
        ("127.0.0.1:70000", "port 70000 is outside 0-65535"),
    ],
)
def test_bad_listen_addresses_name_the_key(tmp_path: Path, text: str, reason: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(None, env={"SWITCHBOARD_HTTP_LISTEN": text, "HOME": str(tmp_path)})
    assert str(info.value).startswith("environment SWITCHBOARD_HTTP_LISTEN=")
    assert reason in str(info.value)


def test_webhook_mode_needs_a_url_and_somewhere_to_listen(tmp_path: Path) -> None:
    env = {"HOME": str(tmp_path), "SWITCHBOARD_TELEGRAM_MODE": "webhook"}
    with pytest.raises(ConfigError, match=r"telegram\.webhook_url must name the public URL"):
        load_config(None, env=env)
    env["SWITCHBOARD_TELEGRAM_WEBHOOK_URL"] = "https://bot.example/hook"
    with pytest.raises(ConfigError, match=r"set telegram\.webhook_listen or http\.listen"):
        load_config(None, env=env)
    env["SWITCHBOARD_HTTP_LISTEN"] = "127.0.0.1:9464"
    assert load_config(None, env=env).telegram.webhook_url == "https://bot.example/hook"


def test_webhook_max_connections_is_bounded_like_telegram_bounds_it(tmp_path: Path) -> None:
    env = {"HOME": str(tmp_path), "SWITCHBOARD_TELEGRAM_WEBHOOK_MAX_CONNECTIONS": "101"}
    with pytest.raises(ConfigError, match="must be between 1 and 100"):
        load_config(None, env=env)

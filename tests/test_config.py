"""Tests for gateway_core.config: defaults, file, environment overrides, and every error."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway_core import config as config_module
from gateway_core.config import (
    SETTINGS,
    Config,
    ConfigError,
    ListenAddress,
    StoreBackend,
    TelegramMode,
    WebhookOnStop,
    load_config,
)
from gateway_core.model import Gate, ReplyAnchorMode

FULL_FILE = """\
[gateway]
state_dir = "/srv/sb/state"
drain_timeout = 12.5
grace = 2
sample_interval = 0.5
node_id = "gw-east-1"

[cluster]
lease_ttl = 9.5
inbox_poll = 0.75

[store]
backend = "PostgreSQL"
dsn_env = "MY_DSN"
synchronous = "full"
busy_timeout = 1.5
write_process = false

[recovery]
gate = "operator"
freshness = 0
loop_window = 60
loop_boots = 4
max_attempts = 7
tail_rows = 9
hold_inbound = 0.25
notify_user = false

[lanes]
busy_mode = "interrupt"
max_queue = 5

[notifier]
interval = 0

[telegram]
token_env = "MY_BOT_TOKEN"
api_base = "http://127.0.0.1:8081"
poll_timeout = 3
allowed_users = [11, 22, 33]
mode = "webhook"
reply_anchor = "never"
webhook_url = "https://bot.example/tg/hook"
webhook_listen = "/run/sb/webhook.sock"
webhook_secret_env = "MY_HOOK_SECRET"
webhook_max_connections = 10
webhook_on_stop = "delete"
webhook_max_body = 65536

[agent]
kind = "scripted"
base_url = "https://llm.example/v1"
model = "small-1"
api_key_env = "LLM_KEY"
max_steps = 3
clarify_timeout = 90
stream = false
preview = "off"
max_retries = 2
request_timeout = 30

[control]
socket = "/run/sb/ctl.sock"

[log]
level = "debug"
file = "/var/log/sb.log"

[http]
listen = "127.0.0.1:9464"

[web]
token_env = "MY_WEB_TOKEN"
max_clients = 2
"""


def write(tmp_path: Path, text: str, name: str = "sb.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def error_for(path: Path | None, env: dict[str, str] | None = None) -> str:
    with pytest.raises(ConfigError) as info:
        load_config(path, env={} if env is None else env)
    message = str(info.value)
    assert "\n" not in message
    return message


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fake home, so `~` and the default config location never touch the real one."""
    fake = tmp_path / "home"
    fake.mkdir()
    monkeypatch.setenv("HOME", str(fake))
    return fake


# ---------------------------------------------------------------------------------- defaults


def test_defaults_without_any_file(home: Path) -> None:
    cfg = load_config(env={})

    assert cfg.file is None
    assert cfg.gateway.state_dir == home / ".local/state/switchboard"
    assert cfg.gateway.drain_timeout == 30.0
    assert isinstance(cfg.gateway.drain_timeout, float)
    assert cfg.gateway.grace == 5.0
    assert cfg.store.synchronous == "NORMAL"
    assert cfg.store.busy_timeout == 5.0
    assert cfg.recovery.gate is Gate.SAFE
    assert cfg.recovery.freshness == 3600.0
    assert cfg.recovery.loop_window == 300.0
    assert cfg.recovery.loop_boots == 3
    assert cfg.recovery.max_attempts == 3
    assert cfg.recovery.tail_rows == 4
    assert cfg.recovery.hold_inbound == 30.0
    assert cfg.recovery.notify_user is True
    assert cfg.lanes.busy_mode == "queue"
    assert cfg.lanes.max_queue == 32
    assert cfg.notifier.interval == 180.0
    assert cfg.telegram.token_env == "SWITCHBOARD_TELEGRAM_TOKEN"
    assert cfg.telegram.api_base == "https://api.telegram.org"
    assert cfg.telegram.allowed_users == ()
    assert cfg.agent.kind == "openai"
    assert cfg.agent.base_url == "http://127.0.0.1:8000/v1"
    assert cfg.agent.model == "default"
    assert cfg.agent.api_key_env == "OPENAI_API_KEY"
    assert cfg.agent.max_steps == 20
    assert cfg.control.socket == home / ".local/state/switchboard/control.sock"
    assert cfg.log.level == "info"
    assert cfg.log.file is None
    assert cfg.telegram.mode is TelegramMode.POLLING
    assert cfg.telegram.webhook_url == ""
    assert cfg.telegram.webhook_listen is None
    assert cfg.telegram.webhook_on_stop is WebhookOnStop.KEEP
    assert cfg.http.listen is None


def test_default_location_is_used_when_present(home: Path) -> None:
    default = home / ".config/switchboard/switchboard.toml"
    default.parent.mkdir(parents=True)
    default.write_text('[recovery]\ngate = "all"\n', encoding="utf-8")

    cfg = load_config(env={})

    assert cfg.file == default
    assert cfg.recovery.gate is Gate.ALL


def test_switchboard_config_env_names_the_file(tmp_path: Path, home: Path) -> None:
    path = write(tmp_path, "[lanes]\nmax_queue = 4\n")

    cfg = load_config(env={"SWITCHBOARD_CONFIG": str(path)})

    assert cfg.file == path
    assert cfg.lanes.max_queue == 4


def test_table_and_dataclasses_agree() -> None:
    # Every row must map to exactly one typed field, and every field to a row.
    from_table = {(s.section, s.key) for s in SETTINGS}
    from_types = {
        (section.name, fld.name)
        for section in dataclasses.fields(Config)
        if section.compare
        for fld in dataclasses.fields(config_module._SECTION_TYPES[section.name])
    }
    assert from_table == from_types
    assert len(SETTINGS) == len(from_table)


# ----------------------------------------------------------------------------- file and env


def test_full_file_round_trip(tmp_path: Path) -> None:
    path = write(tmp_path, FULL_FILE)

    cfg = load_config(path, env={})

    assert cfg.file == path
    assert cfg.gateway.state_dir == Path("/srv/sb/state")
    assert cfg.gateway.drain_timeout == 12.5
    assert cfg.gateway.grace == 2.0
    assert isinstance(cfg.gateway.grace, float)
    assert cfg.gateway.sample_interval == 0.5
    assert cfg.gateway.node_id == "gw-east-1"
    assert (cfg.cluster.lease_ttl, cfg.cluster.inbox_poll) == (9.5, 0.75)
    assert cfg.store.backend is StoreBackend.POSTGRESQL
    assert cfg.store.dsn_env == "MY_DSN"
    assert cfg.store.synchronous == "FULL"
    assert cfg.store.busy_timeout == 1.5
    assert cfg.store.write_process is False
    assert cfg.recovery.gate is Gate.OPERATOR
    assert cfg.recovery.freshness == 0.0
    assert cfg.recovery.loop_window == 60.0
    assert cfg.recovery.loop_boots == 4
    assert cfg.recovery.max_attempts == 7
    assert cfg.recovery.tail_rows == 9
    assert cfg.recovery.hold_inbound == 0.25
    assert cfg.recovery.notify_user is False
    assert cfg.lanes.busy_mode == "interrupt"
    assert cfg.lanes.max_queue == 5
    assert cfg.notifier.interval == 0.0
    assert cfg.telegram.token_env == "MY_BOT_TOKEN"
    assert cfg.telegram.api_base == "http://127.0.0.1:8081"
    assert cfg.telegram.poll_timeout == 3
    assert cfg.telegram.allowed_users == (11, 22, 33)
    assert cfg.agent.kind == "scripted"
    assert cfg.agent.base_url == "https://llm.example/v1"
    assert cfg.agent.model == "small-1"
    assert cfg.agent.api_key_env == "LLM_KEY"
    assert cfg.agent.max_steps == 3
    assert cfg.agent.clarify_timeout == 90.0
    assert cfg.agent.stream is False
    assert cfg.agent.preview == "off"
    assert cfg.agent.max_retries == 2
    assert cfg.agent.request_timeout == 30.0
    assert cfg.control.socket == Path("/run/sb/ctl.sock")
    assert cfg.log.level == "debug"
    assert cfg.log.file == Path("/var/log/sb.log")
    assert cfg.telegram.mode is TelegramMode.WEBHOOK
    assert cfg.telegram.reply_anchor is ReplyAnchorMode.NEVER
    assert cfg.telegram.webhook_url == "https://bot.example/tg/hook"
    assert cfg.telegram.webhook_listen == ListenAddress(path=Path("/run/sb/webhook.sock"))
    assert cfg.telegram.webhook_secret_env == "MY_HOOK_SECRET"
    assert cfg.telegram.webhook_max_connections == 10
    assert cfg.telegram.webhook_on_stop is WebhookOnStop.DELETE
    assert cfg.telegram.webhook_max_body == 65536
    assert cfg.http.listen == ListenAddress("127.0.0.1", 9464)
    assert (cfg.web.token_env, cfg.web.max_clients) == ("MY_WEB_TOKEN", 2)
    assert all(source == "file" for _, _, source in cfg.describe())


def test_config_is_frozen(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, FULL_FILE), env={})
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.gateway.drain_timeout = 1.0  # type: ignore[misc]


def test_env_overrides_file(tmp_path: Path) -> None:
    path = write(tmp_path, FULL_FILE)
    env = {
        "SWITCHBOARD_RECOVERY_GATE": "off",
        "SWITCHBOARD_GATEWAY_DRAIN_TIMEOUT": "7.5",
        "SWITCHBOARD_RECOVERY_MAX_ATTEMPTS": " 9 ",
        "SWITCHBOARD_TELEGRAM_ALLOWED_USERS": "1, 2,3",
        "SWITCHBOARD_STORE_SYNCHRONOUS": "normal",
        "SWITCHBOARD_LOG_FILE": "",
    }

    cfg = load_config(path, env=env)

    assert cfg.recovery.gate is Gate.OFF
    assert cfg.gateway.drain_timeout == 7.5
    assert cfg.recovery.max_attempts == 9
    assert cfg.telegram.allowed_users == (1, 2, 3)
    assert cfg.store.synchronous == "NORMAL"
    assert cfg.log.file is None
    # Untouched keys still come from the file.
    assert cfg.lanes.max_queue == 5


def test_env_empty_list_and_unknown_vars_are_ignored(tmp_path: Path) -> None:
    path = write(tmp_path, "[telegram]\nallowed_users = [5]\n")
    env = {
        "SWITCHBOARD_TELEGRAM_ALLOWED_USERS": "",
        "SWITCHBOARD_TELEGRAM_TOKEN": "123:secret",
        "SWITCHBOARD_SOMETHING_ELSE": "whatever",
        "SWITCHBOARD_RECOVERY_GAET": "nonsense",
    }

    cfg = load_config(path, env=env)

    assert cfg.telegram.allowed_users == ()
    assert cfg.recovery.gate is Gate.SAFE
    # The token value is never read into the config, only the variable's name.
    assert "123:secret" not in repr(cfg)
    assert all("123:secret" not in value for _, value, _ in cfg.describe())


def test_env_bool_parser_accepts_the_documented_words() -> None:
    parse = config_module.BOOL.from_env
    assert [parse(w) for w in ("true", "1", "YES", " no ", "0", "False")] == [
        True,
        True,
        True,
        False,
        False,
        False,
    ]
    with pytest.raises(config_module._Invalid):
        parse("maybe")


# ----------------------------------------------------------------------------- control/paths


def test_control_socket_derived_from_resolved_state_dir(tmp_path: Path) -> None:
    path = write(tmp_path, '[gateway]\nstate_dir = "/data/sb"\n')

    assert load_config(path, env={}).control.socket == Path("/data/sb/control.sock")
    from_env = load_config(path, env={"SWITCHBOARD_GATEWAY_STATE_DIR": "/env/sb"})
    assert from_env.control.socket == Path("/env/sb/control.sock")


def test_control_socket_explicit_wins(tmp_path: Path) -> None:
    path = write(tmp_path, '[gateway]\nstate_dir = "/data/sb"\n[control]\nsocket = "/run/x.sock"\n')

    cfg = load_config(path, env={})

    assert cfg.control.socket == Path("/run/x.sock")
    assert cfg.gateway.state_dir == Path("/data/sb")


def test_tilde_is_expanded(tmp_path: Path, home: Path) -> None:
    path = write(
        tmp_path,
        '[gateway]\nstate_dir = "~/sbstate"\n[log]\nfile = "~/logs/sb.log"\n',
    )

    cfg = load_config(path, env={})

    assert cfg.gateway.state_dir == home / "sbstate"
    assert cfg.log.file == home / "logs/sb.log"
    assert cfg.control.socket == home / "sbstate/control.sock"
    assert "~" not in str(cfg.gateway.state_dir)


# ---------------------------------------------------------------------------------- describe


def test_describe_reports_values_and_sources(tmp_path: Path) -> None:
    path = write(tmp_path, '[recovery]\ngate = "all"\n[telegram]\nallowed_users = [4, 5]\n')
    env = {"SWITCHBOARD_GATEWAY_DRAIN_TIMEOUT": "2.5", "SWITCHBOARD_GATEWAY_STATE_DIR": "/s"}

    rows = {key: (value, source) for key, value, source in load_config(path, env).describe()}

    assert list(rows) == [s.dotted for s in SETTINGS]
    assert rows["recovery.gate"] == ("all", "file")
    assert rows["telegram.allowed_users"] == ("4,5", "file")
    assert rows["gateway.drain_timeout"] == ("2.5", "env SWITCHBOARD_GATEWAY_DRAIN_TIMEOUT")
    assert rows["gateway.state_dir"] == ("/s", "env SWITCHBOARD_GATEWAY_STATE_DIR")
    assert rows["lanes.max_queue"] == ("32", "default")
    assert rows["control.socket"] == ("/s/control.sock", "default")
    assert rows["log.file"] == ("", "default")


def test_sources_do_not_affect_equality(tmp_path: Path, home: Path) -> None:
    from_file = load_config(write(tmp_path, "[lanes]\nmax_queue = 32\n"), env={})
    from_defaults = load_config(env={})
    assert from_file == from_defaults
    assert dict(from_file.sources)["lanes.max_queue"] == "file"
    assert dict(from_defaults.sources)["lanes.max_queue"] == "default"


# ------------------------------------------------------------------------------------ errors


def test_exit_code() -> None:
    assert ConfigError.EXIT_CODE == 78
    assert issubclass(ConfigError, Exception)


def test_unknown_gate(tmp_path: Path) -> None:
    path = write(tmp_path, '[recovery]\ngate = "sometimes"\n')
    assert error_for(path) == (
        f'{path}: [recovery] gate = "sometimes": must be one of safe, operator, all, off'
    )


def test_reply_anchor_is_an_enum_with_a_clear_error_for_a_bad_value(tmp_path: Path) -> None:
    assert load_config(None, env={}).telegram.reply_anchor is ReplyAnchorMode.AUTO
    path = write(tmp_path, '[telegram]\nreply_anchor = "Always"\n')
    assert load_config(path, env={}).telegram.reply_anchor is ReplyAnchorMode.ALWAYS
    env = {"SWITCHBOARD_TELEGRAM_REPLY_ANCHOR": "never"}
    assert load_config(None, env=env).telegram.reply_anchor is ReplyAnchorMode.NEVER
    path = write(tmp_path, '[telegram]\nreply_anchor = "sometimes"\n')
    assert error_for(path) == (
        f'{path}: [telegram] reply_anchor = "sometimes": must be one of auto, always, never'
    )


def test_negative_timeout(tmp_path: Path) -> None:
    path = write(tmp_path, "[gateway]\ndrain_timeout = -1\n")
    assert error_for(path) == f"{path}: [gateway] drain_timeout = -1: must be >= 0"


def test_strictly_positive_and_int_bounds(tmp_path: Path) -> None:
    path = write(tmp_path, "[store]\nbusy_timeout = 0\n")
    assert error_for(path) == f"{path}: [store] busy_timeout = 0: must be > 0"
    path = write(tmp_path, "[recovery]\nloop_boots = 1\n")
    assert error_for(path) == f"{path}: [recovery] loop_boots = 1: must be >= 2"


def test_wrong_type(tmp_path: Path) -> None:
    path = write(tmp_path, '[gateway]\ndrain_timeout = "soon"\n')
    assert error_for(path) == f'{path}: [gateway] drain_timeout = "soon": expected a number'


def test_float_where_int_expected(tmp_path: Path) -> None:
    path = write(tmp_path, "[lanes]\nmax_queue = 2.5\n")
    assert error_for(path) == f"{path}: [lanes] max_queue = 2.5: expected an integer"


def test_bool_is_not_a_number(tmp_path: Path) -> None:
    path = write(tmp_path, "[gateway]\ndrain_timeout = true\n")
    assert error_for(path) == f"{path}: [gateway] drain_timeout = true: expected a number"
    path = write(tmp_path, "[recovery]\nmax_attempts = false\n")
    assert error_for(path) == f"{path}: [recovery] max_attempts = false: expected an integer"


def test_non_finite_float_rejected(tmp_path: Path) -> None:
    path = write(tmp_path, "[notifier]\ninterval = inf\n")
    assert error_for(path) == f"{path}: [notifier] interval = inf: expected a finite number"


def test_bad_allowed_users(tmp_path: Path) -> None:
    path = write(tmp_path, '[telegram]\nallowed_users = ["bob"]\n')
    assert error_for(path) == (
        f'{path}: [telegram] allowed_users = ["bob"]: expected a list of integer user ids'
    )
    path = write(tmp_path, "[telegram]\nallowed_users = [1, true]\n")
    assert "expected a list of integer user ids" in error_for(path)


def test_bad_url_and_empty_token_env(tmp_path: Path) -> None:
    path = write(tmp_path, '[telegram]\napi_base = "api.telegram.org"\n')
    assert error_for(path) == (
        f'{path}: [telegram] api_base = "api.telegram.org": must start with http:// or https://'
    )
    path = write(tmp_path, '[telegram]\ntoken_env = ""\n')
    assert error_for(path) == f'{path}: [telegram] token_env = "": must not be empty'


def test_unreadable_file_is_a_directory(tmp_path: Path) -> None:
    directory = tmp_path / "conf.toml"
    directory.mkdir()
    assert error_for(directory) == f"{directory}: cannot read: [Errno 21] Is a directory"


def test_missing_explicit_path(tmp_path: Path) -> None:
    missing = tmp_path / "nope.toml"
    assert error_for(missing) == f"{missing}: cannot read: [Errno 2] No such file or directory"


def test_missing_file_named_by_env(tmp_path: Path) -> None:
    missing = tmp_path / "nope.toml"
    message = error_for(None, {"SWITCHBOARD_CONFIG": str(missing)})
    assert message.startswith(f"{missing}: cannot read: [Errno 2]")
    assert "SWITCHBOARD_CONFIG" in message


def test_invalid_toml(tmp_path: Path) -> None:
    path = write(tmp_path, "[gateway\ndrain_timeout = 1\n")
    message = error_for(path)
    assert message.startswith(f"{path}: not valid TOML: ")
    assert "line 1" in message


def test_invalid_utf8(tmp_path: Path) -> None:
    path = tmp_path / "latin1.toml"
    path.write_bytes(b'[agent]\nmodel = "caf\xe9"\n')
    assert error_for(path).startswith(f"{path}: not valid TOML: not UTF-8")


def test_unknown_key_with_suggestion(tmp_path: Path) -> None:
    path = write(tmp_path, "[gateway]\ndrain_timout = 3\n")
    assert error_for(path) == (
        f"{path}: unknown key [gateway] drain_timout (did you mean drain_timeout?)"
    )


def test_unknown_key_without_close_match_lists_keys(tmp_path: Path) -> None:
    path = write(tmp_path, "[lanes]\nzzz = 3\n")
    assert error_for(path) == (
        f"{path}: unknown key [lanes] zzz (expected one of busy_mode, max_queue)"
    )


def test_unknown_section_with_suggestion(tmp_path: Path) -> None:
    path = write(tmp_path, "[recover]\ngate = 'all'\n")
    assert error_for(path) == f"{path}: unknown section [recover] (did you mean recovery?)"


def test_section_not_a_table(tmp_path: Path) -> None:
    path = write(tmp_path, "gateway = 5\n")
    assert error_for(path) == f"{path}: gateway = 5: [gateway] must be a table"


def test_bad_env_value_names_the_variable(tmp_path: Path) -> None:
    path = write(tmp_path, "[gateway]\ndrain_timeout = 3\n")
    message = error_for(path, {"SWITCHBOARD_GATEWAY_DRAIN_TIMEOUT": "x"})
    assert message == 'environment SWITCHBOARD_GATEWAY_DRAIN_TIMEOUT="x": expected a number'


def test_bad_env_values_per_kind(tmp_path: Path) -> None:
    empty = write(tmp_path, "")
    cases = {
        "SWITCHBOARD_RECOVERY_GATE": ("sometimes", "must be one of safe, operator, all, off"),
        "SWITCHBOARD_LANES_MAX_QUEUE": ("0", "must be >= 1"),
        "SWITCHBOARD_AGENT_MAX_STEPS": ("2.0", "expected an integer"),
        "SWITCHBOARD_TELEGRAM_ALLOWED_USERS": ("1,bob", "expected comma-separated integer"),
        "SWITCHBOARD_GATEWAY_STATE_DIR": ("", "must not be empty"),
        "SWITCHBOARD_AGENT_BASE_URL": ("ftp://x", "must start with http:// or https://"),
    }
    for name, (value, reason) in cases.items():
        message = error_for(empty, {name: value})
        assert message.startswith(f'environment {name}="{value}": '), message
        assert reason in message, message


def test_file_is_validated_even_when_env_overrides(tmp_path: Path) -> None:
    path = write(tmp_path, "[gateway]\ndrain_timeout = -5\n")
    message = error_for(path, {"SWITCHBOARD_GATEWAY_DRAIN_TIMEOUT": "1"})
    assert message == f"{path}: [gateway] drain_timeout = -5: must be >= 0"


# -------------------------------------------------------------------------------- property


@settings(max_examples=200, deadline=None)
@given(st.floats(min_value=0.0, allow_nan=False, allow_infinity=False))
def test_any_non_negative_drain_timeout_round_trips(
    tmp_path_factory: pytest.TempPathFactory, value: float
) -> None:
    path = tmp_path_factory.getbasetemp() / "drain_ok.toml"
    path.write_text(f"[gateway]\ndrain_timeout = {value!r}\n", encoding="utf-8")

    assert load_config(path, env={}).gateway.drain_timeout == value


@settings(max_examples=200, deadline=None)
@given(st.floats(max_value=-math.ulp(0.0), allow_nan=False, allow_infinity=False))
def test_any_negative_drain_timeout_is_rejected(
    tmp_path_factory: pytest.TempPathFactory, value: float
) -> None:
    path = tmp_path_factory.getbasetemp() / "drain_bad.toml"
    path.write_text(f"[gateway]\ndrain_timeout = {value!r}\n", encoding="utf-8")

    with pytest.raises(ConfigError) as info:
        load_config(path, env={})
    assert str(info.value).startswith(f"{path}: [gateway] drain_timeout = ")
    assert str(info.value).endswith("must be >= 0")

"""The gateway's typed, frozen configuration: a TOML file plus ``SWITCHBOARD_*`` overrides.

Every setting, with its default, parser, constraint and one-line doc, is a row of ``SETTINGS``
below; the per-section dataclasses are filled from that table and nothing else, so a default
lives in exactly one place. Precedence, highest first:

1. the environment: ``SWITCHBOARD_<SECTION>_<KEY>`` (e.g. ``SWITCHBOARD_RECOVERY_GATE``);
2. the TOML file: the ``path`` argument, else ``$SWITCHBOARD_CONFIG``, else
   ``~/.config/switchboard/switchboard.toml`` if it exists;
3. the defaults in ``SETTINGS``.

The file is strict (an unknown section or key is an error, with a "did you mean" hint) because
a typo there silently does nothing otherwise. The environment is shared with everything else
on the host, so an unknown ``SWITCHBOARD_*`` variable is ignored.

Any bad value raises ``ConfigError`` with a one-line message naming the key and where the value
came from; the CLI prints it and exits with ``ConfigError.EXIT_CODE`` (78, EX_CONFIG).

Secrets are never read here: the config only holds the *names* of the environment variables
that carry the Telegram token and the agent API key.

Paths have ``~`` expanded; relative paths are kept as given (relative to the working directory).
"""

from __future__ import annotations

import difflib
import json
import math
import os
import tomllib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal

from gateway_core.model import Gate, ReplyAnchorMode

__all__ = [
    "DEFAULT_CONFIG_PATH",
    "ENV_CONFIG",
    "ENV_PREFIX",
    "SECTIONS",
    "SETTINGS",
    "AgentSettings",
    "Config",
    "ConfigError",
    "ControlSettings",
    "GatewaySettings",
    "HttpSettings",
    "Kind",
    "LanesSettings",
    "ListenAddress",
    "LogSettings",
    "NotifierSettings",
    "RecoverySettings",
    "Setting",
    "StoreSettings",
    "TelegramMode",
    "TelegramSettings",
    "WebSettings",
    "WebhookOnStop",
    "load_config",
]

ENV_PREFIX = "SWITCHBOARD_"
# Names the config file itself; not a setting, so it has no section.
ENV_CONFIG = "SWITCHBOARD_CONFIG"
DEFAULT_CONFIG_PATH = "~/.config/switchboard/switchboard.toml"


class ConfigError(Exception):
    """A configuration problem; ``str(err)`` is one line naming the key and its source."""

    # EX_CONFIG from sysexits.h: the CLI exits with this so supervisors don't restart-loop.
    EXIT_CODE = 78


class _Invalid(Exception):
    """Raised by parsers and checks with just the reason; the caller adds key and source."""


# --------------------------------------------------------------------------------------------
# Kinds: how a raw value (from TOML, or an environment string) becomes a typed value.


@dataclass(frozen=True, slots=True)
class Kind:
    """How one type of setting is parsed from TOML and from the environment, and shown."""

    name: str
    from_toml: Callable[[object], Any]
    from_env: Callable[[str], Any]
    to_text: Callable[[Any], str] = str


def _float_from_toml(raw: object) -> float:
    # bool is an int subclass in Python, but TOML `true` is not a number.
    if isinstance(raw, bool) or not isinstance(raw, int | float):
        raise _Invalid("expected a number")
    return _finite(float(raw))


def _float_from_env(text: str) -> float:
    try:
        value = float(text.strip())
    except ValueError:
        raise _Invalid("expected a number") from None
    return _finite(value)


def _finite(value: float) -> float:
    # nan would pass no comparison and inf would make a timeout meaningless.
    if not math.isfinite(value):
        raise _Invalid("expected a finite number")
    return value


def _float_text(value: float) -> str:
    return str(int(value)) if value.is_integer() else repr(value)


def _int_from_toml(raw: object) -> int:
    if isinstance(raw, bool) or not isinstance(raw, int):
        raise _Invalid("expected an integer")
    return raw


def _int_from_env(text: str) -> int:
    try:
        return int(text.strip(), 10)
    except ValueError:
        raise _Invalid("expected an integer") from None


_TRUE_WORDS = frozenset({"true", "1", "yes"})
_FALSE_WORDS = frozenset({"false", "0", "no"})


def _bool_from_toml(raw: object) -> bool:
    if not isinstance(raw, bool):
        raise _Invalid("expected true or false")
    return raw


def _bool_from_env(text: str) -> bool:
    word = text.strip().lower()
    if word in _TRUE_WORDS:
        return True
    if word in _FALSE_WORDS:
        return False
    raise _Invalid("expected one of true, false, 1, 0, yes, no")


def _str_from_toml(raw: object) -> str:
    if not isinstance(raw, str):
        raise _Invalid("expected a string")
    return raw


def _url(text: str) -> str:
    if not text.startswith(("http://", "https://")):
        raise _Invalid("must start with http:// or https://")
    if not text.split("://", 1)[1].split("/", 1)[0]:
        raise _Invalid("must name a host after the scheme")
    return text


def _path(text: str) -> Path:
    # Path("") is ".", which would quietly put the state in the working directory.
    if not text:
        raise _Invalid("must not be empty")
    return Path(text).expanduser()


def _optional_path(text: str) -> Path | None:
    return Path(text).expanduser() if text else None


def _path_from_toml(raw: object) -> Path:
    if not isinstance(raw, str):
        raise _Invalid("expected a path string")
    return _path(raw)


def _optional_path_from_toml(raw: object) -> Path | None:
    if not isinstance(raw, str):
        raise _Invalid("expected a path string (or empty)")
    return _optional_path(raw)


def _optional_path_text(value: Path | None) -> str:
    return "" if value is None else str(value)


_USER_IDS_REASON = "expected a list of integer user ids"


def _user_ids_from_toml(raw: object) -> tuple[int, ...]:
    if not isinstance(raw, list) or any(
        isinstance(item, bool) or not isinstance(item, int) for item in raw
    ):
        raise _Invalid(_USER_IDS_REASON)
    return tuple(raw)


def _user_ids_from_env(text: str) -> tuple[int, ...]:
    if not text.strip():
        return ()
    try:
        return tuple(int(part.strip(), 10) for part in text.split(","))
    except ValueError:
        raise _Invalid("expected comma-separated integer user ids") from None


def _user_ids_text(value: tuple[int, ...]) -> str:
    return ",".join(str(item) for item in value)


class TelegramMode(StrEnum):
    """How updates reach the gateway: it asks for them, or Telegram pushes them to us."""

    POLLING = "polling"
    WEBHOOK = "webhook"


class StoreBackend(StrEnum):
    """Where durable state lives."""

    SQLITE = "sqlite"  # one file in state_dir: one gateway process (the default)
    POSTGRESQL = "postgresql"  # one database several gateway nodes share


class WebhookOnStop(StrEnum):
    """What a stopping gateway does with its registered webhook."""

    KEEP = "keep"  # Telegram keeps the updates and retries until we (or a successor) answer
    DELETE = "delete"  # Telegram stops pushing; updates wait for getUpdates or a new webhook


@dataclass(frozen=True, slots=True)
class ListenAddress:
    """Where an HTTP listener binds: host and port, or a Unix socket path."""

    host: str = ""
    port: int = 0
    path: Path | None = None

    def __str__(self) -> str:
        if self.path is not None:
            return str(self.path)
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


def _listen(text: str) -> ListenAddress | None:
    """Empty (off), "host:port" ("[::1]:port" for IPv6; port 0 picks a free one) or a socket
    path (absolute, or starting with ./ or ~)."""
    text = text.strip()
    if not text:
        return None
    if text.startswith(("/", "./", "~")):
        return ListenAddress(path=Path(text).expanduser())
    try:
        address = host_and_port(text)
    except ValueError as error:
        raise _Invalid(str(error)) from None
    if address is None:
        raise _Invalid("expected host:port (e.g. 127.0.0.1:9464) or a socket path")
    return ListenAddress(*address)


def host_and_port(text: str) -> tuple[str, int] | None:
    """The host and port of "host:port" ("[::1]:port" for IPv6; port 0 picks a free one);
    None when text has no host:port shape, ValueError when its port is not one."""
    host, colon, port_text = text.strip().rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not colon or not host:
        return None
    try:
        port = int(port_text, 10)
    except ValueError:
        raise ValueError(f"port {port_text!r} is not a number") from None
    if not 0 <= port <= 65535:
        raise ValueError(f"port {port} is outside 0-65535")
    return host, port


def _listen_text(value: ListenAddress | None) -> str:
    return "" if value is None else str(value)


def _optional_url(text: str) -> str:
    return "" if not text else _url(text)


def _choice(
    choices: tuple[str, ...], *, upper: bool = False, convert: Callable[[str], Any] = str
) -> Kind:
    """A string from a fixed set, matched case-insensitively and stored in canonical case."""
    reason = "must be one of " + ", ".join(choices)
    by_folded = {choice.casefold(): choice for choice in choices}

    def parse(raw: object) -> Any:
        if not isinstance(raw, str) or raw.strip().casefold() not in by_folded:
            raise _Invalid(reason)
        canonical = by_folded[raw.strip().casefold()]
        return convert(canonical.upper() if upper else canonical)

    return Kind("|".join(choices), parse, parse)


FLOAT = Kind("float", _float_from_toml, _float_from_env, _float_text)
INT = Kind("int", _int_from_toml, _int_from_env)
BOOL = Kind("bool", _bool_from_toml, _bool_from_env, lambda value: "true" if value else "false")
STR = Kind("str", _str_from_toml, lambda text: text)
URL = Kind("url", lambda raw: _url(_str_from_toml(raw)), _url)
PATH = Kind("path", _path_from_toml, _path)
OPTIONAL_PATH = Kind("path|empty", _optional_path_from_toml, _optional_path, _optional_path_text)
USER_IDS = Kind("list[int]", _user_ids_from_toml, _user_ids_from_env, _user_ids_text)
LISTEN = Kind(
    "host:port|path|empty", lambda raw: _listen(_str_from_toml(raw)), _listen, _listen_text
)
OPTIONAL_URL = Kind("url|empty", lambda raw: _optional_url(_str_from_toml(raw)), _optional_url)


# Constraints applied after parsing; they return the reason, or None if the value is fine.
Check = Callable[[Any], str | None]


def _at_least(bound: int) -> Check:
    return lambda value: None if value >= bound else f"must be >= {bound}"


def _above(bound: int) -> Check:
    return lambda value: None if value > bound else f"must be > {bound}"


def _not_empty(value: str) -> str | None:
    return None if value else "must not be empty"


def _between(low: int, high: int) -> Check:
    return lambda value: None if low <= value <= high else f"must be between {low} and {high}"


# --------------------------------------------------------------------------------------------
# The table.


@dataclass(frozen=True, slots=True)
class Setting:
    """One configurable key. ``default`` is written as it would be in the TOML file."""

    section: str
    key: str
    default: object
    kind: Kind
    doc: str
    check: Check | None = None

    @property
    def dotted(self) -> str:
        return f"{self.section}.{self.key}"

    @property
    def env_name(self) -> str:
        return f"{ENV_PREFIX}{self.section}_{self.key}".upper()

    def parse_toml(self, raw: object) -> Any:
        return self._checked(self.kind.from_toml(raw))

    def parse_env(self, text: str) -> Any:
        return self._checked(self.kind.from_env(text))

    def _checked(self, value: Any) -> Any:
        if self.check is not None and (reason := self.check(value)) is not None:
            raise _Invalid(reason)
        return value


_S = Setting
SETTINGS: tuple[Setting, ...] = (
    _S("gateway", "state_dir", "~/.local/state/switchboard", PATH,
       "directory for the SQLite database and logs"),
    _S("gateway", "drain_timeout", 30, FLOAT,
       "seconds a stopping gateway waits for running turns to finish", _at_least(0)),
    _S("gateway", "grace", 5, FLOAT,
       "seconds interrupted turns get after the drain deadline before tools are killed",
       _at_least(0)),
    _S("gateway", "sample_interval", 1, FLOAT,
       "seconds between CPU/memory readings of background processes; 0 disables",
       _at_least(0)),
    _S("gateway", "node_id", "", STR,
       "this node's name among several on one PostgreSQL database; empty means host:pid"),
    _S("store", "backend", "sqlite",
       _choice(tuple(backend.value for backend in StoreBackend), convert=StoreBackend),
       "where state is kept: sqlite (a file in state_dir, one node) | postgresql (shared)"),
    _S("store", "dsn_env", "SWITCHBOARD_POSTGRES_DSN", STR,
       "name of the environment variable holding the PostgreSQL DSN (never shown)",
       _not_empty),
    _S("store", "synchronous", "NORMAL", _choice(("NORMAL", "FULL"), upper=True),
       "SQLite synchronous pragma: FULL also survives power loss, NORMAL only crashes"),
    _S("store", "busy_timeout", 5, FLOAT,
       "seconds to wait for a locked database before failing", _above(0)),
    _S("store", "write_process", True, BOOL,
       "SQLite: hot-path writes in a process of their own (both cores); false: on a thread"),
    _S("recovery", "gate", "safe", _choice(tuple(gate.value for gate in Gate), convert=Gate),
       "which interrupted turns resume on their own: safe | operator | all | off"),
    _S("recovery", "freshness", 3600, FLOAT,
       "seconds after which a transcript tail is too old to resume; 0 disables the check",
       _at_least(0)),
    _S("recovery", "loop_window", 300, FLOAT,
       "seconds within which repeated boots count as a crash loop", _above(0)),
    _S("recovery", "loop_boots", 3, INT,
       "boots within loop_window that mean a crash loop (recovery then stands down)",
       _at_least(2)),
    _S("recovery", "max_attempts", 3, INT,
       "times one turn is resumed before it is left to the operator", _at_least(1)),
    _S("recovery", "tail_rows", 4, INT,
       "transcript rows first read per candidate at boot (cost only: the decision reads back"
       " to the user's request)", _at_least(1)),
    _S("recovery", "hold_inbound", 30, FLOAT,
       "seconds inbound messages for a recovering session are held", _at_least(0)),
    _S("recovery", "notify_user", True, BOOL,
       "tell the user once when their interrupted request is held or not resumed"),
    _S("lanes", "busy_mode", "queue", _choice(("queue", "interrupt")),
       "what a message arriving during a running turn does: queue | interrupt"),
    _S("lanes", "max_queue", 32, INT,
       "messages queued per session before new ones are refused", _at_least(1)),
    _S("notifier", "interval", 180, FLOAT,
       "seconds between progress notices on long turns; 0 disables", _at_least(0)),
    _S("telegram", "token_env", "SWITCHBOARD_TELEGRAM_TOKEN", STR,
       "name of the environment variable holding the bot token", _not_empty),
    _S("telegram", "api_base", "https://api.telegram.org", URL,
       "Bot API base URL (tests point it at a loopback fake)"),
    _S("telegram", "poll_timeout", 25, INT,
       "seconds one getUpdates long poll may wait for new updates", _at_least(0)),
    _S("telegram", "allowed_users", [], USER_IDS,
       "Telegram user ids allowed to talk to the bot; empty means nobody"),
    _S("telegram", "mode", "polling",
       _choice(tuple(mode.value for mode in TelegramMode), convert=TelegramMode),
       "how updates arrive: polling (getUpdates) | webhook (Telegram POSTs them to us)"),
    _S("telegram", "reply_anchor", "auto",
       _choice(tuple(mode.value for mode in ReplyAnchorMode), convert=ReplyAnchorMode),
       "answers sent as replies to their request: auto (all in groups, late ones in"
       " private chats) | always | never"),
    _S("telegram", "webhook_url", "", OPTIONAL_URL,
       "public HTTPS URL Telegram posts to (webhook mode); its path is the path we serve"),
    _S("telegram", "webhook_listen", "", LISTEN,
       "where the webhook is served: host:port or a socket path; empty means [http] listen"),
    _S("telegram", "webhook_secret_env", "SWITCHBOARD_TELEGRAM_WEBHOOK_SECRET", STR,
       "name of the environment variable holding the webhook secret token", _not_empty),
    _S("telegram", "webhook_max_connections", 40, INT,
       "simultaneous webhook requests Telegram may open (1-100)", _between(1, 100)),
    _S("telegram", "webhook_on_stop", "keep",
       _choice(tuple(how.value for how in WebhookOnStop), convert=WebhookOnStop),
       "at stop: keep the webhook (Telegram retries until we are back) | delete it"),
    _S("telegram", "webhook_max_body", 1048576, INT,
       "bytes a webhook request body may have; a larger one is answered 413",
       _at_least(1024)),
    _S("agent", "kind", "openai", _choice(("openai", "scripted")),
       "agent implementation: openai | scripted"),
    _S("agent", "base_url", "http://127.0.0.1:8000/v1", URL,
       "OpenAI-compatible chat-completions base URL"),
    _S("agent", "model", "default", STR, "model name sent to the agent server"),
    _S("agent", "api_key_env", "OPENAI_API_KEY", STR,
       "name of the environment variable holding the agent API key"),
    _S("agent", "max_steps", 20, INT, "model calls allowed in one turn", _at_least(1)),
    _S("agent", "clarify_timeout", 3600, FLOAT,
       "seconds a clarify question waits for the user's answer", _above(0)),
    _S("agent", "stream", True, BOOL,
       "ask the agent server to stream (text arrives progressively)"),
    _S("agent", "preview", "notifier", _choice(("notifier", "off")),
       "streamed text so far shown in the still-working message: notifier | off"),
    _S("agent", "max_retries", 4, INT,
       "retries of a 429 or 5xx answer from the agent server, with backoff", _at_least(0)),
    _S("agent", "request_timeout", 120, FLOAT,
       "seconds one agent server request may take", _above(0)),
    _S("cluster", "lease_ttl", 15, FLOAT,
       "seconds a node's session leases outlive its last heartbeat (backend postgresql)",
       _above(0)),
    _S("cluster", "inbox_poll", 2, FLOAT,
       "seconds between a node's looks at the shared inbox when no notification woke it",
       _above(0)),
    # Empty means derived: <gateway.state_dir>/control.sock, after state_dir is resolved.
    _S("control", "socket", "", OPTIONAL_PATH,
       "control socket path; empty means <state_dir>/control.sock"),
    _S("log", "level", "info", _choice(("debug", "info", "warning", "error")),
       "log level: debug | info | warning | error"),
    _S("log", "file", "", OPTIONAL_PATH, "log file path; empty means stdout"),
    _S("http", "listen", "", LISTEN,
       "health, readiness, metrics: host:port (e.g. 127.0.0.1:9464) or a socket path; "
       "empty: off"),
    _S("web", "token_env", "SWITCHBOARD_WEB_TOKEN", STR,
       "environment variable with the browser view's token; unset: a new one each start,"
       " loopback only", _not_empty),
    _S("web", "max_clients", 4, INT,
       "browser tabs served at once by switchboard web (each runs its own attached console)",
       _at_least(1)),
)  # fmt: skip
del _S

SECTIONS: tuple[str, ...] = tuple(dict.fromkeys(setting.section for setting in SETTINGS))
_KEYS: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {section: tuple(s.key for s in SETTINGS if s.section == section) for section in SECTIONS}
)


# --------------------------------------------------------------------------------------------
# The typed config. Field names must match the table rows (a test checks this).


@dataclass(frozen=True, slots=True)
class GatewaySettings:
    state_dir: Path
    drain_timeout: float
    grace: float
    sample_interval: float
    node_id: str


@dataclass(frozen=True, slots=True)
class StoreSettings:
    backend: StoreBackend
    dsn_env: str
    synchronous: Literal["NORMAL", "FULL"]
    busy_timeout: float
    write_process: bool


@dataclass(frozen=True, slots=True)
class RecoverySettings:
    gate: Gate
    freshness: float
    loop_window: float
    loop_boots: int
    max_attempts: int
    tail_rows: int
    hold_inbound: float
    notify_user: bool


@dataclass(frozen=True, slots=True)
class LanesSettings:
    busy_mode: Literal["queue", "interrupt"]
    max_queue: int


@dataclass(frozen=True, slots=True)
class NotifierSettings:
    interval: float


@dataclass(frozen=True, slots=True)
class TelegramSettings:
    token_env: str
    api_base: str
    poll_timeout: int
    allowed_users: tuple[int, ...]
    mode: TelegramMode
    reply_anchor: ReplyAnchorMode
    webhook_url: str
    webhook_listen: ListenAddress | None
    webhook_secret_env: str
    webhook_max_connections: int
    webhook_on_stop: WebhookOnStop
    webhook_max_body: int


@dataclass(frozen=True, slots=True)
class AgentSettings:
    kind: Literal["openai", "scripted"]
    base_url: str
    model: str
    api_key_env: str
    max_steps: int
    clarify_timeout: float
    stream: bool
    preview: Literal["notifier", "off"]
    max_retries: int
    request_timeout: float


@dataclass(frozen=True, slots=True)
class ControlSettings:
    socket: Path


@dataclass(frozen=True, slots=True)
class LogSettings:
    level: Literal["debug", "info", "warning", "error"]
    file: Path | None


@dataclass(frozen=True, slots=True)
class HttpSettings:
    listen: ListenAddress | None


@dataclass(frozen=True, slots=True)
class ClusterSettings:
    lease_ttl: float
    inbox_poll: float


@dataclass(frozen=True, slots=True)
class WebSettings:
    token_env: str
    max_clients: int


_SECTION_TYPES: Mapping[str, type] = MappingProxyType(
    {
        "gateway": GatewaySettings,
        "store": StoreSettings,
        "recovery": RecoverySettings,
        "lanes": LanesSettings,
        "notifier": NotifierSettings,
        "telegram": TelegramSettings,
        "agent": AgentSettings,
        "cluster": ClusterSettings,
        "control": ControlSettings,
        "log": LogSettings,
        "http": HttpSettings,
        "web": WebSettings,
    }
)


@dataclass(frozen=True, slots=True)
class Config:
    gateway: GatewaySettings
    store: StoreSettings
    recovery: RecoverySettings
    lanes: LanesSettings
    notifier: NotifierSettings
    telegram: TelegramSettings
    agent: AgentSettings
    cluster: ClusterSettings
    control: ControlSettings
    log: LogSettings
    http: HttpSettings
    web: WebSettings
    # Where each value came, keyed by dotted name: "default" | "file" | "env SWITCHBOARD_…".
    # Bookkeeping for describe(), so it takes no part in equality.
    sources: Mapping[str, str] = field(default_factory=dict, compare=False, repr=False)
    # The file that was read, if any.
    file: Path | None = field(default=None, compare=False)

    def describe(self) -> list[tuple[str, str, str]]:
        """Rows of (dotted key, effective value as text, source), in table order.

        The value text is what the matching ``SWITCHBOARD_*`` variable would have to hold.
        """
        rows = []
        for setting in SETTINGS:
            value = getattr(getattr(self, setting.section), setting.key)
            text = setting.kind.to_text(value)
            rows.append((setting.dotted, text, self.sources.get(setting.dotted, "default")))
        return rows


# --------------------------------------------------------------------------------------------
# Loading.


def load_config(path: Path | None = None, env: Mapping[str, str] | None = None) -> Config:
    """Build the effective config; raises ConfigError on any bad file, key or value.

    ``env`` defaults to ``os.environ``; tests pass a dict so the real environment stays out.
    """
    environ: Mapping[str, str] = os.environ if env is None else env
    file_path, named_by = _locate(path, environ)
    document = _read(file_path, named_by) if file_path is not None else {}
    where = str(file_path)
    _reject_unknown(document, where)

    values: dict[str, dict[str, Any]] = {section: {} for section in SECTIONS}
    sources: dict[str, str] = {}
    for setting in SETTINGS:
        section_table: Mapping[str, object] = document.get(setting.section, {})
        # The file is validated even where the environment overrides it: a bad file is bad.
        if setting.key in section_table:
            value = _parse(setting, section_table[setting.key], where)
            source = "file"
        else:
            # Defaults go through the same parser, so they get the same normalisation.
            value = _parse(setting, setting.default, "built-in default")
            source = "default"
        text = environ.get(setting.env_name)
        if text is not None:
            value = _parse_env(setting, text)
            source = f"env {setting.env_name}"
        values[setting.section][setting.key] = value
        sources[setting.dotted] = source

    # Derived only now, so that a state_dir from the file or environment is honoured.
    if values["control"]["socket"] is None:
        values["control"]["socket"] = values["gateway"]["state_dir"] / "control.sock"

    _check_together(values, sources)
    sections = {name: _SECTION_TYPES[name](**values[name]) for name in SECTIONS}
    return Config(**sections, sources=MappingProxyType(sources), file=file_path)


def _check_together(values: Mapping[str, Mapping[str, Any]], sources: Mapping[str, str]) -> None:
    """Settings that are only valid in combination (each valid on its own)."""
    telegram = values["telegram"]
    if telegram["mode"] is not TelegramMode.WEBHOOK:
        return
    where = f'telegram.mode = "webhook" ({sources["telegram.mode"]})'
    if not telegram["webhook_url"]:
        raise ConfigError(f"{where}: telegram.webhook_url must name the public URL")
    if telegram["webhook_listen"] is None and values["http"]["listen"] is None:
        raise ConfigError(
            f"{where}: set telegram.webhook_listen or http.listen (where the webhook is served)"
        )


def _locate(path: Path | None, env: Mapping[str, str]) -> tuple[Path | None, str | None]:
    """The file to read (None for pure defaults), and the env var that named it, if any."""
    if path is not None:
        return path.expanduser(), None
    named = env.get(ENV_CONFIG)
    if named:
        return Path(named).expanduser(), ENV_CONFIG
    default = Path(DEFAULT_CONFIG_PATH).expanduser()
    # exists(), not is_file(): a directory there is a mistake worth reporting, not skipping.
    return (default, None) if default.exists() else (None, None)


def _read(path: Path, named_by: str | None) -> dict[str, Any]:
    suffix = f" (named by {named_by})" if named_by else ""
    try:
        data = path.read_bytes()
    except OSError as err:
        # str(err) repeats the file name; the message already starts with it.
        reason = f"[Errno {err.errno}] {err.strerror}" if err.errno is not None else str(err)
        raise ConfigError(f"{path}: cannot read: {reason}{suffix}") from None
    try:
        return tomllib.loads(data.decode("utf-8"))
    except UnicodeDecodeError as err:
        raise ConfigError(f"{path}: not valid TOML: not UTF-8 ({err.reason}){suffix}") from None
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{path}: not valid TOML: {err}{suffix}") from None


def _reject_unknown(document: Mapping[str, object], where: str) -> None:
    for section, table in document.items():
        if section not in _KEYS:
            hint = _hint(section, SECTIONS)
            raise ConfigError(f"{where}: unknown section [{section}]{hint}")
        if not isinstance(table, dict):
            raise ConfigError(
                f"{where}: {section} = {_toml_repr(table)}: [{section}] must be a table"
            )
        for key in table:
            if key not in _KEYS[section]:
                hint = _hint(key, _KEYS[section])
                raise ConfigError(f"{where}: unknown key [{section}] {key}{hint}")


def _hint(name: str, known: Iterable[str]) -> str:
    known = list(known)
    close = difflib.get_close_matches(name, known, n=1)
    if close:
        return f" (did you mean {close[0]}?)"
    return f" (expected one of {', '.join(known)})"


def _parse(setting: Setting, raw: object, where: str) -> Any:
    try:
        return setting.parse_toml(raw)
    except _Invalid as err:
        raise ConfigError(f"{_file_label(where, setting, raw)}: {err}") from None


def _parse_env(setting: Setting, text: str) -> Any:
    try:
        return setting.parse_env(text)
    except _Invalid as err:
        shown = json.dumps(_shorten(text), ensure_ascii=False)
        raise ConfigError(f"environment {setting.env_name}={shown}: {err}") from None


def _file_label(where: str, setting: Setting, raw: object) -> str:
    return f"{where}: [{setting.section}] {setting.key} = {_toml_repr(raw)}"


def _toml_repr(value: object) -> str:
    """A short, one-line, TOML-looking rendering of a raw value for error messages."""
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, str):
        text = json.dumps(value, ensure_ascii=False)
    elif isinstance(value, list):
        text = "[" + ", ".join(_toml_repr(item) for item in value) + "]"
    elif isinstance(value, dict):
        inner = ", ".join(f"{key} = {_toml_repr(item)}" for key, item in value.items())
        text = "{" + inner + "}"
    else:
        text = str(value)
    return _shorten(text)


def _shorten(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"

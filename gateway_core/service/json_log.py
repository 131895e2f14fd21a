"""JSON-lines logging for the headless gateway (`switchboard run`).

One JSON object per line:

    {"ts": "2025-01-31T12:00:00.123Z", "level": "INFO", "logger": "gateway_core.gateway",
     "msg": "turn started", "event": "turn_started", "session": "telegram:42:7"}

`event` and `session` come from `extra=`; `exc` (and `stack`) carry a formatted traceback.
Output is pure ASCII (json escapes everything else), so a line is valid whatever the stream's
encoding, and no character in a message can split it into two lines.

Secrets never reach the output: the strings given as `secrets` (the bot token, the API key)
and anything that looks like a Telegram bot token, a `Bearer` credential or an `sk-` key are
replaced with "***" in every text field, tracebacks included.
"""

from __future__ import annotations

import json
import logging
import math
import re
import sys
import time
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path

from gateway_core.private_files import private_file

REDACTED = "***"
# A shorter "secret" is a misconfiguration; redacting it would shred every line.
MIN_SECRET_LENGTH = 4

_TELEGRAM_TOKEN = r"\d{6,12}:[A-Za-z0-9_-]{30,}"
_SK_KEY = r"\bsk-[A-Za-z0-9_-]{16,}"
_BEARER = re.compile(r"\b(Bearer\s+)[A-Za-z0-9._~+/=-]{8,}", re.IGNORECASE)
_LOOKS_SECRET = re.compile(f"{_TELEGRAM_TOKEN}|{_SK_KEY}")

# Handlers configure_json_logging put on the root logger (and may take off again).
_installed: list[logging.Handler] = []


class JsonFormatter(logging.Formatter):
    """Formats a record as one line of JSON, with secrets redacted. Never raises."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        kept = sorted(
            {s for s in secrets if isinstance(s, str) and len(s.strip()) >= MIN_SECRET_LENGTH},
            key=len,
            reverse=True,  # the longest first: a secret containing another goes whole
        )
        self._secrets = re.compile("|".join(map(re.escape, kept))) if kept else None

    def redact(self, text: str) -> str:
        if self._secrets is not None:
            text = self._secrets.sub(REDACTED, text)
        text = _LOOKS_SECRET.sub(REDACTED, text)
        return _BEARER.sub(lambda match: match.group(1) + REDACTED, text)

    def format(self, record: logging.LogRecord) -> str:
        try:
            return self._format(record)
        except Exception:  # a bad record must not break the caller, nor drop the line
            return self._fallback(record)

    def _format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "ts": _timestamp(record.created),
            "level": str(record.levelname),
            "logger": str(record.name),
            "msg": self.redact(_message(record)),
        }
        for key in ("event", "session"):
            value = getattr(record, key, None)
            if value is not None:
                entry[key] = self._field(value)
        if record.exc_info:
            entry["exc"] = self.redact(self.formatException(record.exc_info))
        elif record.exc_text:
            entry["exc"] = self.redact(str(record.exc_text))
        if record.stack_info:
            entry["stack"] = self.redact(self.formatStack(record.stack_info))
        return json.dumps(entry, ensure_ascii=True, allow_nan=False)

    def _field(self, value: object) -> object:
        if isinstance(value, bool | int):
            return value
        if isinstance(value, float) and math.isfinite(value):
            return value
        return self.redact(value if isinstance(value, str) else _safe_str(value))

    def _fallback(self, record: logging.LogRecord) -> str:
        try:
            created = float(getattr(record, "created", time.time()))
            ts = _timestamp(created)
        except Exception:
            ts = _timestamp(time.time())
        entry = {
            "ts": ts,
            "level": _safe_str(getattr(record, "levelname", "?")),
            "logger": _safe_str(getattr(record, "name", "?")),
            "msg": "(unformattable log record) " + _safe_str(getattr(record, "msg", "")),
        }
        try:
            entry = {key: self.redact(value) for key, value in entry.items()}
        except Exception:
            entry["msg"] = "(unformattable log record)"
        return json.dumps(entry, ensure_ascii=True)


def _timestamp(created: float) -> str:
    """ISO 8601 in UTC with milliseconds: 2025-01-31T12:00:00.123Z."""
    moment = datetime.fromtimestamp(created, tz=UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _message(record: logging.LogRecord) -> str:
    """The %-formatted message; a call whose arguments do not fit still shows them."""
    try:
        return record.getMessage()
    except Exception:
        return f"{_safe_str(record.msg)} (unformattable args: {_safe_repr(record.args)})"


def _safe_str(value: object) -> str:
    try:
        return str(value)
    except Exception:
        return _safe_repr(value)


def _safe_repr(value: object) -> str:
    try:
        return repr(value)
    except Exception:
        return f"<unprintable {type(value).__name__}>"


def configure_json_logging(
    level: str, file: Path | None, secrets: Iterable[str]
) -> logging.Handler:
    """Log JSON lines from the root logger at `level`: to stdout, or appended to `file`.

    Handlers installed by an earlier call are removed (and closed) first, so calling this
    again reconfigures instead of duplicating lines; other handlers are left alone.
    Raises ValueError for an unknown level, before changing anything.
    """
    numeric = _level(level)
    handler: logging.Handler
    if file is None:
        handler = logging.StreamHandler(sys.stdout)
    else:
        private_file(file)  # chat text ends up in the log: 0600 whatever the umask
        handler = logging.FileHandler(file, mode="a", encoding="utf-8")
    handler.setFormatter(JsonFormatter(secrets))
    root = logging.getLogger()
    while _installed:
        previous = _installed.pop()
        root.removeHandler(previous)
        previous.close()  # closes our file; a StreamHandler leaves stdout open
    root.addHandler(handler)
    _installed.append(handler)
    root.setLevel(numeric)
    return handler


def _level(level: str) -> int:
    name = level.strip().upper()
    if name.isdigit():
        return int(name)
    numeric = logging.getLevelNamesMapping().get(name)
    if numeric is None:
        raise ValueError(f"unknown log level {level!r}")
    return numeric

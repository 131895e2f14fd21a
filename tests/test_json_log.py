"""JSON-lines logging: the fields, redaction, odd records and the root handler."""

from __future__ import annotations

import io
import json
import logging
import re
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from gateway_core.service.json_log import JsonFormatter, configure_json_logging

BOT_TOKEN = "123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw9"
API_KEY = "sk-proj-abcdefghijklmnopqrstuvwxyz0123456789"
TS = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")


class Capture:
    """A logger whose records go through one JsonFormatter into a string."""

    def __init__(self, formatter: JsonFormatter) -> None:
        self.stream = io.StringIO()
        self.handler = logging.StreamHandler(self.stream)
        self.handler.setFormatter(formatter)
        self.logger = logging.getLogger("tests.json_log.capture")
        self.logger.addHandler(self.handler)
        self.logger.setLevel(logging.DEBUG)
        self.logger.propagate = False

    def lines(self) -> list[str]:
        return self.stream.getvalue().splitlines()

    def entries(self) -> list[dict[str, object]]:
        parsed = [json.loads(line) for line in self.lines()]
        assert all(isinstance(entry, dict) for entry in parsed)
        return parsed

    def close(self) -> None:
        self.logger.removeHandler(self.handler)
        self.logger.propagate = True


@pytest.fixture
def capture() -> Iterator[Capture]:
    made = Capture(JsonFormatter(secrets=[BOT_TOKEN, "hunter2-secret"]))
    yield made
    made.close()


def record(msg: object = "hello", *args: object, **attrs: object) -> logging.LogRecord:
    made = logging.LogRecord("odd", logging.INFO, __file__, 1, msg, args or None, None)
    for key, value in attrs.items():
        setattr(made, key, value)
    return made


def test_one_json_object_per_line_with_the_fields(capture: Capture) -> None:
    before = datetime.now(UTC)
    capture.logger.info("turn %d of %s", 3, "alice")
    capture.logger.warning("second")

    first, second = capture.entries()
    assert first == {
        "ts": first["ts"],
        "level": "INFO",
        "logger": "tests.json_log.capture",
        "msg": "turn 3 of alice",
    }
    assert second["level"] == "WARNING" and second["msg"] == "second"
    ts = first["ts"]
    assert isinstance(ts, str) and TS.match(ts)
    stamped = datetime.fromisoformat(ts.replace("Z", "+00:00"))
    assert abs((stamped - before).total_seconds()) < 5


def test_timestamp_is_utc_with_milliseconds() -> None:
    made = record()
    made.created = 1_700_000_000.1239
    entry = json.loads(JsonFormatter().format(made))
    assert entry["ts"] == "2023-11-14T22:13:20.123Z"


def test_event_and_session_from_extra(capture: Capture) -> None:
    capture.logger.info("turn started", extra={"event": "turn_started", "session": "telegram:42:7"})
    capture.logger.info("just the event", extra={"event": "ready"})
    capture.logger.info("a numeric session", extra={"session": 17})

    first, second, third = capture.entries()
    assert first["event"] == "turn_started" and first["session"] == "telegram:42:7"
    assert first["msg"] == "turn started"
    assert second["event"] == "ready" and "session" not in second
    assert third["session"] == 17 and "event" not in third


def test_exception_traceback(capture: Capture) -> None:
    try:
        raise RuntimeError("the store is gone")
    except RuntimeError:
        capture.logger.exception("turn failed", extra={"event": "turn_failed"})

    (entry,) = capture.entries()
    assert len(capture.lines()) == 1
    assert entry["level"] == "ERROR" and entry["msg"] == "turn failed"
    assert entry["event"] == "turn_failed"
    exc = entry["exc"]
    assert isinstance(exc, str)
    assert exc.startswith("Traceback (most recent call last):")
    assert "RuntimeError: the store is gone" in exc


def test_no_exc_field_without_exception(capture: Capture) -> None:
    capture.logger.info("fine")
    (entry,) = capture.entries()
    assert "exc" not in entry


def test_explicit_secrets_are_redacted(capture: Capture) -> None:
    capture.logger.info("password is hunter2-secret, twice: hunter2-secret")
    capture.logger.info("token=%s", BOT_TOKEN, extra={"session": f"x{BOT_TOKEN}"})

    first, second = capture.entries()
    assert first["msg"] == "password is ***, twice: ***"
    assert second["msg"] == "token=***"
    assert second["session"] == "x***"
    assert "hunter2" not in capture.stream.getvalue()
    assert BOT_TOKEN not in capture.stream.getvalue()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            f"GET https://api.telegram.org/bot{BOT_TOKEN}/getUpdates",
            "GET https://api.telegram.org/bot***/getUpdates",
        ),
        ("other bot 987654:ABCDEFGHIJKLMNOPQRSTUVWXYZ_abcd-12 here", "other bot *** here"),
        (f"key {API_KEY}.", "key ***."),
        ("old style sk-abcdefghijklmnopqrstuvwx", "old style ***"),
        ("Authorization: Bearer eyJhbGciOi.J9.abc-_=", "Authorization: Bearer ***"),
        ("authorization: bearer abcdefghijkl", "authorization: bearer ***"),
        # Not secrets: short or ordinary text stays readable.
        ("chat 12345:678 at 10:30:00", "chat 12345:678 at 10:30:00"),
        ("scikit sk-learn and desk-topology", "scikit sk-learn and desk-topology"),
        ("uses Bearer auth", "uses Bearer auth"),
    ],
)
def test_secret_looking_text_is_redacted_without_being_passed(text: str, expected: str) -> None:
    formatter = JsonFormatter()  # no explicit secrets
    assert json.loads(formatter.format(record(text)))["msg"] == expected
    assert formatter.redact(text) == expected


def test_secrets_inside_exception_text_are_redacted(capture: Capture) -> None:
    try:
        raise ConnectionError(
            f"POST https://api.telegram.org/bot{BOT_TOKEN}/sendMessage failed; "
            f"api key {API_KEY}; pw hunter2-secret"
        )
    except ConnectionError:
        capture.logger.exception("send failed: %s", API_KEY)

    (entry,) = capture.entries()
    exc = entry["exc"]
    assert isinstance(exc, str)
    assert "bot***/sendMessage" in exc and "api key ***" in exc and "pw ***" in exc
    assert entry["msg"] == "send failed: ***"
    raw = capture.stream.getvalue()
    for secret in (BOT_TOKEN, API_KEY, "hunter2-secret", "AAHdqTcvCH1vGWJx"):
        assert secret not in raw


def test_overlapping_secrets_redact_whole() -> None:
    formatter = JsonFormatter(secrets=["abcd", "abcdefgh", "", "xy"])
    assert formatter.redact("abcdefgh abcd xy") == "*** *** xy"  # too short to be a secret


def test_non_ascii_and_control_characters_stay_valid_single_line_json(
    capture: Capture,
) -> None:
    text = 'привет 👋 \x00\x07\x1b[31mred\r\nnext\u2028line\u2029para\x85nel \udcff "q" \\'
    capture.logger.info(text, extra={"session": "sess\nion", "event": "é"})

    lines = capture.lines()
    assert len(lines) == 1
    assert lines[0].isascii()
    assert len(lines[0].splitlines()) == 1  # no character splits the line, even for splitlines
    (entry,) = capture.entries()
    assert entry["msg"] == text
    assert entry["session"] == "sess\nion" and entry["event"] == "é"
    lines[0].encode("ascii")  # writable to a stream of any encoding


@pytest.mark.parametrize(
    "made",
    [
        record("%d items", "not a number"),  # args that do not fit
        record("%s and %s", "only one"),
        record({"a": 1}),  # msg is not a string
        record(None),
        record("hi", event=object(), session=float("nan")),
        record("hi", event=["a", "list"], session=float("inf")),
        record("hi", created="not a time"),
    ],
)
def test_odd_records_never_raise(made: logging.LogRecord) -> None:
    line = JsonFormatter(secrets=["secret-value"]).format(made)

    entry = json.loads(line)
    assert isinstance(entry, dict)
    assert entry["level"] == "INFO" and entry["logger"] == "odd"
    assert isinstance(entry["msg"], str)
    assert TS.match(entry["ts"])


def test_unformattable_args_still_show_the_message() -> None:
    entry = json.loads(JsonFormatter().format(record("%d items for %s", "x", BOT_TOKEN)))
    assert entry["msg"].startswith("%d items for %s (unformattable args:")
    assert BOT_TOKEN not in entry["msg"]


def test_objects_whose_str_and_repr_raise() -> None:
    class Hostile:
        def __str__(self) -> str:
            raise RuntimeError("no str")

        def __repr__(self) -> str:
            raise RuntimeError("no repr")

    entry = json.loads(JsonFormatter().format(record(Hostile(), event=Hostile())))
    assert isinstance(entry["msg"], str) and isinstance(entry["event"], str)


@pytest.fixture
def root_logger() -> Iterator[logging.Logger]:
    """The root logger, restored afterwards (configure_json_logging changes it)."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield root
    for handler in list(root.handlers):
        if handler not in handlers:
            root.removeHandler(handler)
            handler.close()
    root.setLevel(level)


def test_configure_json_logging_to_a_file(tmp_path: Path, root_logger: logging.Logger) -> None:
    path = tmp_path / "logs" / "gateway.jsonl"
    handler = configure_json_logging("info", path, [BOT_TOKEN])

    assert handler in root_logger.handlers
    assert root_logger.level == logging.INFO
    logging.getLogger("gateway_core.test").info("hello %s", BOT_TOKEN, extra={"event": "e"})
    logging.getLogger("gateway_core.test").debug("below the level")
    handler.flush()

    (line,) = path.read_text(encoding="utf-8").splitlines()
    entry = json.loads(line)
    assert entry["msg"] == "hello ***" and entry["event"] == "e"
    assert entry["logger"] == "gateway_core.test"


def test_configure_json_logging_twice_does_not_duplicate(
    tmp_path: Path, root_logger: logging.Logger
) -> None:
    path = tmp_path / "gateway.jsonl"
    path.write_text('{"earlier": "run"}\n', encoding="utf-8")  # appended to, not replaced
    first = configure_json_logging("INFO", path, [])
    second = configure_json_logging("DEBUG", path, [])

    assert first not in root_logger.handlers
    assert sum(1 for h in root_logger.handlers if h is second) == 1
    assert root_logger.level == logging.DEBUG
    logging.getLogger("gateway_core.test").debug("once")
    second.flush()

    lines = path.read_text(encoding="utf-8").splitlines()
    assert [json.loads(line).get("msg") for line in lines] == [None, "once"]


def test_configure_json_logging_leaves_other_handlers_alone(
    root_logger: logging.Logger, capsys: pytest.CaptureFixture[str]
) -> None:
    other = logging.NullHandler()
    root_logger.addHandler(other)
    configure_json_logging("WARNING", None, [])
    handler = configure_json_logging("WARNING", None, [])

    assert other in root_logger.handlers
    assert isinstance(handler, logging.StreamHandler) and handler.stream is sys.stdout
    logging.getLogger("gateway_core.test").warning("to stdout")
    logging.getLogger("gateway_core.test").info("filtered")

    out = capsys.readouterr().out.splitlines()
    assert [json.loads(line)["msg"] for line in out] == ["to stdout"]


def test_configure_json_logging_rejects_an_unknown_level(
    tmp_path: Path, root_logger: logging.Logger
) -> None:
    before = list(root_logger.handlers)
    with pytest.raises(ValueError, match="unknown log level"):
        configure_json_logging("LOUD", tmp_path / "x.jsonl", [])
    assert root_logger.handlers == before
    assert not (tmp_path / "x.jsonl").exists()

"""A bounded in-memory tail of the gateway's log, for the console's log pane and `attach`.

Logging never writes into an operator's screen: the console installs a file handler and this
ring, never a stderr handler. The ring keeps each record as a `LogEntry` (time, level, event,
session, message; numbered, so a reader asks only for what it has not seen) and as a
formatted line (`tail`). Text is kept raw; whoever displays it sanitises it (a log line may
quote a user's message). `redact` scrubs secrets from both before they are kept.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

DEFAULT_LINES = 500


@dataclass(frozen=True, slots=True)
class LogEntry:
    seq: int  # 1, 2, 3... in the order written
    at: float  # epoch seconds
    level: str
    logger: str
    event: str | None  # the `event` extra the gateway's own records carry
    session: str | None  # the `session` extra: a session key
    message: str


class LogRing(logging.Handler):
    def __init__(
        self,
        lines: int = DEFAULT_LINES,
        *,
        redact: Callable[[str], str] | None = None,
        clock: Callable[[], float] | None = None,
    ) -> None:
        """clock: stamps the entries instead of the record's own time (a gateway on a
        manual clock logs on that clock's time)."""
        super().__init__()
        self._clock = clock
        self._lines: deque[str] = deque(maxlen=lines)
        self._entries: deque[LogEntry] = deque(maxlen=lines)
        self._redact = redact or (lambda text: text)
        self.total = 0  # lines ever written: a reader can tell what it has not seen yet
        self.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = self.format(record)
            message = record.getMessage()
            if record.exc_info and record.exc_info[1] is not None:
                message += f" ({type(record.exc_info[1]).__name__}: {record.exc_info[1]})"
        except Exception:  # a bad log call must not break the caller
            text = message = f"(unformattable log record from {record.name})"
        for line in self._redact(text).splitlines() or [""]:
            self._lines.append(line)
            self.total += 1
        self._entries.append(
            LogEntry(
                seq=(self._entries[-1].seq + 1) if self._entries else 1,
                at=record.created if self._clock is None else self._clock(),
                level=record.levelname,
                logger=record.name,
                event=_extra(record, "event"),
                session=_extra(record, "session"),
                message=self._redact(message),
            )
        )

    def tail(self, limit: int = DEFAULT_LINES) -> list[str]:
        return list(self._lines)[-limit:]

    def entries(self, after: int = 0, limit: int = DEFAULT_LINES) -> list[LogEntry]:
        """The newest `limit` entries numbered above `after`, oldest first."""
        return [entry for entry in self._entries if entry.seq > after][-limit:]


def _extra(record: logging.LogRecord, name: str) -> str | None:
    value = getattr(record, name, None)
    return None if value is None else str(value)

"""A bounded in-memory tail of the gateway's log, for the console's log pane and `attach`.

Logging never writes into an operator's screen: the console installs a file handler and this
ring, never a stderr handler. The ring keeps formatted lines as raw text; whoever displays
them sanitises them (a log line may quote a user's message).
"""

from __future__ import annotations

import logging
from collections import deque

DEFAULT_LINES = 500


class LogRing(logging.Handler):
    def __init__(self, lines: int = DEFAULT_LINES) -> None:
        super().__init__()
        self._lines: deque[str] = deque(maxlen=lines)
        self.total = 0  # lines ever written: a reader can tell what it has not seen yet
        self.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = self.format(record)
        except Exception:  # a bad log call must not break the caller
            text = f"(unformattable log record from {record.name})"
        for line in text.splitlines() or [""]:
            self._lines.append(line)
            self.total += 1

    def tail(self, limit: int = DEFAULT_LINES) -> list[str]:
        return list(self._lines)[-limit:]

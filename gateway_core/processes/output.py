"""A bounded view of a process's output: whole lines, a character budget, no surprises.

Bytes are decoded as UTF-8 with replacement (invalid bytes never raise), lines longer than
MAX_LINE are cut into pieces (a 1 MB line without a newline cannot grow memory past the
budget), and the oldest lines are dropped once the buffer holds more than `budget` characters.
Escape sequences are kept as text here; the console sanitises at its one display boundary.
"""

from __future__ import annotations

import codecs
from collections import deque

MAX_LINE = 16_384
DEFAULT_BUDGET = 200_000


class OutputBuffer:
    def __init__(self, budget: int = DEFAULT_BUDGET) -> None:
        self._budget = budget
        self._lines: deque[str] = deque()
        self._chars = 0
        self._partial = ""
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self.total_bytes = 0
        self.total_lines = 0

    def feed(self, data: bytes) -> list[str]:
        """Add raw bytes; returns the complete lines they finished (for watch patterns)."""
        self.total_bytes += len(data)
        text = self._partial + self._decoder.decode(data)
        *complete, self._partial = text.split("\n")
        finished = []
        for line in complete:
            finished.extend(self._pieces(line))
        while len(self._partial) > MAX_LINE:  # a line that never ends is cut, not hoarded
            finished.append(self._partial[:MAX_LINE])
            self._partial = self._partial[MAX_LINE:]
        for line in finished:
            self._append(line)
        return finished

    def close(self) -> list[str]:
        """The process ended: whatever is left is a last line."""
        rest = self._partial + self._decoder.decode(b"", final=True)
        self._partial = ""
        lines = self._pieces(rest) if rest else []
        for line in lines:
            self._append(line)
        return lines

    @property
    def last_line(self) -> str:
        for line in reversed(self._lines):
            if line.strip():
                return line
        return self._partial

    def tail(self, limit: int = 20) -> list[str]:
        return list(self._lines)[-limit:]

    def text(self) -> str:
        return "\n".join(self._lines)

    def _pieces(self, line: str) -> list[str]:
        line = line.rstrip("\r")
        return [line[i : i + MAX_LINE] for i in range(0, len(line), MAX_LINE)] or [""]

    def _append(self, line: str) -> None:
        self._lines.append(line)
        self._chars += len(line) + 1
        self.total_lines += 1
        while self._chars > self._budget and len(self._lines) > 1:
            self._chars -= len(self._lines.popleft()) + 1

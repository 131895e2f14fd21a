"""Where a console process logs: a file (and the log pane's ring), never the screen.

A stderr handler would write straight into the running TUI; Textual draws on stderr."""

from __future__ import annotations

import logging
from pathlib import Path

PLAIN = "%(asctime)s %(levelname)s %(name)s %(message)s"


def log_to_file(path: Path, level: str, formatter: logging.Formatter | None = None) -> None:
    """Replace every root handler with one appending to `path`."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path)
    handler.setFormatter(formatter or logging.Formatter(PLAIN))
    root.addHandler(handler)
    root.setLevel(level.upper())

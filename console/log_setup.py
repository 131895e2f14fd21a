"""Where a console process logs: a file (and the log pane's ring), never the screen.

A stderr handler would write straight into the running TUI; Textual draws on stderr."""

from __future__ import annotations

import logging
from pathlib import Path

from gateway_core.private_files import private_file

PLAIN = "%(asctime)s %(levelname)s %(name)s %(message)s"


def log_to_file(path: Path, level: str, formatter: logging.Formatter | None = None) -> None:
    """Replace every root handler with one appending to `path`."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    private_file(path)  # chat text ends up in the log: 0600 whatever the umask
    handler = logging.FileHandler(path)
    handler.setFormatter(formatter or logging.Formatter(PLAIN))
    root.addHandler(handler)
    root.setLevel(level.upper())

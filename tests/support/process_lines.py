"""Reading other processes' command lines in tests, where they come and go."""

from __future__ import annotations

import psutil


def command_line(process: psutil.Process) -> str:
    """Its command line joined by spaces; empty once it has exited (a zombie not yet reaped,
    or gone): psutil raises for those, and a child that exits while a test lists the
    children is not an error."""
    try:
        return " ".join(process.cmdline())
    except psutil.Error:
        return ""

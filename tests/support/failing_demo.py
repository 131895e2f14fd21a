"""`switchboard demo` whose console raises when `?` is pressed: a bug in the UI, made on
purpose, for the test that the demo still stops everything it started when its UI fails."""

from __future__ import annotations

import sys

from console import cli
from console.app import ConsoleApp


def _a_bug_in_the_console(self: ConsoleApp) -> None:
    raise RuntimeError("a bug in the console, on purpose")


ConsoleApp.action_help = _a_bug_in_the_console  # type: ignore[method-assign]

if __name__ == "__main__":
    sys.exit(cli.main(sys.argv[1:]))

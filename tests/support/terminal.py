"""Driving a program in a real terminal (tmux), as an operator over SSH would."""

from __future__ import annotations

import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager


class Terminal:
    """One tmux session on its own tmux server (`-L`): an operator's own tmux, or another
    test's, can neither see it nor lend it their environment."""

    def __init__(self, name: str) -> None:
        self.name = name

    def tmux(self, *args: str) -> str:
        done = subprocess.run(
            ["tmux", "-L", self.name, *args], capture_output=True, text=True, check=True,
            timeout=10,
        )  # fmt: skip
        return done.stdout

    def screen(self) -> str:
        return self.tmux("capture-pane", "-p", "-t", self.name)

    def keys(self, *keys: str) -> None:
        for key in keys:
            self.tmux("send-keys", "-t", self.name, key)
            time.sleep(0.15)  # a human's pace: the app handles one key per frame

    def wait_for(self, check: Callable[[str], bool], within: float, what: str) -> str:
        """The screen once check(screen) holds; fails with the last screen otherwise."""
        deadline = time.monotonic() + within
        screen = ""
        while time.monotonic() < deadline:
            screen = self.screen()
            if check(screen):
                return screen
            time.sleep(0.2)  # a terminal has no event to wait on: poll the screen, bounded
        raise AssertionError(f"not seen within {within} s: {what}\n{screen}")


@contextmanager
def tmux_session(
    command: str, env: dict[str, str], width: int = 150, height: int = 45
) -> Iterator[Terminal]:
    """Run `command` in a new detached tmux session; the session is killed afterwards."""
    name = f"sb-{uuid.uuid4().hex[:8]}"
    subprocess.run(
        ["tmux", "-L", name, "-f", "/dev/null", "new-session", "-d", "-s", name,
         "-x", str(width), "-y", str(height), command],
        check=True,
        timeout=10,
        env=env,  # a new server of its own starts with exactly this environment
    )  # fmt: skip
    term = Terminal(name)
    term.tmux("set-option", "-t", name, "remain-on-exit", "on")
    try:
        yield term
    finally:
        subprocess.run(["tmux", "-L", name, "kill-server"], capture_output=True, timeout=10)

"""`switchboard demo` as an operator meets it: a real terminal (tmux), real keys, a real gateway.

Within 10 s the overview shows live sessions; "restart now" fills the recovery tab; approving
a held candidate makes it run (its row goes, the audit has the approval); leaving with
"drain and stop" exits 0.
"""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("tmux") is None, reason="needs tmux (.ci/run installs it)"),
]


class Terminal:
    def __init__(self, name: str) -> None:
        self.name = name

    def tmux(self, *args: str) -> str:
        done = subprocess.run(
            ["tmux", *args], capture_output=True, text=True, check=True, timeout=10
        )
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


@pytest.fixture
def terminal(tmp_path: Path) -> Iterator[Terminal]:
    name = f"sb-{uuid.uuid4().hex[:8]}"
    command = (
        f"cd {REPO} && {sys.executable} -m console.cli demo --no-mouse --state-dir {tmp_path};"
        f" echo $? > {tmp_path / 'exit-code'}"
    )
    subprocess.run(
        ["tmux", "new-session", "-d", "-s", name, "-x", "150", "-y", "45", command],
        check=True,
        timeout=10,
        env={"PATH": "/usr/bin:/bin", "TERM": "xterm-256color", "HOME": str(tmp_path)},
    )
    term = Terminal(name)
    term.tmux("set-option", "-t", name, "remain-on-exit", "on")
    try:
        yield term
    finally:
        subprocess.run(["tmux", "kill-session", "-t", name], capture_output=True, timeout=10)


def _banner_count(screen: str, label: str) -> int:
    words = screen.splitlines()[0].split()
    return int(words[words.index(label) + 1]) if label in words else 0


def test_demo_shows_live_sessions_recovers_and_approves(terminal: Terminal, tmp_path: Path) -> None:
    terminal.wait_for(
        lambda s: "RUNNING" in s and _banner_count(s, "running") > 0,
        within=10,
        what="a running gateway with running turns on the overview",
    )
    terminal.keys("2")
    terminal.wait_for(lambda s: "loopback:ada" in s, within=5, what="sessions listed")

    terminal.keys("x")
    terminal.wait_for(lambda s: "Restart now?" in s, within=5, what="the restart confirmation")
    terminal.keys("Tab", "Enter")  # Cancel is focused: move to "Restart now"
    terminal.wait_for(lambda s: "run #2" in s, within=20, what="the second run")

    terminal.keys("3")
    screen = terminal.wait_for(
        lambda s: "ambiguous-tool" in s and "dee-1" in s, within=10, what="held candidates"
    )
    rows = [line for line in screen.splitlines() if "loopback:" in line]
    target = next(i for i, line in enumerate(rows) if "dee-1" in line)
    terminal.keys(*(["Down"] * target), "a")
    terminal.wait_for(lambda s: "Approve: resume" in s, within=5, what="the approve dialog")
    terminal.keys("Tab", "Enter")
    terminal.wait_for(
        lambda s: "dee-1" not in s, within=15, what="the approved candidate ran and left the list"
    )
    with sqlite3.connect(tmp_path / "switchboard.db") as db:
        actions = db.execute("SELECT action, outcome FROM audit ORDER BY id").fetchall()
    assert ("approve", "ok") in actions

    terminal.keys("q")
    terminal.wait_for(lambda s: "Leave the console?" in s, within=5, what="the leave dialog")
    terminal.keys("Tab", "Tab", "Enter")  # Cancel → Detach → Drain and stop
    exit_code = tmp_path / "exit-code"
    screen = terminal.wait_for(lambda _: exit_code.exists(), within=30, what="the demo exiting")
    assert exit_code.read_text().strip() == "0", screen

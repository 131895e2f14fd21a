"""`switchboard demo` as an operator meets it: a real terminal (tmux), real keys, a real gateway.

Within 10 s the overview shows live sessions; "restart now" fills the recovery tab; approving
a held candidate makes it run (its row goes, the audit has the approval); leaving with
"drain and stop" exits 0.
"""

from __future__ import annotations

import shutil
import sqlite3
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.terminal import Terminal, tmux_session

REPO = Path(__file__).resolve().parent.parent

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("tmux") is None, reason="needs tmux (.ci/run installs it)"),
]


@pytest.fixture
def terminal(tmp_path: Path) -> Iterator[Terminal]:
    command = (
        f"cd {REPO} && {sys.executable} -m console.cli demo --no-mouse --state-dir {tmp_path};"
        f" echo $? > {tmp_path / 'exit-code'}"
    )
    env = {"PATH": "/usr/bin:/bin", "TERM": "xterm-256color", "HOME": str(tmp_path)}
    with tmux_session(command, env) as term:
        yield term


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

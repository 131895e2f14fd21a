"""`switchboard demo` in a real terminal: every process it started is gone after every way of
leaving it (issue 12, item 6), a detached demo can be attached to (issue 13, item 16), and it
prints its state path only when it keeps it (item 17).

Each test starts the demo in tmux on a state dir of its own, waits until its simulated users
have background jobs running, notes every descendant of the demo's process, leaves one way,
and then checks that the demo exited and that none of those processes (nor any job of that
state dir) is still alive.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest

from tests.support.process_lines import command_line
from tests.support.terminal import Terminal, tmux_session

REPO = Path(__file__).resolve().parent.parent
SWITCHBOARD = [sys.executable, "-m", "console.cli"]

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("tmux") is None, reason="needs tmux (.ci/run installs it)"),
]


@dataclass
class Demo:
    term: Terminal
    state: Path
    exit_file: Path
    process: psutil.Process
    started: list[psutil.Process]  # every descendant once its jobs ran

    def exit_code(self) -> int | None:
        return int(self.exit_file.read_text()) if self.exit_file.exists() else None


def env_of(tmp_path: Path) -> dict[str, str]:
    return {
        "PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin",
        "TERM": "screen-256color",
        "LANG": "C",
        "HOME": str(tmp_path),
    }


def _demo_process(state: Path) -> psutil.Process | None:
    for process in psutil.process_iter(["cmdline"]):
        cmdline = process.info["cmdline"] or []
        if "demo" in cmdline and str(state) in cmdline and "python" in cmdline[0]:
            return process
    return None


def _wait(check: object, what: str, within: float = 30) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if check():  # type: ignore[operator]
            return
        time.sleep(0.2)  # other processes, no event to wait on: poll, bounded
    raise AssertionError(f"not within {within} s: {what}")


@contextmanager
def demo(tmp_path: Path, module: str = "console.cli", *extra: str) -> Iterator[Demo]:
    state = tmp_path / "state"
    exit_file = tmp_path / "exit-code"
    command = (
        f"cd {REPO} && {sys.executable} -m {module} demo --no-mouse --state-dir {state}"
        f" {' '.join(extra)}; echo $? > {exit_file}"
    )
    with tmux_session(command, env_of(tmp_path), width=120, height=40) as term:
        term.wait_for(lambda s: "RUNNING" in s, 20, "the demo running")
        found: list[psutil.Process | None] = [None]

        def jobs_running() -> bool:
            found[0] = found[0] or _demo_process(state)
            if found[0] is None:
                return False
            children = found[0].children(recursive=True)
            return sum("switchboard-job" in command_line(c) for c in children) >= 2

        _wait(jobs_running, "two background jobs running")
        process = found[0]
        assert process is not None
        yield Demo(term, state, exit_file, process, process.children(recursive=True))


def alive(process: psutil.Process) -> bool:
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def jobs_of(state: Path) -> list[str]:
    """Processes still running a job of this state dir (the job wrapper names its log)."""
    found = []
    for process in psutil.process_iter(["cmdline"]):
        cmdline = " ".join(process.info["cmdline"] or [])
        if str(state / "jobs") in cmdline:
            found.append(cmdline[:120])
    return found


def assert_all_gone(run: Demo) -> None:
    _wait(lambda: not alive(run.process), "the demo exiting")
    assert len(run.started) >= 3  # the demo's jobs were among its descendants
    _wait(lambda: not any(alive(p) for p in run.started), "every descendant gone", 10)
    assert jobs_of(run.state) == []


def leave_with(term: Terminal, *keys: str) -> None:
    term.keys("q")
    term.wait_for(lambda s: "Leave the console?" in s, 10, "the leave dialog")
    term.keys(*keys)


def test_drain_and_stop_leaves_nothing_running(tmp_path: Path) -> None:
    with demo(tmp_path) as run:
        leave_with(run.term, "Tab", "Tab", "Enter")  # Cancel → Detach → Drain and stop
        assert_all_gone(run)
        _wait(lambda: run.exit_code() is not None, "the exit code")
        assert run.exit_code() == 0
        # --state-dir keeps it: the path is printed, and it is there.
        assert f"State and log kept in {run.state}" in run.term.screen().replace("\n", "")
        assert (run.state / "switchboard.db").exists()


def test_detach_serves_the_socket_then_ctrl_c_leaves_nothing_running(tmp_path: Path) -> None:
    with demo(tmp_path) as run:
        leave_with(run.term, "Tab", "Enter")  # Cancel → Detach
        screen = run.term.wait_for(lambda s: "switchboard attach --socket" in s, 10, "detached")
        socket = run.state / "control.sock"
        assert f"switchboard attach --socket {socket}" in screen.replace("\n", "")
        status = subprocess.run(
            [*SWITCHBOARD, "status", "--json", "--socket", str(socket)],
            capture_output=True, text=True, timeout=60, cwd=REPO, env=env_of(tmp_path),
        )  # fmt: skip
        assert status.returncode == 0, status.stderr
        assert json.loads(status.stdout)["state"] == "running"
        run.term.keys("C-c")
        assert_all_gone(run)
        assert run.exit_code() == 0


def test_the_palettes_quit_leaves_through_the_dialog_and_nothing_runs(tmp_path: Path) -> None:
    with demo(tmp_path) as run:
        run.term.keys("C-p")
        run.term.wait_for(lambda s: "Search for commands" in s, 10, "the palette")
        run.term.keys(*"quit")
        run.term.wait_for(lambda s: "Quit" in s, 10, "the Quit entry")
        run.term.keys("Enter")
        run.term.wait_for(lambda s: "Leave the console?" in s, 10, "the leave dialog")
        run.term.keys("Tab", "Tab", "Enter")
        assert_all_gone(run)
        assert run.exit_code() == 0


def test_an_exception_in_the_ui_stops_the_demo_and_everything_it_started(
    tmp_path: Path,
) -> None:
    with demo(tmp_path, "tests.support.failing_demo") as run:
        run.term.keys("?")  # the console raises here
        assert_all_gone(run)
        _wait(lambda: run.exit_code() is not None, "the exit code")
        assert run.exit_code() == 1
        assert "The console failed; the demo stops" in run.term.screen()


def test_sigterm_leaves_nothing_running(tmp_path: Path) -> None:
    with demo(tmp_path) as run:
        run.process.send_signal(signal.SIGTERM)
        assert_all_gone(run)
        assert run.exit_code() == 0


def test_sighup_of_the_terminal_leaves_nothing_running(tmp_path: Path) -> None:
    with demo(tmp_path) as run:
        run.term.tmux("kill-server")  # the terminal goes away: its processes get SIGHUP
        assert_all_gone(run)


def test_the_state_path_is_printed_only_when_it_is_kept(tmp_path: Path) -> None:
    env = env_of(tmp_path)
    gone = subprocess.run(
        [*SWITCHBOARD, "walkthrough"], capture_output=True, text=True, timeout=60, cwd=REPO,
        env=env,
    )  # fmt: skip
    assert gone.returncode == 0 and "switchboard-demo-" not in gone.stdout
    kept = subprocess.run(
        [*SWITCHBOARD, "walkthrough", "--keep-state"], capture_output=True, text=True,
        timeout=60, cwd=REPO, env=env,
    )  # fmt: skip
    assert kept.returncode == 0
    (line,) = [line for line in kept.stdout.splitlines() if line.startswith("State kept in ")]
    path = Path(line.removeprefix("State kept in ").strip())
    assert (path / "switchboard.db").exists()
    shutil.rmtree(path)

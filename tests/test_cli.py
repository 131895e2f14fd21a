"""The `switchboard` command as an operator runs it: a real process on a pseudo-terminal."""

from __future__ import annotations

import os
import pty
import select
import subprocess
import sys
import time
from pathlib import Path

SWITCHBOARD = [sys.executable, "-m", "console.cli"]


def run_in_pty(args: list[str], env: dict[str, str], timeout: float = 60) -> tuple[int, str]:
    """Run with stdin/stdout/stderr on a pty (as over SSH); return (exit code, screen text)."""
    leader, follower = pty.openpty()
    process = subprocess.Popen(
        args, stdin=follower, stdout=follower, stderr=follower, env=env, close_fds=True
    )
    os.close(follower)
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([leader], [], [], 0.5)
        if ready:
            try:
                data = os.read(leader, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            if not data:
                break
            chunks.append(data)
        elif process.poll() is not None:
            break
    code = process.wait(timeout=max(1.0, deadline - time.monotonic()))
    os.close(leader)
    return code, b"".join(chunks).decode("utf-8", "replace")


def _env(tmp_path: Path) -> dict[str, str]:
    return {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path),
        "TERM": "xterm-256color",
        "COLUMNS": "160",
        "LINES": "50",
    }


def test_walkthrough_narrates_a_restart_and_exits_cleanly(tmp_path: Path) -> None:
    code, screen = run_in_pty(
        [*SWITCHBOARD, "walkthrough", "--state-dir", str(tmp_path)], _env(tmp_path)
    )
    assert code == 0, screen
    for expected in ("resumable", "ambiguous-tool", "stale", "awaiting-user", "interrupted"):
        assert expected in screen
    assert (tmp_path / "switchboard.db").exists()


def test_a_bad_config_value_is_one_line_and_exit_78(tmp_path: Path) -> None:
    config = tmp_path / "switchboard.toml"
    config.write_text('[recovery]\ngate = "sometimes"\n')
    done = subprocess.run(
        [*SWITCHBOARD, "config", "-c", str(config)],
        capture_output=True,
        text=True,
        env=_env(tmp_path),
        timeout=60,
    )
    assert done.returncode == 78
    assert done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1
    assert str(config) in lines[0] and "gate" in lines[0] and "sometimes" in lines[0]


def test_config_prints_values_and_where_they_came_from(tmp_path: Path) -> None:
    config = tmp_path / "switchboard.toml"
    config.write_text("[gateway]\ndrain_timeout = 12\n")
    env = {**_env(tmp_path), "SWITCHBOARD_RECOVERY_GATE": "operator"}
    code, screen = run_in_pty([*SWITCHBOARD, "config", "-c", str(config)], env)
    assert code == 0, screen
    assert "gateway.drain_timeout" in screen and "12" in screen and "file" in screen
    assert "operator" in screen and "env SWITCHBOARD_RECOVERY_GATE" in screen


def test_a_database_that_is_not_sqlite_is_one_line_not_a_traceback(tmp_path: Path) -> None:
    (tmp_path / "switchboard.db").write_text("not a database")
    done = subprocess.run(
        [*SWITCHBOARD, "demo", "--state-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        env=_env(tmp_path),
        timeout=60,
    )
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines() == [
        f"switchboard: {tmp_path / 'switchboard.db'}: not a SQLite database (or corrupted);"
        " refusing to open or overwrite it"
    ]
    assert (tmp_path / "switchboard.db").read_text() == "not a database"

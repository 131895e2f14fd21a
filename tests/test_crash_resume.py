"""SIGKILL a real gateway while it RESUMES, and while a tool call's job runs.

* A turn killed, resumed after the restart, and killed again while its resume runs is
  resumed again at the next boot (it was not "a resume that produced nothing"), and answered.
* The same, past `recovery.max_attempts`: held for the operator with the reason
  ("interrupted 2 times while resuming"), and the user told exactly once.
* A turn killed during a foreground `terminal` command is settled from the command's exit
  status: when the command finished while the gateway was down its real result is recorded
  and the turn resumes; when it still runs, the restarted gateway waits for it (re-adopted)
  and then resumes. Nothing is run twice.

`work N` (the scripted agent) works N seconds, and a resumed `work` works its N seconds again,
so a second kill can land inside the resume itself.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from tests.support.crash_process import CrashProcess

pytestmark = pytest.mark.slow

RESUME_RUNNING = "SELECT count(*) FROM turns WHERE kind = 'resume' AND outcome IS NULL"
TURN_RUNNING = "SELECT count(*) FROM turns WHERE outcome IS NULL"
HELD = (
    "⚠️ Your request “work 3” was interrupted by a restart. An operator will review it before "
    "I continue."
)


async def _kill_during_turn_then_during_resumes(
    gateway: CrashProcess, resumes_killed: int, *recovery: str
) -> None:
    """The first run takes `work 3` and is killed while it works; then `resumes_killed`
    times, a restarted gateway is killed while that turn's resume works."""
    await gateway.start("--say", "work 3", "--no-wait", "--no-traffic", *recovery)
    await gateway.until(TURN_RUNNING)
    await gateway.sigkill()
    for _ in range(resumes_killed):
        await gateway.start("--no-traffic", *recovery)
        await gateway.until(RESUME_RUNNING)
        await gateway.sigkill()


async def test_a_resume_killed_while_it_runs_is_resumed_again_and_answered(
    tmp_path: Path,
) -> None:
    gateway = CrashProcess(tmp_path)
    try:
        await _kill_during_turn_then_during_resumes(gateway, 1)
        await gateway.start("--no-traffic")
        replies = await gateway.until_replies(1)
        assert replies == ["Back after a restart. You had asked: 'work 3'"]
        await gateway.until("SELECT count(*) FROM recovery WHERE state = 'none'")
        await gateway.sigterm()
    finally:
        await gateway.reap()
    assert gateway.replies() == ["Back after a restart. You had asked: 'work 3'"]
    outcomes = gateway.query("SELECT kind, outcome FROM turns ORDER BY generation")
    assert outcomes == [
        ("message", "crashed"),
        ("resume", "crashed"),
        ("resume", "completed"),
    ]


async def test_interrupted_past_the_attempt_limit_is_held_and_the_user_told_once(
    tmp_path: Path,
) -> None:
    gateway = CrashProcess(tmp_path)
    # The loop guard is set wide so that the attempt limit is what holds it here.
    recovery = ("--recovery", "max_attempts=2", "--recovery", "loop_boots=10")
    try:
        await _kill_during_turn_then_during_resumes(gateway, 2, *recovery)
        await gateway.start("--no-traffic", *recovery)
        assert await gateway.until_replies(1) == [HELD]
        state, explanation, told = gateway.query(
            "SELECT state, last_explanation, told FROM recovery WHERE state != 'none'"
        )[0]
        assert (state, told) == ("held", "held")
        assert "interrupted 2 times while resuming" in explanation
        await gateway.sigkill()
        # Another boot: still held (not dropped, not resumed), and nobody is told twice.
        await gateway.start("--no-traffic", *recovery)
        await gateway.until("SELECT count(*) FROM runs WHERE candidates > 0 AND id = 5")
        await gateway.sigterm()
    finally:
        await gateway.reap()
    assert gateway.replies() == [HELD]
    assert gateway.value("SELECT state FROM recovery WHERE session_id = 1") == "held"


def _tool(command: str) -> str:
    return "tool terminal " + json.dumps({"command": command})


async def test_a_command_that_finished_while_the_gateway_was_down_is_settled_from_its_exit_status(
    tmp_path: Path,
) -> None:
    gateway = CrashProcess(tmp_path)
    request = _tool("sleep 1; echo step2")
    try:
        await gateway.start("--say", request, "--no-wait", "--no-traffic")
        await gateway.until("SELECT count(*) FROM processes WHERE pid IS NOT NULL")
        await gateway.sigkill()
        # The job outlives the gateway (it is in its own session); wait until it has exited.
        await gateway.until("SELECT count(*) FROM processes WHERE tool_call_id IS NOT NULL")
        log_path = Path(gateway.value("SELECT log_path FROM processes"))
        status = log_path.with_suffix(".status")
        for _ in range(500):
            if status.exists():
                break
            await asyncio.sleep(0.01)
        assert status.read_text() == "0"
        await gateway.start("--no-traffic")
        replies = await gateway.until_replies(1)
        await gateway.sigterm()
    finally:
        await gateway.reap()
    assert replies == [f"Back after a restart. You had asked: {request!r}"]
    recovered = gateway.query(
        "SELECT tool_name, content FROM messages WHERE kind = 'tool_recovered'"
    )
    assert len(recovered) == 1
    name, content = recovered[0]
    result = json.loads(content)
    assert (name, result["exit_code"], result["output"].strip()) == ("terminal", 0, "step2")
    verdict = gateway.value("SELECT last_verdict FROM recovery WHERE session_id = 1")
    assert verdict == "resumable"
    assert gateway.value("SELECT count(*) FROM processes") == 1  # nothing was run again


async def test_a_command_still_running_after_the_restart_is_waited_for_then_resumed(
    tmp_path: Path,
) -> None:
    gateway = CrashProcess(tmp_path)
    request = _tool("sleep 3; echo step2")
    try:
        await gateway.start("--say", request, "--no-wait", "--no-traffic")
        await gateway.until("SELECT count(*) FROM processes WHERE pid IS NOT NULL")
        await gateway.sigkill()
        await gateway.start("--no-traffic")  # the job is still running: re-adopted
        await gateway.until("SELECT last_verdict = 'tool-running' FROM recovery")
        assert gateway.replies() == []  # not resumed blindly, not held
        replies = await gateway.until_replies(1)
        await gateway.sigterm()
    finally:
        await gateway.reap()
    assert replies == [f"Back after a restart. You had asked: {request!r}"]
    (content,) = gateway.query("SELECT content FROM messages WHERE kind = 'tool_recovered'")[0]
    assert json.loads(content)["output"].strip() == "step2"
    assert gateway.value("SELECT count(*) FROM processes") == 1
    assert gateway.value("SELECT state FROM recovery WHERE session_id = 1") == "none"

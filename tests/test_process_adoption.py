"""A background job outlives a SIGKILLed gateway and is re-adopted by the next one."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from pathlib import Path

import psutil
import pytest

from gateway_core.clock import ManualClock
from tests.support.harness import start_gateway

REPO = Path(__file__).resolve().parent.parent


async def _line(process: asyncio.subprocess.Process, within: float = 30) -> bytes:
    assert process.stdout is not None
    return await asyncio.wait_for(process.stdout.readline(), within)


@pytest.mark.slow
async def test_a_job_survives_a_gateway_sigkill_and_is_adopted_then_killable(
    tmp_path: Path, clock: ManualClock
) -> None:
    state_dir = tmp_path / "s"
    command = json.dumps({"command": "echo started; sleep 60", "background": True})
    gateway = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.support.crash_gateway",
        "--state-dir", str(state_dir), "--journal", str(tmp_path / "journal"),
        "--no-traffic", "--say", f"tool terminal {command}",
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        assert await _line(gateway) == b"READY\n"
        assert await _line(gateway) == b"SAID\n"
    finally:
        gateway.send_signal(signal.SIGKILL)
        await asyncio.wait_for(gateway.wait(), 15)

    # make_config's file for this state dir is the one the subprocess used.
    running = await start_gateway(state_dir, clock, notifier={"interval": 0})
    (view,) = running.gateway.snapshot().processes
    assert (view.state, view.detached) == ("running", True)
    job = running.gateway.processes.get(view.process_id)
    assert job is not None and job.record.pid is not None
    leader = psutil.Process(job.record.pid)
    assert leader.create_time() == job.record.pid_started_at  # the same process

    result = await running.gateway.processes.kill(job.id, grace=0.5)
    assert result.killed
    assert job.state == "killed"
    assert not psutil.pid_exists(job.record.pid) or leader.status() == psutil.STATUS_ZOMBIE

"""terminal and process tools with real subprocesses, and completion consumption."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from gateway_core.clock import ManualClock, SystemClock
from gateway_core.model import SessionKey, ToolCall
from gateway_core.processes.registry import ProcessRegistry
from gateway_core.store import Store
from gateway_core.tools.processes import ProcessTool, TerminalTool
from gateway_core.tools.registry import ToolBox, ToolContext
from tests.support.harness import start_gateway

CONTEXT = ToolContext(session_id=1, generation=1, clock=SystemClock())
OTHER = 2


@pytest.fixture
async def tools(store: Store, tmp_path: Path) -> AsyncIterator[tuple[ToolBox, ProcessRegistry]]:
    # Jobs belong to real conversations (the processes table references sessions).
    mine = await store.sessions.ensure(SessionKey("loopback", "mine"), None)
    other = await store.sessions.ensure(SessionKey("loopback", "other"), None)
    assert (mine.id, other.id) == (CONTEXT.session_id, OTHER)
    registry = ProcessRegistry(store, SystemClock(), tmp_path / "jobs")
    box = ToolBox([TerminalTool(lambda: registry), ProcessTool(lambda: registry)])
    try:
        yield box, registry
    finally:
        await registry.kill_all(grace=0.5)
        await registry.close()


async def call(box: ToolBox, name: str, **arguments: Any) -> Any:
    outcome = await box.run(ToolCall("c", name, json.dumps(arguments)), CONTEXT)
    return json.loads(outcome.content)


async def test_a_foreground_command_returns_its_output_and_consumes_the_completion(
    tools: tuple[ToolBox, ProcessRegistry],
) -> None:
    box, registry = tools
    result = await call(box, "terminal", command="echo hello; exit 3")
    assert (result["exit_code"], result["output"]) == (3, "hello")
    (job,) = registry.all()
    assert job.record.consumed is True


async def test_a_foreground_timeout_kills_the_command(
    tools: tuple[ToolBox, ProcessRegistry],
) -> None:
    box, registry = tools
    result = await call(box, "terminal", command="echo started; sleep 100", timeout=0.5)
    assert result["error"] == "timed out after 0.5 s; killed"
    assert registry.all()[0].state == "killed"


async def test_background_only_options_on_a_foreground_call_are_explained(
    tools: tuple[ToolBox, ProcessRegistry],
) -> None:
    box, registry = tools
    result = await call(box, "terminal", command="true", notify_on_complete=True)
    assert "only apply to background=true" in result["error"]
    assert registry.all() == []


async def test_poll_never_consumes_but_wait_that_saw_the_exit_does(
    tools: tuple[ToolBox, ProcessRegistry],
) -> None:
    box, _ = tools
    started = await call(box, "terminal", command="sleep 0.2; echo done", background=True,
                         notify_on_complete=True)  # fmt: skip
    process_id = started["process_id"]
    polled = await call(box, "process", action="poll", process_id=process_id)
    assert (polled["state"], polled["consumed"]) == ("running", False)
    waited = await call(box, "process", action="wait", process_id=process_id, timeout=10)
    assert (waited["state"], waited["exit_code"], waited["consumed"]) == ("exited", 0, True)
    assert waited["output"] == "done"


async def test_a_wait_that_times_out_does_not_consume(
    tools: tuple[ToolBox, ProcessRegistry],
) -> None:
    box, _ = tools
    started = await call(box, "terminal", command="sleep 100", background=True,
                         notify_on_complete=True)  # fmt: skip
    waited = await call(box, "process", action="wait", process_id=started["process_id"],
                        timeout=0.2)  # fmt: skip
    assert (waited["state"], waited["consumed"]) == ("running", False)
    assert waited["note"] == "still running; you will be notified"


async def test_kill_consumes_and_log_read_to_the_end_after_exit_consumes(
    tools: tuple[ToolBox, ProcessRegistry],
) -> None:
    box, registry = tools
    doomed = await call(box, "terminal", command="sleep 100", background=True)
    killed = await call(box, "process", action="kill", process_id=doomed["process_id"])
    assert (killed["state"], killed["consumed"]) == ("killed", True)

    chatty = await call(box, "terminal", command="printf '1\\n2\\n3\\n'", background=True)
    job = registry.get(chatty["process_id"])
    assert job is not None
    await job.finished.wait()
    partial = await call(box, "process", action="log", process_id=job.id, offset=0, limit=2)
    assert (partial["lines"], partial["consumed"]) == (["1", "2"], False)
    rest = await call(box, "process", action="log", process_id=job.id, offset=2, limit=2)
    assert (rest["lines"], rest["consumed"]) == (["3"], True)


async def test_processes_of_other_conversations_are_invisible(
    tools: tuple[ToolBox, ProcessRegistry],
) -> None:
    box, registry = tools
    other = await registry.start("sleep 100", session_id=OTHER, generation=1)
    listed = await call(box, "process", action="list")
    assert listed == []
    result = await call(box, "process", action="poll", process_id=other.id)
    assert "no process" in result["error"]


async def test_an_agent_runs_a_command_through_the_gateway(
    tmp_path: Path, clock: ManualClock
) -> None:
    running = await start_gateway(tmp_path / "s", clock, notifier={"interval": 0})
    ada = running.adapter.user("ada")
    await ada.say('tool terminal {"command": "echo from-the-job"}')
    assert [m.text for m in await ada.wait_for(1, within=20)] == ["Tool terminal finished."]
    session_id = running.gateway.lanes.all()[0].session.id
    rows = await running.gateway.store.transcript.all(session_id)
    assert json.loads(rows[2].content)["output"] == "from-the-job"
    view = running.gateway.snapshot().processes[0]
    assert (view.state, view.exit_code, view.last_line) == ("exited", 0, "from-the-job")

"""terminal(...) and process(...): the agent's hands on background OS processes.

The schemas are a contract (agents and prompts depend on them):
    terminal(command, background=false, notify_on_complete=false, watch_patterns=[],
             timeout=seconds, cwd)
    process(action: list|poll|log|wait|kill, process_id, timeout, offset, limit)
Results are short JSON text; errors are results, never exceptions.

Completion consumption is explicit: `wait` that saw the exit, `log` read to the end after the
exit, and `kill` consume the completion (no notice will follow); `poll` never does.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Mapping
from typing import Any

from gateway_core.model import ProcessState
from gateway_core.processes.registry import ProcessRegistry, TrackedProcess
from gateway_core.tools import terminal_results
from gateway_core.tools.registry import ToolContext, ToolError, ToolOutcome
from gateway_core.tools.terminal_results import OUTPUT_CHARS, BadTimeout, call_timeout

RegistryOf = Callable[[], ProcessRegistry]


def _tail(job: TrackedProcess, chars: int = OUTPUT_CHARS) -> str:
    return job.output.text()[-chars:]


def _timeout(arguments: Mapping[str, Any]) -> float:
    try:
        return call_timeout(arguments)
    except BadTimeout as error:
        raise ToolError(str(error)) from None


class TerminalTool:
    name = "terminal"
    description = (
        "Run a shell command. Foreground (default) waits for it up to `timeout` seconds; "
        "background returns a process_id at once (use the process tool, or "
        "notify_on_complete to be told when it ends)."
    )
    parameters: Mapping[str, Any] = {
        "type": "object",
        "properties": {
            "command": {"type": "string"},
            "background": {"type": "boolean", "default": False},
            "notify_on_complete": {"type": "boolean", "default": False},
            "watch_patterns": {"type": "array", "items": {"type": "string"}, "default": []},
            "timeout": {"type": "number", "description": "seconds"},
            "cwd": {"type": "string"},
        },
        "required": ["command"],
    }
    read_only = False

    def __init__(self, registry: RegistryOf) -> None:
        self._registry = registry

    async def __call__(self, arguments: Mapping[str, Any], context: ToolContext) -> ToolOutcome:
        command = arguments.get("command")
        if not isinstance(command, str) or not command.strip():
            raise ToolError("command must be a non-empty string")
        background = arguments.get("background", False) is True
        notify = arguments.get("notify_on_complete", False) is True
        patterns = arguments.get("watch_patterns", [])
        if not isinstance(patterns, list) or not all(isinstance(p, str) for p in patterns):
            raise ToolError("watch_patterns must be a list of strings")
        cwd = arguments.get("cwd")
        if cwd is not None and not isinstance(cwd, str):
            raise ToolError("cwd must be a string")
        if not background and (notify or patterns):
            raise ToolError(
                "notify_on_complete and watch_patterns only apply to background=true; a "
                "foreground command returns its output when it ends"
            )
        note = None
        if notify and patterns:
            patterns, note = (
                [],
                "watch_patterns dropped: notify_on_complete already reports the end",
            )
        registry = self._registry()
        try:
            job = await registry.start(
                command,
                session_id=context.session_id,
                generation=context.generation,
                cwd=cwd,
                notify_on_complete=notify,
                watch_patterns=tuple(patterns),
                tool_call_id=context.call_id,
            )
        except OSError as error:
            raise ToolError(f"could not start: {error.strerror or error}") from None
        if background:
            return ToolOutcome(terminal_results.started(job.id, job.record.pid, note))
        timeout = _timeout(arguments)
        try:
            async with asyncio.timeout(timeout):
                await job.finished.wait()
        except TimeoutError:
            killed = await registry.kill(job.id)
            return ToolOutcome(
                terminal_results.timed_out(timeout, killed.killed, killed.survivors, _tail(job))
            )
        await registry.consume(job.id)  # the caller saw the exit: nobody else reports it
        return ToolOutcome(terminal_results.finished(job.record.exit_code, job.state, _tail(job)))


class ProcessTool:
    name = "process"
    description = "Inspect or control background processes: list, poll, log, wait, kill."
    parameters: Mapping[str, Any] = {
        "type": "object",
        "properties": {
            "action": {"type": "string", "enum": ["list", "poll", "log", "wait", "kill"]},
            "process_id": {"type": "string"},
            "timeout": {"type": "number", "description": "seconds (wait)"},
            "offset": {"type": "integer", "minimum": 0},
            "limit": {"type": "integer", "minimum": 1},
        },
        "required": ["action"],
    }
    # Recovery reads list/poll/log/wait as read-only through policy.read_only_calls.
    read_only = False

    def __init__(self, registry: RegistryOf) -> None:
        self._registry = registry

    async def __call__(self, arguments: Mapping[str, Any], context: ToolContext) -> ToolOutcome:
        action = arguments.get("action")
        registry = self._registry()
        if action == "list":
            jobs = [j for j in registry.all() if j.record.session_id == context.session_id]
            return ToolOutcome(
                json.dumps(
                    [
                        {"process_id": j.id, "command": j.record.command, "state": j.state,
                         "exit_code": j.record.exit_code}
                        for j in jobs
                    ]
                )
            )  # fmt: skip
        if action not in ("poll", "log", "wait", "kill"):
            raise ToolError("action must be one of list, poll, log, wait, kill")
        process_id = arguments.get("process_id")
        job = registry.get(process_id) if isinstance(process_id, str) else None
        if job is None or job.record.session_id != context.session_id:
            raise ToolError(f"no process {process_id!r} in this conversation")
        # This turn is looking after the job now: its later events are not stale for it.
        await registry.claim(job.id, context.generation)
        if action == "poll":
            return ToolOutcome(json.dumps(self._status(job) | {"last_lines": job.output.tail(5)}))
        if action == "log":
            return await self._log(registry, job, arguments)
        if action == "wait":
            timeout = _timeout(arguments)
            try:
                async with asyncio.timeout(timeout):
                    await job.finished.wait()
            except TimeoutError:
                note = (
                    "still running; you will be notified"
                    if job.record.notify_on_complete
                    else "still running"
                )
                return ToolOutcome(json.dumps(self._status(job) | {"note": note}))
            await registry.consume(job.id)
            return ToolOutcome(json.dumps(self._status(job) | {"output": _tail(job)}))
        result = await registry.kill(job.id, consume=True)
        if not result.killed:
            raise ToolError(f"not killed: processes {list(result.survivors)} survived")
        await registry.consume(job.id)  # also when it had already exited
        return ToolOutcome(json.dumps(self._status(job) | {"output": _tail(job)}))

    async def _log(
        self, registry: ProcessRegistry, job: TrackedProcess, arguments: Mapping[str, Any]
    ) -> ToolOutcome:
        offset, limit = arguments.get("offset", 0), arguments.get("limit", 100)
        if not isinstance(offset, int) or not isinstance(limit, int) or offset < 0 or limit < 1:
            raise ToolError("offset must be >= 0 and limit >= 1 (integers)")
        lines = job.output.tail(10**9)
        page = lines[offset : offset + limit]
        at_end = offset + limit >= len(lines)
        if at_end and job.state != ProcessState.RUNNING:
            await registry.consume(job.id)  # the whole output was read after the exit
        return ToolOutcome(
            json.dumps(self._status(job) | {"lines": page, "offset": offset, "total": len(lines)})
        )

    def _status(self, job: TrackedProcess) -> dict[str, Any]:
        return {
            "process_id": job.id,
            "state": job.state,
            "exit_code": job.record.exit_code,
            "consumed": job.record.consumed,
        }

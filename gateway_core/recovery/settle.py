"""Settling interrupted tool calls from durable evidence. Pure: no I/O, no clock reads.

A turn killed while a `terminal` command ran leaves a tool call without a result. That call's
effect is not unknown when the job it started left evidence behind: every job runs under a
wrapper that writes its exit status to a file, and its record names the call that started
it. So, per unresolved call:

    a background start whose job exists       -> started: the start is the whole result
    the job ended with an exit status         -> finished: its real result is recorded
    the job is still running (re-adopted)     -> running: wait for it, within the call's timeout
    no job, a job killed or lost mid-way,
    or a tool that leaves no such evidence    -> unknown: effect unknown (held for an operator)
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from gateway_core.model import JobEvidence, ProcessState, SettledCall, Settlement, ToolCall
from gateway_core.safe_json import parse_json
from gateway_core.tools import terminal_results

# Tools whose calls start jobs the registry records (and so can be settled from them).
JOB_TOOLS = frozenset({"terminal"})


def settle_calls(
    calls: Iterable[ToolCall],
    jobs: Mapping[str, JobEvidence],
    *,
    generation: int,
    called_at: float | None,
) -> tuple[SettledCall, ...]:
    """What the evidence says of each unresolved call (in the order they were asked)."""
    return tuple(_settle(call, jobs.get(call.id), generation, called_at) for call in calls)


def _settle(
    call: ToolCall, job: JobEvidence | None, generation: int, called_at: float | None
) -> SettledCall:
    name = call.name
    if name not in JOB_TOOLS:
        return SettledCall(
            call.id, name, Settlement.UNKNOWN, f"{name} leaves no record of its effect",
            generation=generation,
        )  # fmt: skip
    # A job that started before the call was made belongs to an older call with the same id.
    if job is None or (called_at is not None and job.started_at < called_at - 1.0):
        return SettledCall(
            call.id, name, Settlement.UNKNOWN, f"{name}: no job was recorded for this call",
            generation=generation,
        )  # fmt: skip
    arguments = parse_json(call.arguments or "{}")
    if terminal_results.is_background(arguments):
        return SettledCall(
            call.id,
            name,
            Settlement.STARTED,
            f"{name} had started background job {job.process_id}; the start is its result",
            process_id=job.process_id,
            result=terminal_results.started(
                job.process_id, job.pid, "started before the gateway restarted"
            ),
            generation=generation,
        )
    if job.state == ProcessState.EXITED and job.exit_code is not None:
        return SettledCall(
            call.id,
            name,
            Settlement.FINISHED,
            f"{name} finished with exit {job.exit_code} while the gateway was down; "
            "result recovered",
            process_id=job.process_id,
            exit_code=job.exit_code,
            result=terminal_results.finished(
                job.exit_code, str(job.state), job.output_tail, recovered=True
            ),
            generation=generation,
        )
    if job.state == ProcessState.RUNNING:
        timeout = terminal_results.timeout_or_default(arguments)
        return SettledCall(
            call.id,
            name,
            Settlement.RUNNING,
            f"{name} is still running ({job.process_id}, re-adopted); waiting for it within "
            f"its {timeout:g} s timeout",
            process_id=job.process_id,
            deadline=job.started_at + timeout,
            generation=generation,
        )
    ending = job.end_reason or str(job.state)
    return SettledCall(
        call.id,
        name,
        Settlement.UNKNOWN,
        f"{name}: its job {job.process_id} ended without an exit status ({ending})",
        process_id=job.process_id,
        generation=generation,
    )

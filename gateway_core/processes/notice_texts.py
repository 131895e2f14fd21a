"""The words of background-job notices: what the agent is told, and what a user is told.

The agent gets the facts (process id, how it ended, the command, the output tail) with a
footer saying the gateway wrote it, so a model does not mistake it for the user. A user only
ever gets a short line (no command, no raw output): it is a receipt, not a log.
"""

from __future__ import annotations

from gateway_core.model import JobRecord, ProcessState
from gateway_core.processes.watch import Match, WatchDisabled, WatchStatus

FOOTER = "[Internal notification from the gateway, not written by the user.]"
OUTPUT_CHARS = 2000


def _duration(seconds: float) -> str:
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {seconds} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min"


def _ending(job: JobRecord) -> str:
    if job.state == ProcessState.EXITED:
        return "completed normally" if job.exit_code == 0 else f"exited with code {job.exit_code}"
    if job.state == ProcessState.KILLED:
        return f"was terminated ({job.end_reason or 'killed'})"
    return f"was lost ({job.end_reason or 'no exit code left behind'})"


def _tail(output: str) -> str:
    if len(output) <= OUTPUT_CHARS:
        return output
    cut = output[-OUTPUT_CHARS:]
    cut = cut.split("\n", 1)[1] if "\n" in cut else cut  # start on a whole line
    return f"[… output truncated, showing the last {len(cut)} characters]\n{cut}"


def completion_for_agent(job: JobRecord, output: str) -> str:
    took = _duration((job.ended_at or job.started_at) - job.started_at)
    return (
        f"[Background process {job.id} {_ending(job)} after {took}.]\n"
        f"Command: {job.command}\n"
        f"Output:\n{_tail(output) or '(none)'}\n"
        f"{FOOTER}"
    )


def completion_for_user(job: JobRecord) -> str:
    took = _duration((job.ended_at or job.started_at) - job.started_at)
    if job.state == ProcessState.EXITED and job.exit_code == 0:
        return f"✅ Done. A background job finished after {took}."
    if job.state == ProcessState.EXITED:
        return f"❌ A background job hit a problem (exit {job.exit_code}) after {took}."
    return f"⚠️ A background job {_ending(job)} after {took}."


def watch_for_agent(job: JobRecord, match: Match) -> str:
    lines = "\n".join(match.lines)
    extra = ""
    if match.suppressed:
        extra += f"\n({match.suppressed} earlier matches were held back by the rate limit.)"
    if match.dropped_by_breaker:
        extra += (
            f"\n({match.dropped_by_breaker} matches of all background jobs were dropped while "
            "the gateway's watch breaker was open.)"
        )
    return (
        f'[Background process {job.id} matched watch pattern "{match.pattern}".]\n'
        f"Command: {job.command}\n"
        f"Matched output:\n{lines}{extra}\n"
        f"{FOOTER}"
    )


def watch_disabled_for_agent(job: JobRecord, disabled: WatchDisabled) -> str:
    why = (
        f"it reached the cap of {disabled.delivered} delivered matches"
        if disabled.reason is WatchStatus.DISABLED_CAP
        else "it matched too often, three rate-limit windows in a row"
    )
    return (
        f"[Watching background process {job.id} stopped: {why}. You will be told once when "
        f"it ends instead (notify_on_complete).]\n"
        f"Command: {job.command}\n"
        f"{FOOTER}"
    )

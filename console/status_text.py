"""The gateway's drain and its previous run in words, for the overview and `status`."""

from __future__ import annotations

from console.durations import duration
from console.words import plural
from gateway_core.events import DrainPhase, DrainProgress
from gateway_core.snapshot import PreviousRun


def drain_lines(drain: DrainProgress) -> str:
    """A drain's progress in words."""
    running = ", ".join(str(s) for s in drain.running[:20]) or "none"
    interrupted = ", ".join(str(s) for s in drain.interrupted[:20]) or "none"
    done = f"{drain.finished} of {plural(drain.total, 'turn')} finished"
    if drain.phase is not DrainPhase.STOPPED:
        done += f", {duration(drain.seconds_left)} left"
    return f"{done}\nstill running: {running}\ninterrupted: {interrupted}"


def previous_run_line(run: PreviousRun, now: float) -> str:
    if run.stopped_at is None or run.clean is None:
        return "It recorded no stop: it was killed or crashed (its turns were recovered)."
    how = "stopped cleanly" if run.clean else "stopped with turns left for recovery"
    return f"It {how} {duration(now - run.stopped_at)} ago."

"""The knobs of the recovery decision, as one immutable value."""

from __future__ import annotations

from dataclasses import dataclass

from gateway_core.config import RecoverySettings
from gateway_core.model import Gate

# Calls that only read: re-running one after an interruption cannot change the world.
DEFAULT_READ_ONLY_CALLS = frozenset({"process:list", "process:poll", "process:log", "process:wait"})
# Tools whose unanswered call means "the agent asked the user and is waiting for them".
DEFAULT_USER_WAIT_TOOLS = frozenset({"clarify"})


@dataclass(frozen=True, slots=True)
class RecoveryPolicy:
    gate: Gate = Gate.SAFE
    # Seconds; a tail older than this is stale. 0 disables the freshness check.
    freshness: float = 3600.0
    # A tail timestamp further in the future than this is evidence of a clock change, not age.
    future_tolerance: float = 300.0
    # Resume attempts that did not complete before a resumable candidate is held instead.
    max_attempts: int = 3
    # The loop guard: this many boots with candidates, each within loop_window of the previous.
    loop_window: float = 300.0
    loop_boots: int = 3
    # Rows read first from the end of each candidate's transcript. Only the cost depends on
    # it: a candidate whose first rows do not reach its user's request is read further back
    # (recovery/tails.py), so the decision is always the one the whole transcript gives.
    tail_rows: int = 4
    # Tool names that are read-only whatever their arguments.
    read_only_tools: frozenset[str] = frozenset()
    # "tool:action" pairs that are read-only (the tool's "action" argument decides).
    read_only_calls: frozenset[str] = DEFAULT_READ_ONLY_CALLS
    user_wait_tools: frozenset[str] = DEFAULT_USER_WAIT_TOOLS
    # Tell the user once when their interrupted request is held or not resumed.
    notify_user: bool = True


def policy_from_settings(settings: RecoverySettings) -> RecoveryPolicy:
    """The decision's policy from the [recovery] section of the config."""
    return RecoveryPolicy(
        gate=settings.gate,
        freshness=settings.freshness,
        max_attempts=settings.max_attempts,
        loop_window=settings.loop_window,
        loop_boots=settings.loop_boots,
        tail_rows=settings.tail_rows,
        notify_user=settings.notify_user,
    )

"""What an operator needs to know about this boot: the run before it, and why the
restart-loop guard tripped (if it did), which turns it held back and how to leave it.

Read once, right after the recovery pass, from the runs table and the boot's own decisions;
the snapshot carries it to the console and the CLI.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from gateway_core.model import RecoveryAction, RecoveryState, RunRecord
from gateway_core.recovery.decision import gate_action
from gateway_core.recovery.policy import RecoveryPolicy
from gateway_core.recovery.startup import BootRecovery
from gateway_core.snapshot import LoopGuardView, PreviousRun
from gateway_core.store import Store


@dataclass(frozen=True, slots=True)
class BootReport:
    loop_guard: LoopGuardView
    previous_run: PreviousRun | None


def loop_chain(boot_times: Sequence[float], window: float) -> tuple[float, ...]:
    """The boots that chain up to the last one (each within `window` of the next), oldest
    first: what the guard counted (the same walk as recovery.loop_guard)."""
    if not boot_times:
        return ()
    chain = [boot_times[-1]]
    for older in reversed(boot_times[:-1]):
        if abs(chain[-1] - older) > window:
            break
        chain.append(older)
    return tuple(reversed(chain))


def held_by_the_guard(boot: BootRecovery, policy: RecoveryPolicy) -> tuple[int, ...]:
    """Candidates the guard held that the gate would have resumed: not held before this
    boot, and not held for too many attempts either."""
    if not boot.loop_guard_tripped:
        return ()
    return tuple(
        c.session.id
        for c in boot.candidates
        if c.decision.action is RecoveryAction.HOLD
        and gate_action(c.decision.verdict, policy.gate) is RecoveryAction.RESUME
        and c.record.state != RecoveryState.HELD
        and c.record.attempts < policy.max_attempts
    )


async def read_boot_report(
    store: Store, run: RunRecord, boot: BootRecovery, policy: RecoveryPolicy
) -> BootReport:
    chain: tuple[float, ...] = ()
    if boot.loop_guard_tripped:
        since = run.started_at - policy.loop_window * policy.loop_boots
        earlier = await store.runs.candidate_boot_times(since, exclude_run=run.id)
        chain = loop_chain([*earlier, run.started_at], policy.loop_window)
    guard = LoopGuardView(
        tripped=boot.loop_guard_tripped,
        boots=chain,
        needed=policy.loop_boots,
        window=policy.loop_window,
        held=held_by_the_guard(boot, policy),
    )
    previous = await store.runs.previous(run.id)
    return BootReport(
        guard,
        None
        if previous is None
        else PreviousRun(previous.id, previous.started_at, previous.stopped_at, previous.clean),
    )

"""Restart recovery: the pure decision (decision.py) and the startup pass that applies it."""

from gateway_core.recovery.decision import Classification, classify, decide, gate_action
from gateway_core.recovery.loop_guard import loop_guard_tripped
from gateway_core.recovery.policy import RecoveryPolicy

__all__ = [
    "Classification",
    "RecoveryPolicy",
    "classify",
    "decide",
    "gate_action",
    "loop_guard_tripped",
]

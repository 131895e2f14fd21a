"""Which operator actions can apply, from a snapshot's views: pure functions, no widgets.

The console offers an action only when it can succeed; the gateway's control layer still
refuses whatever it must (these rules mirror its checks, they never replace them).
"""

from __future__ import annotations

from gateway_core.model import CANDIDATE_STATES, ProcessState, RecoveryState, Verdict
from gateway_core.runtime import GatewayState
from gateway_core.snapshot import CandidateView, ProcessView, SessionActivity, SessionView

# The gateway takes operator actions on its turns and intake.
LIVE = frozenset({GatewayState.RUNNING, GatewayState.QUIET})
BUSY = frozenset({SessionActivity.RUNNING, SessionActivity.RESUMING})
# On several nodes, what only the node that owns a session can do (its lane runs the turns,
# only it may deliver): refused on the others (gateway_core/control.py). Unsuspend is a
# durable change of the shared store and applies from any node.
OWNER_ONLY = frozenset({"approve", "clear", "force_resume", "interrupt"})


def owned_elsewhere(session_id: int, owner: str | None, here: str | None) -> str | None:
    """Why another node's session takes no owner-only action here, or None if it is ours
    (or nobody's, or there are no nodes): the same words as the control layer's refusal."""
    if owner is None or here is None or owner == here:
        return None
    return f"session {session_id} is owned by node {owner}; attach to that node"


def gateway_actions(state: GatewayState) -> frozenset[str]:
    """The gateway-wide actions that apply in a gateway state."""
    actions = set()
    if state is GatewayState.RUNNING:
        actions.add("quiet")
    if state is GatewayState.QUIET:
        actions.add("resume_intake")
    if state in LIVE:
        actions.update(("drain", "restart", "crash_restart"))
    return frozenset(actions)


def candidate_actions(
    view: CandidateView, gateway_state: GatewayState, here: str | None = None
) -> frozenset[str]:
    """What applies to one recovery candidate. A resume turn needs a running gateway and a
    stored origin to reply to; here: this node (a candidate another node owns is its own)."""
    actions = set()
    if view.state is RecoveryState.SUSPENDED:
        actions.add("unsuspend")
    if view.state in CANDIDATE_STATES:
        actions.add("clear")
        if gateway_state is GatewayState.RUNNING and view.verdict != Verdict.NO_ORIGIN:
            actions.add("force_resume")
            if view.state is RecoveryState.HELD:
                actions.add("approve")
    if owned_elsewhere(view.session_id, view.owner, here) is not None:
        actions -= OWNER_ONLY
    return frozenset(actions)


def session_actions(view: SessionView, here: str | None = None) -> frozenset[str]:
    if owned_elsewhere(view.session_id, view.owner, here) is not None:
        return frozenset()
    return frozenset({"interrupt"}) if view.state in BUSY else frozenset()


def process_actions(view: ProcessView) -> frozenset[str]:
    return frozenset({"show_log", "kill"} if view.state is ProcessState.RUNNING else {"show_log"})


def why_not_all(
    action: str, targets: list[frozenset[str]], *, what: str = "the selected row"
) -> str | None:
    """None if `action` applies to every target; else why not, in words."""
    if not targets:
        return "nothing is selected"
    if all(action in allowed for allowed in targets):
        return None
    if len(targets) == 1:
        return f"it does not apply to {what}"
    return "it does not apply to every marked row"

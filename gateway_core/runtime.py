"""The services every part of a running gateway shares, and the gateway's state.

One object passed around instead of many arguments; built by gateway.py, which is the only
place that knows all the parts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from gateway_core.adapters.base import Adapter
from gateway_core.agents.base import Agent
from gateway_core.clock import Clock
from gateway_core.config import Config
from gateway_core.events import EventBus, GatewayStateChanged
from gateway_core.node import Node
from gateway_core.recovery.policy import RecoveryPolicy
from gateway_core.store import Store
from gateway_core.tools.registry import ToolBox


class GatewayState(StrEnum):
    STARTING = "starting"
    RUNNING = "running"
    QUIET = "quiet"  # messages are received and stored; no new turn starts
    DRAINING = "draining"
    STOPPED = "stopped"


@dataclass
class Runtime:
    config: Config
    store: Store
    clock: Clock
    events: EventBus
    agent: Agent
    tools: ToolBox
    adapters: dict[str, Adapter]
    policy: RecoveryPolicy
    state: GatewayState = GatewayState.STARTING
    run_id: int | None = None  # this boot's row in `runs`, once recorded
    # This run as a node of several on one PostgreSQL (node.py); None on SQLite: no leases.
    node: Node | None = None
    # Tokens the agent reported, per session, for this run: {session_id: (prompt, completion)}.
    usage: dict[int, tuple[int, int]] = field(default_factory=dict)

    @property
    def accepting_turns(self) -> bool:
        return self.state is GatewayState.RUNNING

    @property
    def draining(self) -> bool:
        return self.state in (GatewayState.DRAINING, GatewayState.STOPPED)

    def set_state(self, state: GatewayState, detail: str = "") -> None:
        if state is not self.state:
            self.state = state
            self.events.publish(GatewayStateChanged(self.clock.now(), state.value, detail))

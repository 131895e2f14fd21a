"""The Agent protocol: a turn gets the transcript and tools and yields events.

The turn runner persists each event as a transcript row before it asks the agent for the
next one, so an assistant row asking for tools is durable before any tool runs: after a
crash the transcript says exactly where the turn stopped.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

from gateway_core.clock import Clock
from gateway_core.model import FinishReason, Message, MessageKind, Session, ToolCall
from gateway_core.quick_init import quick_frozen_init
from gateway_core.tools.registry import ToolBox


@quick_frozen_init
@dataclass(frozen=True, slots=True)
class TurnContext:
    session: Session
    generation: int
    input: str  # what to respond to; carries the recovery note when there is one
    resume: bool  # a synthetic turn continuing an interrupted one
    tools: ToolBox
    clock: Clock
    # The transcript tail, ending with this turn's input row. Read on demand: an agent that
    # does not need it (an instant scripted reply) pays nothing for it.
    load_history: Callable[[], Awaitable[tuple[Message, ...]]]
    # The input is an internal notification (a background job's event), not the user's words.
    notice: bool = False
    # Streamed answer text so far (shown in the still-working message when configured).
    progress: Callable[[str], None] = lambda text: None


@dataclass(frozen=True, slots=True)
class AskTools:
    """The model asked for tool calls. The agent runs them after this event returns."""

    calls: tuple[ToolCall, ...]
    text: str = ""


@dataclass(frozen=True, slots=True)
class ToolDone:
    call_id: str
    name: str
    content: str
    kind: str = MessageKind.TEXT


@quick_frozen_init
@dataclass(frozen=True, slots=True)
class Answer:
    text: str
    finish_reason: str = FinishReason.STOP
    usage: tuple[int, int] | None = None  # (prompt, completion) tokens of the whole turn


AgentEvent = AskTools | ToolDone | Answer


class Agent(Protocol):
    def run_turn(self, context: TurnContext) -> AsyncIterator[AgentEvent]:
        """Yield events until an Answer. Raising fails the turn (the user is told)."""

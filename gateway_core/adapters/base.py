"""The Adapter protocol every platform implements (loopback now, Telegram next).

Intake hands batches of inbound messages to a sink that persists them; the adapter may only
acknowledge them to its platform after the sink returns (persist, then confirm).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from gateway_core.model import Origin, ReplyAnchorMode
from gateway_core.quick_init import quick_frozen_init


@quick_frozen_init
@dataclass(frozen=True, slots=True)
class InboundMessage:
    platform: str
    update_id: str  # unique per platform: the inbox deduplicates on it
    origin: Origin | None
    text: str
    # Set for an update that is recorded (so it is deduplicated and visible) but never turned
    # into a turn: malformed, an unsupported kind, or from a user who is not allowed.
    skip_reason: str | None = None
    # The message's own id on the platform: what an answer to it is sent as a reply to.
    message_id: str | None = None


@dataclass(frozen=True, slots=True)
class Capabilities:
    edit: bool = True
    delete: bool = True
    max_length: int = 4096
    # The platform shows "typing…" for a few seconds per call (the adapter has typing()).
    typing: bool = False
    # The platform allows one consumer of its updates at a time (Telegram's getUpdates): on
    # several nodes, only the holder of its intake lease starts intake (intake_lease.py).
    single_consumer: bool = False


@runtime_checkable
class Typing(Protocol):
    async def typing(self, origin: Origin) -> None:
        """Show the user that the bot is working (lasts a few seconds on the platform)."""


@dataclass(frozen=True, slots=True)
class IntakeHealth:
    """Whether an adapter's intake can reach its platform right now (readiness reads it).

    reachable is False until the platform answered once, and again after failures that are
    more than a blip (each adapter says what that means for it); detail says why."""

    reachable: bool
    detail: str = ""


@runtime_checkable
class ReportsIntake(Protocol):
    def intake_health(self) -> IntakeHealth:
        """The current state of intake's connection to the platform."""


class DeliveryError(Exception):
    """A send, edit or delete that failed.

    final: it surely did not happen and retrying cannot help (blocked, bad request).
    outcome_unknown: the request may have reached the platform (timeout, dropped connection
    after sending); retrying could double it, so the outbox records it as 'unknown'.
    Neither: it surely did not happen and a retry may succeed (429, 5xx, connection refused).
    """

    def __init__(self, message: str, *, final: bool = False, outcome_unknown: bool = False) -> None:
        super().__init__(message)
        self.final = final
        self.outcome_unknown = outcome_unknown


IntakeSink = Callable[[Sequence[InboundMessage]], Awaitable[None]]


class Adapter(Protocol):
    platform: str
    capabilities: Capabilities
    # Which answers are sent as replies to what they answer (the deliverer decides with it).
    reply_anchor: ReplyAnchorMode

    async def start_intake(self, sink: IntakeSink) -> None:
        """Begin handing inbound batches to sink; acknowledge each only after sink returns."""

    async def stop_intake(self) -> None:
        """Stop taking new messages; confirm what was persisted. Safe to call twice."""

    async def send(self, origin: Origin, text: str, reply_to: str | None = None) -> str | None:
        """Deliver text (as a reply to the message reply_to, when given and that message
        still exists; a deleted one never blocks the send); returns the platform's message
        id. Raises DeliveryError."""

    async def edit(self, origin: Origin, message_id: str, text: str) -> None:
        """Replace a message's text. Raises DeliveryError."""

    async def delete(self, origin: Origin, message_id: str) -> None:
        """Remove a message. Raises DeliveryError."""

    async def close(self) -> None:
        """Release connections; called after the drain."""

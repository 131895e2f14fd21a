"""The Adapter protocol every platform implements (loopback now, Telegram next).

Intake hands batches of inbound messages to a sink that persists them; the adapter may only
acknowledge them to its platform after the sink returns (persist, then confirm).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from gateway_core.model import Origin


@dataclass(frozen=True, slots=True)
class InboundMessage:
    platform: str
    update_id: str  # unique per platform: the inbox deduplicates on it
    origin: Origin
    text: str


@dataclass(frozen=True, slots=True)
class Capabilities:
    edit: bool = True
    delete: bool = True
    max_length: int = 4096


class DeliveryError(Exception):
    """A send, edit or delete that did not happen. `final` means retrying cannot help."""

    def __init__(self, message: str, *, final: bool = False) -> None:
        super().__init__(message)
        self.final = final


IntakeSink = Callable[[Sequence[InboundMessage]], Awaitable[None]]


class Adapter(Protocol):
    platform: str
    capabilities: Capabilities

    async def start_intake(self, sink: IntakeSink) -> None:
        """Begin handing inbound batches to sink; acknowledge each only after sink returns."""

    async def stop_intake(self) -> None:
        """Stop taking new messages; confirm what was persisted. Safe to call twice."""

    async def send(self, origin: Origin, text: str) -> str | None:
        """Deliver text; returns the platform's message id. Raises DeliveryError."""

    async def edit(self, origin: Origin, message_id: str, text: str) -> None:
        """Replace a message's text. Raises DeliveryError."""

    async def delete(self, origin: Origin, message_id: str) -> None:
        """Remove a message. Raises DeliveryError."""

    async def close(self) -> None:
        """Release connections; called after the drain."""

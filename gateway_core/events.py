"""The typed event bus: every state change is published here, once.

Subscribers (the in-process console, the control socket, the JSON log) each get a bounded
queue. Publishing never waits: a subscriber that falls behind loses its oldest events and is
told how many it missed, so a stuck reader can never slow the gateway down.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from enum import StrEnum

from gateway_core.quick_init import quick_frozen_init


@dataclass(frozen=True, slots=True)
class Event:
    at: float


@dataclass(frozen=True, slots=True)
class GatewayStateChanged(Event):
    state: str
    detail: str = ""


@quick_frozen_init
@dataclass(frozen=True, slots=True)
class MessageReceived(Event):
    session_id: int
    inbox_id: int
    queued: int  # messages now waiting in the session's lane


@quick_frozen_init
@dataclass(frozen=True, slots=True)
class UpdatesStored(Event):
    """One intake batch of a platform, committed to the inbox: how many updates became
    messages (accepted), were already stored (duplicate: a redelivery), were recorded but not
    for a turn (skipped: malformed, not text, a user not allowed) or found their session's
    queue full (refused: the user is told)."""

    platform: str
    accepted: int
    duplicates: int
    skipped: int
    refused: int


@quick_frozen_init
@dataclass(frozen=True, slots=True)
class TurnStarted(Event):
    session_id: int
    generation: int
    resume: bool


@quick_frozen_init
@dataclass(frozen=True, slots=True)
class TurnFinished(Event):
    session_id: int
    generation: int
    outcome: str  # completed | failed | interrupted | superseded
    seconds: float


@quick_frozen_init
@dataclass(frozen=True, slots=True)
class ReplySent(Event):
    session_id: int
    outbox_id: int
    platform_message_id: str | None
    platform: str = ""


@dataclass(frozen=True, slots=True)
class DeliveryFailed(Event):
    session_id: int
    outbox_id: int
    error: str
    final: bool
    platform: str = ""
    unknown: bool = False  # the send may have happened: recorded 'unknown', never repeated


class AgentRequestOutcome(StrEnum):
    OK = "ok"
    RETRYABLE = "retryable"  # 429, 5xx, timeout, refused: tried again (unless out of retries)
    FAILED = "failed"  # refused for good (4xx) or a malformed answer: the turn fails


@dataclass(frozen=True, slots=True)
class AgentRequestFinished(Event):
    """One request to the agent's model server (each retry is a request of its own)."""

    seconds: float
    outcome: AgentRequestOutcome
    prompt_tokens: int = 0
    completion_tokens: int = 0


@dataclass(frozen=True, slots=True)
class NotifierFired(Event):
    session_id: int
    generation: int
    count: int
    edited: bool


class DrainPhase(StrEnum):
    """A drain's steps, in order."""

    MARKING = "marking"  # running turns are marked as candidates first (a crash mid-drain)
    WAITING = "waiting"  # for running turns to finish, until the deadline
    INTERRUPTING = "interrupting"  # the deadline passed: the rest are cancelled
    GRACE = "grace"  # cancelled turns get a moment to write their last rows
    STOPPED = "stopped"


@dataclass(frozen=True, slots=True)
class DrainProgress(Event):
    phase: DrainPhase
    total: int
    finished: int
    running: tuple[int, ...]
    interrupted: tuple[int, ...]
    seconds_left: float


@dataclass(frozen=True, slots=True)
class RecoveryDecided(Event):
    session_id: int
    verdict: str
    action: str
    explanation: str


@dataclass(frozen=True, slots=True)
class OperatorActed(Event):
    actor: str
    action: str
    targets: tuple[str, ...]
    reason: str | None
    outcome: str


@dataclass(frozen=True, slots=True)
class BackgroundNotice(Event):
    """What became of one event of a background job (a completion, a watch match, ...).

    outcome: queued (a notice turn will tell the agent), delivered (that turn started),
    told-user (the conversation had moved on: the user got a short notice instead),
    dropped-consumed, dropped-same-turn, dropped-stale, breaker-tripped."""

    session_id: int | None
    process_id: str
    what: str  # completion | watch-match | watch-disabled | breaker
    outcome: str


@dataclass(frozen=True, slots=True)
class LogLine(Event):
    level: str
    message: str


@dataclass
class Subscription:
    queue: asyncio.Queue[Event]
    dropped: int = 0
    closed: bool = False

    async def __aiter__(self) -> AsyncIterator[Event]:
        while not self.closed:
            yield await self.queue.get()


@dataclass
class EventBus:
    capacity: int = 10_000
    _subscribers: list[Subscription] = field(default_factory=list)
    published: int = 0

    def subscribe(self) -> Subscription:
        subscription = Subscription(asyncio.Queue(self.capacity))
        self._subscribers.append(subscription)
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        subscription.closed = True
        if subscription in self._subscribers:
            self._subscribers.remove(subscription)

    def publish(self, event: Event) -> None:
        self.published += 1
        for subscription in self._subscribers:
            if subscription.queue.full():
                subscription.queue.get_nowait()  # drop the oldest, keep the newest
                subscription.dropped += 1
            subscription.queue.put_nowait(event)

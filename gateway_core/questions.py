"""Questions an agent asks the user mid-turn (the clarify tool).

The question is sent straight to the chat; the user's next message in that session answers
it instead of starting a new turn. An answer that does not come in time, or a question that
could not be delivered, is a result the turn records (kinds clarify_timeout and
clarify_undelivered) - which is exactly what recovery reads as "waiting for the user".
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

from gateway_core.adapters.base import Adapter, DeliveryError
from gateway_core.clock import Clock, wait_or_timeout
from gateway_core.model import Origin


class QuestionOutcome(StrEnum):
    ANSWERED = "answered"
    TIMED_OUT = "timed_out"
    UNDELIVERED = "undelivered"


@dataclass(frozen=True, slots=True)
class Reply:
    outcome: QuestionOutcome
    text: str = ""


class Questions:
    def __init__(
        self,
        adapters: dict[str, Adapter],
        clock: Clock,
        origin_of: Callable[[int], Origin | None],
    ) -> None:
        self._adapters = adapters
        self._clock = clock
        self._origin_of = origin_of
        self._pending: dict[int, asyncio.Future[str]] = {}

    def waiting(self, session_id: int) -> bool:
        future = self._pending.get(session_id)
        return future is not None and not future.done()

    async def ask(self, session_id: int, question: str, timeout: float) -> Reply:
        origin = self._origin_of(session_id)
        adapter = None if origin is None else self._adapters.get(origin.platform)
        if origin is None or adapter is None:
            return Reply(QuestionOutcome.UNDELIVERED, "no route to the chat")
        future: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._pending[session_id] = future
        try:
            try:
                await adapter.send(origin, f"❓ {question}")
            except DeliveryError as error:
                return Reply(QuestionOutcome.UNDELIVERED, str(error))
            if await wait_or_timeout(self._clock, future, timeout):
                return Reply(QuestionOutcome.ANSWERED, future.result())
            return Reply(QuestionOutcome.TIMED_OUT)
        finally:
            if self._pending.get(session_id) is future:
                del self._pending[session_id]
            future.cancel()

    def answer(self, session_id: int, text: str) -> bool:
        """Hand a user's message to a waiting question. False if nothing was waiting."""
        future = self._pending.get(session_id)
        if future is None or future.done():
            return False
        future.set_result(text)
        return True

"""clarify(question): ask the user and wait for their answer."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from gateway_core.durations import spoken
from gateway_core.model import MessageKind
from gateway_core.questions import QuestionOutcome, Questions
from gateway_core.tools.registry import ToolContext, ToolError, ToolOutcome

MAX_QUESTION = 1000


class ClarifyTool:
    name = "clarify"
    description = (
        "Ask the user a question and wait for the answer. Use it when you cannot go on "
        "without the user's decision."
    )
    parameters: Mapping[str, Any] = {
        "type": "object",
        "properties": {"question": {"type": "string", "maxLength": MAX_QUESTION}},
        "required": ["question"],
    }
    # Not read-only: the question reaches a person. Recovery treats an open question as
    # "waiting for the user" (policy.user_wait_tools), never as something to re-run.
    read_only = False

    def __init__(self, questions: Questions, timeout: float) -> None:
        self._questions = questions
        self._timeout = timeout

    async def __call__(self, arguments: Mapping[str, Any], context: ToolContext) -> ToolOutcome:
        question = arguments.get("question")
        if not isinstance(question, str) or not question.strip():
            raise ToolError("question must be a non-empty string")
        reply = await self._questions.ask(
            context.session_id, question.strip()[:MAX_QUESTION], self._timeout
        )
        if reply.outcome is QuestionOutcome.ANSWERED:
            return ToolOutcome(json.dumps({"answer": reply.text}))
        if reply.outcome is QuestionOutcome.TIMED_OUT:
            within = spoken(self._timeout)
            return ToolOutcome(
                json.dumps({"error": f"the user did not answer within {within}"}),
                kind=MessageKind.CLARIFY_TIMEOUT,
            )
        return ToolOutcome(
            json.dumps({"error": f"the question could not be delivered: {reply.text}"}),
            kind=MessageKind.CLARIFY_UNDELIVERED,
        )

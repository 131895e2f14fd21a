"""The agent the config asks for."""

from __future__ import annotations

from collections.abc import Mapping

from gateway_core.agents.base import Agent
from gateway_core.agents.openai import OpenAIAgent
from gateway_core.agents.scripted import ScriptedAgent
from gateway_core.config import Config


def agent_from_config(config: Config, env: Mapping[str, str] | None = None) -> Agent:
    if config.agent.kind == "scripted":
        return ScriptedAgent()
    return OpenAIAgent(config.agent, env)

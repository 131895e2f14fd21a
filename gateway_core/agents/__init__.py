"""Agents: what runs a turn. `scripted` for the demo and tests; `openai` for real models."""

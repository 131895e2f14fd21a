"""Counting things in plain words, on screen as in the gateway's messages."""

from __future__ import annotations

from gateway_core.words import plural

__all__ = ["plural"]

"""Decoding JSON from stored rows without ever raising."""

from __future__ import annotations

import json


def parse_json(text: object) -> object:
    """The decoded value, or None when text is not valid JSON (callers check the type).

    RecursionError is caught too: a deeply nested value in one stored row must not make the
    recovery scan raise.
    """
    if not isinstance(text, str | bytes):
        return None
    try:
        decoded: object = json.loads(text)
    except (ValueError, RecursionError):
        return None
    return decoded

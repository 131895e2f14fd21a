"""Decoding JSON from stored rows without ever raising."""

from __future__ import annotations

import json

# json.loads' own decoder (no hooks): the same parser, called without json.loads' wrapper.
_DECODER = json.JSONDecoder()


def parse_json(text: object) -> object:
    """The decoded value, or None when text is not valid JSON (callers check the type).

    RecursionError is caught too: a deeply nested value in one stored row must not make the
    recovery scan raise.
    """
    if not isinstance(text, str | bytes):
        return None
    if type(text) is str:
        # What json.loads does for a text with no whitespace around the value (every text
        # the store writes), without its two whitespace searches: they are more than half
        # of a short object's parse, and the boot's scan parses one per candidate's origin
        # and tool call. Any other text (whitespace around the value, extra data, not JSON)
        # takes json.loads' own path below, which gives its answer.
        try:
            value, end = _DECODER.raw_decode(text)
        except (ValueError, RecursionError):
            pass
        else:
            if end == len(text):
                return value
    try:
        decoded: object = json.loads(text)
    except (ValueError, RecursionError):
        return None
    return decoded
